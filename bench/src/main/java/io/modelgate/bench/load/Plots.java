package io.modelgate.bench.load;

import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/** PNG charts a browser shows: latency by percentile, HdrHistogram style, and a rate sweep. */
public final class Plots {
  private Plots() {
    System.setProperty("java.awt.headless", "true");
  }

  /**
   * Latency (ms, log scale) against percentile, with the x axis stretched as HdrHistogram's plotter
   * does (1 / (1 - percentile)), so that 90, 99, 99.9 and 99.99 are evenly spaced.
   */
  public static void percentiles(Path png, String title, Map<String, Histogram> series) throws IOException {
    System.setProperty("java.awt.headless", "true");
    XYSeriesCollection data = new XYSeriesCollection();
    for (Map.Entry<String, Histogram> entry : series.entrySet()) {
      XYSeries line = new XYSeries(entry.getKey(), false, true);
      for (HistogramIterationValue value : entry.getValue().percentiles(5)) {
        double percentile = value.getPercentileLevelIteratedTo();
        if (percentile >= 99.999) {
          break;
        }
        line.add(1 / (1 - percentile / 100), Math.max(value.getValueIteratedTo() / 1000.0, 0.001));
      }
      data.addSeries(line);
    }
    JFreeChart chart = ChartFactory.createXYLineChart(
        title, "percentile (1 / (1 - p): 10 = p90, 100 = p99, 1000 = p99.9)", "latency, ms", data,
        PlotOrientation.VERTICAL, true, false, false);
    XYPlot plot = (XYPlot) chart.getPlot();
    LogAxis x = new LogAxis("percentile (10 = p90, 100 = p99, 1000 = p99.9)");
    x.setBase(10);
    x.setSmallestValue(1);
    x.setNumberFormatOverride(new java.text.DecimalFormat("0.#"));
    plot.setDomainAxis(x);
    LogAxis y = new LogAxis("latency, ms");
    y.setBase(10);
    y.setNumberFormatOverride(new java.text.DecimalFormat("0.###"));
    plot.setRangeAxis(y);
    style(plot, false);
    ChartUtils.saveChartAsPNG(png.toFile(), chart, 1000, 600);
  }

  /** p99 (ms, log scale) against achieved throughput, one point per sweep rate. */
  public static void sweep(Path png, String title, Map<String, List<Sweep.Point>> sweeps, double p99TargetMs) throws IOException {
    System.setProperty("java.awt.headless", "true");
    XYSeriesCollection data = new XYSeriesCollection();
    for (Map.Entry<String, List<Sweep.Point>> entry : sweeps.entrySet()) {
      XYSeries line = new XYSeries(entry.getKey(), true, true);
      for (Sweep.Point point : entry.getValue()) {
        line.add(point.achieved(), Math.max(point.p99Ms(), 0.001));
      }
      data.addSeries(line);
    }
    XYSeries target = new XYSeries("p99 target", true, true);
    double max = sweeps.values().stream().flatMap(List::stream).mapToDouble(Sweep.Point::achieved).max().orElse(1);
    target.add(0, p99TargetMs);
    target.add(max, p99TargetMs);
    data.addSeries(target);
    JFreeChart chart = ChartFactory.createXYLineChart(
        title, "throughput, requests/s", "p99 latency, ms", data, PlotOrientation.VERTICAL, true, false, false);
    XYPlot plot = (XYPlot) chart.getPlot();
    plot.setDomainAxis(new NumberAxis("throughput achieved, requests/s"));
    LogAxis y = new LogAxis("p99 latency, ms");
    y.setBase(10);
    y.setNumberFormatOverride(new java.text.DecimalFormat("0.###"));
    plot.setRangeAxis(y);
    style(plot, true);
    ChartUtils.saveChartAsPNG(png.toFile(), chart, 1000, 600);
  }

  private static void style(XYPlot plot, boolean shapes) {
    plot.setBackgroundPaint(Color.WHITE);
    plot.setDomainGridlinePaint(Color.LIGHT_GRAY);
    plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
    XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, shapes);
    for (int i = 0; i < plot.getDataset().getSeriesCount(); i++) {
      renderer.setSeriesStroke(i, new BasicStroke(2f));
    }
    plot.setRenderer(renderer);
  }
}

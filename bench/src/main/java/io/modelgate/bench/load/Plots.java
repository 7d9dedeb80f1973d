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
    LogAxis x = new RoundLogAxis("percentile (10 = p90, 100 = p99, 1000 = p99.9)");
    x.setSmallestValue(1);
    plot.setDomainAxis(x);
    plot.setRangeAxis(new RoundLogAxis("latency, ms"));
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
    plot.setRangeAxis(new RoundLogAxis("p99 latency, ms"));
    style(plot, true);
    ChartUtils.saveChartAsPNG(png.toFile(), chart, 1000, 600);
  }

  /**
   * A base-10 log axis whose ticks fall on round values: 1, 2 and 5 times a power of ten (0.1, 0.2,
   * 0.5, 1, 2, 5, 10, ...), where JFreeChart's own would put them at 1.585, 2.512, 3.981, ...
   */
  static final class RoundLogAxis extends LogAxis {
    private static final long serialVersionUID = 1L;

    RoundLogAxis(String label) {
      super(label);
      setBase(10);
      setNumberFormatOverride(new java.text.DecimalFormat("0.###"));
    }

    @Override
    @SuppressWarnings({"rawtypes", "unchecked"})
    protected List refreshTicksVertical(
        java.awt.Graphics2D g2, java.awt.geom.Rectangle2D dataArea, org.jfree.chart.ui.RectangleEdge edge) {
      org.jfree.chart.ui.TextAnchor anchor =
          edge == org.jfree.chart.ui.RectangleEdge.LEFT
              ? org.jfree.chart.ui.TextAnchor.CENTER_RIGHT
              : org.jfree.chart.ui.TextAnchor.CENTER_LEFT;
      return roundTicks(anchor);
    }

    @Override
    @SuppressWarnings({"rawtypes", "unchecked"})
    protected List refreshTicksHorizontal(
        java.awt.Graphics2D g2, java.awt.geom.Rectangle2D dataArea, org.jfree.chart.ui.RectangleEdge edge) {
      org.jfree.chart.ui.TextAnchor anchor =
          edge == org.jfree.chart.ui.RectangleEdge.TOP
              ? org.jfree.chart.ui.TextAnchor.BOTTOM_CENTER
              : org.jfree.chart.ui.TextAnchor.TOP_CENTER;
      return roundTicks(anchor);
    }

    /** Values 1, 2, 5 × 10^n within the range, fewer (1 × 10^n only) when the range spans many decades. */
    List<org.jfree.chart.axis.ValueTick> roundTicks(org.jfree.chart.ui.TextAnchor anchor) {
      double lower = Math.max(getLowerBound(), 1e-9);
      double upper = getUpperBound();
      int first = (int) Math.floor(Math.log10(lower));
      int last = (int) Math.ceil(Math.log10(upper));
      double[] mantissas = last - first > 6 ? new double[] {1} : new double[] {1, 2, 5};
      List<org.jfree.chart.axis.ValueTick> ticks = new java.util.ArrayList<>();
      for (int e = first; e <= last; e++) {
        for (double m : mantissas) {
          double value = m * Math.pow(10, e);
          if (value >= lower && value <= upper) {
            ticks.add(new org.jfree.chart.axis.NumberTick(
                value, getNumberFormatOverride().format(value), anchor, anchor, 0.0));
          }
        }
      }
      return ticks;
    }
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

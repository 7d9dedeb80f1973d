package io.modelgate.bench.load;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.HdrHistogram.Histogram;

/** Tables, JSON and HdrHistogram .hgrm files for load results. */
public final class Reports {
  private Reports() {}

  /**
   * One labelled result, in the form written to JSON. The stall meter's figures ({@link Hiccups}):
   * {@code hiccup*} how late its thread woke; {@code stalls} how many times it woke at least
   * {@value Hiccups#STALL_MICROS} µs late, {@code stallsMs} their lateness summed, and {@code
   * stallsWaitingShare} the part of that the thread spent runnable and waiting for a core (0 to 1;
   * -1 where the kernel does not say, or there was no stall).
   */
  public record Summary(
      String label,
      String load,
      long sent,
      long completed,
      double seconds,
      double throughput,
      double p50Ms,
      double p90Ms,
      double p99Ms,
      double p999Ms,
      double maxMs,
      Map<String, Long> errors,
      Map<String, Map<String, Double>> byVersion,
      Map<String, Map<String, Double>> errorLatency,
      double processCpuMicrosPerCall,
      double processHeapBytesPerCall,
      double sendLagP99Ms,
      double sendLagP999Ms,
      double hiccupP99Ms,
      double hiccupP999Ms,
      double hiccupMaxMs,
      long stalls,
      double stallsMs,
      double stallsWaitingShare) {}

  public static Summary summarize(String label, String load, LoadGenerator.Result r) {
    Map<String, Map<String, Double>> versions = new LinkedHashMap<>();
    r.byVersion().forEach((version, h) -> versions.put(version, Map.of(
        "count", (double) h.getTotalCount(),
        "p50Ms", h.getValueAtPercentile(50) / 1000.0,
        "p99Ms", h.getValueAtPercentile(99) / 1000.0,
        "p999Ms", h.getValueAtPercentile(99.9) / 1000.0)));
    Map<String, Map<String, Double>> errorLatency = new LinkedHashMap<>();
    r.errorLatencyMicros().forEach((code, e) -> errorLatency.put(code, Map.of(
        "count", (double) e.getTotalCount(),
        "p50Ms", e.getValueAtPercentile(50) / 1000.0,
        "p99Ms", e.getValueAtPercentile(99) / 1000.0,
        "p999Ms", e.getValueAtPercentile(99.9) / 1000.0)));
    Histogram h = r.latencyMicros();
    return new Summary(label, load, r.sent(), r.completed(), r.seconds(), r.throughput(),
        h.getValueAtPercentile(50) / 1000.0, h.getValueAtPercentile(90) / 1000.0,
        h.getValueAtPercentile(99) / 1000.0, h.getValueAtPercentile(99.9) / 1000.0,
        h.getMaxValue() / 1000.0, r.errors(), versions, errorLatency, r.processCpuMicrosPerCall(), r.processHeapBytesPerCall(),
        r.sendLagMicros().getValueAtPercentile(99) / 1000.0, r.sendLagMicros().getValueAtPercentile(99.9) / 1000.0,
        r.hiccupMicros().getValueAtPercentile(99) / 1000.0, r.hiccupMicros().getValueAtPercentile(99.9) / 1000.0,
        r.hiccupMicros().getMaxValue() / 1000.0, stalls(r.hiccupMicros()), stallsMicros(r.hiccupMicros()) / 1000.0,
        waitingShare(r.hiccupMicros(), r.stallWaitMicros()));
  }

  /** The wakes of the stall meter at least {@value Hiccups#STALL_MICROS} µs late. */
  static long stalls(Histogram late) {
    return late.getMaxValue() < Hiccups.STALL_MICROS ? 0 : late.getCountBetweenValues(Hiccups.STALL_MICROS, late.getMaxValue());
  }

  /** Those wakes' lateness summed, µs. */
  static double stallsMicros(Histogram late) {
    double sum = 0;
    for (org.HdrHistogram.HistogramIterationValue v : late.recordedValues()) {
      if (v.getValueIteratedTo() >= Hiccups.STALL_MICROS) {
        sum += (double) late.medianEquivalentValue(v.getValueIteratedTo()) * v.getCountAtValueIteratedTo();
      }
    }
    return sum;
  }

  /**
   * The part of the stalls' lateness their thread spent waiting for a core (0 to 1), from {@code
   * waiting} (one value a stall); -1 where there was no stall or no count of the waits.
   */
  static double waitingShare(Histogram late, Histogram waiting) {
    double stalled = stallsMicros(late);
    if (stalled <= 0 || waiting.getTotalCount() == 0) {
      return -1;
    }
    return Math.min(1.0, waiting.getMean() * waiting.getTotalCount() / stalled);
  }

  /**
   * How the stalls split, for a report's line: "; 12 of 1 ms or more, 40.2 ms in all, 95% of it
   * waiting for a core ..." — empty without a stall.
   */
  public static String stallsSplit(Summary s) {
    if (s.stalls() == 0) {
      return "";
    }
    return String.format("; %d of 1 ms or more, %.1f ms in all%s", s.stalls(), s.stallsMs(),
        s.stallsWaitingShare() < 0 ? ""
            : String.format(", %.0f%% of it waiting for a core (the machine's other threads held the cores; the rest"
                + " is the JVM's pauses or the host's)", 100 * s.stallsWaitingShare()));
  }

  public static String header() {
    return String.format("| %s | %s | %s | %s | %s | %s | %s | %s | %s |%n|---|---|---|---|---|---|---|---|---|%n",
        "scenario", "load", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors");
  }

  public static String row(Summary s) {
    StringBuilder row = new StringBuilder(String.format("| %s | %s | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %s |%n",
        s.label(), s.load(), s.throughput(), s.p50Ms(), s.p90Ms(), s.p99Ms(), s.p999Ms(), s.maxMs(),
        s.errors().isEmpty() ? "0" : s.errors().toString()));
    if (s.byVersion().size() > 1) {
      s.byVersion().forEach((version, v) -> row.append(String.format(
          "| &nbsp;&nbsp;version %s | | %.0f answers | %.3f | | %.3f | %.3f | | |%n",
          version, v.get("count"), v.get("p50Ms"), v.get("p99Ms"), v.get("p999Ms"))));
    }
    s.errorLatency().forEach((code, e) -> row.append(String.format(
        "| &nbsp;&nbsp;%s answers | | %.0f | %.3f | | %.3f | %.3f | | |%n",
        code, e.get("count"), e.get("p50Ms"), e.get("p99Ms"), e.get("p999Ms"))));
    return row.toString();
  }

  /**
   * A summary for a terminal: aligned columns, no Markdown. The scenario's own line, then one line
   * per answering version (when several answered) and per error status with its latency.
   */
  public static String text(Summary s) {
    StringBuilder out = new StringBuilder();
    String format = "%-44s %10s %9s %9s %9s %9s %9s  %s%n";
    out.append(String.format("process CPU per call sent: %.1f us, heap allocated per call: %.0f bytes%s%n",
        s.processCpuMicrosPerCall(), s.processHeapBytesPerCall(),
        s.sendLagP99Ms() > 0 ? String.format("; calls sent late by the client: p99 %.3f ms, p99.9 %.3f ms",
            s.sendLagP99Ms(), s.sendLagP999Ms()) : ""));
    out.append(String.format(format, "", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"));
    out.append(String.format(format, shorten(s.label(), 44), String.format("%.0f", s.throughput()),
        ms(s.p50Ms()), ms(s.p90Ms()), ms(s.p99Ms()), ms(s.p999Ms()), ms(s.maxMs()),
        s.errors().isEmpty() ? "0" : s.errors().toString()));
    if (s.byVersion().size() > 1) {
      s.byVersion().forEach((version, v) -> out.append(String.format(format,
          "  version " + version, String.format("%.0f ans", v.get("count")), ms(v.get("p50Ms")), "",
          ms(v.get("p99Ms")), ms(v.get("p999Ms")), "", "")));
    }
    s.errorLatency().forEach((code, e) -> out.append(String.format(format,
        "  " + shorten(code, 32), String.format("%.0f ans", e.get("count")), ms(e.get("p50Ms")), "",
        ms(e.get("p99Ms")), ms(e.get("p999Ms")), "", "")));
    if (s.hiccupMaxMs() > 0 || s.hiccupP99Ms() > 0) {
      out.append(String.format("stalls of the client's JVM (a thread sleeping 1 ms at a time, how late it woke): "
          + "p99 %.3f ms, p99.9 %.3f ms, max %.3f ms%s%n", s.hiccupP99Ms(), s.hiccupP999Ms(), s.hiccupMaxMs(), stallsSplit(s)));
    }
    if (platformStalled(s)) {
      out.append(String.format("the machine stalled while measuring: a thread that does no work woke up to %.3f ms late, "
          + "against a p99.9 latency of %.3f ms, so the tail is at least partly the platform's (its collector, "
          + "its scheduler or its host), not only the server's%n", s.hiccupMaxMs(), s.p999Ms()));
    }
    if (clientLate(s)) {
      out.append(String.format("the client itself was late: it sent 1%% of the calls %.3f ms or more after their time, "
          + "against a p99 latency of %.3f ms, so these latencies are partly its own (give it more CPU, or lower the rate)%n",
          s.sendLagP99Ms(), s.p99Ms()));
    }
    return out.toString();
  }

  /**
   * Whether the client's own lateness explains a good part of the tail: its send lag's p99 at
   * least 1 ms and at least a quarter of the latency's p99.
   */
  public static boolean clientLate(Summary s) {
    return s.sendLagP99Ms() >= 1.0 && s.sendLagP99Ms() >= 0.25 * s.p99Ms();
  }

  /**
   * Whether the platform's stalls while measuring were long enough to set a good part of the
   * tail: the longest at least 1 ms and at least half the latency's p99.9.
   */
  public static boolean platformStalled(Summary s) {
    return s.hiccupMaxMs() >= 1.0 && s.hiccupMaxMs() >= 0.5 * s.p999Ms();
  }

  private static String ms(double value) {
    return String.format("%.3f", value);
  }

  private static String shorten(String text, int width) {
    return text.length() <= width ? text : text.substring(0, width - 3) + "...";
  }

  public static void writeJson(Path file, Object value) throws IOException {
    new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(file.toFile(), value);
  }

  /** The latency distribution in HdrHistogram's percentile format, in milliseconds. */
  public static void writeHgrm(Path file, Histogram micros) throws IOException {
    try (PrintStream out = new PrintStream(Files.newOutputStream(file), false, StandardCharsets.UTF_8)) {
      micros.outputPercentileDistribution(out, 1000.0);
    }
  }

  public static String fileName(String label) {
    return label.replaceAll("[^A-Za-z0-9._-]+", "-").replaceAll("-+", "-").toLowerCase();
  }

  /** Convenience for callers collecting several summaries. */
  public static List<Summary> list() {
    return new ArrayList<>();
  }
}

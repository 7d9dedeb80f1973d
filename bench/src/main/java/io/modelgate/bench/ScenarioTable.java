package io.modelgate.bench;

import io.modelgate.bench.load.LoadGenerator;
import java.io.PrintWriter;
import java.util.List;
import java.util.Map;
import org.HdrHistogram.Histogram;

/** The Markdown table of scenarios run over rounds, each against the first (the baseline). */
final class ScenarioTable {
  private ScenarioTable() {}

  /** Prints one scenario's result in one round, as it comes. */
  static void printRound(PrintWriter out, int round, String scenario, LoadGenerator.Result result) {
    out.printf("  round %d %-32s %8.0f calls/s  p50 %.3f ms  p99 %.3f ms  errors %s%n", round, scenario,
        result.throughput(), result.latencyMicros().getValueAtPercentile(50) / 1000.0,
        result.latencyMicros().getValueAtPercentile(99) / 1000.0, result.errors());
    out.flush();
  }

  /**
   * Prints one row per scenario: all its rounds together, throughput and p99 as ratios to the first
   * scenario's, which is the baseline named {@code baseline} in the header.
   */
  static void print(PrintWriter out, Map<String, List<LoadGenerator.Result>> results, String baseline) {
    out.println();
    out.printf("| scenario | calls/s (all rounds) | vs %s | p50 ms | p99 ms | p99 vs %s | errors |%n", baseline, baseline);
    out.println("|---|---|---|---|---|---|---|");
    double baseThroughput = 0;
    double baseP99 = 0;
    for (Map.Entry<String, List<LoadGenerator.Result>> entry : results.entrySet()) {
      long calls = 0;
      double seconds = 0;
      Histogram all = new Histogram(3);
      long errors = 0;
      for (LoadGenerator.Result r : entry.getValue()) {
        calls += r.completed();
        seconds += r.seconds();
        all.add(r.latencyMicros());
        errors += r.errors().values().stream().mapToLong(Long::longValue).sum();
      }
      double throughput = calls / seconds;
      double p99 = all.getValueAtPercentile(99) / 1000.0;
      if (baseThroughput == 0) {
        baseThroughput = throughput;
        baseP99 = p99;
      }
      out.printf("| %s | %.0f | %.3f | %.3f | %.3f | %.3f | %d |%n", entry.getKey(), throughput,
          throughput / baseThroughput, all.getValueAtPercentile(50) / 1000.0, p99, p99 / baseP99, errors);
    }
    out.flush();
  }
}

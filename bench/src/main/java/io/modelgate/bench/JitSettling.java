package io.modelgate.bench;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.function.LongSupplier;

/**
 * Warm-up that lasts until the JIT compilers have gone quiet, not for a fixed time.
 *
 * <p>On a small machine the compilers of a freshly started gateway, its client and the bare
 * server keep a core busy for tens of seconds under load (measured on 2 cores: a compiler thread
 * at 40–85% of a core for the first 30 s, throughput rising from 5,700 to 15,000–18,000 calls/s
 * meanwhile). A scenario measured while they work measures the compiler, and not equally for
 * every scenario. This runs unrecorded slices of load until the compilers were busy less than a
 * given share of a slice's wall time, or a limit passes.
 *
 * <p>The compilers' busy time is {@link CompilationMXBean#getTotalCompilationTime()}: elapsed
 * milliseconds spent compiling, summed over the compiler threads, so it can exceed wall time.
 * Not thread-safe: one caller at a time.
 */
final class JitSettling {
  /**
   * How a settling ended.
   *
   * @param spent time spent in slices
   * @param slices slices run
   * @param lastBusy the compilers' busy time over the last slice's wall time (0.05 = 5%); NaN when
   *     the JVM does not report compilation time
   * @param settled whether the last slice was under the threshold
   */
  record Outcome(Duration spent, int slices, double lastBusy, boolean settled) {
    String describe(double quiet) {
      if (Double.isNaN(lastBusy)) {
        return "JIT settling not measured (this JVM does not report compilation time)";
      }
      return String.format(
          "JIT %s after %.0f s of further warm-up (%d slices; compilers busy %.1f%% of the last, threshold %.1f%%)",
          settled ? "settled" : "NOT settled", spent.toMillis() / 1000.0, slices, lastBusy * 100, quiet * 100);
    }
  }

  /** One slice of unrecorded load. */
  @FunctionalInterface
  interface Slice {
    void run() throws InterruptedException;
  }

  private JitSettling() {}

  /**
   * Runs {@code slice} until the compilers were busy under {@code quiet} of a slice's wall time,
   * or until {@code max} has been spent (the slice that crosses it completes). A {@code max} of
   * zero runs nothing.
   */
  static Outcome settle(Slice slice, Duration max, double quiet) throws InterruptedException {
    CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
    if (jit == null || !jit.isCompilationTimeMonitoringSupported()) {
      return new Outcome(Duration.ZERO, 0, Double.NaN, false);
    }
    return settle(slice, max, quiet, jit::getTotalCompilationTime, System::nanoTime);
  }

  /** {@link #settle(Slice, Duration, double)} with its clocks given: compiler ms, wall ns. */
  static Outcome settle(Slice slice, Duration max, double quiet, LongSupplier compilingMillis, LongSupplier nanos)
      throws InterruptedException {
    long start = nanos.getAsLong();
    double busy = Double.NaN;
    int slices = 0;
    while (nanos.getAsLong() - start < max.toNanos()) {
      long compiled = compilingMillis.getAsLong();
      long began = nanos.getAsLong();
      slice.run();
      long wall = Math.max(1, nanos.getAsLong() - began);
      busy = (compilingMillis.getAsLong() - compiled) * 1e6 / wall;
      slices++;
      if (busy < quiet) {
        return new Outcome(Duration.ofNanos(nanos.getAsLong() - start), slices, busy, true);
      }
    }
    return new Outcome(Duration.ofNanos(nanos.getAsLong() - start), slices, busy, false);
  }
}

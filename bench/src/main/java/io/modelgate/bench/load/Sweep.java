package io.modelgate.bench.load;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Finds the highest constant rate a server sustains within a p99 target: open-loop runs at rising
 * rates (times {@code factor}) until one misses — p99 above the target, any error, or less than
 * 95% of the rate achieved, in two runs in a row — then tries halfway between the last good rate
 * and the first miss.
 */
public final class Sweep {
  public record Point(double rate, double achieved, double p99Ms, double p999Ms, long errors, boolean meets) {}

  /**
   * The points in the order run, and the highest rate that met the target; {@code bounded} is
   * false when no rate missed within the steps, so the true highest may lie above.
   */
  public record Outcome(List<Point> points, double highestSustainable, boolean bounded) {}

  private Sweep() {}

  /** Measures one rate. */
  @FunctionalInterface
  public interface Probe {
    Point measure(double rate) throws InterruptedException;
  }

  /** Sweeps {@code generator} with open-loop runs of {@code warmup} + {@code duration} each. */
  public static Outcome run(
      LoadGenerator generator,
      double startRate,
      double factor,
      double p99TargetMs,
      boolean streaming,
      Duration warmup,
      Duration duration,
      int maxSteps,
      Consumer<String> progress)
      throws InterruptedException {
    return search(startRate, factor, maxSteps,
        rate -> measure(generator, rate, p99TargetMs, streaming, warmup, duration, progress));
  }

  /**
   * The search itself: {@code startRate}, times {@code factor} while the probe meets the target
   * (at most {@code maxSteps} rates), then halfway between the last good and first bad rate.
   */
  public static Outcome search(double startRate, double factor, int maxSteps, Probe probe)
      throws InterruptedException {
    if (!(startRate > 0) || !(factor > 1) || maxSteps < 1) {
      throw new IllegalArgumentException(
          "sweep: start " + startRate + ", factor " + factor + ", steps " + maxSteps
              + " (expected: start > 0, factor > 1, steps >= 1)");
    }
    List<Point> points = new ArrayList<>();
    double good = 0;
    double bad = 0;
    double rate = startRate;
    for (int step = 0; step < maxSteps; step++) {
      if (!meets(probe, rate, points)) {
        bad = rate;
        break;
      }
      good = rate;
      rate *= factor;
    }
    if (good > 0 && bad > 0 && meets(probe, (good + bad) / 2, points)) {
      good = (good + bad) / 2;
    }
    return new Outcome(points, good, bad > 0);
  }

  /**
   * Whether {@code rate} meets the target; a miss is measured once more and stands only if the
   * second run misses too, so that one stall on a shared machine does not end the sweep. Every
   * run is added to {@code points}.
   */
  private static boolean meets(Probe probe, double rate, List<Point> points) throws InterruptedException {
    Point first = probe.measure(rate);
    points.add(first);
    if (first.meets()) {
      return true;
    }
    Point second = probe.measure(rate);
    points.add(second);
    return second.meets();
  }

  private static Point measure(
      LoadGenerator generator, double rate, double p99TargetMs, boolean streaming, Duration warmup,
      Duration duration, Consumer<String> progress) throws InterruptedException {
    LoadGenerator.Result r =
        generator.run(LoadGenerator.Options.open(rate, streaming, warmup, duration), s -> {});
    double p99 = r.latencyMicros().getValueAtPercentile(99) / 1000.0;
    double p999 = r.latencyMicros().getValueAtPercentile(99.9) / 1000.0;
    boolean meets = r.errorCount() == 0 && p99 <= p99TargetMs && r.throughput() >= 0.95 * rate;
    progress.accept(String.format("  sweep %8.0f req/s: achieved %8.0f, p99 %.3f ms, p99.9 %.3f ms, errors %d -> %s",
        rate, r.throughput(), p99, p999, r.errorCount(), meets ? "meets" : "misses"));
    return new Point(rate, r.throughput(), p99, p999, r.errorCount(), meets);
  }
}

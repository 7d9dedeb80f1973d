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
 *
 * <p>With a calibration server (a bare server answering canned bytes), every rate is first run
 * against it by the same client: when the client cannot hold the rate there — less than 95% of it
 * achieved, any error, or p99 above the target, twice in a row — the measurement would be the
 * client's, not the server's: the sweep stops at the client's own limit and says so.
 */
public final class Sweep {
  /**
   * One rate: what the server achieved, or, when {@code clientBound}, what the client achieved
   * against the bare calibration server (the server was not measured).
   */
  public record Point(double rate, double achieved, double p99Ms, double p999Ms, long errors, boolean meets, boolean clientBound) {
    public Point(double rate, double achieved, double p99Ms, double p999Ms, long errors, boolean meets) {
      this(rate, achieved, p99Ms, p999Ms, errors, meets, false);
    }
  }

  /**
   * The points in the order run, and the highest rate that met the target; {@code bounded} is
   * false when no rate missed within the steps, so the true highest may lie above; {@code
   * clientLimit} is the rate at which the client itself could not keep up (0: it kept up with
   * every rate tried), where the sweep stopped.
   */
  public record Outcome(List<Point> points, double highestSustainable, boolean bounded, double clientLimit) {
    public Outcome(List<Point> points, double highestSustainable, boolean bounded) {
      this(points, highestSustainable, bounded, 0);
    }
  }

  private Sweep() {}

  /** Measures one rate. */
  @FunctionalInterface
  public interface Probe {
    Point measure(double rate) throws InterruptedException;
  }

  /**
   * Sweeps {@code generator} with open-loop runs of {@code warmup} + {@code duration} each; each
   * rate is first run against {@code calibration} (the same client against a bare server; null:
   * none), and the sweep stops where the client cannot hold the rate there.
   */
  public static Outcome run(
      LoadGenerator generator,
      LoadGenerator calibration,
      double startRate,
      double factor,
      double p99TargetMs,
      boolean streaming,
      Duration warmup,
      Duration duration,
      int maxSteps,
      Consumer<String> progress)
      throws InterruptedException {
    return search(startRate, factor, maxSteps, rate -> {
      if (calibration != null) {
        Point bare = measure(calibration, rate, p99TargetMs, streaming, warmup, duration, line -> {});
        if (!bare.meets()) {
          // Once more: one stall on a shared machine is not the client's limit.
          bare = measure(calibration, rate, p99TargetMs, streaming, warmup, duration, line -> {});
        }
        if (!bare.meets()) {
          progress.accept(String.format("  sweep %8.0f req/s: the client itself cannot hold it against the bare server"
                  + " (achieved %.0f, p99 %.3f ms, errors %d): stopping at the client's limit",
              rate, bare.achieved(), bare.p99Ms(), bare.errors()));
          return new Point(rate, bare.achieved(), bare.p99Ms(), bare.p999Ms(), bare.errors(), false, true);
        }
      }
      return measure(generator, rate, p99TargetMs, streaming, warmup, duration, progress);
    });
  }

  /**
   * The search itself: {@code startRate}, times {@code factor} while the probe meets the target
   * (at most {@code maxSteps} rates), then halfway between the last good and first bad rate. A
   * client-bound point ends it there.
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
      Point decided = decide(probe, rate, points);
      if (decided.clientBound()) {
        return new Outcome(points, good, false, rate);
      }
      if (!decided.meets()) {
        bad = rate;
        break;
      }
      good = rate;
      rate *= factor;
    }
    if (good > 0 && bad > 0) {
      double middle = (good + bad) / 2;
      Point decided = decide(probe, middle, points);
      if (decided.clientBound()) {
        return new Outcome(points, good, true, middle);
      }
      if (decided.meets()) {
        good = middle;
      }
    }
    return new Outcome(points, good, bad > 0);
  }

  /**
   * Whether {@code rate} meets the target, as the point that decides it; a miss is measured once
   * more and stands only if the second run misses too, so that one stall on a shared machine does
   * not end the sweep. Every run is added to {@code points}.
   */
  private static Point decide(Probe probe, double rate, List<Point> points) throws InterruptedException {
    Point first = probe.measure(rate);
    points.add(first);
    if (first.meets() || first.clientBound()) {
      return first;
    }
    Point second = probe.measure(rate);
    points.add(second);
    return second;
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

package io.modelgate.gateway.usage;

import java.time.Clock;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.PackedHistogram;
import org.HdrHistogram.Recorder;

/**
 * One tenant's server-side latency for one version over the last minute: recorded wait-free on
 * answering threads (an HdrHistogram {@link Recorder}), read — by a Prometheus scrape or a report —
 * under this object's lock. What was recorded since the last read counts in the current 10-s slot
 * of six, so a read is at most one read interval off the true minute (scrapes come every 15–30 s).
 * Two significant digits, 1 µs to an hour (longer latencies count as an hour).
 *
 * <p>Memory: the recorder's two concurrent histograms of fixed size, about 50 KB, and seven packed
 * histograms (the slots and their merge, written under the lock), which follow the distinct values
 * recorded, a few KB. The recorder is deliberately not packed: HdrHistogram's packed concurrent
 * histogram livelocks when two threads record while its array grows ({@code LatencyWindowTest}),
 * and an answering thread that spins there never answers again.
 */
final class LatencyWindow {
  private static final int SLOTS = 6;
  private static final long SLOT_MILLIS = 10_000;

  private final Clock clock;
  /** The longest latency told apart, µs. */
  static final long MAX_MICROS = 3_600_000_000L;

  private final Recorder recorder = new Recorder(1, MAX_MICROS, 2);
  // Under this object's lock.
  private final Histogram[] slots = new Histogram[SLOTS];
  private final long[] epochs = new long[SLOTS];
  private final Histogram merged = new PackedHistogram(2);
  private Histogram interval;

  LatencyWindow(Clock clock) {
    this.clock = clock;
    for (int i = 0; i < SLOTS; i++) {
      slots[i] = new PackedHistogram(2);
      epochs[i] = Long.MIN_VALUE;
    }
  }

  /** Records one answer's latency; wait-free, never allocates. Any thread. */
  void record(long nanos) {
    recorder.recordValue(Math.min(Math.max(1, nanos / 1000), MAX_MICROS));
  }

  /** The {@code quantile} (0 to 1) of the last minute in seconds, or NaN when nothing was answered. */
  synchronized double quantileSeconds(double quantile) {
    Histogram window = window();
    return window.getTotalCount() == 0 ? Double.NaN : window.getValueAtPercentile(quantile * 100) / 1e6;
  }

  /** Answers in the last minute. */
  synchronized long count() {
    return window().getTotalCount();
  }

  private Histogram window() {
    long epoch = Math.floorDiv(clock.millis(), SLOT_MILLIS);
    int current = Math.floorMod(epoch, SLOTS);
    if (epochs[current] != epoch) {
      slots[current].reset();
      epochs[current] = epoch;
    }
    interval = recorder.getIntervalHistogram(interval);
    slots[current].add(interval);
    merged.reset();
    for (int i = 0; i < SLOTS; i++) {
      if (epoch - epochs[i] < SLOTS) {
        merged.add(slots[i]);
      }
    }
    return merged;
  }
}

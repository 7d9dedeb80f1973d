package io.modelgate.gateway.stats;

import org.HdrHistogram.Histogram;

/**
 * The closed intervals of one version's statistics in two fixed rings, and their running total.
 *
 * <p>Memory is bounded from the version's first load: {@code perMinute} fine intervals (the last
 * minute, e.g. 12 of 5 s), {@link #MINUTES} whole minutes, the minute being filled, and the total
 * since start, each a set of four histograms ({@link Interval}). The rings fill during the
 * version's first {@link #MINUTES} minutes (an interval a minute until then) and never grow after:
 * closing an interval reuses the histograms of the one it evicts, so steady state allocates
 * nothing. The figures:
 *
 * <ul>
 *   <li>a window of at most one minute is the sum of its last fine intervals, to the interval;
 *   <li>a longer window is the minute being filled plus as many whole minutes before it as fit:
 *       it spans between its length less one minute and its length (the report states the exact
 *       seconds it covers, and rates divide by them).
 * </ul>
 *
 * <p>Threads: written by the rotator thread ({@link #close}), read by admin threads; both hold
 * this object's lock, briefly. No request thread ever touches it.
 */
final class Windows {
  /** Whole minutes kept: the longest window reported is 15 minutes. */
  static final int MINUTES = 15;

  /**
   * Figures over a span of time; the histograms are copies the caller owns.
   *
   * @param throughMillis when the span ends: the close of the last interval it sums (or the start,
   *     when none has closed), ms since the epoch on the rotator's clock
   */
  record Window(
      long throughMillis,
      double seconds,
      Histogram endToEnd,
      Histogram queue,
      Histogram compute,
      Histogram rows,
      long[] answers) {}

  /** One span's histograms (latency in µs, rows) and answers by status code. */
  static final class Interval {
    Histogram endToEnd;
    Histogram queue;
    Histogram compute;
    Histogram rows;
    final long[] answers;
    long millis;

    Interval(Histogram endToEnd, Histogram queue, Histogram compute, Histogram rows, int codes) {
      this.endToEnd = endToEnd;
      this.queue = queue;
      this.compute = compute;
      this.rows = rows;
      this.answers = new long[codes];
    }

    static Interval empty(int codes) {
      return new Interval(
          VersionStats.latencyHistogram(),
          VersionStats.latencyHistogram(),
          VersionStats.latencyHistogram(),
          VersionStats.rowsHistogram(),
          codes);
    }

    void reset() {
      endToEnd.reset();
      queue.reset();
      compute.reset();
      rows.reset();
      java.util.Arrays.fill(answers, 0);
      millis = 0;
    }

    void addTo(Interval target) {
      target.endToEnd.add(endToEnd);
      target.queue.add(queue);
      target.compute.add(compute);
      target.rows.add(rows);
      for (int i = 0; i < answers.length; i++) {
        target.answers[i] += answers[i];
      }
      target.millis += millis;
    }

    long footprintBytes() {
      return endToEnd.getEstimatedFootprintInBytes()
          + queue.getEstimatedFootprintInBytes()
          + compute.getEstimatedFootprintInBytes()
          + rows.getEstimatedFootprintInBytes()
          + 8L * answers.length;
    }
  }

  private final int codes;
  /** Fine intervals, the newest at {@code (closedFine - 1) % fine.length}; null until first used. */
  private final Interval[] fine;
  private int closedFine;
  /** Whole minutes, the newest at {@code (closedMinutes - 1) % minutes.length}. */
  private final Interval[] minutes = new Interval[MINUTES];
  private int closedMinutes;
  /** The minute being filled: the fine intervals closed since the last whole minute. */
  private Interval current;
  private int fineInCurrent;
  private final Interval total;
  private final long[] previousAnswers;
  private long lastClose;

  /**
   * @param perMinute fine intervals per minute (60 s / the rotation interval)
   */
  Windows(int perMinute, int codes, long nowMillis) {
    this.codes = codes;
    this.fine = new Interval[perMinute];
    this.current = Interval.empty(codes);
    this.total = Interval.empty(codes);
    this.previousAnswers = new long[codes];
    this.lastClose = nowMillis;
  }

  /** Where a closing interval's histograms come from: the recorders, swapped. */
  @FunctionalInterface
  interface Source {
    /**
     * The histograms recorded since the last call, in {@code recycle}'s histograms (those of the
     * fine interval being evicted, already counted in the wider spans) or, while it is null, in
     * new ones.
     */
    Interval take(Interval recycle);
  }

  /** Closes one fine interval: the histograms {@code source} hands over and the answers since start. */
  synchronized void close(long nowMillis, Source source, long[] answersSinceStart) {
    Interval closing = source.take(fine[closedFine % fine.length]);
    for (int i = 0; i < codes; i++) {
      closing.answers[i] = answersSinceStart[i] - previousAnswers[i];
      previousAnswers[i] = answersSinceStart[i];
    }
    closing.millis = Math.max(1, nowMillis - lastClose);
    lastClose = nowMillis;
    fine[closedFine % fine.length] = closing;
    closedFine++;
    closing.addTo(current);
    closing.addTo(total);
    if (++fineInCurrent == fine.length) {
      Interval evicted = minutes[closedMinutes % MINUTES];
      minutes[closedMinutes % MINUTES] = current;
      closedMinutes++;
      if (evicted == null) {
        current = Interval.empty(codes);
      } else {
        evicted.reset();
        current = evicted;
      }
      fineInCurrent = 0;
    }
  }

  /**
   * The last {@code intervals} fine intervals when they fit in the last minute; else the minute
   * being filled and as many whole minutes before it as keep the span within {@code intervals}
   * fine intervals.
   */
  synchronized Window last(int intervals) {
    Interval sum = Interval.empty(codes);
    if (intervals <= fine.length) {
      int n = Math.min(intervals, Math.min(closedFine, fine.length));
      for (int i = 0; i < n; i++) {
        fine[(closedFine - 1 - i) % fine.length].addTo(sum);
      }
    } else {
      current.addTo(sum);
      int span = fineInCurrent;
      int n = Math.min(closedMinutes, MINUTES);
      for (int i = 0; i < n && span + fine.length <= intervals; i++) {
        minutes[(closedMinutes - 1 - i) % MINUTES].addTo(sum);
        span += fine.length;
      }
    }
    return window(sum, lastClose);
  }

  /**
   * The fine intervals that closed within the last minute and began at or after {@code
   * sinceMillis}: a span that starts no earlier than it (empty when none has closed since).
   */
  synchronized Window since(long sinceMillis) {
    Interval sum = Interval.empty(codes);
    long end = lastClose;
    int n = Math.min(closedFine, fine.length);
    for (int i = 0; i < n; i++) {
      Interval interval = fine[(closedFine - 1 - i) % fine.length];
      long start = end - interval.millis;
      if (start < sinceMillis) {
        break;
      }
      interval.addTo(sum);
      end = start;
    }
    return window(sum, lastClose);
  }

  /** Everything since the version first loaded, up to the last closed interval. */
  synchronized Window total() {
    Interval copy = Interval.empty(codes);
    total.addTo(copy);
    return window(copy, lastClose);
  }

  private static Window window(Interval sum, long throughMillis) {
    return new Window(throughMillis, sum.millis / 1000.0, sum.endToEnd, sum.queue, sum.compute, sum.rows, sum.answers);
  }

  /** The bytes its histograms and counts take once every ring is full. */
  synchronized long footprintBytes() {
    long one = total.footprintBytes();
    // Fine ring + minutes ring + the minute being filled + the total, whether filled yet or not.
    return one * (fine.length + MINUTES + 2);
  }
}

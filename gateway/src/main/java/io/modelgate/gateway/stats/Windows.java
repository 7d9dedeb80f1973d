package io.modelgate.gateway.stats;

import org.HdrHistogram.Histogram;

/**
 * The closed intervals of one version's statistics, in a ring, and their running total. Written
 * by the rotator thread; read by admin threads. Both hold this object's lock, briefly: no request
 * thread ever touches it.
 */
final class Windows {
  /** Figures over a span of time. */
  record Window(
      double seconds,
      Histogram endToEnd,
      Histogram queue,
      Histogram compute,
      Histogram rows,
      long[] answers) {}

  private final Interval[] ring;
  private int closed;
  private long lastClose;
  private final long startMillis;
  private final Histogram totalEndToEnd = VersionStats.latencyHistogram();
  private final Histogram totalQueue = VersionStats.latencyHistogram();
  private final Histogram totalCompute = VersionStats.latencyHistogram();
  private final Histogram totalRows = new Histogram(1, VersionStats.MAX_ROWS, 3);
  private long[] previousAnswers;
  private long[] totalAnswers;

  private record Interval(
      long millis, Histogram endToEnd, Histogram queue, Histogram compute, Histogram rows, long[] answers) {}

  Windows(int capacity, long nowMillis) {
    this.ring = new Interval[capacity];
    this.startMillis = nowMillis;
    this.lastClose = nowMillis;
  }

  synchronized void close(
      long nowMillis, Histogram endToEnd, Histogram queue, Histogram compute, Histogram rows, long[] answers) {
    long[] delta = answers.clone();
    if (previousAnswers != null) {
      for (int i = 0; i < delta.length; i++) {
        delta[i] -= previousAnswers[i];
      }
    }
    previousAnswers = answers;
    totalAnswers = answers;
    ring[closed % ring.length] =
        new Interval(Math.max(1, nowMillis - lastClose), endToEnd, queue, compute, rows, delta);
    closed++;
    lastClose = nowMillis;
    totalEndToEnd.add(endToEnd);
    totalQueue.add(queue);
    totalCompute.add(compute);
    totalRows.add(rows);
  }

  /** The last {@code intervals} closed intervals (fewer if not that many have closed yet). */
  synchronized Window last(int intervals) {
    Histogram endToEnd = VersionStats.latencyHistogram();
    Histogram queue = VersionStats.latencyHistogram();
    Histogram compute = VersionStats.latencyHistogram();
    Histogram rows = new Histogram(1, VersionStats.MAX_ROWS, 3);
    long[] answers = new long[io.grpc.Status.Code.values().length];
    long millis = 0;
    int n = Math.min(Math.min(intervals, closed), ring.length);
    for (int i = 0; i < n; i++) {
      Interval interval = ring[(closed - 1 - i) % ring.length];
      endToEnd.add(interval.endToEnd());
      queue.add(interval.queue());
      compute.add(interval.compute());
      rows.add(interval.rows());
      for (int c = 0; c < answers.length; c++) {
        answers[c] += interval.answers()[c];
      }
      millis += interval.millis();
    }
    return new Window(millis / 1000.0, endToEnd, queue, compute, rows, answers);
  }

  /** Everything since the version first loaded, up to the last closed interval. */
  synchronized Window total() {
    long[] answers = totalAnswers == null ? new long[io.grpc.Status.Code.values().length] : totalAnswers.clone();
    return new Window(
        Math.max(0, lastClose - startMillis) / 1000.0,
        totalEndToEnd.copy(),
        totalQueue.copy(),
        totalCompute.copy(),
        totalRows.copy(),
        answers);
  }
}

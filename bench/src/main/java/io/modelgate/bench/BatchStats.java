package io.modelgate.bench;

import io.modelgate.runtime.execution.StageRecorder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/** Server-side figures of one version during a run: rows per execution and compute time. */
final class BatchStats implements StageRecorder {
  private final Recorder rows = new Recorder(3);
  private final Recorder computeMicros = new Recorder(3);
  private final Recorder queueMicros = new Recorder(3);

  @Override
  public void recordRequest(long queueNanos, long computeNanos) {
    queueMicros.recordValue(Math.max(0, queueNanos / 1000));
  }

  @Override
  public void recordBatch(int requests, int batchRows, long computeNanos) {
    rows.recordValue(batchRows);
    computeMicros.recordValue(Math.max(1, computeNanos / 1000));
  }

  /** Forgets what was recorded so far. */
  void reset() {
    rows.reset();
    computeMicros.reset();
    queueMicros.reset();
  }

  /** Rows per execution, compute µs per execution, queue µs per request, since the last reset. */
  Histogram[] snapshot() {
    return new Histogram[] {
      rows.getIntervalHistogram(), computeMicros.getIntervalHistogram(), queueMicros.getIntervalHistogram()
    };
  }
}

package io.modelgate.runtime.execution;

import java.util.Arrays;

/**
 * The requests of one ONNX Runtime execution, in the order their rows are laid out.
 *
 * <p>Each executor owns one {@code Batch} and reuses it: the batcher fills it only while the
 * executor is idle, and the executor reads it only while it runs; the hand-off between the two
 * threads is a blocking-queue transfer, which orders the writes before the reads.
 */
public final class Batch {
  private final InferenceRequest[] requests;
  private int size;
  private int rows;
  private long computeStart;
  private long computeEnd;
  private long computeNanos;
  private int runs;

  /** @param capacity the most requests one batch may hold */
  public Batch(int capacity) {
    if (capacity < 1) {
      throw new IllegalArgumentException("capacity: " + capacity + " (expected: >= 1)");
    }
    this.requests = new InferenceRequest[capacity];
  }

  /** A batch holding the given requests, for executors driven directly (tests, benchmarks). */
  public static Batch of(InferenceRequest... requests) {
    Batch batch = new Batch(Math.max(1, requests.length));
    for (InferenceRequest request : requests) {
      batch.add(request);
    }
    return batch;
  }

  void clear() {
    Arrays.fill(requests, 0, size, null);
    size = 0;
    rows = 0;
    computeStart = 0;
    computeEnd = 0;
    computeNanos = 0;
    runs = 0;
  }

  void add(InferenceRequest request) {
    requests[size++] = request;
    rows += Math.max(1, request.decoded().rows());
  }

  /** Keeps the first {@code count} requests. */
  void truncate(int count) {
    for (int i = count; i < size; i++) {
      rows -= Math.max(1, requests[i].decoded().rows());
      requests[i] = null;
    }
    size = Math.min(size, count);
  }

  public int capacity() {
    return requests.length;
  }

  public int size() {
    return size;
  }

  public boolean isFull() {
    return size == requests.length;
  }

  /** Rows along the batch dimension over all requests (1 per request that does not batch). */
  public int rows() {
    return rows;
  }

  /**
   * Records when the model itself started and ended running this batch ({@link System#nanoTime()});
   * called by the executor around its model call. What came before is input preparation, what
   * comes after is output handling.
   */
  public void ran(long startNanos, long endNanos) {
    ranInParts(startNanos, endNanos, endNanos - startNanos, 1);
  }

  /**
   * As {@link #ran}, for an execution that ran the model several times (a failing batch run again
   * in parts): when the first run started, when the last ended, and the runs' time, {@code
   * modelNanos}, which the time between them (inputs prepared again, answers) is not part of, over
   * {@code runs} runs. A {@code firstStartNanos} of 0 says the model was never reached.
   */
  public void ranInParts(long firstStartNanos, long lastEndNanos, long modelNanos, int runs) {
    this.computeStart = firstStartNanos;
    this.computeEnd = firstStartNanos == 0 ? 0 : lastEndNanos;
    this.computeNanos = firstStartNanos == 0 ? 0 : modelNanos;
    this.runs = firstStartNanos == 0 ? 0 : runs;
  }

  /** How many times the model ran for this batch: 1, or more for a failing batch run again in parts. */
  public int runs() {
    return runs;
  }

  /** The model's time running this batch, ns; meaningful only if {@link #hasComputeTimes()}. */
  public long computeNanos() {
    return computeNanos;
  }

  /** Whether the executor recorded the model's run ({@link #ran}). */
  public boolean hasComputeTimes() {
    return computeEnd != 0;
  }

  /** When the model started running this batch; meaningful only if {@link #hasComputeTimes()}. */
  public long computeStartNanos() {
    return computeStart;
  }

  /** When the model ended running this batch; meaningful only if {@link #hasComputeTimes()}. */
  public long computeEndNanos() {
    return computeEnd;
  }

  public InferenceRequest get(int index) {
    if (index >= size) {
      throw new IndexOutOfBoundsException("index " + index + " (size " + size + ")");
    }
    return requests[index];
  }
}

package io.modelgate.runtime.execution;

/**
 * Sizing of one version's scheduler. Immutable and validated on construction.
 *
 * @param queueCapacity requests that may wait for an executor; rounded up to a power of two for the
 *     ring. Beyond it, requests are refused with RESOURCE_EXHAUSTED.
 * @param instances executor threads running ONNX Runtime calls in parallel for this version
 */
public record SchedulerSettings(int queueCapacity, int instances) {
  public static final int MAX_QUEUE_CAPACITY = 1 << 20;
  public static final int MAX_INSTANCES = 64;

  public SchedulerSettings {
    if (queueCapacity < 1 || queueCapacity > MAX_QUEUE_CAPACITY) {
      throw new IllegalArgumentException(
          "queue_capacity: " + queueCapacity + " (expected: 1 to " + MAX_QUEUE_CAPACITY + ")");
    }
    if (instances < 1 || instances > MAX_INSTANCES) {
      throw new IllegalArgumentException(
          "instances: " + instances + " (expected: 1 to " + MAX_INSTANCES + ")");
    }
  }

  /** The ring's size: the capacity rounded up to a power of two. */
  public int ringSize() {
    return queueCapacity == 1 ? 1 : Integer.highestOneBit(queueCapacity - 1) << 1;
  }
}

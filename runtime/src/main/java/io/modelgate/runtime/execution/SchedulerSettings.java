package io.modelgate.runtime.execution;

import java.util.List;

/**
 * Sizing and batching policy of one version's scheduler. Immutable and validated on construction;
 * messages name the {@code model.yaml} key.
 *
 * @param queueCapacity requests that may wait for an executor; rounded up to a power of two for the
 *     ring. Beyond it, requests are refused with RESOURCE_EXHAUSTED.
 * @param instances executor threads running ONNX Runtime calls in parallel for this version
 * @param maxQueueDelayMicros how long the oldest request of a forming batch may wait for more, in
 *     microseconds; 0 runs whatever is queued at once
 * @param preferredBatchSizes batch sizes (in rows) to run as soon as they can be formed; empty for
 *     none
 * @param reservedInstances executors kept for tenants without a backlog: while requests of several
 *     tenants are served, a batch holding requests of a tenant with more rows waiting than its
 *     share of a batch starts only while more than this many executors are idle, so such tenants
 *     occupy at most {@code instances - reservedInstances} executors and another tenant's request
 *     does not wait for their batches. 0 (the default) reserves none; below {@code instances}.
 *     With one reserved, its batches run on the batcher's thread (no hand-off to another thread).
 */
public record SchedulerSettings(
    int queueCapacity,
    int instances,
    long maxQueueDelayMicros,
    List<Integer> preferredBatchSizes,
    int reservedInstances) {
  public static final int MAX_QUEUE_CAPACITY = 1 << 20;
  public static final int MAX_INSTANCES = 64;
  public static final long MAX_QUEUE_DELAY_MICROS = 10_000_000;

  public SchedulerSettings {
    if (queueCapacity < 1 || queueCapacity > MAX_QUEUE_CAPACITY) {
      throw new IllegalArgumentException(
          "queue_capacity: " + queueCapacity + " (expected: 1 to " + MAX_QUEUE_CAPACITY + ")");
    }
    if (instances < 1 || instances > MAX_INSTANCES) {
      throw new IllegalArgumentException(
          "instances: " + instances + " (expected: 1 to " + MAX_INSTANCES + ")");
    }
    if (maxQueueDelayMicros < 0 || maxQueueDelayMicros > MAX_QUEUE_DELAY_MICROS) {
      throw new IllegalArgumentException(
          "max_queue_delay_us: "
              + maxQueueDelayMicros
              + " (expected: 0 to "
              + MAX_QUEUE_DELAY_MICROS
              + ")");
    }
    if (reservedInstances < 0 || reservedInstances > 0 && reservedInstances >= instances) {
      throw new IllegalArgumentException(
          "reserved_instances: "
              + reservedInstances
              + " (expected: 0 to instances - 1 = "
              + (instances - 1)
              + "; at least one executor must be free to serve a tenant with a backlog)");
    }
    preferredBatchSizes = List.copyOf(preferredBatchSizes);
    int previous = 0;
    for (int size : preferredBatchSizes) {
      if (size <= previous) {
        throw new IllegalArgumentException(
            "preferred_batch_sizes: "
                + preferredBatchSizes
                + " (expected: positive sizes in increasing order)");
      }
      previous = size;
    }
  }

  /** No executor reserved. */
  public SchedulerSettings(
      int queueCapacity, int instances, long maxQueueDelayMicros, List<Integer> preferredBatchSizes) {
    this(queueCapacity, instances, maxQueueDelayMicros, preferredBatchSizes, 0);
  }

  /** No added delay, no preferred sizes, no executor reserved. */
  public SchedulerSettings(int queueCapacity, int instances) {
    this(queueCapacity, instances, 0, List.of());
  }

  /** The ring's size: the capacity rounded up to a power of two. */
  public int ringSize() {
    return queueCapacity == 1 ? 1 : Integer.highestOneBit(queueCapacity - 1) << 1;
  }
}

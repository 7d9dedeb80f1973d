package io.modelgate.runtime.execution;

import java.util.List;

/**
 * How a version's batcher forms batches. Immutable and validated on construction.
 *
 * @param maxBatchSize the most rows one execution carries; 0 runs every request alone
 * @param maxQueueDelayNanos how long the oldest request of a forming batch may wait for more; 0
 *     runs whatever is queued at once
 * @param preferredBatchSizes sizes, in rows, to run as soon as they can be formed; each at most
 *     {@code maxBatchSize}, increasing
 */
public record BatchPolicy(int maxBatchSize, long maxQueueDelayNanos, List<Integer> preferredBatchSizes) {
  /** Every request alone, at once. */
  public static final BatchPolicy UNBATCHED = new BatchPolicy(0, 0, List.of());

  public BatchPolicy {
    if (maxBatchSize < 0) {
      throw new IllegalArgumentException("max_batch_size: " + maxBatchSize + " (expected: >= 0)");
    }
    if (maxQueueDelayNanos < 0) {
      throw new IllegalArgumentException(
          "max_queue_delay_us: " + maxQueueDelayNanos / 1000 + " (expected: >= 0)");
    }
    preferredBatchSizes = List.copyOf(preferredBatchSizes);
    int previous = 0;
    for (int size : preferredBatchSizes) {
      if (size <= previous || size > maxBatchSize) {
        throw new IllegalArgumentException(
            "preferred_batch_sizes: "
                + preferredBatchSizes
                + " (expected: increasing sizes from 1 to max_batch_size "
                + maxBatchSize
                + ")");
      }
      previous = size;
    }
  }

  /** The policy of a version whose signature allows {@code maxBatchSize} rows. */
  public static BatchPolicy of(int maxBatchSize, SchedulerSettings settings) {
    return new BatchPolicy(
        maxBatchSize,
        settings.maxQueueDelayMicros() * 1000,
        maxBatchSize == 0 ? List.of() : settings.preferredBatchSizes());
  }

  public boolean merges() {
    return maxBatchSize > 0;
  }
}

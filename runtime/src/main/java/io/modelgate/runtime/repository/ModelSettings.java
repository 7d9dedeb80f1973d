package io.modelgate.runtime.repository;

import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import java.util.Map;
import java.util.Objects;

/**
 * The settings of one model, from its {@code model.yaml} over the server's defaults. Immutable and
 * validated on construction, with messages that name the key, the value and what was expected.
 *
 * @param maxBatchSize 0 for a model that does not batch; otherwise the most rows one execution may
 *     carry. Null: decided from the model (see {@link #DEFAULT_MAX_BATCH_SIZE})
 * @param session ONNX Runtime threads and execution provider
 * @param scheduler queue capacity, executor count and batching policy
 * @param batchAxes the batch axis of inputs and outputs that do not batch along their first
 *     dimension, by name; {@link io.modelgate.runtime.tensor.ModelSignature#NO_AXIS} for none
 * @param payloadLog the sampled payload log, or null when off
 * @param drift drift profiling, or null when off
 */
public record ModelSettings(
    Integer maxBatchSize,
    SessionSettings session,
    SchedulerSettings scheduler,
    Map<String, Integer> batchAxes,
    PayloadLogSettings payloadLog,
    DriftSettings drift) {
  /**
   * {@code max_batch_size} of a model whose every input batches along a variable dimension and
   * whose config does not say otherwise.
   */
  public static final int DEFAULT_MAX_BATCH_SIZE = 64;

  public static final int MAX_BATCH_SIZE_LIMIT = 1 << 16;

  public ModelSettings {
    if (maxBatchSize != null && (maxBatchSize < 0 || maxBatchSize > MAX_BATCH_SIZE_LIMIT)) {
      throw new IllegalArgumentException(
          "max_batch_size: " + maxBatchSize + " (expected: 0 to " + MAX_BATCH_SIZE_LIMIT + ")");
    }
    Objects.requireNonNull(session, "session");
    Objects.requireNonNull(scheduler, "scheduler");
    batchAxes = Map.copyOf(batchAxes);
  }

  public ModelSettings(Integer maxBatchSize, SessionSettings session, SchedulerSettings scheduler) {
    this(maxBatchSize, session, scheduler, Map.of(), null, null);
  }

  public ModelSettings(
      Integer maxBatchSize, SessionSettings session, SchedulerSettings scheduler, Map<String, Integer> batchAxes) {
    this(maxBatchSize, session, scheduler, batchAxes, null, null);
  }

  /** Server-wide defaults: batch size from the model, one executor, a queue of 1024. */
  public static ModelSettings defaults(SessionSettings session) {
    return new ModelSettings(null, session, new SchedulerSettings(1024, 1));
  }

  public ModelSettings withMaxBatchSize(int resolved) {
    return new ModelSettings(resolved, session, scheduler, batchAxes, payloadLog, drift);
  }

  /** These settings with {@code newDrift} (null: drift off). */
  public ModelSettings withDrift(DriftSettings newDrift) {
    return new ModelSettings(maxBatchSize, session, scheduler, batchAxes, payloadLog, newDrift);
  }

  public ModelSettings withSession(SessionSettings newSession) {
    return new ModelSettings(maxBatchSize, newSession, scheduler, batchAxes, payloadLog, drift);
  }
}

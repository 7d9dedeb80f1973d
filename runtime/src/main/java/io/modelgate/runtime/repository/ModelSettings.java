package io.modelgate.runtime.repository;

import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;

/**
 * The settings of one model, from its {@code model.yaml} over the server's defaults. Immutable and
 * validated on construction, with messages that name the key, the value and what was expected.
 *
 * @param maxBatchSize 0 for a model that does not batch; otherwise the most rows a request may
 *     carry along the first dimension. Null: decided from the model (see {@link
 *     #DEFAULT_MAX_BATCH_SIZE})
 * @param session ONNX Runtime threads
 * @param scheduler queue capacity and executor count
 */
public record ModelSettings(
    Integer maxBatchSize, SessionSettings session, SchedulerSettings scheduler) {
  /**
   * {@code max_batch_size} of a model whose every input has a variable first dimension and whose
   * config does not say otherwise.
   */
  public static final int DEFAULT_MAX_BATCH_SIZE = 64;

  public static final int MAX_BATCH_SIZE_LIMIT = 1 << 16;

  public ModelSettings {
    if (maxBatchSize != null && (maxBatchSize < 0 || maxBatchSize > MAX_BATCH_SIZE_LIMIT)) {
      throw new IllegalArgumentException(
          "max_batch_size: " + maxBatchSize + " (expected: 0 to " + MAX_BATCH_SIZE_LIMIT + ")");
    }
    if (session == null || scheduler == null) {
      throw new IllegalArgumentException("session and scheduler settings are required");
    }
  }

  /** Server-wide defaults: batch size from the model, one executor, a queue of 1024. */
  public static ModelSettings defaults(SessionSettings session) {
    return new ModelSettings(null, session, new SchedulerSettings(1024, 1));
  }
}

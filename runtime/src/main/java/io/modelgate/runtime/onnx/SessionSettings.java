package io.modelgate.runtime.onnx;

import java.util.Objects;

/**
 * ONNX Runtime session options for one model version. Immutable and validated on construction.
 *
 * @param intraOpThreads threads one operator may use; 0 lets ONNX Runtime pick one per core
 * @param interOpThreads threads for running independent operators in parallel; 0 lets ONNX
 *     Runtime pick
 * @param provider where the model runs
 * @param deviceId the CUDA device, for {@link ExecutionProvider#CUDA}
 * @param allowCpuFallback whether a CUDA version that cannot get CUDA runs on the CPU instead of
 *     failing to load
 */
public record SessionSettings(
    int intraOpThreads,
    int interOpThreads,
    ExecutionProvider provider,
    int deviceId,
    boolean allowCpuFallback) {
  public static final int MAX_THREADS = 256;

  /** One thread each on the CPU: right for the small machines modelgate is measured on. */
  public static final SessionSettings DEFAULTS = new SessionSettings(1, 1);

  public SessionSettings {
    if (intraOpThreads < 0 || intraOpThreads > MAX_THREADS) {
      throw new IllegalArgumentException(
          "intra_op_threads: " + intraOpThreads + " (expected: 0 to " + MAX_THREADS + ")");
    }
    if (interOpThreads < 0 || interOpThreads > MAX_THREADS) {
      throw new IllegalArgumentException(
          "inter_op_threads: " + interOpThreads + " (expected: 0 to " + MAX_THREADS + ")");
    }
    Objects.requireNonNull(provider, "provider");
    if (deviceId < 0 || deviceId > 255) {
      throw new IllegalArgumentException("device_id: " + deviceId + " (expected: 0 to 255)");
    }
  }

  /** CPU execution with the given threads. */
  public SessionSettings(int intraOpThreads, int interOpThreads) {
    this(intraOpThreads, interOpThreads, ExecutionProvider.CPU, 0, false);
  }
}

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
 * @param largeBatchRows batches of at least this many rows may run on a second session with {@code
 *     largeBatchIntraOpThreads} intra-op threads (while it measures faster: {@link SessionChoice}); 0 (with {@code largeBatchIntraOpThreads} 0): one
 *     session for every batch
 * @param largeBatchIntraOpThreads the second session's intra-op threads, more than {@code
 *     intraOpThreads}; 0 when {@code largeBatchRows} is 0
 * @param cudaTf32 for {@link ExecutionProvider#CUDA}: let ONNX Runtime's CUDA provider do FP32
 *     matrix products on TF32 tensor cores (faster; inputs rounded to a 10-bit mantissa, so answers
 *     differ from the CPU's by about 1e-3 of their magnitude). False: full FP32, as on the CPU.
 */
public record SessionSettings(
    int intraOpThreads,
    int interOpThreads,
    ExecutionProvider provider,
    int deviceId,
    boolean allowCpuFallback,
    int largeBatchRows,
    int largeBatchIntraOpThreads,
    boolean cudaTf32) {
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
    if (largeBatchRows < 0 || largeBatchIntraOpThreads < 0) {
      throw new IllegalArgumentException(
          "large_batch_rows: "
              + largeBatchRows
              + ", large_batch_intra_op_threads: "
              + largeBatchIntraOpThreads
              + " (expected: both 0, or rows >= 2 and threads above intra_op_threads)");
    }
    if ((largeBatchRows == 0) != (largeBatchIntraOpThreads == 0)) {
      throw new IllegalArgumentException(
          "large_batch_rows and large_batch_intra_op_threads go together (got "
              + largeBatchRows
              + " and "
              + largeBatchIntraOpThreads
              + "; set both, or neither)");
    }
    if (cudaTf32 && provider != ExecutionProvider.CUDA) {
      throw new IllegalArgumentException(
          "cuda_tf32: true is for the cuda execution provider, not " + provider.configName());
    }
    if (largeBatchRows > 0) {
      if (largeBatchRows < 2) {
        throw new IllegalArgumentException(
            "large_batch_rows: " + largeBatchRows + " (expected: at least 2 rows)");
      }
      if (provider != ExecutionProvider.CPU) {
        throw new IllegalArgumentException(
            "large_batch_rows: a second session with more threads is for the cpu execution"
                + " provider, not "
                + provider.configName());
      }
      if (intraOpThreads == 0) {
        throw new IllegalArgumentException(
            "large_batch_intra_op_threads: "
                + largeBatchIntraOpThreads
                + " with intra_op_threads 0 (one per core already; expected: intra_op_threads >= 1)");
      }
      if (largeBatchIntraOpThreads <= intraOpThreads || largeBatchIntraOpThreads > MAX_THREADS) {
        throw new IllegalArgumentException(
            "large_batch_intra_op_threads: "
                + largeBatchIntraOpThreads
                + " (expected: more than intra_op_threads "
                + intraOpThreads
                + ", at most "
                + MAX_THREADS
                + ")");
      }
    }
  }

  /** Full FP32 on CUDA (no TF32). */
  public SessionSettings(
      int intraOpThreads,
      int interOpThreads,
      ExecutionProvider provider,
      int deviceId,
      boolean allowCpuFallback,
      int largeBatchRows,
      int largeBatchIntraOpThreads) {
    this(intraOpThreads, interOpThreads, provider, deviceId, allowCpuFallback, largeBatchRows,
        largeBatchIntraOpThreads, false);
  }

  /** One session for every batch, full FP32 on CUDA. */
  public SessionSettings(
      int intraOpThreads,
      int interOpThreads,
      ExecutionProvider provider,
      int deviceId,
      boolean allowCpuFallback) {
    this(intraOpThreads, interOpThreads, provider, deviceId, allowCpuFallback, 0, 0);
  }

  /** Whether there is a second session that batches of {@link #largeBatchRows} or more may run on. */
  public boolean largeBatches() {
    return largeBatchRows > 0;
  }

  /** These settings with batches of {@code rows} or more on a second session of {@code threads}. */
  public SessionSettings withLargeBatches(int rows, int threads) {
    return new SessionSettings(
        intraOpThreads, interOpThreads, provider, deviceId, allowCpuFallback, rows, threads, cudaTf32);
  }

  /** CPU execution with the given threads, one session for every batch. */
  public SessionSettings(int intraOpThreads, int interOpThreads) {
    this(intraOpThreads, interOpThreads, ExecutionProvider.CPU, 0, false, 0, 0);
  }
}

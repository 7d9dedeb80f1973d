package io.modelgate.runtime.onnx;

/**
 * ONNX Runtime session options for one model version. Immutable and validated on construction.
 *
 * @param intraOpThreads threads one operator may use; 0 lets ONNX Runtime pick one per core
 * @param interOpThreads threads for running independent operators in parallel; 0 lets ONNX
 *     Runtime pick
 */
public record SessionSettings(int intraOpThreads, int interOpThreads) {
  public static final int MAX_THREADS = 256;

  /** One thread each: right for the small machines modelgate is measured on. */
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
  }
}

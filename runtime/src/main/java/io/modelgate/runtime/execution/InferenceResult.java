package io.modelgate.runtime.execution;

import io.modelgate.runtime.tensor.OutputTensor;

/**
 * The outputs of one request, in the order the request asked for them. Immutable. How long the
 * request queued and computed goes to the version's {@link StageRecorder}.
 */
public final class InferenceResult {
  private final OutputTensor[] outputs;
  private final int batchRows;
  private final long computeNanos;
  private final long computeStartNanos;

  /**
   * @param outputs the outputs in response order; the array is taken, not copied
   * @param batchRows rows in the execution that computed this result (1 when not batched)
   * @param computeNanos that execution's run of the model (ONNX Runtime's call), for all its rows
   * @param computeStartNanos when that run began ({@link System#nanoTime()}); 0: not known
   */
  public InferenceResult(OutputTensor[] outputs, int batchRows, long computeNanos, long computeStartNanos) {
    this.outputs = outputs;
    this.batchRows = batchRows;
    this.computeNanos = computeNanos;
    this.computeStartNanos = computeStartNanos;
  }

  /** A result whose execution time is not known (0). */
  public InferenceResult(OutputTensor[] outputs, int batchRows) {
    this(outputs, batchRows, 0, 0);
  }

  /** When the run of the model that computed this result began ({@link System#nanoTime()}); 0 where not known. */
  public long computeStartNanos() {
    return computeStartNanos;
  }

  /** The run of the model of the execution that computed this result, for all its rows, in ns. */
  public long computeNanos() {
    return computeNanos;
  }

  /** Bytes of the output tensors. */
  public long outputBytes() {
    long bytes = 0;
    for (OutputTensor output : outputs) {
      bytes += output.data().size();
    }
    return bytes;
  }

  /** The outputs. Shared: callers must not modify the array. */
  public OutputTensor[] outputs() {
    return outputs;
  }

  /** Rows in the execution that computed this result. */
  public int batchRows() {
    return batchRows;
  }
}

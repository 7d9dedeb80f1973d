package io.modelgate.runtime.execution;

import io.modelgate.runtime.tensor.OutputTensor;

/**
 * The outputs of one request, in the order the request asked for them, with the time it spent in
 * each stage. Immutable.
 */
public final class InferenceResult {
  private final OutputTensor[] outputs;
  private final long queueNanos;
  private final long computeNanos;
  private final int batchRows;

  /**
   * @param outputs the outputs in response order; the array is taken, not copied
   * @param queueNanos from arrival to the start of the ONNX Runtime call, in nanoseconds
   * @param computeNanos the ONNX Runtime call with input and output copies, in nanoseconds
   * @param batchRows rows in the execution that computed this result (1 when not batched)
   */
  public InferenceResult(
      OutputTensor[] outputs, long queueNanos, long computeNanos, int batchRows) {
    this.outputs = outputs;
    this.queueNanos = queueNanos;
    this.computeNanos = computeNanos;
    this.batchRows = batchRows;
  }

  /** The outputs. Shared: callers must not modify the array. */
  public OutputTensor[] outputs() {
    return outputs;
  }

  public long queueNanos() {
    return queueNanos;
  }

  public long computeNanos() {
    return computeNanos;
  }

  public int batchRows() {
    return batchRows;
  }
}

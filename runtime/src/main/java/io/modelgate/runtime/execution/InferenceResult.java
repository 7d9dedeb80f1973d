package io.modelgate.runtime.execution;

import io.modelgate.runtime.tensor.OutputTensor;

/**
 * The outputs of one request, in the order the request asked for them. Immutable. How long the
 * request queued and computed goes to the version's {@link StageRecorder}.
 */
public final class InferenceResult {
  private final OutputTensor[] outputs;
  private final int batchRows;

  /**
   * @param outputs the outputs in response order; the array is taken, not copied
   * @param batchRows rows in the execution that computed this result (1 when not batched)
   */
  public InferenceResult(OutputTensor[] outputs, int batchRows) {
    this.outputs = outputs;
    this.batchRows = batchRows;
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

package io.modelgate.runtime.tensor;

/**
 * A request validated against a {@link ModelSignature}: its inputs in model order, the outputs it
 * asked for, and how many rows it carries along the batch dimension. Immutable.
 */
public final class DecodedRequest {
  private final ModelSignature signature;
  private final InputTensor[] inputs;
  private final int[] outputs;
  private final int rows;

  DecodedRequest(ModelSignature signature, InputTensor[] inputs, int[] outputs, int rows) {
    this.signature = signature;
    this.inputs = inputs;
    this.outputs = outputs;
    this.rows = rows;
  }

  public ModelSignature signature() {
    return signature;
  }

  /** Inputs indexed by their position in the signature. Shared: callers must not modify it. */
  public InputTensor[] inputs() {
    return inputs;
  }

  /** Positions of the requested outputs in the order the response lists them. Shared. */
  public int[] outputs() {
    return outputs;
  }

  /** Rows along the batch dimension, or 0 when the model does not batch. */
  public int rows() {
    return rows;
  }
}

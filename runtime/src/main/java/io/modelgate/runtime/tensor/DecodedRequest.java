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

  /**
   * Whether this request and {@code other} may run in one execution: the same signature, the same
   * dimensions on every input apart from its batch axis, and equal contents on every input that
   * has no batch axis.
   */
  public boolean canShareBatchWith(DecodedRequest other) {
    if (other.signature != signature || !signature.batches()) {
      return false;
    }
    for (int i = 0; i < inputs.length; i++) {
      int axis = signature.inputAxis(i);
      if (axis == ModelSignature.NO_AXIS) {
        if (!inputs[i].sameContents(other.inputs[i])) {
          return false;
        }
        continue;
      }
      long[] a = inputs[i].shape();
      long[] b = other.inputs[i].shape();
      for (int d = 0; d < a.length; d++) {
        if (d != axis && a[d] != b[d]) {
          return false;
        }
      }
    }
    return true;
  }
}

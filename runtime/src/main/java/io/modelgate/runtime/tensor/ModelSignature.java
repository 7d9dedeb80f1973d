package io.modelgate.runtime.tensor;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The inputs and outputs of one model version and how it batches. Immutable; built once at load
 * time so that request validation does no work it could have done earlier.
 *
 * <p>When {@link #maxBatchSize()} is at least 1 the model batches: every input and output has a
 * batch axis (by default its first dimension) or none ({@link #NO_AXIS}). A request carries 1 to
 * {@code maxBatchSize} rows along its inputs' batch axes, the same number on every such input.
 * Requests are merged into one execution by concatenating along those axes; inputs without a batch
 * axis must be equal across the requests of a batch. When it is 0, shapes are used as they are and
 * every request runs alone.
 */
public final class ModelSignature {
  /** The axis of a tensor that has no batch dimension. */
  public static final int NO_AXIS = -1;

  private final List<TensorSpec> inputs;
  private final List<TensorSpec> outputs;
  private final int maxBatchSize;
  private final int[] inputAxes;
  private final int[] outputAxes;
  private final Map<String, Integer> inputIndex;
  private final Map<String, Integer> outputIndex;
  private final int[] allOutputs;
  private final String inputNames;
  private final String outputNames;
  private final boolean firstAxisOnly;

  /** A signature whose tensors batch along their first dimension (rank-0 tensors do not). */
  public ModelSignature(List<TensorSpec> inputs, List<TensorSpec> outputs, int maxBatchSize) {
    this(inputs, outputs, maxBatchSize, firstAxes(inputs), firstAxes(outputs));
  }

  /**
   * @param inputAxes the batch axis of each input, in order, or {@link #NO_AXIS}
   * @param outputAxes the batch axis of each output, in order, or {@link #NO_AXIS}
   */
  public ModelSignature(
      List<TensorSpec> inputs,
      List<TensorSpec> outputs,
      int maxBatchSize,
      int[] inputAxes,
      int[] outputAxes) {
    if (maxBatchSize < 0) {
      throw new IllegalArgumentException("maxBatchSize: " + maxBatchSize + " (expected: >= 0)");
    }
    this.inputs = List.copyOf(inputs);
    this.outputs = List.copyOf(outputs);
    this.maxBatchSize = maxBatchSize;
    this.inputAxes = checkAxes("input", this.inputs, inputAxes);
    this.outputAxes = checkAxes("output", this.outputs, outputAxes);
    this.inputIndex = index(this.inputs);
    this.outputIndex = index(this.outputs);
    this.allOutputs = new int[this.outputs.size()];
    for (int i = 0; i < allOutputs.length; i++) {
      allOutputs[i] = i;
    }
    this.inputNames = names(this.inputs);
    this.outputNames = names(this.outputs);
    boolean first = true;
    for (int axis : this.inputAxes) {
      first &= axis == 0;
    }
    for (int axis : this.outputAxes) {
      first &= axis == 0;
    }
    this.firstAxisOnly = first;
  }

  private static int[] firstAxes(List<TensorSpec> specs) {
    int[] axes = new int[specs.size()];
    for (int i = 0; i < axes.length; i++) {
      axes[i] = specs.get(i).rank() == 0 ? NO_AXIS : 0;
    }
    return axes;
  }

  private static int[] checkAxes(String role, List<TensorSpec> specs, int[] axes) {
    if (axes.length != specs.size()) {
      throw new IllegalArgumentException(
          role + " axes: " + axes.length + " for " + specs.size() + " " + role + "s");
    }
    for (int i = 0; i < axes.length; i++) {
      if (axes[i] != NO_AXIS && (axes[i] < 0 || axes[i] >= specs.get(i).rank())) {
        throw new IllegalArgumentException(
            role
                + " '"
                + specs.get(i).name()
                + "': batch axis "
                + axes[i]
                + " (expected: 0 to "
                + (specs.get(i).rank() - 1)
                + " for shape "
                + specs.get(i).shapeText()
                + ", or none)");
      }
    }
    return axes.clone();
  }

  private static Map<String, Integer> index(List<TensorSpec> specs) {
    Map<String, Integer> index = new HashMap<>(specs.size() * 2);
    for (int i = 0; i < specs.size(); i++) {
      index.put(specs.get(i).name(), i);
    }
    return Map.copyOf(index);
  }

  private static String names(List<TensorSpec> specs) {
    return specs.stream().map(TensorSpec::name).collect(Collectors.joining(", "));
  }

  public List<TensorSpec> inputs() {
    return inputs;
  }

  public List<TensorSpec> outputs() {
    return outputs;
  }

  /** 0 when the model does not batch; otherwise the most rows one execution may carry. */
  public int maxBatchSize() {
    return maxBatchSize;
  }

  public boolean batches() {
    return maxBatchSize > 0;
  }

  /** The batch axis of input {@code index}, or {@link #NO_AXIS}. */
  public int inputAxis(int index) {
    return inputAxes[index];
  }

  /** The batch axis of output {@code index}, or {@link #NO_AXIS}. */
  public int outputAxis(int index) {
    return outputAxes[index];
  }

  /** Whether every input and output batches along its first dimension, as the protocol assumes. */
  public boolean batchesOnFirstAxisOnly() {
    return firstAxisOnly;
  }

  /** The position of the named input, or -1. */
  public int inputIndex(String name) {
    Integer index = inputIndex.get(name);
    return index == null ? -1 : index;
  }

  /** The position of the named output, or -1. */
  public int outputIndex(String name) {
    Integer index = outputIndex.get(name);
    return index == null ? -1 : index;
  }

  /** Positions of all outputs in model order. Shared: callers must not modify it. */
  int[] allOutputIndices() {
    return allOutputs;
  }

  /** Input names joined by ", ", for messages. */
  public String inputNames() {
    return inputNames;
  }

  /** Output names joined by ", ", for messages. */
  public String outputNames() {
    return outputNames;
  }
}

package io.modelgate.runtime.tensor;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The inputs and outputs of one model version and how it batches. Immutable; built once at load
 * time so that request validation does no work it could have done earlier.
 *
 * <p>When {@link #maxBatchSize()} is at least 1, the first dimension of every input and output is
 * the batch dimension: a request may carry 1 to {@code maxBatchSize} rows, and all its inputs must
 * carry the same number. When it is 0, shapes are used as they are.
 */
public final class ModelSignature {
  private final List<TensorSpec> inputs;
  private final List<TensorSpec> outputs;
  private final int maxBatchSize;
  private final Map<String, Integer> inputIndex;
  private final Map<String, Integer> outputIndex;
  private final int[] allOutputs;
  private final String inputNames;
  private final String outputNames;

  public ModelSignature(List<TensorSpec> inputs, List<TensorSpec> outputs, int maxBatchSize) {
    if (maxBatchSize < 0) {
      throw new IllegalArgumentException("maxBatchSize: " + maxBatchSize + " (expected: >= 0)");
    }
    this.inputs = List.copyOf(inputs);
    this.outputs = List.copyOf(outputs);
    this.maxBatchSize = maxBatchSize;
    this.inputIndex = index(this.inputs);
    this.outputIndex = index(this.outputs);
    this.allOutputs = new int[this.outputs.size()];
    for (int i = 0; i < allOutputs.length; i++) {
      allOutputs[i] = i;
    }
    this.inputNames = names(this.inputs);
    this.outputNames = names(this.outputs);
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

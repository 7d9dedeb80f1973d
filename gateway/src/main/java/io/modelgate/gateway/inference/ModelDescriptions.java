package io.modelgate.gateway.inference;

import io.modelgate.proto.inference.ModelConfig;
import io.modelgate.proto.inference.ModelDynamicBatching;
import io.modelgate.proto.inference.ModelInput;
import io.modelgate.proto.inference.ModelInstanceGroup;
import io.modelgate.proto.inference.ModelMetadataResponse;
import io.modelgate.proto.inference.ModelMetadataResponse.TensorMetadata;
import io.modelgate.proto.inference.ModelOutput;
import io.modelgate.proto.inference.ModelParameter;
import io.modelgate.proto.inference.ModelVersionPolicy;
import io.modelgate.runtime.execution.BatchPolicy;
import io.modelgate.runtime.onnx.ExecutionProvider;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.TensorSpec;
import java.util.Arrays;
import java.util.List;

/** Describes a loaded version in the protocol's metadata and model configuration messages. */
final class ModelDescriptions {
  /** The platform string of ONNX models served by ONNX Runtime. */
  static final String PLATFORM = "onnxruntime_onnx";

  static final String BACKEND = "onnxruntime";

  private ModelDescriptions() {}

  /**
   * ModelMetadata: datatype strings and shapes as ONNX Runtime reports them, -1 for each variable
   * dimension (for a batching model that includes the leading batch dimension).
   */
  static ModelMetadataResponse metadata(
      ModelVersion version, LoadedVersion loaded, List<String> versions) {
    ModelSignature signature = loaded.signature();
    ModelMetadataResponse.Builder response =
        ModelMetadataResponse.newBuilder()
            .setName(version.model())
            .addAllVersions(versions)
            .setPlatform(PLATFORM);
    for (TensorSpec input : signature.inputs()) {
      response.addInputs(tensor(input));
    }
    for (TensorSpec output : signature.outputs()) {
      response.addOutputs(tensor(output));
    }
    return response.build();
  }

  private static TensorMetadata tensor(TensorSpec spec) {
    TensorMetadata.Builder tensor =
        TensorMetadata.newBuilder().setName(spec.name()).setDatatype(spec.dataType().wireName());
    for (long dim : spec.shape()) {
      tensor.addShape(dim);
    }
    return tensor.build();
  }

  /**
   * ModelConfig, enough for perf_analyzer: dims leave out the batch dimension when {@code
   * max_batch_size} is at least 1, as the protocol specifies; {@code dynamic_batching} is present
   * when requests are merged; the instance group and the {@code execution_provider} parameter say
   * where the version runs.
   *
   * <p>The protocol's {@code max_batch_size} means "the first dimension of every tensor is the
   * batch". A model configured with other batch axes is described with {@code max_batch_size} 0 and
   * full shapes, which is what its clients must send; what the batcher does is reported all the
   * same: {@code dynamic_batching} when it merges requests, and the parameters {@code batch_axes}
   * (each tensor's batch axis, or {@code none}) and {@code max_batch_rows} (rows per execution).
   */
  static ModelConfig config(ModelVersion version, LoadedVersion loaded) {
    ModelSignature signature = loaded.signature();
    int reported = signature.batchesOnFirstAxisOnly() ? signature.maxBatchSize() : 0;
    int skip = reported > 0 ? 1 : 0;
    boolean cuda = loaded.executionProvider() == ExecutionProvider.CUDA;
    ModelInstanceGroup.Builder group =
        ModelInstanceGroup.newBuilder()
            .setName(version.model())
            .setKind(cuda ? ModelInstanceGroup.Kind.KIND_GPU : ModelInstanceGroup.Kind.KIND_CPU)
            .setCount(loaded.settings().scheduler().instances());
    if (cuda) {
      group.addGpus(loaded.settings().session().deviceId());
    }
    ModelConfig.Builder config =
        ModelConfig.newBuilder()
            .setName(version.model())
            .setPlatform(PLATFORM)
            .setBackend(BACKEND)
            .setVersionPolicy(
                ModelVersionPolicy.newBuilder().setAll(ModelVersionPolicy.All.getDefaultInstance()))
            .setMaxBatchSize(reported)
            .addInstanceGroup(group)
            .putParameters(
                "execution_provider",
                ModelParameter.newBuilder()
                    .setStringValue(loaded.executionProvider().configName())
                    .build());
    BatchPolicy policy = loaded.batchPolicy();
    if (policy.merges()) {
      config.setDynamicBatching(
          ModelDynamicBatching.newBuilder()
              .addAllPreferredBatchSize(policy.preferredBatchSizes())
              .setMaxQueueDelayMicroseconds(policy.maxQueueDelayNanos() / 1000));
    }
    if (signature.batches()) {
      config
          .putParameters(
              "max_batch_rows",
              ModelParameter.newBuilder().setStringValue(Integer.toString(signature.maxBatchSize())).build())
          .putParameters(
              "batch_axes", ModelParameter.newBuilder().setStringValue(batchAxes(signature)).build());
    }
    for (TensorSpec input : signature.inputs()) {
      config.addInput(
          ModelInput.newBuilder()
              .setName(input.name())
              .setDataType(input.dataType().configType())
              .addAllDims(dims(input, skip)));
    }
    for (TensorSpec output : signature.outputs()) {
      config.addOutput(
          ModelOutput.newBuilder()
              .setName(output.name())
              .setDataType(output.dataType().configType())
              .addAllDims(dims(output, skip)));
    }
    return config.build();
  }

  /** {@code x:0,state:1,scale:none}: inputs then outputs, in signature order. */
  private static String batchAxes(ModelSignature signature) {
    StringBuilder axes = new StringBuilder();
    for (int i = 0; i < signature.inputs().size(); i++) {
      appendAxis(axes, signature.inputs().get(i).name(), signature.inputAxis(i));
    }
    for (int i = 0; i < signature.outputs().size(); i++) {
      appendAxis(axes, signature.outputs().get(i).name(), signature.outputAxis(i));
    }
    return axes.toString();
  }

  private static void appendAxis(StringBuilder axes, String name, int axis) {
    if (axes.length() > 0) {
      axes.append(',');
    }
    axes.append(name).append(':').append(axis == ModelSignature.NO_AXIS ? "none" : Integer.toString(axis));
  }

  private static List<Long> dims(TensorSpec spec, int skip) {
    long[] shape = spec.shape();
    return Arrays.stream(shape).skip(Math.min(skip, shape.length)).boxed().toList();
  }
}

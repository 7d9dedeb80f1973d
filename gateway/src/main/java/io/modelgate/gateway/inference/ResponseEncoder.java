package io.modelgate.gateway.inference;

import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelInferResponse.InferOutputTensor;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.OutputTensor;

/**
 * Builds the protocol response: outputs always as raw_output_contents, one per output in the
 * requested order, which every KServe v2 and Triton client reads; the request's id echoed; the
 * answering model and numeric version filled in.
 */
final class ResponseEncoder {
  private ResponseEncoder() {}

  /**
   * @param classification what the request asked classified (Triton's classification extension),
   *     or null
   */
  static ModelInferResponse encode(
      ModelVersion version, String id, InferenceResult result, Classification.Plan classification) {
    ModelInferResponse.Builder response =
        ModelInferResponse.newBuilder()
            .setModelName(version.model())
            .setModelVersion(version.numberText())
            .setId(id);
    OutputTensor[] outputs = result.outputs();
    for (int i = 0; i < outputs.length; i++) {
      OutputTensor output = classification == null ? outputs[i] : classification.apply(i, outputs[i]);
      InferOutputTensor.Builder tensor =
          response.addOutputsBuilder().setName(output.name()).setDatatype(output.dataType().wireName());
      for (long dim : output.shape()) {
        tensor.addShape(dim);
      }
      response.addRawOutputContents(output.data());
    }
    return response.build();
  }
}

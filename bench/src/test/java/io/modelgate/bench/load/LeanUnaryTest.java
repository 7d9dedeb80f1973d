package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.io.ByteArrayOutputStream;
import org.junit.jupiter.api.Test;

class LeanUnaryTest {
  @Test
  void theRequestGoesOutAsItsProtobufBytes_andTheAnswerIsReadForItsVersionOnly() throws Exception {
    ModelInferRequest request =
        ModelInferRequest.newBuilder().setModelName("m").setId("7")
            .addRawInputContents(ByteString.copyFrom(new byte[4096])).build();
    ByteArrayOutputStream sent = new ByteArrayOutputStream();
    try (var stream = LeanUnary.METHOD.streamRequest(request.toByteArray())) {
      ((io.grpc.Drainable) stream).drainTo(sent);
    }
    assertThat(ModelInferRequest.parseFrom(sent.toByteArray())).isEqualTo(request);

    ModelInferResponse response =
        ModelInferResponse.newBuilder()
            .setModelName("m")
            .setModelVersion("12")
            .setId("7")
            .addOutputs(ModelInferResponse.InferOutputTensor.newBuilder().setName("y").setDatatype("FP32").addShape(1).addShape(10))
            .addRawOutputContents(ByteString.copyFrom(new byte[40]))
            .build();
    assertThat(LeanUnary.METHOD.parseResponse(response.toByteString().newInput())).isEqualTo("12");
    assertThat(LeanUnary.METHOD.parseResponse(ModelInferResponse.getDefaultInstance().toByteString().newInput()))
        .isEmpty();
  }
}

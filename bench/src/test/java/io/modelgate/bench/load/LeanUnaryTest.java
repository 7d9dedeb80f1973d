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

  @Test
  void streamedRequestsCarryTheirOwnId_andAnswersAreReadForIdVersionAndErrorCode() throws Exception {
    ModelInferRequest request =
        ModelInferRequest.newBuilder().setModelName("m").setId("ignored")
            .addRawInputContents(ByteString.copyFrom(new byte[300])).build();
    byte[] prefix = request.toBuilder().clearId().build().toByteArray();
    ByteArrayOutputStream sent = new ByteArrayOutputStream();
    try (var stream = LeanStream.METHOD.streamRequest(new LeanStream.Numbered(prefix, 1234567))) {
      ((io.grpc.Drainable) stream).drainTo(sent);
    }
    assertThat(ModelInferRequest.parseFrom(sent.toByteArray())).isEqualTo(request.toBuilder().setId("1234567").build());

    io.modelgate.proto.inference.ModelStreamInferResponse ok =
        io.modelgate.proto.inference.ModelStreamInferResponse.newBuilder()
            .setInferResponse(ModelInferResponse.newBuilder().setModelName("m").setModelVersion("3").setId("42")
                .addRawOutputContents(ByteString.copyFrom(new byte[40])))
            .build();
    assertThat(LeanStream.METHOD.parseResponse(ok.toByteString().newInput()))
        .isEqualTo(new LeanStream.Answer(42, "3", null));

    io.modelgate.proto.inference.ModelStreamInferResponse refused =
        io.modelgate.proto.inference.ModelStreamInferResponse.newBuilder()
            .setErrorMessage("queue full")
            .setInferResponse(ModelInferResponse.newBuilder().setId("43")
                .putParameters("other", io.modelgate.proto.inference.InferParameter.newBuilder().setStringParam("x").build())
                .putParameters("error_code",
                    io.modelgate.proto.inference.InferParameter.newBuilder().setStringParam("RESOURCE_EXHAUSTED").build()))
            .build();
    assertThat(LeanStream.METHOD.parseResponse(refused.toByteString().newInput()))
        .isEqualTo(new LeanStream.Answer(43, "", "RESOURCE_EXHAUSTED"));
  }
}

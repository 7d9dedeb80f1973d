package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.io.ByteArrayOutputStream;
import org.junit.jupiter.api.Test;

class LeanUnaryTest {
  @Test
  void theRequestGoesOutAsOneGrpcMessage_andTheAnswerIsReadForItsVersionOnly() throws Exception {
    ModelInferRequest request =
        ModelInferRequest.newBuilder().setModelName("m").setId("7")
            .addRawInputContents(ByteString.copyFrom(new byte[4096])).build();
    io.netty.buffer.ByteBuf message = WireConnection.message(request.toByteArray());
    // Uncompressed, then the length, then the bytes; shared by every call, never released.
    assertThat(message.getByte(0)).isZero();
    assertThat(message.getInt(1)).isEqualTo(message.readableBytes() - 5);
    byte[] body = new byte[message.readableBytes() - 5];
    message.getBytes(5, body);
    assertThat(ModelInferRequest.parseFrom(body)).isEqualTo(request);
    assertThat(message.release()).isFalse();
    assertThat(message.readableBytes()).isEqualTo(5 + body.length);

    ModelInferResponse response =
        ModelInferResponse.newBuilder()
            .setModelName("m")
            .setModelVersion("12")
            .setId("7")
            .addOutputs(ModelInferResponse.InferOutputTensor.newBuilder().setName("y").setDatatype("FP32").addShape(1).addShape(10))
            .addRawOutputContents(ByteString.copyFrom(new byte[40]))
            .build();
    WireConnection.Reader version = LeanUnary.version();
    Object first = version.read(io.netty.buffer.Unpooled.wrappedBuffer(response.toByteArray()));
    assertThat(first).isEqualTo("12");
    // The same version again is the same text, not a new one.
    assertThat(version.read(io.netty.buffer.Unpooled.wrappedBuffer(response.toByteArray()))).isSameAs(first);
    assertThat(version.read(io.netty.buffer.Unpooled.wrappedBuffer(response.toBuilder().setModelVersion("3").build().toByteArray())))
        .isEqualTo("3");
    // Fields of every wire type before it are skipped.
    byte[] others = com.google.protobuf.UnknownFieldSet.newBuilder()
        .addField(100, com.google.protobuf.UnknownFieldSet.Field.newBuilder().addVarint(300).addFixed32(1).addFixed64(2).build())
        .build().toByteArray();
    assertThat(version.read(io.netty.buffer.Unpooled.wrappedBuffer(others, response.toByteArray()))).isEqualTo("12");
    assertThat(version.read(io.netty.buffer.Unpooled.wrappedBuffer(ModelInferResponse.getDefaultInstance().toByteArray())))
        .isEqualTo("");
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> version.read(io.netty.buffer.Unpooled.wrappedBuffer(new byte[] {0x12, 0x7f, 1})))
        .hasMessageContaining("runs past the message");
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

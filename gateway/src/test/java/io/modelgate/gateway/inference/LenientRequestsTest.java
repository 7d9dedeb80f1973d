package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.grpc.KnownLength;
import io.grpc.internal.ReadableBuffers;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.InputStream;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Requests read from the transport's buffers parse as grpc-java's own marshaller parses them. */
class LenientRequestsTest {
  private final LenientRequests.Marshaller marshaller =
      new LenientRequests.Marshaller(GRPCInferenceServiceGrpc.getModelInferMethod().getRequestMarshaller());

  /** A message as Netty's transport hands it over: a stream over its buffers, split in two. */
  private static InputStream fromTransport(byte[] bytes) {
    int half = bytes.length / 2;
    io.grpc.internal.CompositeReadableBuffer buffers = new io.grpc.internal.CompositeReadableBuffer();
    buffers.addBuffer(ReadableBuffers.wrap(java.nio.ByteBuffer.wrap(bytes, 0, half).slice()));
    buffers.addBuffer(ReadableBuffers.wrap(java.nio.ByteBuffer.wrap(bytes, half, bytes.length - half).slice()));
    InputStream stream = ReadableBuffers.openStream(buffers, true);
    assertThat(stream).isInstanceOf(io.grpc.HasByteBuffer.class).isInstanceOf(KnownLength.class);
    return stream;
  }

  private static ModelInferRequest request(int rawBytes) {
    byte[] raw = new byte[rawBytes];
    new Random(rawBytes).nextBytes(raw);
    return ModelInferRequest.newBuilder()
        .setModelName("cnn_mnist")
        .setId("req-é")
        .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("input").setDatatype("FP32")
            .addShape(1).addShape(rawBytes / 4))
        .addRawInputContents(ByteString.copyFrom(raw))
        .addRawInputContents(ByteString.EMPTY)
        .build();
  }

  @Test
  void aRequestFromTheTransport_parsesWhole() {
    for (int size : new int[] {0, 4, 3136, 100_000}) {
      ModelInferRequest sent = request(size);
      ModelInferRequest parsed = marshaller.parse(fromTransport(sent.toByteArray()));
      assertThat(parsed).isEqualTo(sent);
      assertThat(LenientRequests.invalidReason(parsed)).isNull();
    }
    assertThat(marshaller.parse(fromTransport(new byte[0]))).isEqualTo(ModelInferRequest.getDefaultInstance());
  }

  @Test
  void bytesThatAreNotProtobuf_areMarkedWithTheReason() {
    byte[] truncated = java.util.Arrays.copyOf(request(64).toByteArray(), 40);
    assertThat(LenientRequests.invalidReason(marshaller.parse(fromTransport(truncated))))
        .contains("ended unexpectedly");
    // An end-group tag where a message must end.
    assertThat(LenientRequests.invalidReason(marshaller.parse(fromTransport(new byte[] {0x0C}))))
        .isNotNull();
    assertThat(LenientRequests.invalidReason(marshaller.parse(fromTransport(new byte[] {(byte) 0xff, (byte) 0xff}))))
        .isNotNull();
  }

  @Test
  void aRequestInProcess_takesGrpcsOwnPath() {
    ModelInferRequest sent = request(16);
    InputStream stream = GRPCInferenceServiceGrpc.getModelInferMethod().getRequestMarshaller().stream(sent);
    assertThat(stream).isNotInstanceOf(io.grpc.HasByteBuffer.class);
    assertThat(marshaller.parse(stream)).isEqualTo(sent);
  }
}

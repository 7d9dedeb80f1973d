package io.modelgate.bench.load;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import io.grpc.MethodDescriptor;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;

/**
 * ModelInfer as the load generator sends it, without protobuf on its hot path: the request is
 * serialized once and its bytes are written straight into the transport for every call ({@link
 * Drainable}, no copy into an intermediate buffer), and an answer is read only as far as the
 * figures need — its {@code model_version} — skipping the rest without building a message. The
 * wire format is the protocol's, so any KServe v2 server sees an ordinary call.
 */
final class LeanUnary {
  private LeanUnary() {}

  /** {@code inference.GRPCInferenceService/ModelInfer}: serialized request in, answering version out. */
  static final MethodDescriptor<byte[], String> METHOD =
      MethodDescriptor.<byte[], String>newBuilder()
          .setType(MethodDescriptor.MethodType.UNARY)
          .setFullMethodName(GRPCInferenceServiceGrpc.getModelInferMethod().getFullMethodName())
          .setRequestMarshaller(new RequestBytes())
          .setResponseMarshaller(new VersionOnly())
          .build();

  /** ModelInferResponse field 2: model_version. */
  private static final int MODEL_VERSION = 2;

  private static final class RequestBytes implements MethodDescriptor.Marshaller<byte[]> {
    @Override
    public InputStream stream(byte[] value) {
      return new SerializedMessage(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      throw new UnsupportedOperationException("the load generator only sends requests");
    }
  }

  /** Reads {@code model_version} and skips every other field. */
  private static final class VersionOnly implements MethodDescriptor.Marshaller<String> {
    @Override
    public InputStream stream(String value) {
      throw new UnsupportedOperationException("the load generator only reads responses");
    }

    @Override
    public String parse(InputStream stream) {
      try {
        CodedInputStream in = CodedInputStream.newInstance(stream);
        String version = "";
        for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
          if (WireFormat.getTagFieldNumber(tag) == MODEL_VERSION
              && WireFormat.getTagWireType(tag) == WireFormat.WIRETYPE_LENGTH_DELIMITED) {
            version = in.readString();
          } else if (!in.skipField(tag)) {
            break;
          }
        }
        return version;
      } catch (IOException e) {
        throw new UncheckedIOException("not a ModelInferResponse: " + e.getMessage(), e);
      }
    }
  }
}

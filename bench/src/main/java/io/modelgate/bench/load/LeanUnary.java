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

  /** What a checked answer carries instead of its version when the check failed. */
  static final String CHECK_FAILED = "\u0000check failed: ";

  /**
   * ModelInfer for the checking mode: the same request bytes, each answer parsed whole and checked
   * against {@code request} — the model it names, the id, at least one output, and every output's
   * raw contents as long as its shape and datatype say. A failed check comes back as {@link
   * #CHECK_FAILED} and the reason instead of a version.
   */
  static MethodDescriptor<byte[], String> checked(io.modelgate.proto.inference.ModelInferRequest request) {
    return METHOD.toBuilder(new RequestBytes(), new Checked(request)).build();
  }

  private static final class Checked implements MethodDescriptor.Marshaller<String> {
    private final io.modelgate.proto.inference.ModelInferRequest request;

    Checked(io.modelgate.proto.inference.ModelInferRequest request) {
      this.request = request;
    }

    @Override
    public InputStream stream(String value) {
      throw new UnsupportedOperationException("the load generator only reads responses");
    }

    @Override
    public String parse(InputStream stream) {
      io.modelgate.proto.inference.ModelInferResponse response;
      try {
        response = io.modelgate.proto.inference.ModelInferResponse.parseFrom(stream);
      } catch (IOException e) {
        return CHECK_FAILED + "not a ModelInferResponse: " + e.getMessage();
      }
      String problem = problem(request, response);
      return problem == null ? response.getModelVersion() : CHECK_FAILED + problem;
    }
  }

  /** What is wrong with {@code response} as the answer to {@code request}, or null. */
  static String problem(io.modelgate.proto.inference.ModelInferRequest request, io.modelgate.proto.inference.ModelInferResponse response) {
    if (!response.getModelName().equals(request.getModelName())) {
      return "answered for model '" + response.getModelName() + "', asked '" + request.getModelName() + "'";
    }
    if (!response.getId().equals(request.getId())) {
      return "id '" + response.getId() + "', sent '" + request.getId() + "'";
    }
    if (response.getOutputsCount() == 0) {
      return "no outputs";
    }
    for (int i = 0; i < response.getRawOutputContentsCount() && i < response.getOutputsCount(); i++) {
      var output = response.getOutputs(i);
      int size = switch (output.getDatatype()) {
        case "BOOL", "INT8", "UINT8" -> 1;
        case "INT16", "UINT16", "FP16", "BF16" -> 2;
        case "INT32", "UINT32", "FP32" -> 4;
        case "INT64", "UINT64", "FP64" -> 8;
        default -> 0;
      };
      long elements = 1;
      for (long dim : output.getShapeList()) {
        elements *= dim;
      }
      if (size > 0 && response.getRawOutputContents(i).size() != elements * size) {
        return "output '" + output.getName() + "' " + output.getDatatype() + " " + output.getShapeList() + " has "
            + response.getRawOutputContents(i).size() + " bytes, expected " + elements * size;
      }
    }
    return null;
  }

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

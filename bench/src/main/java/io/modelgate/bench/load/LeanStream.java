package io.modelgate.bench.load;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import io.grpc.MethodDescriptor;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;

/**
 * ModelStreamInfer as the load generator sends it, without protobuf on its hot path: each request
 * is the request serialized once, followed by its own {@code id} field (protobuf takes the last
 * value of a field, so the appended id is the request's id), written straight into the transport;
 * each answer is read only for what the figures need — the id it answers, the version that
 * answered, and, for an in-band error, its {@code error_code} parameter.
 */
final class LeanStream {
  private LeanStream() {}

  /** A request to send: the serialized request (without id) and this request's id. */
  record Numbered(byte[] prefix, long id) {}

  /** An answer: its id, the answering version, and the in-band error code (null on success). */
  record Answer(long id, String version, String errorCode) {}

  static final MethodDescriptor<Numbered, Answer> METHOD =
      MethodDescriptor.<Numbered, Answer>newBuilder()
          .setType(MethodDescriptor.MethodType.BIDI_STREAMING)
          .setFullMethodName(GRPCInferenceServiceGrpc.getModelStreamInferMethod().getFullMethodName())
          .setRequestMarshaller(new Requests())
          .setResponseMarshaller(new Answers())
          .build();

  private static final int REQUEST_ID = 3;
  private static final int STREAM_ERROR_MESSAGE = 1;
  private static final int STREAM_INFER_RESPONSE = 2;
  private static final int RESPONSE_MODEL_VERSION = 2;
  private static final int RESPONSE_ID = 3;
  private static final int RESPONSE_PARAMETERS = 4;
  private static final int PARAMETER_STRING = 3;

  private static final class Requests implements MethodDescriptor.Marshaller<Numbered> {
    @Override
    public InputStream stream(Numbered value) {
      byte[] id = Long.toString(value.id()).getBytes(StandardCharsets.US_ASCII);
      // Field 3, length-delimited; the id is at most 20 digits, so its length is one byte.
      byte[] suffix = new byte[2 + id.length];
      suffix[0] = (byte) ((REQUEST_ID << 3) | WireFormat.WIRETYPE_LENGTH_DELIMITED);
      suffix[1] = (byte) id.length;
      System.arraycopy(id, 0, suffix, 2, id.length);
      return new SerializedMessage(value.prefix(), suffix);
    }

    @Override
    public Numbered parse(InputStream stream) {
      throw new UnsupportedOperationException("the load generator only sends requests");
    }
  }

  private static final class Answers implements MethodDescriptor.Marshaller<Answer> {
    @Override
    public InputStream stream(Answer value) {
      throw new UnsupportedOperationException("the load generator only reads responses");
    }

    @Override
    public Answer parse(InputStream stream) {
      try {
        CodedInputStream in = CodedInputStream.newInstance(stream);
        boolean failed = false;
        long id = -1;
        String version = "";
        String errorCode = null;
        for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
          int field = WireFormat.getTagFieldNumber(tag);
          if (field == STREAM_ERROR_MESSAGE) {
            failed = !in.readString().isEmpty();
          } else if (field == STREAM_INFER_RESPONSE) {
            int limit = in.pushLimit(in.readRawVarint32());
            for (int inner = in.readTag(); inner != 0; inner = in.readTag()) {
              int f = WireFormat.getTagFieldNumber(inner);
              if (f == RESPONSE_MODEL_VERSION) {
                version = in.readString();
              } else if (f == RESPONSE_ID) {
                String text = in.readString();
                id = text.isEmpty() ? -1 : Long.parseLong(text);
              } else if (f == RESPONSE_PARAMETERS) {
                String code = errorCode(in);
                if (code != null) {
                  errorCode = code;
                }
              } else if (!in.skipField(inner)) {
                break;
              }
            }
            in.popLimit(limit);
          } else if (!in.skipField(tag)) {
            break;
          }
        }
        return new Answer(id, version, failed ? (errorCode == null ? "STREAM_ERROR" : errorCode) : null);
      } catch (IOException | NumberFormatException e) {
        throw new IllegalStateException("not a ModelStreamInferResponse the load generator sent for: " + e, e);
      }
    }

    /** One map entry of the response parameters: the string value when its key is error_code. */
    private static String errorCode(CodedInputStream in) throws IOException {
      int limit = in.pushLimit(in.readRawVarint32());
      String key = null;
      String value = null;
      for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
        int field = WireFormat.getTagFieldNumber(tag);
        if (field == 1) {
          key = in.readString();
        } else if (field == 2) {
          int inner = in.pushLimit(in.readRawVarint32());
          for (int t = in.readTag(); t != 0; t = in.readTag()) {
            if (WireFormat.getTagFieldNumber(t) == PARAMETER_STRING) {
              value = in.readString();
            } else if (!in.skipField(t)) {
              break;
            }
          }
          in.popLimit(inner);
        } else if (!in.skipField(tag)) {
          break;
        }
      }
      in.popLimit(limit);
      return "error_code".equals(key) ? value : null;
    }
  }
}

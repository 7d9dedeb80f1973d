package io.modelgate.bench.load;

import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.netty.buffer.ByteBuf;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * How the load generator reads a ModelInfer answer ({@link WireConnection.Reader}): lean, only as
 * far as the figures need — its {@code model_version}, found by walking the message's fields
 * without building it, the version's text made once and reused while it repeats — or, in the
 * checking mode, parsed whole and checked against the request.
 */
final class LeanUnary {
  private LeanUnary() {}

  /** ModelInferResponse field 2: model_version. */
  private static final int MODEL_VERSION = 2;

  /** What a checked answer carries instead of its version when the check failed. */
  static final String CHECK_FAILED = "\u0000check failed: ";

  /** The answering version as text ("" when the answer names none). Thread-safe. */
  static WireConnection.Reader version() {
    return new VersionOnly();
  }

  /**
   * The whole answer parsed and checked against {@code request}: the model it names, the id, at
   * least one output, and every output's raw contents as long as its shape and datatype say. A
   * failed check comes back as {@link #CHECK_FAILED} and the reason instead of a version.
   */
  static WireConnection.Reader checked(ModelInferRequest request) {
    return message -> {
      ModelInferResponse response;
      try {
        response = ModelInferResponse.parseFrom(message.nioBuffer());
      } catch (IOException e) {
        return CHECK_FAILED + "not a ModelInferResponse: " + e.getMessage();
      }
      String problem = problem(request, response);
      return problem == null ? response.getModelVersion() : CHECK_FAILED + problem;
    };
  }

  /** Walks the top-level fields for model_version; every other field is skipped unread. */
  private static final class VersionOnly implements WireConnection.Reader {
    /** The last version read, as bytes and as text; replaced when another one comes. */
    private volatile Known last = new Known(new byte[0], "");

    private record Known(byte[] bytes, String text) {}

    @Override
    public Object read(ByteBuf message) {
      int at = message.readerIndex();
      int end = message.writerIndex();
      while (at < end) {
        long tag = varint(message, at, end);
        at = (int) (tag >>> 32);
        int key = (int) tag;
        int wireType = key & 7;
        switch (wireType) {
          case 0 -> at = (int) (varint(message, at, end) >>> 32);
          case 1 -> at += 8;
          case 5 -> at += 4;
          case 2 -> {
            long length = varint(message, at, end);
            at = (int) (length >>> 32);
            int size = (int) length;
            if (size < 0 || at + size > end) {
              throw new IllegalArgumentException("not a ModelInferResponse: a field runs past the message");
            }
            if (key >>> 3 == MODEL_VERSION) {
              return text(message, at, size);
            }
            at += size;
          }
          default -> throw new IllegalArgumentException("not a ModelInferResponse: wire type " + wireType);
        }
      }
      return "";
    }

    private String text(ByteBuf message, int at, int size) {
      Known known = last;
      byte[] bytes = known.bytes();
      boolean same = bytes.length == size;
      for (int i = 0; same && i < size; i++) {
        same = message.getByte(at + i) == bytes[i];
      }
      if (same) {
        return known.text();
      }
      byte[] copy = new byte[size];
      message.getBytes(at, copy);
      String text = new String(copy, StandardCharsets.UTF_8);
      last = new Known(copy, text);
      return text;
    }

    /** The varint at {@code at}: its value in the low 32 bits, the index after it in the high 32. */
    private static long varint(ByteBuf message, int at, int end) {
      int value = 0;
      for (int shift = 0; shift < 64; shift += 7) {
        if (at >= end) {
          throw new IllegalArgumentException("not a ModelInferResponse: a varint runs past the message");
        }
        byte b = message.getByte(at++);
        if (shift < 32) {
          value |= (b & 0x7f) << shift;
        }
        if (b >= 0) {
          return ((long) at << 32) | (value & 0xffffffffL);
        }
      }
      throw new IllegalArgumentException("not a ModelInferResponse: a varint of more than 10 bytes");
    }
  }

  /** What is wrong with {@code response} as the answer to {@code request}, or null. */
  static String problem(ModelInferRequest request, ModelInferResponse response) {
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
}

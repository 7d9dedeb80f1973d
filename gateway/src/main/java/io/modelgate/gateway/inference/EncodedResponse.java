package io.modelgate.gateway.inference;

import com.google.protobuf.ByteOutput;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnsafeByteOperations;
import io.grpc.Drainable;
import io.grpc.KnownLength;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import io.modelgate.runtime.tensor.OutputTensor;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * One successful inference answer written straight into the transport as the bytes of a {@code
 * ModelInferResponse} — or, for a stream, of a {@code ModelStreamInferResponse} carrying it as
 * {@code infer_response} — without building protobuf objects first.
 *
 * <p>The bytes are exactly what protobuf's own serializer writes for the same response (fields in
 * number order, empty strings left out, shapes packed; {@code EncodedResponseTest} compares them
 * byte for byte): model name, numeric version, the request's id, one {@code outputs} entry per
 * output (name, datatype, shape) and one {@code raw_output_contents} entry per output. Everything
 * but the outputs' data goes into one small array made when the answer is made (typically under a
 * hundred bytes); each output's data is written from the buffer the result already holds, so it
 * is copied once, into the transport's buffer.
 *
 * <p>It is the {@link InputStream} gRPC's marshaller hands the transport ({@link Drainable},
 * {@link KnownLength}): gRPC drains it once, on the thread that sends the answer. {@link #read}
 * works too (the in-process transport and compression read it), from a copy made on first use.
 * Not thread-safe: one answer, one sending thread. Public for the benchmarks
 * ({@code AnswerEncodingBenchmark}); the server makes them in {@link InferenceService}.
 */
public final class EncodedResponse extends InputStream implements Drainable, KnownLength {
  // Tags: field number << 3 | wire type 2 (length-delimited).
  private static final int MODEL_NAME = 1 << 3 | 2;
  private static final int MODEL_VERSION = 2 << 3 | 2;
  private static final int ID = 3 << 3 | 2;
  private static final int OUTPUTS = 5 << 3 | 2;
  private static final int RAW_OUTPUT_CONTENTS = 6 << 3 | 2;
  private static final int TENSOR_NAME = 1 << 3 | 2;
  private static final int TENSOR_DATATYPE = 2 << 3 | 2;
  private static final int TENSOR_SHAPE = 3 << 3 | 2;
  /** {@code ModelStreamInferResponse.infer_response}. */
  private static final int INFER_RESPONSE = 2 << 3 | 2;

  private final OutputTensor[] outputs;
  /** Everything but the outputs' data: the message up to the raw contents, then each raw entry's tag and length. */
  private final byte[] head;
  /** Where in {@link #head} the raw entries' tags and lengths begin. */
  private final int rawPrefixes;
  private final int size;
  private final boolean streamed;
  /** The whole answer, made on the first {@link #read}; null until then. */
  private byte[] copy;
  private int position;

  private EncodedResponse(String model, String version, String id, OutputTensor[] outputs, boolean streamed) {
    this.outputs = outputs;
    this.streamed = streamed;
    int body = stringFieldSize(model) + stringFieldSize(version) + stringFieldSize(id);
    int data = 0;
    int prefixes = 0;
    for (OutputTensor output : outputs) {
      int tensor = tensorSize(output);
      body += 1 + varintSize(tensor) + tensor;
      int length = output.data().size();
      prefixes += 1 + varintSize(length);
      data += length;
    }
    body += prefixes + data;
    int prefix = streamed ? 1 + varintSize(body) : 0;
    this.size = prefix + body;
    this.head = new byte[size - data];
    this.rawPrefixes = head.length - prefixes;
    int at = 0;
    if (streamed) {
      head[at++] = INFER_RESPONSE;
      at = putVarint(head, at, body);
    }
    at = putStringField(head, at, MODEL_NAME, model);
    at = putStringField(head, at, MODEL_VERSION, version);
    at = putStringField(head, at, ID, id);
    for (OutputTensor output : outputs) {
      head[at++] = OUTPUTS;
      at = putVarint(head, at, tensorSize(output));
      at = putStringField(head, at, TENSOR_NAME, output.name());
      at = putStringField(head, at, TENSOR_DATATYPE, output.dataType().wireName());
      long[] shape = output.shape();
      if (shape.length > 0) {
        head[at++] = TENSOR_SHAPE;
        at = putVarint(head, at, packedSize(shape));
        for (long dim : shape) {
          at = putVarint64(head, at, dim);
        }
      }
    }
    for (OutputTensor output : outputs) {
      head[at++] = RAW_OUTPUT_CONTENTS;
      at = putVarint(head, at, output.data().size());
    }
    assert at == head.length;
  }

  /** The unary answer: a {@code ModelInferResponse}. */
  public static EncodedResponse of(String model, String version, String id, OutputTensor[] outputs) {
    return new EncodedResponse(model, version, id, outputs, false);
  }

  /** The streamed answer: a {@code ModelStreamInferResponse} with this answer as {@code infer_response}. */
  public static EncodedResponse streamed(String model, String version, String id, OutputTensor[] outputs) {
    return new EncodedResponse(model, version, id, outputs, true);
  }

  /** Its length in bytes on the wire (before gRPC's 5-byte message prefix). */
  public int size() {
    return size;
  }

  /** The answer as a protobuf message (for the payload log; parses a copy, leaves the stream alone). */
  ModelInferResponse toMessage() {
    try {
      byte[] bytes = toByteArray();
      return streamed
          ? ModelStreamInferResponse.parseFrom(bytes).getInferResponse()
          : ModelInferResponse.parseFrom(bytes);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException("an encoded answer did not parse back", e);
    }
  }

  /** The whole answer, in a new array; does not move the stream. */
  byte[] toByteArray() {
    ArraySink sink = new ArraySink(size);
    write(sink);
    return sink.bytes;
  }

  private void write(OutputStream out) {
    try {
      out.write(head, 0, rawPrefixes);
      int at = rawPrefixes;
      StreamOutput data = new StreamOutput(out);
      for (OutputTensor output : outputs) {
        int prefix = 1 + varintSize(output.data().size());
        out.write(head, at, prefix);
        at += prefix;
        // ByteString.writeTo(OutputStream) would copy the data into a new array first (it guards
        // its array against the stream); through a ByteOutput it is written from where it is.
        UnsafeByteOperations.unsafeWriteTo(output.data(), data);
      }
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /** Protobuf's view of an output stream: writes each byte range as it is handed over. */
  private static final class StreamOutput extends ByteOutput {
    private final OutputStream out;

    StreamOutput(OutputStream out) {
      this.out = out;
    }

    @Override
    public void write(byte value) throws IOException {
      out.write(value);
    }

    @Override
    public void write(byte[] value, int offset, int length) throws IOException {
      out.write(value, offset, length);
    }

    @Override
    public void writeLazy(byte[] value, int offset, int length) throws IOException {
      out.write(value, offset, length);
    }

    @Override
    public void write(java.nio.ByteBuffer value) throws IOException {
      if (value.hasArray()) {
        out.write(value.array(), value.arrayOffset() + value.position(), value.remaining());
      } else {
        byte[] copy = new byte[value.remaining()];
        value.duplicate().get(copy);
        out.write(copy);
      }
    }

    @Override
    public void writeLazy(java.nio.ByteBuffer value) throws IOException {
      write(value);
    }
  }

  @Override
  public int drainTo(OutputStream target) throws IOException {
    if (copy != null || position != 0) {
      // Partly read already: the rest, from the copy.
      int rest = size - position;
      target.write(copy, position, rest);
      position = size;
      return rest;
    }
    try {
      write(target);
    } catch (java.io.UncheckedIOException e) {
      throw e.getCause();
    }
    position = size;
    return size;
  }

  @Override
  public int available() {
    return size - position;
  }

  @Override
  public int read() {
    if (position >= size) {
      return -1;
    }
    return copy()[position++] & 0xff;
  }

  @Override
  public int read(byte[] into, int offset, int length) {
    java.util.Objects.checkFromIndexSize(offset, length, into.length);
    if (position >= size) {
      return length == 0 ? 0 : -1;
    }
    int n = Math.min(length, size - position);
    System.arraycopy(copy(), position, into, offset, n);
    position += n;
    return n;
  }

  private byte[] copy() {
    if (copy == null) {
      copy = toByteArray();
    }
    return copy;
  }

  private static int tensorSize(OutputTensor output) {
    int size = stringFieldSize(output.name()) + stringFieldSize(output.dataType().wireName());
    long[] shape = output.shape();
    if (shape.length > 0) {
      int packed = packedSize(shape);
      size += 1 + varintSize(packed) + packed;
    }
    return size;
  }

  private static int packedSize(long[] shape) {
    int size = 0;
    for (long dim : shape) {
      size += varint64Size(dim);
    }
    return size;
  }

  /** A proto3 string field: left out when empty. */
  private static int stringFieldSize(String value) {
    if (value.isEmpty()) {
      return 0;
    }
    int length = utf8Length(value);
    return 1 + varintSize(length) + length;
  }

  private static int putStringField(byte[] into, int at, int tag, String value) {
    if (value.isEmpty()) {
      return at;
    }
    into[at++] = (byte) tag;
    at = putVarint(into, at, utf8Length(value));
    return putUtf8(into, at, value);
  }

  static int varintSize(int value) {
    return varint64Size(value & 0xffffffffL);
  }

  static int varint64Size(long value) {
    // 1 byte per 7 bits; a negative value takes all 10.
    return value == 0 ? 1 : (63 - Long.numberOfLeadingZeros(value)) / 7 + 1;
  }

  private static int putVarint(byte[] into, int at, int value) {
    return putVarint64(into, at, value & 0xffffffffL);
  }

  private static int putVarint64(byte[] into, int at, long value) {
    while ((value & ~0x7FL) != 0) {
      into[at++] = (byte) ((value & 0x7F) | 0x80);
      value >>>= 7;
    }
    into[at++] = (byte) value;
    return at;
  }

  /**
   * Its length in UTF-8, counting an unpaired surrogate as the one {@code '?'} it is written as
   * (what protobuf writes for it, through {@link String#getBytes}).
   */
  static int utf8Length(String value) {
    int length = 0;
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (c < 0x80) {
        length += 1;
      } else if (c < 0x800) {
        length += 2;
      } else if (Character.isHighSurrogate(c) && i + 1 < value.length() && Character.isLowSurrogate(value.charAt(i + 1))) {
        length += 4;
        i++;
      } else if (Character.isSurrogate(c)) {
        length += 1;
      } else {
        length += 3;
      }
    }
    return length;
  }

  private static int putUtf8(byte[] into, int at, String value) {
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (c < 0x80) {
        into[at++] = (byte) c;
      } else if (c < 0x800) {
        into[at++] = (byte) (0xC0 | c >>> 6);
        into[at++] = (byte) (0x80 | c & 0x3F);
      } else if (Character.isHighSurrogate(c) && i + 1 < value.length() && Character.isLowSurrogate(value.charAt(i + 1))) {
        int code = Character.toCodePoint(c, value.charAt(++i));
        into[at++] = (byte) (0xF0 | code >>> 18);
        into[at++] = (byte) (0x80 | code >>> 12 & 0x3F);
        into[at++] = (byte) (0x80 | code >>> 6 & 0x3F);
        into[at++] = (byte) (0x80 | code & 0x3F);
      } else if (Character.isSurrogate(c)) {
        into[at++] = '?';
      } else {
        into[at++] = (byte) (0xE0 | c >>> 12);
        into[at++] = (byte) (0x80 | c >>> 6 & 0x3F);
        into[at++] = (byte) (0x80 | c & 0x3F);
      }
    }
    return at;
  }

  /** Sends an answer as it is. The server only writes answers; it never parses one. */
  static final io.grpc.MethodDescriptor.Marshaller<EncodedResponse> MARSHALLER =
      new io.grpc.MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(EncodedResponse answer) {
          return answer;
        }

        @Override
        public EncodedResponse parse(InputStream stream) {
          throw new UnsupportedOperationException("the server writes inference answers; it never reads one");
        }
      };

  /**
   * The ModelStreamInfer answers' marshaller: an {@link EncodedResponse} as it is, a {@link
   * ModelStreamInferResponse} (an in-band error) through {@code messages}.
   */
  static io.grpc.MethodDescriptor.Marshaller<Object> streamMarshaller(
      io.grpc.MethodDescriptor.Marshaller<ModelStreamInferResponse> messages) {
    return new io.grpc.MethodDescriptor.Marshaller<>() {
      @Override
      public InputStream stream(Object answer) {
        return answer instanceof EncodedResponse encoded ? encoded : messages.stream((ModelStreamInferResponse) answer);
      }

      @Override
      public Object parse(InputStream stream) {
        return messages.parse(stream);
      }
    };
  }

  /** An output stream into one array of known size. */
  private static final class ArraySink extends OutputStream {
    final byte[] bytes;
    private int at;

    ArraySink(int size) {
      bytes = new byte[size];
    }

    @Override
    public void write(int b) {
      bytes[at++] = (byte) b;
    }

    @Override
    public void write(byte[] from, int offset, int length) {
      System.arraycopy(from, offset, bytes, at, length);
      at += length;
    }
  }
}

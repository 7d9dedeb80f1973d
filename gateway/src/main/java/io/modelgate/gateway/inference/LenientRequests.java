package io.modelgate.gateway.inference;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.UnsafeByteOperations;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import com.google.protobuf.UnknownFieldSet;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.IOException;
import java.io.InputStream;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes a ModelInfer or ModelStreamInfer message that is not valid protobuf an ordinary request
 * error. grpc-java's own marshaller throws while parsing, before the service sees the call, and
 * the client gets {@code UNKNOWN "Application error processing RPC"} (and, in a stream, loses the
 * whole stream) while the server logs a stack trace per message. Here the request marshaller
 * catches the failure and hands the service a request marked with the reason; the service answers
 * that request {@code INVALID_ARGUMENT}, in-band for a stream, and logs at most once a minute.
 *
 * <p>The mark is an unknown field of a number no client uses; checking it costs one lookup in an
 * empty map for a valid request.
 */
final class LenientRequests {
  private static final Logger log = LoggerFactory.getLogger(LenientRequests.class);
  /** The unknown field that carries the parse failure (the highest field numbers are unused). */
  static final int INVALID_FIELD = 536_870_000;
  private static final AtomicLong invalid = new AtomicLong();
  private static final io.modelgate.runtime.logging.LogThrottle invalidLog =
      new io.modelgate.runtime.logging.LogThrottle(java.time.Duration.ofMinutes(1));

  private LenientRequests() {}

  /** The request marshaller of {@code method}, made lenient. */
  static final class Marshaller implements MethodDescriptor.Marshaller<ModelInferRequest> {
    private final MethodDescriptor.Marshaller<ModelInferRequest> delegate;

    Marshaller(MethodDescriptor.Marshaller<ModelInferRequest> delegate) {
      this.delegate = delegate;
    }

    @Override
    public InputStream stream(ModelInferRequest value) {
      return delegate.stream(value);
    }

    @Override
    public ModelInferRequest parse(InputStream stream) {
      try {
        return stream instanceof HasByteBuffer && stream instanceof KnownLength ? aliased(stream) : delegate.parse(stream);
      } catch (IOException e) {
        return marked(String.valueOf(e.getMessage()));
      } catch (RuntimeException e) {
        Throwable cause = e.getCause() != null ? e.getCause() : e;
        return marked(String.valueOf(cause.getMessage()));
      }
    }
  }

  /**
   * A message read from the transport's buffers (Netty's): copied once into an array of its own
   * and parsed with its {@code bytes} fields — {@code raw_input_contents} above all — as views of
   * that array instead of copies out of it. grpc-java's marshaller copies twice: into a reused
   * buffer, then each field out of it. The array is the request's own and never written again, so
   * the views stay valid as long as anything holds them (the batch copies them into the model's
   * input; the payload log, drift and a shadow may hold them longer).
   */
  private static ModelInferRequest aliased(InputStream stream) throws IOException {
    byte[] message = new byte[stream.available()];
    int read = 0;
    while (read < message.length) {
      int n = stream.read(message, read, message.length - read);
      if (n < 0) {
        throw new IOException("the message ended after " + read + " of its " + message.length + " bytes");
      }
      read += n;
    }
    CodedInputStream in = UnsafeByteOperations.unsafeWrap(message).newCodedInput();
    in.enableAliasing(true);
    ModelInferRequest request = ModelInferRequest.parser().parseFrom(in);
    in.checkLastTagWas(0);
    return request;
  }

  static ModelInferRequest marked(String reason) {
    return ModelInferRequest.newBuilder()
        .setUnknownFields(
            UnknownFieldSet.newBuilder()
                .addField(
                    INVALID_FIELD,
                    UnknownFieldSet.Field.newBuilder()
                        .addLengthDelimited(ByteString.copyFromUtf8(reason))
                        .build())
                .build())
        .build();
  }

  /**
   * Why {@code request} could not be parsed, or null for a request that parsed. Counts and, at
   * most once a minute, logs the failures.
   */
  static String invalidReason(ModelInferRequest request) {
    UnknownFieldSet unknown = request.getUnknownFields();
    if (!unknown.hasField(INVALID_FIELD)) {
      return null;
    }
    String reason = unknown.getField(INVALID_FIELD).getLengthDelimitedList().get(0).toStringUtf8();
    long count = invalid.incrementAndGet();
    if (invalidLog.pass() >= 0) {
      log.warn("a request that is not valid protobuf was refused INVALID_ARGUMENT ({} so far): {}", count, reason);
    }
    return reason;
  }

  /** {@code definition} with lenient request parsing for every method that takes ModelInferRequest. */
  @SuppressWarnings("unchecked")
  static ServerServiceDefinition of(ServerServiceDefinition definition) {
    return ServiceDefinitions.map(definition, method ->
        method.getMethodDescriptor().getRequestMarshaller() instanceof MethodDescriptor.PrototypeMarshaller<?> prototype
                && prototype.getMessagePrototype() instanceof ModelInferRequest
            ? lenient((ServerMethodDefinition<ModelInferRequest, Object>) method)
            : method);
  }

  private static <R> ServerMethodDefinition<ModelInferRequest, R> lenient(
      ServerMethodDefinition<ModelInferRequest, R> method) {
    MethodDescriptor<ModelInferRequest, R> descriptor = method.getMethodDescriptor();
    return ServerMethodDefinition.create(
        descriptor.toBuilder(new Marshaller(descriptor.getRequestMarshaller()), descriptor.getResponseMarshaller())
            .build(),
        method.getServerCallHandler());
  }
}

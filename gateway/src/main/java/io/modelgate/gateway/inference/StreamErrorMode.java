package io.modelgate.gateway.inference;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;

/**
 * Reads the {@code triton_grpc_error: true} header that Triton clients send to ask that a stream
 * end with the failing request's gRPC status instead of reporting the error in-band and going on.
 */
final class StreamErrorMode implements ServerInterceptor {
  static final Metadata.Key<String> HEADER =
      Metadata.Key.of("triton_grpc_error", Metadata.ASCII_STRING_MARSHALLER);

  private static final Context.Key<Boolean> ABORT_ON_ERROR = Context.key("triton_grpc_error");

  /** Whether the current call asked for errors to end its stream. */
  static boolean abortOnError() {
    return Boolean.TRUE.equals(ABORT_ON_ERROR.get());
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(
      ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    if ("true".equalsIgnoreCase(headers.get(HEADER))) {
      return Contexts.interceptCall(
          Context.current().withValue(ABORT_ON_ERROR, Boolean.TRUE), call, headers, next);
    }
    return next.startCall(call, headers);
  }
}

package io.modelgate.gateway.status;

import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.logging.LogThrottle;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Maps failures to gRPC status: the one place where internal errors become what clients see. */
public final class ErrorStatus {
  private static final Logger log = LoggerFactory.getLogger(ErrorStatus.class);
  /**
   * Internal errors are logged at most every 10 s: a model that fails every request would otherwise
   * write a stack trace per call. {@code modelgate_requests_total} counts each by code.
   */
  private static final LogThrottle internalLog = new LogThrottle(java.time.Duration.ofSeconds(10));

  private ErrorStatus() {}

  public static Status.Code code(ErrorCode code) {
    switch (code) {
      case INVALID_ARGUMENT:
        return Status.Code.INVALID_ARGUMENT;
      case NOT_FOUND:
        return Status.Code.NOT_FOUND;
      case UNAVAILABLE:
        return Status.Code.UNAVAILABLE;
      case RESOURCE_EXHAUSTED:
        return Status.Code.RESOURCE_EXHAUSTED;
      case DEADLINE_EXCEEDED:
        return Status.Code.DEADLINE_EXCEEDED;
      case CANCELLED:
        return Status.Code.CANCELLED;
      case FAILED_PRECONDITION:
        return Status.Code.FAILED_PRECONDITION;
      case ABORTED:
        return Status.Code.ABORTED;
      case UNAUTHENTICATED:
        return Status.Code.UNAUTHENTICATED;
      case PERMISSION_DENIED:
        return Status.Code.PERMISSION_DENIED;
      case INTERNAL:
      default:
        return Status.Code.INTERNAL;
    }
  }

  /**
   * The longest status message sent, in characters. It travels in the {@code grpc-message}
   * trailer, whose size a client limits (8 KiB by default); a longer one would reach the client as
   * a transport error instead of its status.
   */
  public static final int MAX_MESSAGE = 2048;

  /** {@code message}, cut to {@link #MAX_MESSAGE} characters with a marker when longer. */
  public static String capped(String message) {
    if (message == null || message.length() <= MAX_MESSAGE) {
      return message;
    }
    return message.substring(0, MAX_MESSAGE) + "... (message cut at " + MAX_MESSAGE + " of "
        + message.length() + " characters)";
  }

  /**
   * Answers a unary call with what {@code action} returns, or with the status of what it throws:
   * the one way the services' request/response RPCs turn results and failures into answers.
   */
  public static <T> void answer(
      io.grpc.stub.StreamObserver<T> observer, java.util.function.Supplier<T> action) {
    T value;
    try {
      value = action.get();
    } catch (RuntimeException e) {
      observer.onError(of(e).asRuntimeException());
      return;
    }
    observer.onNext(value);
    observer.onCompleted();
  }

  /** Where a status's details travel: the trailer every gRPC client library reads them from. */
  private static final Metadata.Key<com.google.rpc.Status> STATUS_DETAILS =
      Metadata.Key.of("grpc-status-details-bin",
          io.grpc.protobuf.ProtoUtils.metadataMarshaller(com.google.rpc.Status.getDefaultInstance()));

  /**
   * gRPC's own retry hint (gRFC A6): a client whose retry policy lists the status waits this many
   * milliseconds before its next attempt.
   */
  private static final Metadata.Key<String> RETRY_PUSHBACK_MS =
      Metadata.Key.of("grpc-retry-pushback-ms", Metadata.ASCII_STRING_MARSHALLER);

  /**
   * {@code status} (which {@link #of} made of {@code failure}) as the exception a call ends with:
   * a refusal that knows when a retry can succeed (over a quota or a fair share, or a full queue)
   * says so twice: a {@code google.rpc.RetryInfo} in its status details, and the trailer {@code
   * grpc-retry-pushback-ms} (whole milliseconds, rounded up) that gRPC clients with a retry policy
   * for the status obey. The exception has no stack trace: it only carries the answer to the
   * transport, and a refusal under overload should not pay for one (about 5 µs on a gRPC event
   * loop's stack).
   */
  public static StatusRuntimeException exception(Throwable failure, Status status) {
    Metadata trailers = new Metadata();
    java.time.Duration retry = retryAfter(failure);
    if (retry != null) {
      trailers.put(STATUS_DETAILS, com.google.rpc.Status.newBuilder()
          .setCode(status.getCode().value())
          .setMessage(status.getDescription() == null ? "" : status.getDescription())
          .addDetails(com.google.protobuf.Any.pack(com.google.rpc.RetryInfo.newBuilder()
              .setRetryDelay(com.google.protobuf.Duration.newBuilder()
                  .setSeconds(retry.getSeconds()).setNanos(retry.getNano()))
              .build()))
          .build());
      trailers.put(RETRY_PUSHBACK_MS, Long.toString(millis(retry)));
    }
    return new Answer(status, trailers);
  }

  /**
   * When a retry of what {@code failure} refused can succeed, or null when it does not say (it is
   * not a refusal over a quota, a fair share or a full queue).
   */
  public static java.time.Duration retryAfter(Throwable failure) {
    return failure instanceof InferenceException e ? e.retryAfter() : null;
  }

  /** {@code retry} in whole milliseconds, rounded up: never sooner than asked. */
  public static long millis(java.time.Duration retry) {
    return retry.toMillis() + (retry.toNanosPart() % 1_000_000 == 0 ? 0 : 1);
  }

  /** A call's answer as an exception, without the stack trace nobody reads. */
  private static final class Answer extends StatusRuntimeException {
    private static final long serialVersionUID = 1L;

    Answer(Status status, Metadata trailers) {
      super(status, trailers);
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
      return this;
    }
  }

  /** The status a client gets for {@code failure}. Internal and unexpected failures are logged, at most every 10 s. */
  public static Status of(Throwable failure) {
    if (failure instanceof InferenceException) {
      InferenceException e = (InferenceException) failure;
      Status status = Status.fromCode(code(e.code())).withDescription(capped(e.getMessage()));
      if (e.code() == ErrorCode.INTERNAL) {
        long heldBack = internalLog.pass();
        if (heldBack >= 0) {
          log.warn("internal error answered to a client{}: {}", LogThrottle.since(heldBack), e.getMessage(), e.getCause());
        }
        return status.withCause(e.getCause());
      }
      return status;
    }
    if (failure instanceof StatusRuntimeException) {
      Status status = ((StatusRuntimeException) failure).getStatus();
      return status.withDescription(capped(status.getDescription()));
    }
    if (failure instanceof StatusException) {
      Status status = ((StatusException) failure).getStatus();
      return status.withDescription(capped(status.getDescription()));
    }
    long heldBack = internalLog.pass();
    if (heldBack >= 0) {
      log.error("unexpected failure answered INTERNAL{}", LogThrottle.since(heldBack), failure);
    }
    return Status.INTERNAL.withDescription(capped("internal error: " + failure)).withCause(failure);
  }
}

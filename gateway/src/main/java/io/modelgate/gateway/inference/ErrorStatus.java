package io.modelgate.gateway.inference;

import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Maps failures to gRPC status: the one place where internal errors become what clients see. */
public final class ErrorStatus {
  private static final Logger log = LoggerFactory.getLogger(ErrorStatus.class);

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
      case INTERNAL:
      default:
        return Status.Code.INTERNAL;
    }
  }

  /** The status a client gets for {@code failure}. Unexpected failures are logged. */
  public static Status of(Throwable failure) {
    if (failure instanceof InferenceException) {
      InferenceException e = (InferenceException) failure;
      Status status = Status.fromCode(code(e.code())).withDescription(e.getMessage());
      if (e.code() == ErrorCode.INTERNAL) {
        log.warn("internal error answered to a client: {}", e.getMessage(), e.getCause());
        return status.withCause(e.getCause());
      }
      return status;
    }
    if (failure instanceof StatusRuntimeException) {
      return ((StatusRuntimeException) failure).getStatus();
    }
    if (failure instanceof StatusException) {
      return ((StatusException) failure).getStatus();
    }
    log.error("unexpected failure answered INTERNAL", failure);
    return Status.INTERNAL.withDescription("internal error: " + failure).withCause(failure);
  }
}

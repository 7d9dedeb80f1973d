package io.modelgate.runtime.error;

import java.util.Objects;

/**
 * A failure of one request, carrying the {@link ErrorCode} and a message that names what was
 * expected and what came.
 *
 * <p>Errors caused by the client (every code but {@link ErrorCode#INTERNAL}) carry no stack trace:
 * they are raised on the request path, where filling a stack trace would cost more than the
 * validation that found the error, and the trace would say nothing the message does not.
 */
public final class InferenceException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final ErrorCode code;
  /** When a retry can succeed (a quota refills, a queue drains), or null. */
  private final transient java.time.Duration retryAfter;
  /** Why a RESOURCE_EXHAUSTED refusal was made, or null. */
  private final Refusal refusal;

  private InferenceException(ErrorCode code, String message, Throwable cause, boolean withTrace) {
    this(code, message, cause, withTrace, null, null);
  }

  private InferenceException(ErrorCode code, String message, Throwable cause, boolean withTrace, java.time.Duration retryAfter,
      Refusal refusal) {
    super(message, cause, false, withTrace);
    this.code = Objects.requireNonNull(code, "code");
    this.retryAfter = retryAfter;
    this.refusal = refusal;
  }

  /** A RESOURCE_EXHAUSTED refusal for {@code refusal}, with when a retry can succeed. */
  private static InferenceException refused(Refusal refusal, String message, java.time.Duration retryAfter) {
    return new InferenceException(ErrorCode.RESOURCE_EXHAUSTED, message, null, false, Objects.requireNonNull(retryAfter),
        refusal);
  }

  public ErrorCode code() {
    return code;
  }

  /**
   * When a retry can succeed, for RESOURCE_EXHAUSTED refusals (over a quota, a fair share, or a
   * full queue); null otherwise.
   */
  public java.time.Duration retryAfter() {
    return retryAfter;
  }

  /** Why a RESOURCE_EXHAUSTED refusal was made; null for any other failure. */
  public Refusal refusal() {
    return refusal;
  }

  /** RESOURCE_EXHAUSTED over a quota, with when a retry can succeed. */
  public static InferenceException overQuota(String message, java.time.Duration retryAfter) {
    return refused(Refusal.QUOTA, message, retryAfter);
  }

  /** RESOURCE_EXHAUSTED at a tenant's fair share of a version's queue, with when a retry can succeed. */
  public static InferenceException overFairShare(String message, java.time.Duration retryAfter) {
    return refused(Refusal.FAIR_SHARE, message, retryAfter);
  }

  /** RESOURCE_EXHAUSTED for want of room in the server's request memory, with when a retry can succeed. */
  public static InferenceException overRequestMemory(String message, java.time.Duration retryAfter) {
    return refused(Refusal.REQUEST_MEMORY, message, retryAfter);
  }

  /** The most characters of a client's value echoed in a message. */
  public static final int MAX_ECHO = 128;

  /**
   * A value the client sent, quoted for a message: at most {@link #MAX_ECHO} characters, the rest
   * replaced by a marker that says how long it was. Messages travel in a response header, so an
   * echoed value must never make them large.
   */
  public static String quote(String value) {
    if (value.length() <= MAX_ECHO) {
      return "'" + value + "'";
    }
    return "'" + value.substring(0, MAX_ECHO) + "'... (" + value.length() + " characters)";
  }

  public static InferenceException of(ErrorCode code, String message) {
    return new InferenceException(code, message, null, code == ErrorCode.INTERNAL);
  }

  public static InferenceException invalidArgument(String message) {
    return of(ErrorCode.INVALID_ARGUMENT, message);
  }

  public static InferenceException notFound(String message) {
    return of(ErrorCode.NOT_FOUND, message);
  }

  public static InferenceException unavailable(String message) {
    return of(ErrorCode.UNAVAILABLE, message);
  }

  /** RESOURCE_EXHAUSTED because a queue is full, with when a retry can find room. */
  public static InferenceException resourceExhausted(String message, java.time.Duration retryAfter) {
    return refused(Refusal.QUEUE_FULL, message, retryAfter);
  }

  public static InferenceException deadlineExceeded(String message) {
    return of(ErrorCode.DEADLINE_EXCEEDED, message);
  }

  public static InferenceException cancelled(String message) {
    return of(ErrorCode.CANCELLED, message);
  }

  public static InferenceException permissionDenied(String message) {
    return of(ErrorCode.PERMISSION_DENIED, message);
  }

  public static InferenceException unauthenticated(String message) {
    return of(ErrorCode.UNAUTHENTICATED, message);
  }

  public static InferenceException failedPrecondition(String message) {
    return of(ErrorCode.FAILED_PRECONDITION, message);
  }

  public static InferenceException aborted(String message) {
    return of(ErrorCode.ABORTED, message);
  }

  public static InferenceException internal(String message, Throwable cause) {
    return new InferenceException(ErrorCode.INTERNAL, message, cause, true);
  }
}

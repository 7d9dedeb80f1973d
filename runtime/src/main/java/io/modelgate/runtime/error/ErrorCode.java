package io.modelgate.runtime.error;

/**
 * What went wrong with a request, in the terms a client can act on. The gateway maps each code to
 * exactly one gRPC status code, in one place.
 */
public enum ErrorCode {
  /** The request is malformed or does not match the model's signature. */
  INVALID_ARGUMENT,
  /** The model or the version does not exist. */
  NOT_FOUND,
  /** The version exists but cannot serve now: loading, failed, unloading, or the server stops. */
  UNAVAILABLE,
  /** The version's queue is full; the request was refused without being queued. */
  RESOURCE_EXHAUSTED,
  /** The request's deadline passed before it was executed. */
  DEADLINE_EXCEEDED,
  /** The caller cancelled the request before it was executed. */
  CANCELLED,
  /** The operation is valid but the state does not allow it now (admin operations). */
  FAILED_PRECONDITION,
  /** A concurrent change won: the caller's view is stale (admin operations). */
  ABORTED,
  /** The caller did not prove who it is (inference with caller identity on). */
  UNAUTHENTICATED,
  /** The caller is known but not allowed this model. */
  PERMISSION_DENIED,
  /** ONNX Runtime or the server failed; the message carries the cause. */
  INTERNAL
}

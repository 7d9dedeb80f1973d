package io.modelgate.runtime.execution;

import java.time.Duration;

/**
 * The seam between the request path and execution for one model version: requests go in without
 * blocking, and each comes back exactly once through its {@link InferenceCallback}.
 */
public interface VersionScheduler {
  /**
   * Queues {@code request} without blocking. On refusal it throws {@link
   * io.modelgate.runtime.error.InferenceException} ({@code RESOURCE_EXHAUSTED} when the queue is
   * full, {@code UNAVAILABLE} when the version is draining) and the callback is not called;
   * otherwise the callback is called exactly once, later, from another thread. Safe to call from
   * any number of threads.
   */
  void submit(InferenceRequest request);

  /**
   * Refuses at once, before the caller spends anything on the request (decoding, copying), when
   * {@link #submit} would refuse it now: throws as {@link #submit} does. A moment's answer —
   * {@link #submit} still decides — so it costs one or two volatile reads and never blocks.
   */
  default void refuseIfFull() {}

  /** Requests accepted and not yet handed to an executor; a moment's estimate. */
  long queuedCount();

  /**
   * The version's recent service time per request, in nanoseconds: how long its executors, all
   * working, take for one more request of what they have been running lately (a smoothed mean
   * over recent batches of each executor's time per request, combined as rates). 0 before any
   * batch has run. Any thread; a few volatile reads.
   */
  default long nanosPerRequest() {
    return 0;
  }

  /**
   * The recent service time per request of a lane with a backlog, in nanoseconds: as {@link
   * #nanosPerRequest}, counting only the executors that may run a backlog's batches (with executors
   * reserved for tenants without one, the others). Any thread; a few volatile reads.
   */
  default long backlogNanosPerRequest() {
    return nanosPerRequest();
  }

  /** The retry hint before anything is known of the version's pace: {@value #UNKNOWN_PACE_RETRY_MS} ms. */
  long UNKNOWN_PACE_RETRY_MS = 10;
  /** The shortest retry hint: {@value #MIN_RETRY_MS} ms. */
  long MIN_RETRY_MS = 1;
  /** The longest retry hint: {@value #MAX_RETRY_MS} ms. */
  long MAX_RETRY_MS = 10_000;

  /**
   * When a request refused now could find room: the time the version takes to serve {@code
   * requests} more at its recent pace ({@link #nanosPerRequest}), between {@value #MIN_RETRY_MS}
   * ms and {@value #MAX_RETRY_MS} ms; {@value #UNKNOWN_PACE_RETRY_MS} ms before any batch has
   * run. Sent to the client as a {@code google.rpc.RetryInfo}: a queue refused full asks for the
   * time to serve the queue.
   */
  default java.time.Duration retryAfter(long requests) {
    return retryAfter(requests, nanosPerRequest());
  }

  /**
   * As {@link #retryAfter}, at the pace of a lane with a backlog ({@link #backlogNanosPerRequest}):
   * a tenant refused at its fair share asks for the time to serve the shares ahead of its next
   * turn.
   */
  default java.time.Duration backlogRetryAfter(long requests) {
    return retryAfter(requests, backlogNanosPerRequest());
  }

  private static java.time.Duration retryAfter(long requests, long perRequest) {
    if (perRequest <= 0) {
      return java.time.Duration.ofMillis(UNKNOWN_PACE_RETRY_MS);
    }
    double nanos = (double) Math.max(1, requests) * perRequest;
    double clamped = Math.max(MIN_RETRY_MS * 1e6, Math.min(MAX_RETRY_MS * 1e6, nanos));
    return java.time.Duration.ofNanos((long) clamped);
  }

  /**
   * Stops accepting, completes what is queued, and releases the executors. Requests still queued
   * when {@code timeout} passes are answered {@code UNAVAILABLE} instead of executed. Blocks the
   * caller until every accepted request has its answer and no execution is running. Idempotent.
   */
  void drain(Duration timeout);
}

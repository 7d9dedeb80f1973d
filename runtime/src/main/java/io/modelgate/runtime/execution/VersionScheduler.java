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
   * Stops accepting, completes what is queued, and releases the executors. Requests still queued
   * when {@code timeout} passes are answered {@code UNAVAILABLE} instead of executed. Blocks the
   * caller until every accepted request has its answer and no execution is running. Idempotent.
   */
  void drain(Duration timeout);
}

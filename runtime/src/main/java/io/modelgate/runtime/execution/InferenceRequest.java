package io.modelgate.runtime.execution;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.tensor.DecodedRequest;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Objects;
import java.util.function.BooleanSupplier;

/**
 * One request on its way through a version's scheduler: the decoded tensors, when it arrived, its
 * deadline, how to tell that the caller gave up, where its answer goes, and the lane (tenant) it
 * waits in.
 *
 * <p>Every request is answered exactly once: {@link #succeed} and {@link #fail} race safely, and
 * only the first call reaches the {@link InferenceCallback}. Fields are immutable; the answered
 * flag is the only state, and it is atomic.
 */
public final class InferenceRequest {
  private static final VarHandle ANSWERED;

  static {
    try {
      ANSWERED =
          MethodHandles.lookup().findVarHandle(InferenceRequest.class, "answered", boolean.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private static final BooleanSupplier NEVER = () -> false;

  private final DecodedRequest decoded;
  private final long arrivalNanos;
  private final long deadlineNanos;
  private final boolean hasDeadline;
  private final BooleanSupplier cancelled;
  private final InferenceCallback callback;
  private final String lane;
  private final int laneWeight;
  private final boolean recorded;

  @SuppressWarnings("unused") // accessed through ANSWERED
  private volatile boolean answered;

  private InferenceRequest(
      DecodedRequest decoded,
      long arrivalNanos,
      long deadlineNanos,
      boolean hasDeadline,
      BooleanSupplier cancelled,
      InferenceCallback callback,
      String lane,
      int laneWeight,
      boolean recorded) {
    if (laneWeight < 1) {
      throw new IllegalArgumentException("lane weight must be at least 1, got " + laneWeight);
    }
    this.decoded = Objects.requireNonNull(decoded, "decoded");
    this.arrivalNanos = arrivalNanos;
    this.deadlineNanos = deadlineNanos;
    this.hasDeadline = hasDeadline;
    this.cancelled = cancelled == null ? NEVER : cancelled;
    this.callback = Objects.requireNonNull(callback, "callback");
    this.lane = lane;
    this.laneWeight = laneWeight;
    this.recorded = recorded;
  }

  /**
   * A request that arrived at {@code arrivalNanos} ({@link System#nanoTime()}) with no deadline.
   *
   * @param cancelled reports whether the caller gave up; read from scheduler threads, so it must
   *     be thread-safe and must not block; null when the caller cannot cancel
   */
  public static InferenceRequest of(
      DecodedRequest decoded,
      long arrivalNanos,
      BooleanSupplier cancelled,
      InferenceCallback callback) {
    return new InferenceRequest(decoded, arrivalNanos, 0, false, cancelled, callback, null, 1, true);
  }

  /**
   * A request the gateway makes of a version itself (a golden example), arrived now: executed as
   * any other, but its queue and compute times are not recorded with the callers' ({@link
   * StageRecorder#recordRequest}), nor an execution made of such requests alone.
   */
  public static InferenceRequest ofTheGateway(DecodedRequest decoded, InferenceCallback callback) {
    return new InferenceRequest(decoded, System.nanoTime(), 0, false, null, callback, null, 1, false);
  }

  /**
   * A request that waits in {@code lane} (the caller's tenant; null for the shared lane): when
   * requests of several lanes wait for a version, each batch is shared fairly among the lanes.
   *
   * @param deadlineNanos when it must be executed by ({@link System#nanoTime()}), or {@code
   *     Long.MAX_VALUE} for no deadline
   */
  public static InferenceRequest inLane(
      String lane,
      DecodedRequest decoded,
      long arrivalNanos,
      long deadlineNanos,
      BooleanSupplier cancelled,
      InferenceCallback callback) {
    return inLane(lane, 1, decoded, arrivalNanos, deadlineNanos, cancelled, callback);
  }

  /**
   * As {@link #inLane(String, DecodedRequest, long, long, BooleanSupplier, InferenceCallback)}, in
   * a lane of {@code weight}: lanes waiting together share each batch in proportion to their
   * weights (a lane of weight 2 places up to twice the rows of one of weight 1).
   *
   * @param weight the lane's weight, at least 1; every request of one lane should carry the same
   */
  public static InferenceRequest inLane(
      String lane,
      int weight,
      DecodedRequest decoded,
      long arrivalNanos,
      long deadlineNanos,
      BooleanSupplier cancelled,
      InferenceCallback callback) {
    boolean hasDeadline = deadlineNanos != Long.MAX_VALUE;
    return new InferenceRequest(
        decoded, arrivalNanos, hasDeadline ? deadlineNanos : 0, hasDeadline, cancelled, callback, lane, weight, true);
  }

  /** A request that must be executed before {@code deadlineNanos} ({@link System#nanoTime()}). */
  public static InferenceRequest withDeadline(
      DecodedRequest decoded,
      long arrivalNanos,
      long deadlineNanos,
      BooleanSupplier cancelled,
      InferenceCallback callback) {
    return new InferenceRequest(decoded, arrivalNanos, deadlineNanos, true, cancelled, callback, null, 1, true);
  }

  /** The lane the request waits in (its caller's tenant), or null for the shared lane. */
  public String lane() {
    return lane;
  }

  /** Whether its times are recorded with the callers' (false: the gateway's own, {@link #ofTheGateway}). */
  public boolean recorded() {
    return recorded;
  }

  /** The weight of its lane's share of a batch, at least 1 (1 for the shared lane). */
  public int laneWeight() {
    return laneWeight;
  }

  public DecodedRequest decoded() {
    return decoded;
  }

  /** When the request arrived, in {@link System#nanoTime()} terms. */
  public long arrivalNanos() {
    return arrivalNanos;
  }

  public boolean hasDeadline() {
    return hasDeadline;
  }

  /** The deadline in {@link System#nanoTime()} terms; meaningful only if {@link #hasDeadline()}. */
  public long deadlineNanos() {
    return deadlineNanos;
  }

  /** Whether the deadline, if any, has passed at {@code nowNanos}. */
  public boolean isExpired(long nowNanos) {
    return hasDeadline && nowNanos - deadlineNanos >= 0;
  }

  public boolean isCancelled() {
    return cancelled.getAsBoolean();
  }

  public boolean isAnswered() {
    return (boolean) ANSWERED.getVolatile(this);
  }

  /** Delivers the result unless the request was answered already; returns whether it did. */
  public boolean succeed(InferenceResult result) {
    if (ANSWERED.compareAndSet(this, false, true)) {
      callback.onSuccess(result);
      return true;
    }
    return false;
  }

  /** Delivers the error unless the request was answered already; returns whether it did. */
  public boolean fail(InferenceException error) {
    return fail(error, 0);
  }

  /**
   * As {@link #fail(InferenceException)}, charging the request {@code computeNanos} of the model's
   * time: runs it was in that failed ({@link InferenceCallback#onFailure(InferenceException, long)}).
   */
  public boolean fail(InferenceException error, long computeNanos) {
    if (ANSWERED.compareAndSet(this, false, true)) {
      callback.onFailure(error, computeNanos);
      return true;
    }
    return false;
  }
}

package io.modelgate.gateway.inference;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.status.ErrorStatus;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.ModelVersion;
import java.time.Clock;

/**
 * Writes the one answer of a unary call, from whichever thread produces it, and holds the answer's
 * bytes in the request memory until the transport has sent them: a client that does not read its
 * answers would otherwise make the server keep them (calls per connection times the answer's size,
 * on every connection) with nothing counting them. As the call's close and cancel handler ({@link
 * #run}) it lets them go.
 *
 * <p>Threads: the answer on the thread that produces it; {@link #run} on the call's transport
 * thread. The hold and its release meet in one atomic state, so a cancel at any moment releases
 * exactly what was held.
 */
final class UnaryAnswer extends RecordedAnswer implements Runnable {
  /** The RPC, as a span names it. */
  static final String METHOD = "ModelInfer";
  private static final int PENDING = 0;
  private static final int HELD = 1;
  private static final int DONE = 2;
  private static final java.lang.invoke.VarHandle DELIVERY;

  static {
    try {
      DELIVERY = java.lang.invoke.MethodHandles.lookup().findVarHandle(UnaryAnswer.class, "delivery", int.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private final ServerCallStreamObserver<EncodedResponse> call;
  private final ModelVersion version;
  private final String id;
  private final RequestMemory memory;
  /** PENDING, HELD (the answer's bytes in the memory) or DONE (closed or cancelled). */
  @SuppressWarnings("unused") // through DELIVERY
  private volatile int delivery;
  private long answerBytes;

  UnaryAnswer(
      ServerCallStreamObserver<EncodedResponse> call,
      ModelVersion version,
      String id,
      VersionStats stats,
      long arrival,
      Clock clock,
      RequestMemory memory) {
    super(stats, arrival, clock, false);
    this.call = call;
    this.version = version;
    this.id = id;
    this.memory = memory;
  }

  /** Holds the answer's bytes until {@link #run}; at once released if that came first. */
  private void holdUntilSent(long bytes) {
    answerBytes = bytes;
    memory.holdAnswer(bytes);
    if (!DELIVERY.compareAndSet(this, PENDING, HELD)) {
      memory.release(bytes);
    }
  }

  /** The call is closed (its answer sent) or cancelled: lets go of the answer's bytes. */
  @Override
  public void run() {
    if ((int) DELIVERY.getAndSet(this, DONE) == HELD) {
      memory.release(answerBytes);
    }
  }

  // Statistics are recorded before the answer is sent, so that a client that has its answer
  // finds it counted; end-to-end time runs to the response built, not to its bytes on the wire.
  @Override
  public void onSuccess(InferenceResult result) {
    boolean cancelled = call.isCancelled();
    EncodedResponse response =
        cancelled ? null : EncodedResponse.of(version.model(), version.numberText(), id, outputs(result));
    answered(cancelled ? Status.Code.CANCELLED : Status.Code.OK, result);
    if (!cancelled) {
      holdUntilSent(response.size());
      call.onNext(response);
      call.onCompleted();
    }
    afterAnswer(version, response, cancelled ? Status.CANCELLED : Status.OK, result);
  }

  @Override
  public void onFailure(InferenceException error) {
    Status status = ErrorStatus.of(error);
    answered(status.getCode(), null);
    if (!call.isCancelled()) {
      call.onError(ErrorStatus.exception(error, status));
    }
    afterAnswer(version, null, status, null);
  }
}

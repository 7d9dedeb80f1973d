package io.modelgate.gateway.inference;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.status.ErrorStatus;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.ModelVersion;
import java.time.Clock;

/** Writes the one answer of a unary call, from whichever thread produces it. */
final class UnaryAnswer extends RecordedAnswer {
  private final ServerCallStreamObserver<EncodedResponse> call;
  private final ModelVersion version;
  private final String id;

  UnaryAnswer(
      ServerCallStreamObserver<EncodedResponse> call,
      ModelVersion version,
      String id,
      VersionStats stats,
      long arrival,
      Clock clock) {
    super(stats, arrival, clock, false);
    this.call = call;
    this.version = version;
    this.id = id;
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

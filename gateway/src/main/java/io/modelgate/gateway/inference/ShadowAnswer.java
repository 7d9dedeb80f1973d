package io.modelgate.gateway.inference;

import io.grpc.Status;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.status.ErrorStatus;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceResult;
import java.time.Clock;

/** The answer of a shadow copy: recorded on the shadow version, then compared, never sent. */
final class ShadowAnswer extends RecordedAnswer {
  private final ShadowComparison comparison;

  ShadowAnswer(ShadowComparison comparison, VersionStats stats, long arrival, Clock clock) {
    super(stats, arrival, clock, true);
    this.comparison = comparison;
  }

  @Override
  public void onSuccess(InferenceResult result) {
    answered(Status.Code.OK, result);
    comparison.shadow(result);
  }

  @Override
  public void onFailure(InferenceException error) {
    answered(ErrorStatus.of(error).getCode(), null);
    comparison.shadowFailed();
  }
}

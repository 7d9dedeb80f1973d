package io.modelgate.gateway.inference;

import io.grpc.Status;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.status.ErrorStatus;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.ModelVersion;
import java.time.Clock;

/** Writes one answer into its stream, from whichever thread produces it. */
final class StreamAnswer extends RecordedAnswer {
  /** The RPC, as a span names it. */
  static final String METHOD = "ModelStreamInfer";

  private final InferenceService.Stream stream;
  private final String id;
  private final String modelName;
  final ModelVersion version;

  @Override
  String method() {
    return METHOD;
  }

  StreamAnswer(
      InferenceService.Stream stream,
      String id,
      String modelName,
      ModelVersion version,
      VersionStats stats,
      long arrival,
      Clock clock) {
    super(stats, arrival, clock, false);
    this.stream = stream;
    this.id = id;
    this.modelName = modelName;
    this.version = version;
  }

  @Override
  public void onSuccess(InferenceResult result) {
    answered(Status.Code.OK, result);
    EncodedResponse answer = stream.succeed(id, version, outputs(result));
    afterAnswer(version, answer, Status.OK, result);
  }

  @Override
  public void onFailure(InferenceException error) {
    Status status = ErrorStatus.of(error);
    answered(status.getCode(), null);
    stream.fail(id, modelName, version, error, status);
    afterAnswer(version, null, status, null);
  }
}

package io.modelgate.runtime.repository;

import io.modelgate.runtime.execution.BatchPolicy;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.execution.VersionScheduler;
import io.modelgate.runtime.onnx.ExecutionProvider;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.tensor.ModelSignature;

/**
 * What a READY version serves with: its signature, its scheduler and the settings it runs under.
 * Immutable; created once when the version loads.
 */
public final class LoadedVersion {
  private final ModelSignature signature;
  private final VersionScheduler scheduler;
  private final ModelSettings settings;
  private final BatchPolicy policy;
  private final StageRecorder recorder;
  private final OnnxModel onnx;
  private final String modelSha256;

  LoadedVersion(
      ModelSignature signature,
      VersionScheduler scheduler,
      ModelSettings settings,
      BatchPolicy policy,
      StageRecorder recorder,
      OnnxModel onnx,
      String modelSha256) {
    this.signature = signature;
    this.scheduler = scheduler;
    this.settings = settings;
    this.policy = policy;
    this.recorder = recorder;
    this.onnx = onnx;
    this.modelSha256 = modelSha256;
  }

  /**
   * The SHA-256 of the {@code model.onnx} it loaded, 64 lowercase hex digits (read just before
   * ONNX Runtime read it): which file a version serves, the same on every replica that serves it.
   */
  public String modelSha256() {
    return modelSha256;
  }

  /** The recorder its scheduler reports stage timings to (from the repository's factory). */
  public StageRecorder recorder() {
    return recorder;
  }

  /**
   * Its recorder as {@code type} (the statistics the server made for it through the repository's
   * factory).
   *
   * @throws IllegalStateException when it records to something else: the repository was loaded
   *     with another factory, and its statistics would be lost
   */
  public <R extends StageRecorder> R recorder(Class<R> type) {
    if (!type.isInstance(recorder)) {
      throw new IllegalStateException("this version records to " + recorder.getClass().getName() + ", not "
          + type.getName() + ": the repository was loaded without the server's statistics");
    }
    return type.cast(recorder);
  }

  /** How its batcher forms batches. */
  public BatchPolicy batchPolicy() {
    return policy;
  }

  public ModelSignature signature() {
    return signature;
  }

  public VersionScheduler scheduler() {
    return scheduler;
  }

  /** The effective settings, with {@code max_batch_size} resolved. */
  public ModelSettings settings() {
    return settings;
  }

  /** The execution provider its session really runs on. */
  public ExecutionProvider executionProvider() {
    return onnx.provider();
  }

  /** Why a version configured for CUDA runs on the CPU; empty otherwise. */
  public String fallbackReason() {
    return onnx.fallbackReason();
  }

  /**
   * Batches of {@code large_batch_rows} rows or more this load has run on its second session
   * ({@code second}), or on its first where the second measured no faster; 0 without a second
   * session.
   */
  public long largeBatches(boolean second) {
    return second ? onnx.largeBatchRuns() : onnx.largeBatchRunsOnFirst();
  }

  OnnxModel onnx() {
    return onnx;
  }
}

package io.modelgate.runtime.repository;

import io.modelgate.runtime.execution.VersionScheduler;
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
  private final OnnxModel onnx;

  LoadedVersion(
      ModelSignature signature, VersionScheduler scheduler, ModelSettings settings, OnnxModel onnx) {
    this.signature = signature;
    this.scheduler = scheduler;
    this.settings = settings;
    this.onnx = onnx;
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

  /** The execution provider its session runs on. */
  public String executionProvider() {
    return "cpu";
  }

  OnnxModel onnx() {
    return onnx;
  }
}

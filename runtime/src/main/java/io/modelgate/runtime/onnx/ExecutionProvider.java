package io.modelgate.runtime.onnx;

import java.util.Locale;
import java.util.Optional;

/** Where ONNX Runtime runs a version's model. */
public enum ExecutionProvider {
  CPU,
  /** ONNX Runtime's CUDA execution provider; needs the {@code onnxruntime_gpu} build (-Pgpu). */
  CUDA;

  /** The name used in {@code model.yaml} and in ModelConfig: {@code cpu}, {@code cuda}. */
  public String configName() {
    return name().toLowerCase(Locale.ROOT);
  }

  public static Optional<ExecutionProvider> fromConfigName(String name) {
    for (ExecutionProvider provider : values()) {
      if (provider.configName().equals(name)) {
        return Optional.of(provider);
      }
    }
    return Optional.empty();
  }
}

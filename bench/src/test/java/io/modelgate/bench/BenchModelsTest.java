package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.onnx.SessionSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BenchModelsTest {
  @TempDir Path dir;

  @Test
  void mlp_is256To1024To1024To16_andLoads() throws Exception {
    BenchModels.BenchModel mlp = BenchModels.mlp();
    Path file = Files.write(dir.resolve("mlp.onnx"), mlp.onnx());
    try (OnnxModel model = OnnxModel.open(file, SessionSettings.DEFAULTS)) {
      assertThat(model.inputs().get(0).shapeText()).isEqualTo("[-1,256]");
      assertThat(model.outputs().get(0).shapeText()).isEqualTo("[-1,16]");
    }
    // 256x1024 + 1024x1024 + 1024x16 weights and their biases, as FP32.
    assertThat(mlp.onnx().length).isGreaterThan((256 * 1024 + 1024 * 1024 + 1024 * 16) * 4);
    assertThat(mlp.request("mlp").getRawInputContents(0).size()).isEqualTo(256 * 4);
  }

  @Test
  void baseline_runsTheModelInProcess() throws Exception {
    double micros = ComputeBaseline.medianMicros(BenchModels.byName("cnn_mnist"), SessionSettings.DEFAULTS, 4, 5);
    assertThat(micros).isPositive();
  }
}

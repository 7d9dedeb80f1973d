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
  void mlp_isTheSameModelAsBefore_soThatRunsCompare() throws Exception {
    // The SHA-256 of the MLP's ONNX bytes when its weights were first drawn from their seed.
    byte[] digest = java.security.MessageDigest.getInstance("SHA-256").digest(BenchModels.mlp().onnx());
    assertThat(java.util.HexFormat.of().formatHex(digest))
        .isEqualTo("23d20f6a3dfee2d3bd3fd2a0cb588cb2f1929be2a128dd56c9affa8652025d06");
  }

  @Test
  void mlpLarge_is1024To4096To4096To1024_andLoads() throws Exception {
    BenchModels.BenchModel mlp = BenchModels.byName("mlp_large");
    Path file = Files.write(dir.resolve("mlp_large.onnx"), mlp.onnx());
    try (OnnxModel model = OnnxModel.open(file, SessionSettings.DEFAULTS)) {
      assertThat(model.inputs().get(0).shapeText()).isEqualTo("[-1,1024]");
      assertThat(model.outputs().get(0).shapeText()).isEqualTo("[-1,1024]");
    }
    assertThat(mlp.onnx().length).isGreaterThan((1024 * 4096 + 4096 * 4096 + 4096 * 1024) * 4);
    assertThat(mlp.request("mlp_large").getRawInputContents(0).size()).isEqualTo(1024 * 4);
  }

  @Test
  void baseline_runsTheModelInProcess() throws Exception {
    double micros = ComputeBaseline.medianMicros(BenchModels.byName("cnn_mnist"), SessionSettings.DEFAULTS, 4, 5);
    assertThat(micros).isPositive();
  }
}

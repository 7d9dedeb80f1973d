package io.modelgate.gateway.demo;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DemoRepositoryTest {
  @TempDir Path dir;

  @Test
  void materialize_writesTwoLoadableVersionsAndAConfig() throws Exception {
    DemoRepository.materialize(dir);
    assertThat(dir.resolve("cnn_mnist/1/model.onnx")).exists();
    assertThat(dir.resolve("cnn_mnist/2/model.onnx")).exists();
    assertThat(Files.readString(dir.resolve("cnn_mnist/model.yaml"))).contains("max_batch_size: 64");
    assertThat(Files.readAllBytes(dir.resolve("cnn_mnist/2/model.onnx")))
        .isNotEqualTo(Files.readAllBytes(dir.resolve("cnn_mnist/1/model.onnx")));

    ModelRepository repository =
        ModelRepository.load(dir, ModelSettings.defaults(SessionSettings.DEFAULTS));
    try {
      assertThat(repository.model("cnn_mnist").orElseThrow().versions())
          .extracting(ModelVersion::state)
          .containsExactly(VersionState.READY, VersionState.READY);
    } finally {
      repository.close(Duration.ofSeconds(5));
    }
  }

  @Test
  void digits_areThe62LabelledTestDigits() {
    assertThat(MnistDigits.all()).hasSize(62);
    assertThat(MnistDigits.all()).allSatisfy(d -> assertThat(d.pixels()).hasSize(784));
    assertThat(MnistDigits.all()).extracting(MnistDigits.Digit::label).containsOnly(0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    assertThat(MnistDigits.get(0).label()).isEqualTo(7);
  }
}

package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.runtime.onnx.SessionSettings;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class ComputeBaselineTest {
  @Test
  void meanPerRow_onOneCoreAndOnEvery_isAFiniteCostPerRow() throws Exception {
    BenchModels.BenchModel mlp = BenchModels.byName("mlp");
    SessionSettings settings = new SessionSettings(1, 1);
    Duration warmup = Duration.ofMillis(100);
    Duration measured = Duration.ofMillis(300);

    double one = ComputeBaseline.meanMicrosPerRow(mlp.onnx(), mlp.batchRequest(mlp.name(), 8), 8, settings, 1, warmup, measured);
    double both = ComputeBaseline.meanMicrosPerRow(mlp.onnx(), mlp.batchRequest(mlp.name(), 8), 8, settings, 2, warmup, measured);

    // A row cannot cost less than a nanosecond nor more than the whole measured window.
    assertThat(one).isBetween(0.001, 300_000.0 / 8);
    assertThat(both).isBetween(0.001, 300_000.0 / 8);
  }
}

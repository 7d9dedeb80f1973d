package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The inference warm-up: a throwaway gateway answers its loopback client, then leaves nothing behind. */
class InferenceWarmupTest {
  @TempDir Path parent;

  @Test
  void theThrowawayGatewayAnswersOrRefusesEveryCall_andItsFolderIsGone() throws Exception {
    InferenceWarmup.Summary summary = InferenceWarmup.run(Duration.ofMillis(300), 1, 8, parent);
    // Both models answer; whether the small queue refused some depends on timing, so it is not asserted.
    assertThat(summary.answered()).isPositive();
    assertThat(summary.failed()).isZero();
    try (Stream<Path> left = Files.list(parent)) {
      assertThat(left).isEmpty();
    }
  }

  @Test
  void refusesDurationsAndWindowsOutOfRange() {
    assertThatThrownBy(() -> InferenceWarmup.run(Duration.ofMinutes(2), 1, 8, parent))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("warm-up duration");
    assertThatThrownBy(() -> InferenceWarmup.run(Duration.ofSeconds(1), 1, 0, parent))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("in flight");
  }
}

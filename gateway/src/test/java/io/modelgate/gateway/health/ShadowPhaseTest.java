package io.modelgate.gateway.health;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.GetRolloutRequest;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.StartRolloutRequest;
import io.modelgate.proto.admin.v1.Thresholds;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A rollout with a shadow phase: the candidate first gets copies of the baseline's traffic; it goes
 * live only when enough copies agree with the primary answer. On the demo (without its golden set,
 * so that only agreement decides): version 2 (softer probabilities, same digits) agrees on every
 * copy and goes live; the faulty version 3 (classes 3 and 5 swapped) disagrees on the 3s and 5s
 * and is rolled back before it ever answers a caller.
 */
class ShadowPhaseTest {
  @TempDir Path root;

  private Rollout run(long candidate) throws Exception {
    DemoRepository.materialize(root);
    DemoRepository.addFaultyVersion(root, 3);
    // Only the shadow comparison decides here.
    Files.walk(root.resolve("cnn_mnist/golden")).sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    TestClock clock = new TestClock();
    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock)) {
      gateway.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("cnn_mnist").putWeights(1, 1)).setExpectedRevision(0).build());
      Rollout started = gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(RolloutSpec.newBuilder()
          .setModel("cnn_mnist").setBaseline(1).setCandidate(candidate).addSteps(25).addSteps(100).setIntervalS(60)
          .setThresholds(Thresholds.newBuilder().setMinSamples(62).setMinShadowAgreement(0.99).setMaxP99Ratio(100)))
          .build());
      assertThat(started.getShadowPhase()).isTrue();
      // The candidate is the shadow of every request, and takes none.
      RoutingPolicy shadowed = gateway.server.router().route("cnn_mnist").policy();
      assertThat(shadowed.getWeightsMap()).isEqualTo(Map.of(1L, 1));
      assertThat(shadowed.getShadow().getVersion()).isEqualTo(candidate);
      assertThat(shadowed.getShadow().getSampleRate()).isEqualTo(1.0);

      for (MnistDigits.Digit digit : MnistDigits.all()) {
        assertThat(gateway.blocking().modelInfer(Tensors.digit(digit).build()).getModelVersion()).isEqualTo("1");
      }
      VersionStats shadow = gateway.stats.find("cnn_mnist", candidate);
      long deadline = System.nanoTime() + 30_000_000_000L;
      while (shadow.shadowSince(0).compared() < 62 && System.nanoTime() < deadline) {
        Thread.sleep(5);
      }
      clock.millis += 61_000;
      gateway.server.control().tick();
      Rollout judged = gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("cnn_mnist").build());
      if (judged.getState().equals("RUNNING")) {
        // Live now: the candidate takes its first step's share, with no shadow.
        RoutingPolicy live = gateway.server.router().route("cnn_mnist").policy();
        assertThat(live.getWeightsMap()).isEqualTo(Map.of(1L, 75, candidate, 25));
        assertThat(live.hasShadow()).isFalse();
      } else {
        assertThat(gateway.server.router().route("cnn_mnist").policy().getWeightsMap()).isEqualTo(Map.of(1L, 1));
        assertThat(gateway.server.router().route("cnn_mnist").policy().hasShadow()).isFalse();
      }
      return judged;
    }
  }

  private static Decision last(Rollout rollout) {
    return rollout.getDecisions(rollout.getDecisionsCount() - 1);
  }

  @Test
  void aCandidateThatAgrees_goesLive() throws Exception {
    Rollout rollout = run(2);
    assertThat(rollout.getState()).as(last(rollout).getReason()).isEqualTo("RUNNING");
    assertThat(rollout.getShadowPhase()).isFalse();
    assertThat(last(rollout).getVerdict()).isEqualTo("ADVANCE");
    assertThat(last(rollout).getReason()).contains("shadow agreement 100.00% (62 of 62 copies").contains("first live step 25%");
    assertThat(last(rollout).getEvidence().getShadowCompared()).isEqualTo(62);
  }

  @Test
  void aCandidateThatDisagrees_isRolledBack_beforeItAnswersAnyone() throws Exception {
    Rollout rollout = run(3);
    long swapped = MnistDigits.all().stream().filter(d -> d.label() == 3 || d.label() == 5).count();
    assertThat(rollout.getState()).as(last(rollout).getReason()).isEqualTo("ROLLED_BACK");
    assertThat(last(rollout).getReason())
        .contains(String.format("shadow agreement %.2f%% (%d of 62 copies", (62 - swapped) * 100.0 / 62, 62 - swapped))
        .contains("below the 99.00% required");
    assertThat(last(rollout).getEvidence().getShadowAgreed()).isEqualTo(62 - swapped);
  }
}

package io.modelgate.gateway.health;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.GetRolloutRequest;
import io.modelgate.proto.admin.v1.GoldenResult;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.ModelInfo;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.StartRolloutRequest;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.proto.admin.v1.ValidateRequest;
import io.modelgate.proto.admin.v1.ValidateResponse;
import io.modelgate.proto.admin.v1.VersionInfo;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Golden sets on the demo: both demo versions answer all 62 digits; a version derived from it with
 * two classes swapped serves (and is as fast) but scores lower, and a rollout to it is refused with
 * both scores as evidence, or rolled back when its score is found lower during a step.
 */
class GoldenSetTest {
  @TempDir Path root;

  private Gateway demoWithSwappedVersion3(TestClock clock) throws Exception {
    DemoRepository.materialize(root);
    DemoRepository.addFaultyVersion(root, 3);
    return Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock);
  }

  private static Map<Long, GoldenResult> golden(Gateway gateway) {
    ModelInfo model = gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsList().stream()
        .filter(m -> m.getName().equals("cnn_mnist")).findFirst().orElseThrow();
    return model.getVersionsList().stream().collect(Collectors.toMap(VersionInfo::getVersion, VersionInfo::getGolden));
  }

  private static long labelled(int label) {
    return MnistDigits.all().stream().filter(d -> d.label() == label).count();
  }

  @Test
  void aReloadWhoseNewLoadScoresLowerOnTheGoldenSet_isNotSwappedIn_andOneThatScoresAsWellIs() throws Exception {
    try (Gateway gateway = demoWithSwappedVersion3(new TestClock())) {
      io.modelgate.runtime.repository.ModelVersion two =
          gateway.repository.model("cnn_mnist").orElseThrow().version(2).orElseThrow();
      io.modelgate.runtime.repository.LoadedVersion serving = two.serving();
      Path file = root.resolve("cnn_mnist/2/model.onnx");
      byte[] good = Files.readAllBytes(file);
      // Version 3's faulty file written over version 2's while it serves, then reloaded.
      Files.copy(root.resolve("cnn_mnist/3/model.onnx"), file, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      io.modelgate.proto.admin.v1.LoadVersionRequest reload = io.modelgate.proto.admin.v1.LoadVersionRequest.newBuilder()
          .setModel("cnn_mnist").setVersion(2).setReload(true).build();
      long swapped = labelled(3) + labelled(5);
      assertThatThrownBy(() -> gateway.admin().loadVersion(reload))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
          .hasMessageContaining(String.format(java.util.Locale.ROOT, "model 'cnn_mnist' version 2 not loaded again: its golden set scored"
              + " %.4f (%d/62) on the new load against 1.0000 (62/62) on the load serving, so it was not swapped in;"
              + " failing: ", (62 - swapped) / 62.0, 62 - swapped))
          .hasMessageEndingWith("; it serves as before");
      assertThat(two.serving()).isSameAs(serving);
      assertThat(gateway.stats.scrape()).contains("modelgate_version_reloads_total{result=\"failed\"} 1.0");

      // The file put back: it scores as well, and is swapped in.
      Files.write(file, good);
      assertThat(gateway.admin().loadVersion(reload).getState()).isEqualTo("READY");
      assertThat(two.serving()).isNotSameAs(serving);
    }
  }

  @Test
  void everyVersionIsScored_theSwappedOneLower_andItsFailuresNamed() throws Exception {
    try (Gateway gateway = demoWithSwappedVersion3(new TestClock())) {
      assertThat(golden(gateway).values()).extracting(GoldenResult::getState).containsOnly("PENDING");
      ValidateResponse validated = gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").build());
      Map<Long, GoldenResult> results =
          validated.getVersionsList().stream().collect(Collectors.toMap(VersionInfo::getVersion, VersionInfo::getGolden));
      assertThat(results.get(1L).getState()).isEqualTo("DONE");
      assertThat(results.get(1L).getExamples()).isEqualTo(62);
      assertThat(results.get(1L).getPassed()).isEqualTo(62);
      assertThat(results.get(2L).getPassed()).isEqualTo(62);
      long swapped = labelled(3) + labelled(5);
      assertThat(swapped).isPositive();
      GoldenResult three = results.get(3L);
      assertThat(three.getPassed()).isEqualTo(62 - swapped);
      assertThat(three.getScore()).isEqualTo((62 - swapped) / 62.0);
      assertThat(three.getFailingList()).hasSize((int) swapped)
          .allSatisfy(f -> assertThat(f).matches("digit #\\d+: expected class (3, got 5|5, got 3)"));
      // Kept with the version: admin models shows it, /metrics exports it.
      assertThat(golden(gateway).get(3L)).isEqualTo(three);
      String scrape = gateway.stats.scrape();
      assertThat(scrape).contains("modelgate_golden_score{model=\"cnn_mnist\",version=\"1\"} 1.0");
      assertThat(scrape).contains("modelgate_golden_examples{model=\"cnn_mnist\",version=\"3\"} 62.0");
      // The golden runs are the gateway's own requests: not in the callers' statistics, queue and compute included.
      assertThat(allWindow(gateway, 1)).satisfies(all -> {
        assertThat(all.getRequests()).isZero();
        assertThat(all.getQueueMs().getP99()).isZero();
        assertThat(all.getComputeMs().getP99()).isZero();
        assertThat(all.getBatchRows().getMean()).isZero();
      });

      // Version 3 serves fine: it just answers 3 for a 5.
      MnistDigits.Digit five = MnistDigits.all().stream().filter(d -> d.label() == 5).findFirst().orElseThrow();
      InferTensorContents.Builder pixels = InferTensorContents.newBuilder();
      for (float p : five.pixels()) {
        pixels.addFp32Contents(p);
      }
      var answer = gateway.blocking().modelInfer(ModelInferRequest.newBuilder().setModelName("cnn_mnist").setModelVersion("3")
          .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("input_image").setDatatype("FP32")
              .addAllShape(List.of(1L, 1L, 28L, 28L)).setContents(pixels)).build());
      assertThat(Tensors.argmax(Tensors.floats(answer.getRawOutputContents(0)))).isEqualTo(3);
      assertThat(allWindow(gateway, 3).getComputeMs().getP99()).as("a caller's request is recorded").isPositive();

      // Validating one version that is not there, or a model without a golden set, says so.
      assertThatThrownBy(() -> gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").setVersion(9).build()))
          .isInstanceOfSatisfying(StatusRuntimeException.class, e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND));
    }
  }

  @Test
  void aScoreGoesWithItsLoad_soAnUnloadedVersionIsNotKeptAlive_andALoadAgainIsScoredAfresh() throws Exception {
    try (Gateway gateway = demoWithSwappedVersion3(new TestClock())) {
      var three = gateway.repository.model("cnn_mnist").orElseThrow().version(3).orElseThrow();
      gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").setVersion(3).build());
      assertThat(gateway.server.golden().keeps(three)).isTrue();
      // Its result held the load (buffers, rings) it was computed on: unloaded, the result goes.
      gateway.repository.unloadVersion("cnn_mnist", 3, Duration.ofSeconds(5));
      assertThat(gateway.server.golden().keeps(three)).isFalse();
      gateway.repository.loadVersion("cnn_mnist", 3);
      assertThat(golden(gateway).get(3L).getState()).isEqualTo("PENDING");
      gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").setVersion(3).build());
      assertThat(golden(gateway).get(3L).getState()).isEqualTo("DONE");
    }
  }

  @Test
  void aRolloutToTheSwappedVersion_isRefused_withBothScores_unlessTheDropIsAllowed() throws Exception {
    try (Gateway gateway = demoWithSwappedVersion3(new TestClock())) {
      gateway.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("cnn_mnist").putWeights(1, 1)).setExpectedRevision(0).build());
      RolloutSpec.Builder spec = RolloutSpec.newBuilder().setModel("cnn_mnist").setBaseline(1).setCandidate(3)
          .addSteps(10).addSteps(100).setIntervalS(60);
      long swapped = labelled(3) + labelled(5);
      assertThatThrownBy(() -> gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(spec).build()))
          .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
            assertThat(e.getStatus().getDescription())
                .contains(String.format("candidate golden score %.4f (%d/62)", (62 - swapped) / 62.0, 62 - swapped))
                .contains("below the baseline's 1.0000 (62/62) by more than 0.0000")
                .containsPattern("first failing: digit #\\d+: expected class");
          });
      // Routing is untouched.
      assertThat(gateway.server.router().route("cnn_mnist").policy().getWeightsMap()).isEqualTo(Map.of(1L, 1));
      // Allowing the drop lets it start.
      Rollout started = gateway.admin().startRollout(StartRolloutRequest.newBuilder()
          .setSpec(spec.setThresholds(Thresholds.newBuilder().setMaxAccuracyDrop(0.5))).build());
      assertThat(started.getState()).isEqualTo("RUNNING");
    }
  }

  @Test
  void aStepFails_whenTheCandidateIsFoundWorseDuringTheRollout() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = demoWithSwappedVersion3(clock)) {
      // No golden set yet: the rollout starts on latency alone.
      Path golden = root.resolve("cnn_mnist/golden");
      Path aside = Files.move(golden, root.resolve("golden-aside"));
      gateway.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("cnn_mnist").putWeights(1, 1)).setExpectedRevision(0).build());
      gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(RolloutSpec.newBuilder()
          .setModel("cnn_mnist").setBaseline(1).setCandidate(3).addSteps(50).addSteps(100).setIntervalS(60)
          .setThresholds(Thresholds.newBuilder().setMinSamples(1).setMaxP99Ratio(100))).build());
      // Then the golden set arrives, and is run.
      Files.move(aside, golden);
      gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").build());
      List<String> versions = new ArrayList<>();
      for (int i = 0; i < 10; i++) {
        versions.add(gateway.blocking().modelInfer(Tensors.digit(MnistDigits.get(i)).build()).getModelVersion());
      }
      clock.millis += 61_000;
      gateway.server.control().tick();
      Rollout done = gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("cnn_mnist").build());
      var last = done.getDecisions(done.getDecisionsCount() - 1);
      assertThat(done.getState()).as(last.getReason()).isEqualTo("ROLLED_BACK");
      assertThat(last.getReason()).contains("candidate golden score").contains("below the baseline's 1.0000");
      assertThat(last.getEvidence().getBaselineGoldenScore()).isEqualTo(1.0);
      assertThat(last.getEvidence().getCandidateGoldenScore()).isLessThan(1.0);
      assertThat(gateway.server.router().route("cnn_mnist").policy().getWeightsMap()).isEqualTo(Map.of(1L, 1));
    }
  }

  /** The "all" window of {@code version}'s statistics (since it loaded), its current interval closed. */
  private static io.modelgate.proto.admin.v1.WindowStats allWindow(Gateway gateway, long version) {
    gateway.stats.rotate();
    return gateway.admin().getStats(io.modelgate.proto.admin.v1.GetStatsRequest.newBuilder().setModel("cnn_mnist")
            .setVersion(version).build()).getVersionsList().get(0).getWindowsList().stream()
        .filter(w -> w.getWindow().equals("all")).findFirst().orElseThrow();
  }
}

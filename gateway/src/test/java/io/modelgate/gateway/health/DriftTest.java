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
import io.modelgate.proto.admin.v1.DriftReport;
import io.modelgate.proto.admin.v1.FeatureDrift;
import io.modelgate.proto.admin.v1.GetDriftRequest;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.SetDriftBaselineRequest;
import io.modelgate.proto.admin.v1.ValidateRequest;
import io.modelgate.proto.admin.v1.VersionDrift;
import io.modelgate.proto.admin.v1.WindowDrift;
import io.modelgate.proto.inference.ModelInferRequest;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Drift while serving, on the demo model (cnn_mnist; its model.yaml profiles every request and
 * alerts on the last minute) with its golden set as the reference. Traffic runs at 3,000 requests
 * a minute of the test's clock (500 every 10 s), so that the 1m window holds 3,000 requests.
 *
 * <ul>
 *   <li>10,000 requests drawn from the golden digits: no feature of any window ever drifts;
 *   <li>the same digits inverted (255 − pixel), or moved 4 pixels: the input's features drift
 *       within 2,000 requests, and for inverted digits the predicted classes as well.
 * </ul>
 */
class DriftTest {
  @TempDir Path root;

  /** Requests every 10 s of the test's clock. */
  private static final int PER_INTERVAL = 500;

  private Gateway demo(TestClock clock) throws Exception {
    DemoRepository.materialize(root);
    Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock);
    // The golden run forms each version's reference (the background run is off in tests).
    gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").build());
    return gateway;
  }

  private static ModelInferRequest digit(float[] pixels) {
    return ModelInferRequest.newBuilder()
        .setModelName("cnn_mnist")
        .setModelVersion("1")
        .addInputs(Tensors.input("input_image", "FP32", 1, 1, 28, 28))
        .addRawInputContents(Tensors.rawFloats(pixels))
        .build();
  }

  /** Sends {@code count} random golden digits, transformed, advancing the clock 10 s every 500. */
  private static void send(Gateway gateway, TestClock clock, Random random, int count, UnaryOperator<float[]> transform) {
    for (int i = 0; i < count; i++) {
      if (i > 0 && i % PER_INTERVAL == 0) {
        clock.millis += 10_000;
      }
      gateway.blocking().modelInfer(digit(transform.apply(MnistDigits.get(random.nextInt(62)).pixels())));
    }
    clock.millis += 10_000;
  }

  private static VersionDrift drift(Gateway gateway) throws Exception {
    gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
    DriftReport report = gateway.admin().getDrift(GetDriftRequest.newBuilder().setModel("cnn_mnist").setVersion(1).build());
    return report.getVersions(0);
  }

  private static WindowDrift window(FeatureDrift feature, String name) {
    return feature.getWindowsList().stream().filter(w -> w.getWindow().equals(name)).findFirst().orElseThrow();
  }

  /** The features ("tensor.feature") whose window {@code windowName} is as {@code which} asks. */
  private static List<String> features(VersionDrift drift, String windowName, java.util.function.Predicate<WindowDrift> which) {
    List<String> found = new ArrayList<>();
    for (FeatureDrift feature : drift.getFeaturesList()) {
      if (which.test(window(feature, windowName))) {
        found.add(feature.getTensor() + "." + feature.getFeature());
      }
    }
    return found;
  }

  private static List<String> drifted(VersionDrift drift, String windowName) {
    return features(drift, windowName, WindowDrift::getDrifted);
  }

  private static List<String> scored(VersionDrift drift, String windowName) {
    return features(drift, windowName, WindowDrift::getScored);
  }

  @Test
  void goldenDigits_raiseNoAlarm_over10000Requests_invertedDigits_driftTheInputAndTheClassesWithin2000() throws Exception {
    TestClock clock = new TestClock();
    Random random = new Random(7);
    try (Gateway gateway = demo(clock)) {
      // The reference is there before any request: every window is still unscored.
      VersionDrift start = drift(gateway);
      assertThat(start.getState()).isEqualTo("READY");
      assertThat(start.getFeaturesList()).allSatisfy(f -> assertThat(f.getWindowsList()).noneMatch(WindowDrift::getScored));

      double highest = 0;
      for (int round = 0; round < 20; round++) {
        send(gateway, clock, random, PER_INTERVAL, UnaryOperator.identity());
        VersionDrift drift = drift(gateway);
        assertThat(drift.getState()).isEqualTo("READY");
        for (String w : List.of("1m", "5m", "15m")) {
          assertThat(drifted(drift, w)).as("after %d requests, window %s", (round + 1) * PER_INTERVAL, w).isEmpty();
        }
        for (FeatureDrift feature : drift.getFeaturesList()) {
          highest = Math.max(highest, window(feature, "1m").getScore() / feature.getThreshold());
        }
      }
      VersionDrift calm = drift(gateway);
      assertThat(calm.getReference()).isEqualTo("the golden set (62 examples)");
      assertThat(calm.getReferenceSamples()).isEqualTo(62);
      assertThat(calm.getProfiled() + calm.getDropped()).isEqualTo(10_000);
      assertThat(calm.getProfiled()).isGreaterThan(9_000);
      // Every summary feature of the image and both output features are profiled.
      assertThat(calm.getFeaturesList()).extracting(f -> f.getTensor() + "." + f.getFeature() + "/" + f.getStatistic())
          .containsExactly("input_image.mean/ks", "input_image.std/ks", "input_image.min/ks", "input_image.max/ks",
              "input_image.l2_norm/ks", "input_image.centroid_y/ks", "input_image.centroid_x/ks",
              "output_probs.class/psi", "output_probs.top_score/ks");
      System.out.printf("golden digits: highest 1m score over its threshold in 10,000 requests: %.2f%n", highest);

      int sent = 0;
      List<String> inputDrift = List.of();
      List<String> classDrift = List.of();
      int inputAt = -1;
      int classAt = -1;
      while (sent < 2_000) {
        send(gateway, clock, random, 250, MnistDigits::inverted);
        clock.millis -= 5_000;
        sent += 250;
        VersionDrift drift = drift(gateway);
        List<String> now = drifted(drift, "1m");
        if (inputAt < 0 && now.contains("input_image.mean")) {
          inputAt = sent;
          inputDrift = now;
        }
        if (classAt < 0 && now.contains("output_probs.class")) {
          classAt = sent;
          classDrift = now;
        }
      }
      System.out.printf("inverted digits: the input's mean drifted after %d requests (%s), the classes after %d%n",
          inputAt, inputDrift, classAt);
      assertThat(inputAt).isBetween(1, 2_000);
      assertThat(classAt).isBetween(1, 2_000);

      // Exported for Prometheus in the model's window (1m), with the threshold.
      String scrape = gateway.stats.prometheus().scrape();
      assertThat(scrape).containsPattern(
          "modelgate_drift_drifted\\{feature=\"mean\",model=\"cnn_mnist\",statistic=\"ks\",tensor=\"input_image\",version=\"1\"} 1.0");
      assertThat(scrape).contains(
          "modelgate_drift_threshold{feature=\"class\",model=\"cnn_mnist\",statistic=\"psi\",tensor=\"output_probs\",version=\"1\"} 0.2");
      assertThat(scrape).containsPattern("modelgate_drift_samples_total\\{model=\"cnn_mnist\",outcome=\"profiled\",version=\"1\"} \\d+");
    }
  }

  @Test
  void digitsMovedFourPixels_driftTheImagesCentroidWithin2000Requests() throws Exception {
    TestClock clock = new TestClock();
    Random random = new Random(11);
    try (Gateway gateway = demo(clock)) {
      send(gateway, clock, random, 3_000, UnaryOperator.identity());
      assertThat(drifted(drift(gateway), "1m")).isEmpty();
      int sent = 0;
      int at = -1;
      List<String> seen = List.of();
      while (sent < 2_000 && at < 0) {
        send(gateway, clock, random, 250, pixels -> MnistDigits.shifted(pixels, 4));
        clock.millis -= 5_000;
        sent += 250;
        seen = drifted(drift(gateway), "1m");
        if (seen.contains("input_image.centroid_x") && seen.contains("input_image.centroid_y")) {
          at = sent;
        }
      }
      System.out.printf("digits moved 4 pixels: drifted after %d requests: %s%n", at, seen);
      assertThat(at).isBetween(1, 2_000);
    }
  }

  @Test
  void anOperatorsBaseline_makesTheCurrentTrafficTheReference() throws Exception {
    TestClock clock = new TestClock();
    Random random = new Random(3);
    try (Gateway gateway = demo(clock)) {
      send(gateway, clock, random, 1_000, MnistDigits::inverted);
      assertThat(drifted(drift(gateway), "1m")).contains("input_image.mean");

      DriftReport report = gateway.admin().setDriftBaseline(
          SetDriftBaselineRequest.newBuilder().setModel("cnn_mnist").setVersion(1).setWindow("1m").build());
      VersionDrift set = report.getVersions(0);
      assertThat(set.getReference()).startsWith("the 1m window set by an operator at ");
      assertThat(set.getReferenceSamples()).isEqualTo(1_000);
      send(gateway, clock, random, 1_000, MnistDigits::inverted);
      assertThat(drifted(drift(gateway), "1m")).isEmpty();

      // The operator's reference stays through a golden run, and through a reload with its run.
      gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").setVersion(1).build());
      gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("cnn_mnist").setVersion(1).setReload(true).build());
      gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").setVersion(1).build());
      VersionDrift kept = drift(gateway);
      assertThat(kept.getReference()).isEqualTo(set.getReference());
      assertThat(kept.getReload()).startsWith("kept across its reload at ");
      assertThat(drifted(kept, "1m")).isEmpty();

      // Back to the golden set: the inverted digits drift again.
      gateway.admin().setDriftBaseline(
          SetDriftBaselineRequest.newBuilder().setModel("cnn_mnist").setVersion(1).setGolden(true).build());
      VersionDrift golden = drift(gateway);
      assertThat(golden.getReference()).isEqualTo("the golden set (62 examples)");
      assertThat(drifted(golden, "1m")).contains("input_image.mean");
      // Each reference an operator set is audited.
      assertThat(java.nio.file.Files.readAllLines(root.resolve(".state").resolve(
              io.modelgate.gateway.control.StateStore.AUDIT_FILE)).stream()
          .filter(line -> line.contains("\"action\":\"SetDriftBaseline\"")).toList())
          .satisfiesExactly(
              line -> assertThat(line).contains("\"detail\":\"reference from the 1m window\""),
              line -> assertThat(line).contains("\"detail\":\"reference from a run of the golden set\""));

      assertThatThrownBy(() -> gateway.admin().setDriftBaseline(
              SetDriftBaselineRequest.newBuilder().setModel("cnn_mnist").setVersion(1).setWindow("2h").build()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT));
      assertThatThrownBy(() -> gateway.admin().setDriftBaseline(
              SetDriftBaselineRequest.newBuilder().setModel("cnn_mnist").setVersion(9).build()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND));
    }
  }

  @Test
  void aModelWithoutGoldenSet_takesItsFirstRequestsAsReference_elementByElement() throws Exception {
    Gateway.write(root, "affine", 1, Gateway.affine());
    Gateway.config(root, "affine", "max_batch_size: 0\ndrift:\n  sample_rate: 1.0\n  reference_requests: 200\n  window: 1m\n");
    Gateway.write(root, "plain", 1, Gateway.affine());
    TestClock clock = new TestClock();
    Random random = new Random(5);
    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock)) {
      for (int i = 0; i < 150; i++) {
        gateway.blocking().modelInfer(Tensors.affine((float) random.nextGaussian(), 1, 2).build());
      }
      gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
      VersionDrift forming = gateway.admin().getDrift(GetDriftRequest.newBuilder().setModel("affine").build()).getVersions(0);
      assertThat(forming.getState()).isEqualTo("FORMING");
      assertThat(forming.getForming()).isEqualTo("the first 200 profiled requests (150 so far)");
      for (int i = 0; i < 350; i++) {
        gateway.blocking().modelInfer(Tensors.affine((float) random.nextGaussian(), 1, 2).build());
      }
      gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
      VersionDrift ready = gateway.admin().getDrift(GetDriftRequest.newBuilder().setModel("affine").build()).getVersions(0);
      assertThat(ready.getState()).isEqualTo("READY");
      assertThat(ready.getReferenceSamples()).isEqualTo(200);
      assertThat(ready.getFeaturesList()).extracting(f -> f.getTensor() + "." + f.getFeature())
          .contains("x.[0]", "x.[1]", "x.[2]");
      assertThat(drifted(ready, "1m")).isEmpty();

      // The first element moves by two standard deviations: it drifts, the others do not.
      for (int i = 0; i < 300; i++) {
        gateway.blocking().modelInfer(Tensors.affine((float) random.nextGaussian() + 2, 1, 2).build());
      }
      gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
      VersionDrift moved = gateway.admin().getDrift(GetDriftRequest.newBuilder().setModel("affine").build()).getVersions(0);
      assertThat(drifted(moved, "1m")).contains("x.[0]").doesNotContain("x.[1]", "x.[2]");

      // A model without drift in its model.yaml is not profiled.
      gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("plain").build());
      assertThat(gateway.admin().getDrift(GetDriftRequest.newBuilder().setModel("plain").build()).getVersions(0).getState())
          .isEqualTo("OFF");
    }
  }

  private static final String AFFINE_DRIFT = "max_batch_size: 0\ndrift:\n  sample_rate: 1.0\n  reference_requests: 200\n  window: 1m\n";

  /** {@code count} affine requests whose first element is a standard normal plus {@code shift}. */
  private static void sendAffine(Gateway gateway, Random random, int count, float shift) {
    for (int i = 0; i < count; i++) {
      gateway.blocking().modelInfer(Tensors.affine((float) random.nextGaussian() + shift, 1, 2).build());
    }
  }

  private static VersionDrift affineDrift(Gateway gateway) throws Exception {
    gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
    return gateway.admin().getDrift(GetDriftRequest.newBuilder().setModel("affine").build()).getVersions(0);
  }

  private static void reload(Gateway gateway, String model) {
    gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel(model).setVersion(1).setReload(true).build());
  }

  /** The affine model profiled with {@link #AFFINE_DRIFT}, served on a clock of the test's. */
  private Gateway affineWithDrift() throws Exception {
    Gateway.write(root, "affine", 1, Gateway.affine());
    Gateway.config(root, "affine", AFFINE_DRIFT);
    return Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), new TestClock());
  }

  @Test
  void aVersionLoadedAgainInPlace_keepsItsWindowsAndReference_soItsDriftStaysSeen_andReadsItsNewThresholds() throws Exception {
    Random random = new Random(7);
    try (Gateway gateway = affineWithDrift()) {
      sendAffine(gateway, random, 500, 0);
      sendAffine(gateway, random, 300, 2);
      VersionDrift before = affineDrift(gateway);
      assertThat(before.getReload()).isEmpty();
      assertThat(drifted(before, "1m")).contains("x.[0]");

      // A reload (here of the same files) keeps the profile: the reference is not formed again from
      // the moved traffic, which would hide the drift.
      reload(gateway, "affine");
      sendAffine(gateway, random, 300, 2);
      VersionDrift after = affineDrift(gateway);
      assertThat(after.getReload()).startsWith("kept across its reload at ");
      assertThat(after.getState()).isEqualTo("READY");
      assertThat(after.getReference()).isEqualTo(before.getReference()).isEqualTo("the first 200 profiled requests");
      assertThat(after.getReferenceSamples()).isEqualTo(200);
      assertThat(after.getProfiled()).isEqualTo(1_100);
      assertThat(drifted(after, "1m")).contains("x.[0]").doesNotContain("x.[1]");

      // model.yaml's thresholds raised and loaded again: the same windows, judged by the new thresholds.
      Gateway.config(root, "affine", AFFINE_DRIFT + "  ks_threshold: 0.99\n  psi_threshold: 50\n");
      reload(gateway, "affine");
      VersionDrift relaxed = affineDrift(gateway);
      assertThat(relaxed.getFeaturesList()).allSatisfy(f -> {
        assertThat(f.getThreshold()).isEqualTo(f.getStatistic().equals("ks") ? 0.99 : 50);
      });
      assertThat(relaxed.getProfiled()).isEqualTo(1_100);
      assertThat(drifted(relaxed, "1m")).isEmpty();
      assertThat(gateway.stats.prometheus().scrape())
          .contains("modelgate_drift_threshold{feature=\"[0]\",model=\"affine\",statistic=\"ks\",tensor=\"x\",version=\"1\"} 0.99")
          .contains("modelgate_drift_samples_total{model=\"affine\",outcome=\"profiled\",version=\"1\"} 1100.0");
    }
  }

  @Test
  void aReloadToAnotherModelFile_keepsTheInputsReference_andScoresTheOutputsOnlyAgainstTheNewFilesAnswers() throws Exception {
    Random random = new Random(11);
    try (Gateway gateway = affineWithDrift()) {
      TestClock clock = (TestClock) gateway.stats.clock();
      sendAffine(gateway, random, 500, 0);
      assertThat(affineDrift(gateway).getReference()).isEqualTo("the first 200 profiled requests");

      // The same traffic, answered by a file that multiplies by 5 instead of 2: its outputs differ
      // from every answer the reference and the windows hold, its inputs do not.
      Gateway.write(root, "affine", 1, Gateway.affineTimes(5));
      reload(gateway, "affine");
      sendAffine(gateway, random, 100, 0);
      VersionDrift forming = affineDrift(gateway);
      assertThat(forming.getReload()).startsWith("kept across its reload at ").contains("to another model file");
      assertThat(forming.getForming()).isEqualTo(
          "the first 200 profiled requests since the model file changed, for the outputs (100 so far)");
      assertThat(scored(forming, "1m")).containsOnly("x.[0]", "x.[1]", "x.[2]");
      assertThat(drifted(forming, "1m")).isEmpty();

      // Its reference formed, and a minute on (the 1m window holds only the new file's answers):
      // nothing drifts, and a move of the inputs still does.
      sendAffine(gateway, random, 150, 0);
      clock.millis += 61_000;
      sendAffine(gateway, random, 300, 0);
      VersionDrift settled = affineDrift(gateway);
      assertThat(settled.getForming()).isEmpty();
      assertThat(settled.getReference()).isEqualTo(
          "the first 200 profiled requests; outputs: the first 200 profiled requests since the model file changed (200)");
      assertThat(scored(settled, "1m")).contains("y.top_score", "z.top_score", "x.[0]");
      assertThat(drifted(settled, "1m")).isEmpty();
      sendAffine(gateway, random, 300, 2);
      assertThat(drifted(affineDrift(gateway), "1m")).contains("x.[0]");
    }
  }

  @Test
  void aReloadThatLaysTheFeaturesOutOtherwise_startsTheProfileAnew_andSaysWhy() throws Exception {
    Random random = new Random(9);
    try (Gateway gateway = affineWithDrift()) {
      sendAffine(gateway, random, 300, 0);
      assertThat(affineDrift(gateway).getFeaturesList()).extracting(FeatureDrift::getFeature).contains("[0]");

      // Rows of 3 elements are now profiled by their summary statistics.
      Gateway.config(root, "affine", AFFINE_DRIFT + "  max_features: 2\n");
      reload(gateway, "affine");
      VersionDrift anew = affineDrift(gateway);
      assertThat(anew.getReload()).startsWith("started anew at its reload at ")
          .endsWith(": drift.max_features changed from 32 to 2");
      assertThat(anew.getState()).isEqualTo("WAITING");
      assertThat(anew.getProfiled()).isEqualTo(300);
      assertThat(gateway.stats.prometheus().scrape()).doesNotContain("feature=\"[0]\"");
      sendAffine(gateway, random, 250, 0);
      VersionDrift summarized = affineDrift(gateway);
      assertThat(summarized.getState()).isEqualTo("READY");
      assertThat(summarized.getFeaturesList()).extracting(f -> f.getTensor() + "." + f.getFeature())
          .contains("x.mean", "x.std", "x.l2_norm").doesNotContain("x.[0]");

      // Another model file with other inputs: started anew too.
      Gateway.write(root, "affine", 1, Gateway.floatIdentity());
      reload(gateway, "affine");
      assertThat(affineDrift(gateway).getReload())
          .contains(": its inputs or outputs changed (were inputs x FP32 [-1,3], outputs y FP32 [-1,3] z FP32 [-1,3]; now inputs x FP32 [-1,-1], outputs y FP32 [-1,-1])");
    }
  }

  @Test
  void anUnloadedVersion_leavesNoGaugesBehind_andAReloadStartsAFreshProfile() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = demo(clock)) {
      send(gateway, clock, new Random(1), 200, UnaryOperator.identity());
      gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
      assertThat(gateway.stats.prometheus().scrape()).contains("modelgate_drift_score{feature=\"mean\",model=\"cnn_mnist\",statistic=\"ks\",tensor=\"input_image\",version=\"1\"}");
      gateway.admin().unloadVersion(io.modelgate.proto.admin.v1.UnloadVersionRequest.newBuilder().setModel("cnn_mnist").setVersion(1).build());
      gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
      assertThat(gateway.stats.prometheus().scrape()).doesNotContainPattern("modelgate_drift_\\w+\\{[^}]*version=\"1\"");
      gateway.admin().loadVersion(io.modelgate.proto.admin.v1.LoadVersionRequest.newBuilder().setModel("cnn_mnist").setVersion(1).build());
      gateway.admin().validate(ValidateRequest.newBuilder().setModel("cnn_mnist").setVersion(1).build());
      VersionDrift fresh = drift(gateway);
      assertThat(fresh.getProfiled()).isZero();
      assertThat(fresh.getReference()).isEqualTo("the golden set (62 examples)");
    }
  }
}


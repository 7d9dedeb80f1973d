package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.runtime.repository.VersionState;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A version out of memory for the longest statistics window is forgotten: its statistics and every
 * series that names it. The clock is the test's; statistics rotate (and retirement sweeps) when the
 * test says.
 */
class VersionRetirementTest {
  @TempDir Path root;

  /** The scrape's series that name version 1 of affine. */
  private static List<String> series(Gateway gateway) {
    return gateway.stats.scrape().lines()
        .filter(line -> !line.startsWith("#") && line.contains("model=\"affine\"") && line.contains("version=\"1\""))
        .toList();
  }

  private static void call(Gateway gateway) {
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("affine").setModelVersion("1").build())
        .getModelVersion()).isEqualTo("1");
  }

  /** The standard repository, and each of {@code twoVersions} with versions 1 and 2, served on the test's clock. */
  private Gateway serve(TestClock clock, String... twoVersions) throws java.io.IOException {
    Gateway.standardRepository(root);
    for (String model : twoVersions) {
      Gateway.write(root, model, 1, Gateway.affine());
      Gateway.write(root, model, 2, Gateway.affine());
    }
    return Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock);
  }

  @Test
  void aVersionUnloadedForTheLongestWindow_isForgotten_andLoadingItAgainStartsAfresh() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = serve(clock)) {
      call(gateway);
      VersionStats before = gateway.stats.find("affine", 1);
      assertThat(before).isNotNull();
      assertThat(series(gateway)).anyMatch(line -> line.startsWith("modelgate_requests_total{code=\"OK\""))
          .anyMatch(line -> line.startsWith("modelgate_request_duration_seconds_bucket"))
          .anyMatch(line -> line.startsWith("modelgate_version_state"))
          .anyMatch(line -> line.startsWith("modelgate_version_model_file{model=\"affine\",sha256=\""))
          .anyMatch(line -> line.startsWith("modelgate_usage_requests_total"))
          .anyMatch(line -> line.startsWith("modelgate_stats_memory_bytes"));

      gateway.repository.unloadVersion("affine", 1, Duration.ofSeconds(5));
      // One second short of the longest window: all still there.
      clock.millis += VersionRetirement.AFTER.toMillis() - 1_000;
      gateway.stats.rotate();
      assertThat(gateway.stats.find("affine", 1)).isSameAs(before);
      assertThat(series(gateway)).isNotEmpty();

      clock.millis += 1_000;
      gateway.stats.rotate();
      assertThat(gateway.stats.find("affine", 1)).isNull();
      assertThat(series(gateway)).isEmpty();
      // The model still lists it, with its state; the other versions and models keep theirs.
      assertThat(gateway.repository.model("affine").orElseThrow().version(1).orElseThrow().state())
          .isEqualTo(VersionState.UNAVAILABLE);
      assertThat(gateway.stats.find("cnn_mnist", 2)).isNotNull();

      // Loaded again: new statistics and series, counted from zero.
      gateway.repository.loadVersion("affine", 1);
      call(gateway);
      VersionStats after = gateway.stats.find("affine", 1);
      assertThat(after).isNotNull().isNotSameAs(before);
      assertThat(series(gateway)).contains("modelgate_requests_total{code=\"OK\",model=\"affine\",version=\"1\"} 1.0");
    }
  }

  /** The model-file series of affine's version 1 in a scrape, without their HELP and TYPE. */
  private static List<String> modelFiles(Gateway gateway) {
    return series(gateway).stream().filter(line -> line.startsWith("modelgate_version_model_file")).toList();
  }

  @Test
  void aVersionsModelFile_isASeriesBySha256_readingZeroWhileUnloaded_andReplacedWhenAnotherFileLoads() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = serve(clock)) {
      String first = gateway.repository.model("affine").orElseThrow().version(1).orElseThrow().serving().modelSha256();
      assertThat(modelFiles(gateway)).containsExactly(
          "modelgate_version_model_file{model=\"affine\",sha256=\"" + first + "\",version=\"1\"} 1.0");
      gateway.repository.unloadVersion("affine", 1, Duration.ofSeconds(5));
      assertThat(modelFiles(gateway)).containsExactly(
          "modelgate_version_model_file{model=\"affine\",sha256=\"" + first + "\",version=\"1\"} 0.0");

      // Another model.onnx in the version's folder, loaded: a new series, the old one gone.
      Gateway.write(root, "affine", 1, Gateway.slowAffine(2));
      String second = gateway.repository.loadVersion("affine", 1).serving().modelSha256();
      assertThat(second).isNotEqualTo(first);
      assertThat(modelFiles(gateway)).containsExactly(
          "modelgate_version_model_file{model=\"affine\",sha256=\"" + second + "\",version=\"1\"} 1.0");
    }
  }

  @Test
  void aVersionLoadedAgainInTime_keepsItsStatistics_andIsForgottenOnlyAfterItLeavesAgainForTheWholeWindow() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = serve(clock)) {
      call(gateway);
      VersionStats kept = gateway.stats.find("affine", 1);
      gateway.repository.unloadVersion("affine", 1, Duration.ofSeconds(5));
      clock.millis += VersionRetirement.AFTER.toMillis() / 2;
      gateway.repository.loadVersion("affine", 1);
      gateway.repository.unloadVersion("affine", 1, Duration.ofSeconds(5));
      // The whole window since the first unload, but not since the second.
      clock.millis += VersionRetirement.AFTER.toMillis() / 2 + 1_000;
      gateway.stats.rotate();
      assertThat(gateway.stats.find("affine", 1)).isSameAs(kept);
      assertThat(series(gateway)).contains("modelgate_requests_total{code=\"OK\",model=\"affine\",version=\"1\"} 1.0");
      clock.millis += VersionRetirement.AFTER.toMillis() / 2;
      gateway.stats.rotate();
      assertThat(gateway.stats.find("affine", 1)).isNull();
      assertThat(series(gateway)).isEmpty();
    }
  }


  @Test
  void aForgottenPrimary_takesTheShadowsComparisonSeriesNamingIt_theShadowKeepsItsOwn() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = serve(clock, "m")) {
      gateway.admin().setRouting(io.modelgate.proto.admin.v1.SetRoutingRequest.newBuilder()
          .setPolicy(io.modelgate.proto.admin.v1.RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)
              .setShadow(io.modelgate.proto.admin.v1.ShadowRouting.newBuilder().setVersion(2).setSampleRate(1.0)))
          .setExpectedRevision(0).build());
      for (int i = 0; i < 5; i++) {
        gateway.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").build());
      }
      String pair = "modelgate_shadow_comparisons_total{model=\"m\",outcome=\"agreed\",primary=\"1\",shadow=\"2\"} 5.0";
      io.modelgate.gateway.testing.Eventually.eventually("five shadow copies compared", () -> gateway.stats.scrape().contains(pair));

      // Version 2 takes the traffic; version 1 goes, and is forgotten after the window.
      gateway.admin().setRouting(io.modelgate.proto.admin.v1.SetRoutingRequest.newBuilder()
          .setPolicy(io.modelgate.proto.admin.v1.RoutingPolicy.newBuilder().setModel("m").putWeights(2, 1))
          .setExpectedRevision(1).build());
      gateway.repository.unloadVersion("m", 1, Duration.ofSeconds(5));
      clock.millis += VersionRetirement.AFTER.toMillis();
      gateway.stats.rotate();
      String scrape = gateway.stats.scrape();
      assertThat(scrape).doesNotContain("primary=\"1\"").doesNotContain("model=\"m\",version=\"1\"")
          .contains("modelgate_requests_total{code=\"OK\",model=\"m\",version=\"2\"} 5.0");
    }
  }

  @Test
  void aModelWhoseFolderIsGone_isRemovedOnceItsVersionsAreForgotten_andComesBackWithItsKeptRoutingWhenItsFolderDoes() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = serve(clock, "m")) {
      var admin = gateway.admin();
      // A policy kept for it: the default (highest READY version), at revision 1.
      admin.setRouting(io.modelgate.proto.admin.v1.SetRoutingRequest.newBuilder()
          .setPolicy(io.modelgate.proto.admin.v1.RoutingPolicy.newBuilder().setModel("m")).setExpectedRevision(0).build());
      assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion()).isEqualTo("2");
      String revision = "modelgate_routing_revision{model=\"m\"} 1.0";
      assertThat(gateway.stats.scrape()).contains(revision);

      // Its folder deleted: listed as such, with no time for its removal while a version is READY.
      assertThat(gateway.stats.scrape()).contains("modelgate_model_folder_gone{model=\"m\"} 0.0");
      Gateway.deleteModel(root, "m");
      assertThat(gateway.stats.scrape()).contains("modelgate_model_folder_gone{model=\"m\"} 1.0")
          .contains("modelgate_model_folder_gone{model=\"affine\"} 0.0");
      var listModels = io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance();
      assertThat(admin.listModels(listModels).getModelsList())
          .extracting(io.modelgate.proto.admin.v1.ModelInfo::getName, io.modelgate.proto.admin.v1.ModelInfo::getFolderGone,
              io.modelgate.proto.admin.v1.ModelInfo::getRemovalDueUnixMs)
          .contains(org.assertj.core.groups.Tuple.tuple("m", true, 0L), org.assertj.core.groups.Tuple.tuple("affine", false, 0L));
      // Taken down (both versions unloaded): its removal is due AFTER from now.
      long unloadedAt = clock.millis;
      admin.unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
      // Within the window it is listed, its versions UNAVAILABLE, its requests refused as such.
      clock.millis += VersionRetirement.AFTER.toMillis() - 1_000;
      gateway.stats.rotate();
      assertThat(gateway.repository.model("m")).isPresent();
      assertThat(admin.listModels(listModels).getModelsList())
          .extracting(io.modelgate.proto.admin.v1.ModelInfo::getName, io.modelgate.proto.admin.v1.ModelInfo::getFolderGone,
              io.modelgate.proto.admin.v1.ModelInfo::getRemovalDueUnixMs)
          .contains(org.assertj.core.groups.Tuple.tuple("m", true, unloadedAt + VersionRetirement.AFTER.toMillis()),
              org.assertj.core.groups.Tuple.tuple("affine", false, 0L));
      assertThatThrownBy(() -> gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
          .hasMessageStartingWith("UNAVAILABLE");

      // After it: gone from every list, NOT_FOUND as any unknown model, and no series names it.
      clock.millis += 1_000;
      gateway.stats.rotate();
      assertThat(gateway.repository.model("m")).isEmpty();
      assertThat(admin.listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance()).getModelsList())
          .extracting(io.modelgate.proto.admin.v1.ModelInfo::getName).doesNotContain("m").contains("affine");
      assertThat(gateway.blocking().repositoryIndex(io.modelgate.proto.inference.RepositoryIndexRequest.getDefaultInstance())
          .getModelsList()).extracting(io.modelgate.proto.inference.RepositoryIndexResponse.ModelIndex::getName)
          .doesNotContain("m").contains("affine");
      assertThatThrownBy(() -> gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
          .hasMessageStartingWith("NOT_FOUND: unknown model 'm'");
      assertThatThrownBy(() -> gateway.blocking().modelMetadata(
              io.modelgate.proto.inference.ModelMetadataRequest.newBuilder().setName("m").build()))
          .hasMessageStartingWith("NOT_FOUND");
      assertThat(gateway.blocking().modelReady(io.modelgate.proto.inference.ModelReadyRequest.newBuilder().setName("m").build())
          .getReady()).isFalse();
      assertThat(gateway.stats.scrape().lines().filter(line -> !line.startsWith("#") && line.contains("model=\"m\""))
          .toList()).isEmpty();
      assertThat(gateway.stats.scrape()).contains("model=\"affine\"");

      // Its folder back and loaded: served again under the policy kept for it.
      Gateway.write(root, "m", 1, Gateway.affine());
      admin.loadModel(io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel("m").build());
      assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion()).isEqualTo("1");
      assertThat(gateway.stats.scrape()).contains(revision)
          .contains("modelgate_requests_total{code=\"OK\",model=\"m\",version=\"1\"} 1.0");
    }
  }

  @Test
  void aRemovedModel_isForgottenWhenAsked_andItsNameReusedStartsAfresh_acrossARestart() throws Exception {
    TestClock clock = new TestClock();
    var forget = io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder().setModel("m").build();
    try (Gateway gateway = serve(clock, "m")) {
      var admin = gateway.admin();
      admin.setRouting(io.modelgate.proto.admin.v1.SetRoutingRequest.newBuilder()
          .setPolicy(io.modelgate.proto.admin.v1.RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1).putWeights(2, 1))
          .setExpectedRevision(0).build());
      // Not while the repository has it, its folder there or not.
      assertThatThrownBy(() -> admin.forgetModel(forget)).hasMessageStartingWith("FAILED_PRECONDITION: model 'm' is in"
          + " this replica's repository");
      Gateway.deleteModel(root, "m");
      admin.unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
      assertThatThrownBy(() -> admin.forgetModel(forget)).hasMessageStartingWith("FAILED_PRECONDITION");
      clock.millis += VersionRetirement.AFTER.toMillis();
      gateway.stats.rotate();
      assertThat(gateway.repository.model("m")).isEmpty();

      // Removed: listed as kept in the control store until forgotten.
      var listModels = io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance();
      assertThat(admin.listModels(listModels).getModelsKeptList()).containsExactly(io.modelgate.proto.admin.v1.KeptModel
          .newBuilder().setModel("m").setRoutingRevision(1).setVersionLoads(2).build());
      // Forgotten when asked, audited; a second time there is nothing to forget.
      assertThat(admin.forgetModel(forget).getForgotten()).isEqualTo(
          "forgot routing revision 1 {1=1, 2=1}, 1 earlier policy, the last load or unload of 2 versions");
      assertThat(java.nio.file.Files.readAllLines(root.resolve(".state").resolve(
              io.modelgate.gateway.control.StateStore.AUDIT_FILE)).stream()
          .filter(line -> line.contains("\"action\":\"ForgetModel\"") && line.contains("\"model\":\"m\"")).toList())
          .hasSize(1);
      assertThat(admin.listModels(listModels).getModelsKeptList()).isEmpty();
      assertThatThrownBy(() -> admin.forgetModel(forget))
          .hasMessage("NOT_FOUND: nothing is kept for model 'm' in the control store");
      assertThatThrownBy(() -> admin.forgetModel(io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder()
          .setModel("never").build())).hasMessageStartingWith("NOT_FOUND");

      // A new model of that name, one version only: the default routing, not the old policy in part.
      Gateway.write(root, "m", 1, Gateway.affine());
      admin.loadModel(io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel("m").build());
      assertThat(admin.getRouting(io.modelgate.proto.admin.v1.GetRoutingRequest.newBuilder().setModel("m").build())
          .getRevision()).isZero();
      assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion())
          .isEqualTo("1");
    }
    // Started again on the same state directory: nothing of the old model's (its version 1 was
    // last unloaded, which would keep it unloaded), only the new one's load.
    try (Gateway again = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock)) {
      var listed = again.admin().listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance()).getModelsList()
          .stream().filter(model -> model.getName().equals("m")).findFirst().orElseThrow();
      assertThat(listed.getVersionsList()).extracting(io.modelgate.proto.admin.v1.VersionInfo::getState).containsExactly("READY");
      assertThat(listed.getRouting().getRevision()).isZero();
      assertThat(listed.getRoutingDegraded()).isEmpty();
    }
  }

  /** Every meter's name and tags, those of the JVM's collections (made by what the JVM does) aside. */
  private static java.util.Set<String> meterIds(Gateway gateway) {
    java.util.Set<String> ids = new java.util.TreeSet<>();
    for (io.micrometer.core.instrument.Meter meter : gateway.stats.prometheus().getMeters()) {
      if (!meter.getId().getName().startsWith("jvm.gc.")) {
        ids.add(meter.getId().getName() + meter.getId().getTags());
      }
    }
    return ids;
  }

  /** One model added, served and retired: its folder written, loaded, called, deleted, taken down, forgotten. */
  private static void retireOne(Gateway gateway, TestClock clock, String name) throws Exception {
    Gateway.write(root(gateway), name, 1, Gateway.affine());
    gateway.admin().loadModel(io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel(name).build());
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName(name).build()).getModelVersion())
        .isEqualTo("1");
    assertThat(gateway.stats.find(name, 1)).isNotNull();
    assertThat(meterIds(gateway)).anyMatch(id -> id.contains("model=" + name + ")"));
    Gateway.deleteModel(root(gateway), name);
    gateway.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel(name).build());
    clock.millis += VersionRetirement.AFTER.toMillis();
    gateway.stats.rotate();
    assertThat(gateway.stats.find(name, 1)).isNull();
    assertThat(gateway.repository.model(name)).isEmpty();
  }

  private static Path root(Gateway gateway) {
    return gateway.repository.root();
  }

  @Test
  void modelsAddedServedAndRetiredOverAndOver_leaveNoMeterNoModelAndNoStatisticsBehind() throws Exception {
    TestClock clock = new TestClock();
    try (Gateway gateway = serve(clock)) {
      call(gateway);
      // One round first: the repository's failed versions are forgotten, and the admin calls'
      // own meters (one set a method) made.
      retireOne(gateway, clock, "first");
      java.util.Set<String> before = meterIds(gateway);
      int models = gateway.repository.models().size();
      for (int i = 0; i < 20; i++) {
        retireOne(gateway, clock, "retired" + i);
      }
      assertThat(gateway.repository.models()).hasSize(models);
      assertThat(meterIds(gateway)).isEqualTo(before);
      call(gateway);
    }
  }
}

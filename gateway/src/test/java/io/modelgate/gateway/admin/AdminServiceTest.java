package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.GetStatsRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.ListModelsResponse;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.PromoteRequest;
import io.modelgate.proto.admin.v1.RollbackRequest;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.StatsResponse;
import io.modelgate.proto.admin.v1.UnloadVersionRequest;
import io.modelgate.proto.admin.v1.VersionInfo;
import io.modelgate.proto.admin.v1.WindowStats;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.assertj.core.api.AbstractThrowableAssert;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

class AdminServiceTest {
  @TempDir Path root;
  Gateway gateway;

  @BeforeEach
  void start() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Gateway.write(root, "m", 3, "broken".getBytes());
    gateway = Gateway.inProcess(root);
  }

  @AfterEach
  void stop() {
    if (gateway != null) {
      gateway.close();
    }
  }

  private static AbstractThrowableAssert<?, ?> failsWith(Status.Code code, Executable call) {
    return assertThatThrownBy(call::execute)
        .isInstanceOfSatisfying(
            StatusRuntimeException.class, e -> assertThat(e.getStatus().getCode()).isEqualTo(code));
  }

  private RoutingPolicy set(long expected, long... versionWeightPairs) {
    RoutingPolicy.Builder policy = RoutingPolicy.newBuilder().setModel("m");
    for (int i = 0; i < versionWeightPairs.length; i += 2) {
      policy.putWeights(versionWeightPairs[i], (int) versionWeightPairs[i + 1]);
    }
    return gateway
        .admin()
        .setRouting(SetRoutingRequest.newBuilder().setPolicy(policy).setExpectedRevision(expected).build());
  }

  private String answeringVersion() {
    return gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion();
  }

  @Test
  void withoutTheToken_orWithAWrongOne_callsAreUnauthenticated() {
    AdminServiceGrpc.AdminServiceBlockingStub anonymous = AdminServiceGrpc.newBlockingStub(gateway.adminChannel);
    failsWith(Status.Code.UNAUTHENTICATED, () -> anonymous.listModels(ListModelsRequest.getDefaultInstance()))
        .hasMessageContaining("authorization: Bearer");
    failsWith(
            Status.Code.UNAUTHENTICATED,
            () ->
                anonymous
                    .withCallCredentials(Gateway.bearer("not-the-admin-token-at-all"))
                    .listModels(ListModelsRequest.getDefaultInstance()))
        .hasMessageContaining("wrong admin token");
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsCount()).isEqualTo(1);
  }

  @Test
  void theInferencePort_doesNotServeAdmin() {
    failsWith(
        Status.Code.UNIMPLEMENTED,
        () ->
            AdminServiceGrpc.newBlockingStub(gateway.channel)
                .withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
                .listModels(ListModelsRequest.getDefaultInstance()));
  }

  @Test
  void listModels_showsVersionsStatesAndRouting() {
    ListModelsResponse models = gateway.admin().listModels(ListModelsRequest.getDefaultInstance());
    assertThat(models.getModels(0).getName()).isEqualTo("m");
    assertThat(models.getModels(0).getVersionsList())
        .extracting(VersionInfo::getVersion, VersionInfo::getState)
        .containsExactly(
            org.assertj.core.groups.Tuple.tuple(1L, "READY"),
            org.assertj.core.groups.Tuple.tuple(2L, "READY"),
            org.assertj.core.groups.Tuple.tuple(3L, "FAILED"));
    assertThat(models.getModels(0).getVersions(2).getReason()).contains("ONNX Runtime could not load");
    assertThat(models.getModels(0).getRouting().getRevision()).isZero();
  }

  @Test
  void setRouting_changesWhichVersionAnswers_andNamesTheRevisionItReplaces() {
    assertThat(answeringVersion()).isEqualTo("2");
    RoutingPolicy one = set(0, 1, 100);
    assertThat(one.getRevision()).isEqualTo(1);
    assertThat(one.getUpdatedBy()).isNotBlank();
    for (int i = 0; i < 20; i++) {
      assertThat(answeringVersion()).isEqualTo("1");
    }
    failsWith(Status.Code.ABORTED, () -> set(0, 2, 100)).hasMessageContaining("at revision 1, not 0");
    failsWith(Status.Code.FAILED_PRECONDITION, () -> set(1, 3, 100)).hasMessageContaining("which is FAILED");
    failsWith(Status.Code.INVALID_ARGUMENT, () -> set(1, 1, 0, 2, 0)).hasMessageContaining("all 0");
    failsWith(Status.Code.INVALID_ARGUMENT, () -> set(1, 7, 1)).hasMessageContaining("does not have");
    assertThat(gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build()).getRevision())
        .isEqualTo(1);
  }

  @Test
  void promoteAndRollback() {
    set(0, 1, 90, 2, 10);
    RoutingPolicy promoted =
        gateway.admin().promote(PromoteRequest.newBuilder().setModel("m").setVersion(2).setExpectedRevision(1).build());
    assertThat(promoted.getWeightsMap()).containsOnlyKeys(2L);
    RoutingPolicy back =
        gateway.admin().rollback(RollbackRequest.newBuilder().setModel("m").setExpectedRevision(2).build());
    assertThat(back.getRevision()).isEqualTo(3);
    assertThat(back.getWeightsMap()).containsEntry(1L, 90).containsEntry(2L, 10);
    RoutingPolicy first =
        gateway.admin().rollback(RollbackRequest.newBuilder().setModel("m").setExpectedRevision(3).build());
    assertThat(first.getWeightsMap()).isEmpty();
    failsWith(
            Status.Code.FAILED_PRECONDITION,
            () -> gateway.admin().rollback(RollbackRequest.newBuilder().setModel("m").setExpectedRevision(4).build()))
        .hasMessageContaining("no earlier routing policy");
  }

  @Test
  void unload_isRefusedWhileTheVersionTakesTraffic_thenDrainsAndUnloads_andLoadBringsItBack() {
    set(0, 1, 50, 2, 50);
    failsWith(
            Status.Code.FAILED_PRECONDITION,
            () -> gateway.admin().unloadVersion(UnloadVersionRequest.newBuilder().setModel("m").setVersion(2).build()))
        .hasMessageContaining("still takes traffic")
        .hasMessageContaining("weight 50");
    set(1, 1, 100);
    VersionInfo unloaded =
        gateway.admin().unloadVersion(UnloadVersionRequest.newBuilder().setModel("m").setVersion(2).build());
    assertThat(unloaded.getState()).isEqualTo("UNAVAILABLE");
    failsWith(
            Status.Code.UNAVAILABLE,
            () -> gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("2").build()))
        .hasMessageContaining("is UNAVAILABLE");
    VersionInfo loaded = gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("m").setVersion(2).build());
    assertThat(loaded.getState()).isEqualTo("READY");
    assertThat(
            gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("2").build())
                .getModelVersion())
        .isEqualTo("2");
    failsWith(
        Status.Code.NOT_FOUND,
        () -> gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("m").setVersion(8).build()));
  }

  @Test
  void unloadModel_takesEveryReadyVersionDown_thoseTakingTrafficIncluded_auditsEach_andLoadModelBringsItBack() throws Exception {
    set(0, 1, 50, 2, 50);
    io.modelgate.proto.admin.v1.ModelInfo down =
        gateway.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
    assertThat(down.getVersionsList()).extracting(VersionInfo::getVersion, VersionInfo::getState)
        .containsExactly(org.assertj.core.groups.Tuple.tuple(1L, "UNAVAILABLE"), org.assertj.core.groups.Tuple.tuple(2L, "UNAVAILABLE"),
            org.assertj.core.groups.Tuple.tuple(3L, "FAILED"));
    // Its policy now serves in part, as after a restart: admin models says so, a request is told
    // what to load, and the gauge stays 0 (only unloaded versions are missing).
    failsWith(Status.Code.UNAVAILABLE, () -> gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
        .hasMessageContaining("routing revision 1 sends traffic only to versions that are not READY")
        .hasMessageContaining("version 1 (UNAVAILABLE");
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModels(0).getRoutingDegraded())
        .contains("version 1 (UNAVAILABLE").contains("version 2 (UNAVAILABLE");
    assertThat(gateway.stats.scrape()).contains("modelgate_routing_degraded{model=\"m\"} 0.0");
    List<String> audit = Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE));
    assertThat(audit.stream().filter(line -> line.contains("\"action\":\"UnloadModel\"")).toList()).hasSize(2)
        .allMatch(line -> line.contains("\"model\":\"m\"") && line.contains("unloaded after draining"));
    // Nothing READY is left to unload: the same answer, nothing audited.
    assertThat(gateway.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build())
        .getVersionsCount()).isEqualTo(3);
    assertThat(Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE)))
        .hasSameSizeAs(audit);
    failsWith(Status.Code.NOT_FOUND,
        () -> gateway.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("nope").build()))
        .hasMessageContaining("unknown model 'nope'");

    // Started again, it stays down (its versions left unloaded): its policy serves in part, as admin
    // models says, but only unloaded versions are missing — an operator's doing, which the routing
    // gauge (and its alert) leaves alone.
    gateway.close();
    gateway = Gateway.inProcess(root);
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModels(0).getRoutingDegraded())
        .contains("version 1 (UNAVAILABLE: unloaded, as").contains("version 2 (UNAVAILABLE");
    assertThat(gateway.stats.scrape()).contains("modelgate_routing_degraded{model=\"m\"} 0.0");

    // Version 3's folder holds no model: it fails again, the others load.
    failsWith(Status.Code.FAILED_PRECONDITION,
        () -> gateway.admin().loadModel(io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel("m").build()))
        .hasMessageContaining("did not load whole: version 3 is FAILED");
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("2").build())
        .getModelVersion()).isEqualTo("2");
    // Loaded again, the policy serves whole: both versions take requests unpinned.
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModels(0).getRoutingDegraded()).isEmpty();
    java.util.Set<String> served = new java.util.HashSet<>();
    for (int i = 0; i < 64 && served.size() < 2; i++) {
      served.add(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion());
    }
    assertThat(served).containsExactlyInAnyOrder("1", "2");
  }

  @Test
  void aReload_swapsInTheEditedModelWhileClientsCallIt_refusingNone_andEachCallerSeesTheOldThenTheNew() throws Exception {
    // Four callers call version 2 (the default route) without pause while it is loaded again five
    // times, each time from a new file: y[0] for x = 1 is 3 (the first file), then 4, 5, 6, 7, 8.
    AtomicBooleanHolder stop = new AtomicBooleanHolder();
    List<List<Float>> seen = new java.util.ArrayList<>();
    List<Throwable> failures = new java.util.concurrent.CopyOnWriteArrayList<>();
    java.util.concurrent.atomic.AtomicInteger answered = new java.util.concurrent.atomic.AtomicInteger();
    List<Thread> callers = new java.util.ArrayList<>();
    for (int t = 0; t < 4; t++) {
      List<Float> mine = new java.util.ArrayList<>();
      seen.add(mine);
      Thread caller = new Thread(() -> {
        while (!stop.value) {
          try {
            float y = Tensors.floats(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build())
                .getRawOutputContents(0))[0];
            if (mine.isEmpty() || mine.get(mine.size() - 1) != y) {
              mine.add(y);
            }
            answered.incrementAndGet();
          } catch (RuntimeException e) {
            failures.add(e);
          }
        }
      });
      caller.start();
      callers.add(caller);
    }
    try {
      for (int k = 3; k <= 7; k++) {
        int before = answered.get();
        io.modelgate.gateway.testing.Eventually.eventually("50 more answers", () -> answered.get() > before + 50);
        Gateway.write(root, "m", 2, Gateway.affineTimes(k));
        VersionInfo info = gateway.admin().loadVersion(
            LoadVersionRequest.newBuilder().setModel("m").setVersion(2).setReload(true).build());
        assertThat(info.getState()).isEqualTo("READY");
        assertThat(info.getModelSha256()).isEqualTo(sha256(root.resolve("m/2/model.onnx")));
      }
      int before = answered.get();
      io.modelgate.gateway.testing.Eventually.eventually("50 more answers", () -> answered.get() > before + 50);
    } finally {
      stop.value = true;
      for (Thread caller : callers) {
        caller.join();
      }
    }
    assertThat(failures).isEmpty();
    for (List<Float> mine : seen) {
      // Each caller's answers: the files in the order they were swapped in, never an older one after a newer.
      assertThat(mine).isSorted().startsWith(3f).endsWith(8f);
    }
    assertThat(Tensors.floats(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build())
        .getRawOutputContents(0))[0]).isEqualTo(8f);
    // The version's statistics go on across its loads: every call counted on version 2, the last one too.
    gateway.stats.rotate();
    StatsResponse stats = gateway.admin().getStats(GetStatsRequest.newBuilder().setModel("m").setVersion(2).build());
    assertThat(stats.getVersions(0).getWindowsList().stream().filter(w -> w.getWindow().equals("1m")).findFirst()
        .orElseThrow().getRequests()).isEqualTo(answered.get() + 1L);
    List<String> audit = Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE));
    assertThat(audit.stream().filter(line -> line.contains("\"action\":\"ReloadVersion\"")).toList()).hasSize(5)
        .allMatch(line -> line.contains("READY, loaded again while it served"));
    assertThat(gateway.stats.scrape()).contains("modelgate_version_reloads_total{result=\"reloaded\"} 5.0")
        .contains("modelgate_version_reloads_total{result=\"failed\"} 0.0");
  }

  private static final class AtomicBooleanHolder {
    volatile boolean value;
  }

  private static String sha256(Path file) throws Exception {
    return java.util.HexFormat.of().formatHex(
        java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(file)));
  }

  @Test
  void aModelsReload_loadsEachReadyVersionAgain_leavesTheOthers_andNamesThoseThatFailed() throws Exception {
    io.modelgate.runtime.repository.Model m = gateway.repository.model("m").orElseThrow();
    io.modelgate.runtime.repository.LoadedVersion one = m.version(1).orElseThrow().serving();
    io.modelgate.runtime.repository.LoadedVersion two = m.version(2).orElseThrow().serving();
    io.modelgate.proto.admin.v1.LoadModelRequest reload =
        io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel("m").setReload(true).build();

    io.modelgate.proto.admin.v1.ModelInfo info = gateway.admin().loadModel(reload);
    assertThat(info.getVersionsList()).extracting(VersionInfo::getVersion, VersionInfo::getState).containsExactly(
        org.assertj.core.groups.Tuple.tuple(1L, "READY"), org.assertj.core.groups.Tuple.tuple(2L, "READY"),
        org.assertj.core.groups.Tuple.tuple(3L, "FAILED"));
    assertThat(m.version(1).orElseThrow().serving()).isNotSameAs(one);
    assertThat(m.version(2).orElseThrow().serving()).isNotSameAs(two);

    // Version 2's file broken: version 1 is loaded again, version 2 serves as before, and the answer says so.
    one = m.version(1).orElseThrow().serving();
    two = m.version(2).orElseThrow().serving();
    Gateway.write(root, "m", 2, "broken now".getBytes());
    failsWith(Status.Code.FAILED_PRECONDITION, () -> gateway.admin().loadModel(reload))
        .hasMessageStartingWith("FAILED_PRECONDITION: model 'm' was not loaded again whole: model 'm' version 2 not"
            + " loaded again: ")
        .hasMessageEndingWith("; it serves as before");
    assertThat(m.version(1).orElseThrow().serving()).isNotSameAs(one);
    assertThat(m.version(2).orElseThrow().serving()).isSameAs(two);
    assertThat(Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE)))
        .filteredOn(line -> line.contains("\"action\":\"ReloadModel\"")).hasSize(4);

    // Not while a rollout of it runs.
    Gateway.write(root, "m", 2, Gateway.affine());
    set(0, 1, 100);
    gateway.admin().startRollout(io.modelgate.proto.admin.v1.StartRolloutRequest.newBuilder()
        .setSpec(io.modelgate.proto.admin.v1.RolloutSpec.newBuilder().setModel("m").setBaseline(1).setCandidate(2)
            .addSteps(10).addSteps(100).setIntervalS(3600)).build());
    failsWith(Status.Code.FAILED_PRECONDITION, () -> gateway.admin().loadModel(reload))
        .hasMessageContaining("model 'm' has a RUNNING rollout");
    failsWith(Status.Code.NOT_FOUND, () -> gateway.admin().loadModel(reload.toBuilder().setModel("nope").build()));
  }

  @Test
  void aReloadThatFails_leavesTheVersionServing_andOnlyAReadyVersionOfItsOwnFolderThatNoRunningRolloutNamesReloads()
      throws Exception {
    LoadVersionRequest.Builder reload = LoadVersionRequest.newBuilder().setModel("m").setReload(true);
    Gateway.write(root, "m", 2, "not a model any more".getBytes());
    failsWith(Status.Code.FAILED_PRECONDITION, () -> gateway.admin().loadVersion(reload.setVersion(2).build()))
        .hasMessageContaining("model 'm' version 2 not loaded again: ")
        .hasMessageContaining("m/2/model.onnx")
        .hasMessageEndingWith("; it serves as before");
    assertThat(answeringVersion()).isEqualTo("2");
    assertThat(Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE)))
        .anyMatch(line -> line.contains("\"action\":\"ReloadVersion\"") && line.contains("not loaded again, serving as before"));
    assertThat(gateway.stats.scrape()).contains("modelgate_version_reloads_total{result=\"failed\"} 1.0");
    failsWith(Status.Code.FAILED_PRECONDITION, () -> gateway.admin().loadVersion(reload.setVersion(3).build()))
        .hasMessageContaining("model 'm' version 3 is FAILED, not READY: load it");
    failsWith(Status.Code.NOT_FOUND, () -> gateway.admin().loadVersion(reload.setVersion(9).build()))
        .hasMessageContaining("model 'm' has no version 9");

    Gateway.write(root, "m", 2, Gateway.affine());
    set(0, 1, 100);
    gateway.admin().startRollout(io.modelgate.proto.admin.v1.StartRolloutRequest.newBuilder()
        .setSpec(io.modelgate.proto.admin.v1.RolloutSpec.newBuilder().setModel("m").setBaseline(1).setCandidate(2)
            .addSteps(10).addSteps(100).setIntervalS(3600)).build());
    failsWith(Status.Code.FAILED_PRECONDITION, () -> gateway.admin().loadVersion(reload.setVersion(2).build()))
        .hasMessage("FAILED_PRECONDITION: version 2 of model 'm' is the candidate of its RUNNING rollout, whose evidence"
            + " would mix two loads of it; abort the rollout first (admin rollout abort --model m)");
  }

  @Test
  void aRoutedVersionThatFailsWhileServing_takesNoMoreTraffic_thePolicyServedInPartAndAlerted_thenWholeOnceLoaded()
      throws Exception {
    set(0, 1, 50, 2, 50);
    // Version 2's batcher fails (a defect in its path): it answers its queue and turns FAILED.
    io.modelgate.runtime.repository.LoadedVersion two = gateway.repository.model("m").orElseThrow().version(2).orElseThrow().serving();
    io.modelgate.runtime.testing.Requests.Answer answer = new io.modelgate.runtime.testing.Requests.Answer();
    two.scheduler().submit(io.modelgate.runtime.execution.InferenceRequest.of(
        io.modelgate.runtime.tensor.RequestDecoder.decode(
            io.modelgate.runtime.testing.Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), two.signature()),
        System.nanoTime(), () -> {
          throw new IllegalStateException("defect in the batcher's path");
        }, answer));
    io.modelgate.gateway.testing.Eventually.eventually("version 2 fails",
        () -> gateway.repository.model("m").orElseThrow().version(2).orElseThrow().state()
            == io.modelgate.runtime.repository.VersionState.FAILED);
    // Its traffic goes to version 1 alone, as after a restart without it; a fault, so the gauge says 1.
    for (int i = 0; i < 40; i++) {
      assertThat(gateway.blocking().modelInfer(Tensors.affine(i, 2, 3).setModelName("m").build()).getModelVersion())
          .isEqualTo("1");
    }
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModels(0).getRoutingDegraded())
        .contains("version 2 (FAILED").contains("defect in the batcher's path");
    assertThat(gateway.stats.scrape()).contains("modelgate_routing_degraded{model=\"m\"} 1.0");
    assertThat(routingRevision()).isEqualTo(1);
    // Loaded again: the policy serves whole, both versions answering.
    assertThat(gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("m").setVersion(2).build()).getState())
        .isEqualTo("READY");
    assertThat(gateway.stats.scrape()).contains("modelgate_routing_degraded{model=\"m\"} 0.0");
    java.util.Set<String> served = new java.util.HashSet<>();
    for (int i = 0; i < 64 && served.size() < 2; i++) {
      served.add(gateway.blocking().modelInfer(Tensors.affine(i, 2, 3).setModelName("m").build()).getModelVersion());
    }
    assertThat(served).containsExactlyInAnyOrder("1", "2");
  }

  private long routingRevision() {
    return gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build()).getRevision();
  }

  @Test
  void everyChange_isAuditedWithCallerAndOldAndNewPolicies() throws Exception {
    set(0, 1, 100);
    set(1, 2, 100);
    List<String> lines = Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE));
    assertThat(lines).hasSize(2);
    assertThat(lines.get(1))
        .contains("\"action\":\"SetRouting\"")
        .contains("\"caller\":")
        .contains("\"oldPolicy\":{\"model\":\"m\",\"revision\":\"1\",\"weights\":{\"1\":100}")
        .contains("\"newPolicy\":{\"model\":\"m\",\"revision\":\"2\",\"weights\":{\"2\":100}");
  }

  @Test
  void aRestart_comesBackWithTheSameWeights() throws Exception {
    set(0, 1, 30, 2, 70);
    gateway.close();
    gateway = Gateway.inProcess(root);
    RoutingPolicy restored = gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build());
    assertThat(restored.getRevision()).isEqualTo(1);
    assertThat(restored.getWeightsMap()).containsEntry(1L, 30).containsEntry(2L, 70);
    // The history survives too: rollback returns to the default.
    assertThat(
            gateway.admin().rollback(RollbackRequest.newBuilder().setModel("m").setExpectedRevision(1).build())
                .getWeightsMap())
        .isEmpty();
  }

  @Test
  void aRestart_withAVersionOfThePolicyBroken_keepsThePolicy_andRoutesAmongItsReadyVersions() throws Exception {
    // 1 live, 2 as a 0-weight entry and a shadow.
    gateway.admin().setRouting(
        SetRoutingRequest.newBuilder()
            .setPolicy(
                RoutingPolicy.newBuilder()
                    .setModel("m")
                    .putWeights(1, 100)
                    .setShadow(io.modelgate.proto.admin.v1.ShadowRouting.newBuilder().setVersion(2).setSampleRate(0.5)))
            .build());
    gateway.close();
    // Version 2's file is corrupt when the server comes back.
    Gateway.write(root, "m", 2, "corrupted".getBytes());
    gateway = Gateway.inProcess(root);
    RoutingPolicy restored = gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build());
    assertThat(restored.getRevision()).isEqualTo(1);
    assertThat(restored.getWeightsMap()).containsExactly(java.util.Map.entry(1L, 100));
    assertThat(restored.getShadow().getVersion()).isEqualTo(2);
    // Version 1 keeps all traffic: no fallback to the highest READY version.
    for (int i = 0; i < 20; i++) {
      assertThat(answeringVersion()).isEqualTo("1");
    }
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModels(0).getRoutingDegraded())
        .contains("shadow version 2").contains("FAILED");
    // A fault: the gauge (and its alert) says so.
    assertThat(gateway.stats.scrape()).contains("modelgate_routing_degraded{model=\"m\"} 1.0");
  }

  @Test
  void aRestart_withEveryWeightedVersionBroken_refusesRatherThanPromoteAnother() throws Exception {
    Gateway.write(root, "m", 4, Gateway.affine());
    gateway.close();
    gateway = Gateway.inProcess(root);
    set(0, 1, 100, 4, 0);
    gateway.close();
    Gateway.write(root, "m", 1, "corrupted".getBytes());
    gateway = Gateway.inProcess(root);
    // Versions 2 and 4 are READY, but the policy sends everything to 1: refuse, never route to 4.
    failsWith(Status.Code.UNAVAILABLE, this::answeringVersion)
        .hasMessageContaining("routing revision 1 sends traffic only to versions that are not READY")
        .hasMessageContaining("version 1 (FAILED");
    assertThat(gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build()).getRevision())
        .isEqualTo(1);
    // Once version 1 is fixed and loaded, the policy serves whole again.
    Gateway.write(root, "m", 1, Gateway.affine());
    gateway.admin().loadVersion(io.modelgate.proto.admin.v1.LoadVersionRequest.newBuilder().setModel("m").setVersion(1).build());
    assertThat(answeringVersion()).isEqualTo("1");
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModels(0).getRoutingDegraded())
        .isEmpty();
  }

  @Test
  void aShadowThatAlsoHasWeight_isRefused() {
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () ->
                gateway.admin().setRouting(
                    SetRoutingRequest.newBuilder()
                        .setPolicy(
                            RoutingPolicy.newBuilder()
                                .setModel("m")
                                .putWeights(1, 90)
                                .putWeights(2, 10)
                                .setShadow(io.modelgate.proto.admin.v1.ShadowRouting.newBuilder().setVersion(2).setSampleRate(1)))
                        .build()))
        .hasMessageContaining("shadow version 2 of model 'm' also has weight 10");
  }

  @Test
  void getStats_reportsPerVersionCountsErrorsAndLatency() {
    set(0, 1, 100);
    for (int i = 0; i < 30; i++) {
      answeringVersion();
    }
    assertThatThrownBy(
        () ->
            gateway.blocking().modelInfer(
                io.modelgate.proto.inference.ModelInferRequest.newBuilder().setModelName("m").build()));
    gateway.stats.rotate();
    StatsResponse stats = gateway.admin().getStats(GetStatsRequest.newBuilder().setModel("m").setVersion(1).build());
    assertThat(stats.getVersionsList()).hasSize(1);
    WindowStats minute = stats.getVersions(0).getWindowsList().stream()
        .filter(w -> w.getWindow().equals("1m")).findFirst().orElseThrow();
    assertThat(minute.getRequests()).isEqualTo(31);
    assertThat(minute.getErrors()).isEqualTo(1);
    assertThat(minute.getErrorsByCodeMap()).containsEntry("INVALID_ARGUMENT", 1L);
    assertThat(minute.getEndToEndMs().getCount()).isEqualTo(30);
    assertThat(minute.getEndToEndMs().getP99()).isPositive();
    assertThat(minute.getComputeMs().getCount()).isPositive();
    assertThat(stats.getVersions(0).getWindowsList()).extracting(WindowStats::getWindow)
        .containsExactly("1m", "5m", "15m", "all");
  }

  @Test
  void statsOfAModelOrVersionTheReplicaDoesNotHave_areNotFound_notAnEmptyReport() {
    failsWith(Status.Code.NOT_FOUND, () -> gateway.admin().getStats(GetStatsRequest.newBuilder().setModel("mm").build()))
        .hasMessageContaining("unknown model 'mm'").hasMessageContaining("m");
    failsWith(Status.Code.NOT_FOUND,
            () -> gateway.admin().getStats(GetStatsRequest.newBuilder().setModel("m").setVersion(9).build()))
        .hasMessageContaining("model 'm' has no version 9 (1: READY");
    // A file store has no other replicas: nowhere else could have it.
    failsWith(Status.Code.NOT_FOUND, () -> gateway.admin().getFleetStats(GetStatsRequest.newBuilder().setModel("mm").build()))
        .hasMessageContaining("unknown model 'mm'");
    var reports = io.modelgate.proto.admin.v1.AdminServiceGrpc.newBlockingStub(gateway.adminChannel)
        .withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
        .withDeadlineAfter(30, java.util.concurrent.TimeUnit.SECONDS)
        .watchStats(io.modelgate.proto.admin.v1.WatchStatsRequest.newBuilder().setModel("mm").setIntervalMs(500).build());
    failsWith(Status.Code.NOT_FOUND, reports::next).hasMessageContaining("unknown model 'mm'");
    // Every model, or every model's version 1, as before.
    assertThat(gateway.admin().getStats(GetStatsRequest.getDefaultInstance()).getVersionsCount()).isPositive();
    assertThat(gateway.admin().getStats(GetStatsRequest.newBuilder().setVersion(1).build()).getVersionsList())
        .allMatch(v -> v.getVersion() == 1);
  }

  @Test
  void watchStats_streamsReports() {
    var reports = io.modelgate.proto.admin.v1.AdminServiceGrpc.newBlockingStub(gateway.adminChannel)
        .withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
        .withDeadlineAfter(30, java.util.concurrent.TimeUnit.SECONDS)
        .watchStats(io.modelgate.proto.admin.v1.WatchStatsRequest.newBuilder().setModel("m").setIntervalMs(500).build());
    assertThat(reports.next().getVersionsCount()).isEqualTo(2);
    assertThat(reports.next().getTimeMs()).isPositive();
  }

  @Test
  void watchStats_aWatcherThatDoesNotRead_isSentNothingMore_untilItReadsAgain() throws Exception {
    java.util.concurrent.atomic.AtomicReference<io.grpc.stub.ClientCallStreamObserver<?>> call =
        new java.util.concurrent.atomic.AtomicReference<>();
    java.util.concurrent.atomic.AtomicInteger received = new java.util.concurrent.atomic.AtomicInteger();
    io.modelgate.proto.admin.v1.AdminServiceGrpc.newStub(gateway.adminChannel)
        .withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
        .watchStats(io.modelgate.proto.admin.v1.WatchStatsRequest.newBuilder().setModel("m").setIntervalMs(500).build(),
            new io.grpc.stub.ClientResponseObserver<io.modelgate.proto.admin.v1.WatchStatsRequest, StatsResponse>() {
              @Override
              public void beforeStart(io.grpc.stub.ClientCallStreamObserver<io.modelgate.proto.admin.v1.WatchStatsRequest> stream) {
                stream.disableAutoRequestWithInitial(0);
                call.set(stream);
              }

              @Override
              public void onNext(StatsResponse value) {
                received.incrementAndGet();
              }

              @Override
              public void onError(Throwable t) {}

              @Override
              public void onCompleted() {}
            });
    try {
      // Six reports' time without reading any: a server that sent them regardless holds them all.
      Thread.sleep(3_000);
      call.get().request(Integer.MAX_VALUE);
      Thread.sleep(300);
      assertThat(received.get()).as("reports waiting when the watcher read again").isLessThanOrEqualTo(2);
      // Reading, it gets reports again.
      int before = received.get();
      io.modelgate.gateway.testing.Eventually.eventually("no report after the watcher read again", () -> received.get() > before);
    } finally {
      call.get().cancel("done", null);
    }
  }

  @Test
  void stateFile_isWrittenAtomicallyAsJson() throws Exception {
    set(0, 2, 1);
    Path state = root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.STATE_FILE);
    assertThat(Files.readString(state)).contains("\"policies\"").contains("\"revision\": \"1\"").contains("\"2\": 1");
    assertThat(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.STATE_FILE + ".tmp")).doesNotExist();
  }
}

package io.modelgate.gateway.control;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.testing.EtcdServer;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.LogLines;
import io.modelgate.gateway.testing.TcpProxy;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.ListModelsResponse;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Replicas sharing a real etcd (started by the test): compare-and-swap between replicas, changes
 * applied by every replica through the watch (and how fast), a replica that starts later or was
 * cut off misses nothing, an etcd outage refuses changes but not traffic, and one judge at a time.
 * Each test works under its own key prefix.
 */
class EtcdControlStoreTest {
  @TempDir static Path root;
  static EtcdServer etcd;

  @BeforeAll
  static void startEtcd() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
    etcd = EtcdServer.start(root.resolve("etcd"));
  }

  @AfterAll
  static void stopEtcd() throws Exception {
    if (etcd != null) {
      etcd.close();
    }
  }

  /** How often a replica probes etcd in these tests (a fifth of a second, to find outages soon). */
  private static final Duration PROBES = Duration.ofMillis(200);

  private static ControlSettings settings(String prefix, String replica, List<URI> endpoints, Duration probeInterval) {
    // No reread but the ones etcd's watches ask for: a topic whose watch failed would never reach another replica.
    return new ControlSettings(endpoints, prefix, replica, null, null, null, null, null, null,
        Duration.ofSeconds(2), Duration.ofSeconds(2), probeInterval).withRereadEvery(Duration.ofHours(1));
  }

  private static Gateway replica(String prefix, String name) throws Exception {
    return replica(prefix, name, etcd.endpoints());
  }

  private static Gateway replica(String prefix, String name, List<URI> endpoints) throws Exception {
    return replica(prefix, name, endpoints, PROBES);
  }

  private static Gateway replica(String prefix, String name, List<URI> endpoints, Duration probeInterval) throws Exception {
    return Gateway.inProcess(root, root.resolve("state-" + prefix.replace("/", "") + "-" + name), Clock.systemUTC(),
        settings(prefix, name, endpoints, probeInterval));
  }

  private static RoutingPolicy policy(int w1, int w2) {
    RoutingPolicy.Builder p = RoutingPolicy.newBuilder().setModel("m");
    if (w1 > 0) {
      p.putWeights(1, w1);
    }
    if (w2 > 0) {
      p.putWeights(2, w2);
    }
    return p.build();
  }

  private static RoutingPolicy set(Gateway replica, RoutingPolicy policy, long expected) {
    return replica.admin().setRouting(SetRoutingRequest.newBuilder().setPolicy(policy).setExpectedRevision(expected).build());
  }

  private static long revision(Gateway replica) {
    return replica.server.router().route("m").policy().getRevision();
  }

  /** A replica of the fleet under {@code prefix} that traces calls (to an address nothing listens at; none is made). */
  private static Gateway traced(String prefix, String name) throws Exception {
    var plain = Gateway.adminSettings(root.resolve("state-" + prefix.replace("/", "") + "-" + name), -1);
    var settings = new io.modelgate.gateway.server.AdminSettings(plain.host(), plain.port(), plain.token(), plain.tls(),
        plain.metricsHost(), plain.metricsPort(), plain.stateDirectory(), settings(prefix, name, etcd.endpoints(), PROBES))
        .withTraces(io.modelgate.gateway.tracing.TraceSettings.to(URI.create("http://127.0.0.1:9"), 0));
    return Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO, settings, Clock.systemUTC());
  }

  private static io.modelgate.proto.admin.v1.Diagnostics diagnostics(Gateway replica) {
    return replica.admin().getDiagnostics(io.modelgate.proto.admin.v1.GetDiagnosticsRequest.getDefaultInstance());
  }

  @Test
  void whatIsSetForTheFleet_everyReplicaFollows_aReplicasOwnHoldsOverIt_andItIsSetBackEverywhere() throws Exception {
    var rate = io.modelgate.proto.admin.v1.SetTraceSampleRateRequest.newBuilder();
    var level = io.modelgate.proto.admin.v1.SetLogLevelRequest.newBuilder().setLogger("io.modelgate.gateway.control");
    // What Diagnostics logs (both replicas, one JVM): each level it puts in force.
    try (var lines = new LogLines(io.modelgate.gateway.diagnostics.Diagnostics.class);
        Gateway a = traced("/diagnostics/", "a"); Gateway b = traced("/diagnostics/", "b")) {
      a.admin().setTraceSampleRate(rate.clone().setSampleRate(0.25).setForMs(Duration.ofHours(1).toMillis()).setFleet(true)
          .build());
      assertThat(a.server.tracing().sampleRate()).as("at once where it was asked").isEqualTo(0.25);
      eventually("b follows the fleet's rate", () -> b.server.tracing().sampleRate() == 0.25);
      assertThat(diagnostics(b).getTraceSampleRateSet()).satisfies(set -> {
        assertThat(set.getFleet()).isTrue();
        assertThat(set.getSetBy()).endsWith("admin");
      });
      assertThat(diagnostics(b).getFleet().getTraceSampleRateSet().getSampleRate()).isEqualTo(0.25);
      assertThatThrownBy(() -> a.admin().setTraceSampleRate(rate.clone().setRestore(true).build()))
          .hasMessageContaining("FAILED_PRECONDITION: the trace sample rate in force is the fleet's: set it back with"
              + " --fleet --restore");

      // b's own rate holds over the fleet's; the fleet's set back goes everywhere it is in force.
      b.admin().setTraceSampleRate(rate.clone().setSampleRate(1).setForMs(Duration.ofHours(1).toMillis()).build());
      a.admin().setTraceSampleRate(rate.clone().setRestore(true).setFleet(true).build());
      assertThat(a.server.tracing().sampleRate()).isZero();
      eventually("b reads the fleet's set back", () -> !diagnostics(b).getFleet().hasTraceSampleRateSet());
      assertThat(b.server.tracing().sampleRate()).as("b's own").isEqualTo(1.0);
      b.admin().setTraceSampleRate(rate.clone().setRestore(true).build());

      // A level for the fleet, listed by each replica as the fleet's, set back by any.
      a.admin().setLogLevel(level.clone().setLevel("DEBUG").setForMs(Duration.ofHours(1).toMillis()).setFleet(true).build());
      eventually("b lists the fleet's level", () -> diagnostics(b).getLogLevelsList().stream()
          .anyMatch(set -> set.getFleet() && set.getLogger().equals("io.modelgate.gateway.control")));
      // The record read again (as the fleet's rate changes, twice): the level in force stays as it is, not put in force anew.
      a.admin().setTraceSampleRate(rate.clone().setSampleRate(0.75).setForMs(Duration.ofHours(1).toMillis()).setFleet(true)
          .build());
      eventually("b follows the fleet's new rate", () -> b.server.tracing().sampleRate() == 0.75);
      a.admin().setTraceSampleRate(rate.clone().setRestore(true).setFleet(true).build());
      eventually("b follows the rate set back", () -> b.server.tracing().sampleRate() == 0);
      assertThat(lines.startingWith("log level of io.modelgate.gateway.control DEBUG"))
          .as("the fleet's level put in force once on each replica").hasSize(2);
      b.admin().setLogLevel(level.clone().setFleet(true).build());
      eventually("a's level set back", () -> diagnostics(a).getLogLevelsCount() == 0);
      eventually("b's level set back", () -> diagnostics(b).getLogLevelsCount() == 0);

      // One that runs out, on every replica (b is told of it by etcd's watch at once, and reads it before it runs out).
      a.admin().setTraceSampleRate(rate.clone().setSampleRate(0.5).setForMs(6000).setFleet(true).build());
      eventually("b follows", () -> b.server.tracing().sampleRate() == 0.5);
      eventually("a's ran out", () -> a.server.tracing().sampleRate() == 0);
      eventually("b's ran out", () -> b.server.tracing().sampleRate() == 0);
    }
    // Each fleet-wide change audited once, where it was made.
    assertThat(auditRecords("/diagnostics/")).extracting(record -> record.getReplica() + " " + record.getAction() + " "
        + record.getDetail().replaceAll(" \\(until .*", "")).containsExactly(
            "a SetTraceSampleRate for the fleet: 0.25 for 1h",
            "b SetTraceSampleRate 1.0 for 1h",
            "a SetTraceSampleRate for the fleet: set back",
            "b SetTraceSampleRate back to 0.0 from 1.0: set back by " + auditRecords("/diagnostics/").get(3).getCaller(),
            "a SetLogLevel for the fleet: io.modelgate.gateway.control DEBUG for 1h",
            "a SetTraceSampleRate for the fleet: 0.75 for 1h",
            "a SetTraceSampleRate for the fleet: set back",
            "b SetLogLevel for the fleet: io.modelgate.gateway.control set back",
            "a SetTraceSampleRate for the fleet: 0.5 for 6s");
    // A replica without a fleet refuses it.
    try (Gateway alone = Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve("state-alone"), -1), Clock.systemUTC())) {
      assertThatThrownBy(() -> alone.admin().setLogLevel(level.clone().setLevel("DEBUG").setFleet(true).build()))
          .hasMessageContaining("FAILED_PRECONDITION: this replica has no fleet");
    }
  }


  private static io.modelgate.proto.admin.v1.VersionDrift drift(Gateway replica) {
    try {
      replica.server.drift().flush().get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      throw new IllegalStateException("the drift profiler did not flush", e);
    }
    return replica.admin().getDrift(io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder().setModel("d").build())
        .getVersions(0);
  }

  private static void send(Gateway replica, int count) {
    java.util.Random random = new java.util.Random(count);
    for (int i = 0; i < count; i++) {
      replica.blocking().modelInfer(Tensors.affine((float) random.nextGaussian(), 1, 2).setModelName("d").build());
    }
  }

  /**
   * A repository {@code name} of the affine model as {@code d}, every request profiled, its
   * reference from its first {@code referenceRequests}, alerting on the last minute.
   */
  private static Path driftRepository(String name, int referenceRequests) throws java.io.IOException {
    Path repository = Files.createDirectories(root.resolve(name));
    Gateway.write(repository, "d", 1, Gateway.affine());
    Files.writeString(repository.resolve("d/model.yaml"), "max_batch_size: 0\ndrift:\n  sample_rate: 1.0\n"
        + "  reference_requests: " + referenceRequests + "\n  window: 1m\n");
    return repository;
  }

  /** A replica of {@code repository} under {@code prefix}, named {@code name}. */
  private static Gateway fleetReplica(Path repository, String prefix, String name) throws Exception {
    return Gateway.inProcess(repository, root.resolve("state" + prefix.replace("/", "-") + name), Clock.systemUTC(),
        settings(prefix, name, etcd.endpoints(), PROBES));
  }

  /** Publishes {@code replica}'s snapshots once it holds its lease (its fleet thread is off in tests). */
  private static void published(Gateway replica) throws InterruptedException {
    eventually("the replica publishes once it holds its lease", () -> {
      try {
        replica.server.fleet().publish();
        return true;
      } catch (RuntimeException e) {
        return false;
      }
    });
  }

  /**
   * {@code asking}'s merged report; the {@code answering} replicas answer on their fleet threads
   * once etcd's watch tells them of the ask, a thread that is off in these tests (but the one
   * above): here by hand until the report comes.
   */
  private static io.modelgate.proto.admin.v1.DriftReport askMerged(Gateway asking,
      io.modelgate.proto.admin.v1.GetDriftRequest request, Gateway... answering) throws Exception {
    return answered(() -> asking.admin().getDrift(request), answering);
  }

  /** What {@code call} returns, while the {@code answering} replicas answer asks for sketches by hand. */
  private static <T> T answered(java.util.function.Supplier<T> call, Gateway... answering) throws Exception {
    var asked = java.util.concurrent.CompletableFuture.supplyAsync(call);
    eventually("the replicas answer", () -> {
      for (Gateway replica : answering) {
        replica.server.fleet().answerDriftAsks();
      }
      return asked.isDone();
    });
    return asked.get();
  }

  /** {@code count} requests to d whose first element is (i + 0.5) / count + shift, i = 0 .. count − 1. */
  private static void sendGrid(Gateway replica, int count, double shift) throws Exception {
    for (int i = 0; i < count; i++) {
      replica.blocking().modelInfer(Tensors.affine((float) ((i + 0.5) / count + shift), 1, 2).setModelName("d").build());
    }
    replica.server.drift().flush().get(10, TimeUnit.SECONDS);
  }

  @Test
  void theJudge_mergesTheFleetsDriftEachRound_andExportsWhatNoReplicaAloneCanTell() throws Exception {
    Path repository = driftRepository("fleetdrift-repository", 200);
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    clock.millis = System.currentTimeMillis();
    try (Gateway a = Gateway.inProcess(repository, root.resolve("state-fleetdrift-a"), clock,
            settings("/fleetdrift/", "a", etcd.endpoints(), PROBES));
        Gateway b = Gateway.inProcess(repository, root.resolve("state-fleetdrift-b"), clock,
            settings("/fleetdrift/", "b", etcd.endpoints(), PROBES))) {
      eventually("a replica judges", () -> a.server.control().store().judges() || b.server.control().store().judges());
      Gateway judge = a.server.control().store().judges() ? a : b;
      Gateway other = judge == a ? b : a;
      // Each replica's reference: 200 requests on a grid; then, once they have left the last minute,
      // 60 shifted by 0.27 — under the 0.31 either replica's own would need to tell it from chance.
      for (Gateway replica : List.of(a, b)) {
        sendGrid(replica, 200, 0);
      }
      clock.millis += 120_000;
      for (Gateway replica : List.of(a, b)) {
        sendGrid(replica, 60, 0.27);
        assertThat(drift(replica).getFeaturesList()).noneMatch(f -> f.getWindowsList().stream()
            .anyMatch(io.modelgate.proto.admin.v1.WindowDrift::getDrifted));
        published(replica);
      }
      assertThat(judge.stats.prometheus().scrape()).doesNotContain("modelgate_drift_fleet");

      // The fleet's 120 against its 400 tell it (0.22 needed); the judge exports it, the other nothing.
      assertThat(answered(() -> judge.server.fleetDrift().round(), other)).containsExactly("d");
      String scrape = judge.stats.prometheus().scrape();
      for (String series : FleetDrift.SERIES) {
        assertThat(scrape).contains(series + "{");
      }
      assertThat(scrape).contains("modelgate_drift_fleet_drifted{feature=\"[0]\",model=\"d\",statistic=\"ks\",tensor=\"x\",version=\"1\"} 1.0")
          .contains("modelgate_drift_fleet_drifted{feature=\"[1]\",model=\"d\",statistic=\"ks\",tensor=\"x\",version=\"1\"} 0.0")
          .contains("modelgate_drift_fleet_threshold{feature=\"[0]\",model=\"d\",statistic=\"ks\",tensor=\"x\",version=\"1\"} 0.2")
          .contains("modelgate_drift_fleet_replicas{model=\"d\",version=\"1\"} 2.0")
          .contains("modelgate_drift_fleet_left_out{model=\"d\",version=\"1\"} 0.0")
          .contains("modelgate_drift_fleet_merges_total{model=\"d\",outcome=\"merged\"} 1.0")
          .contains("modelgate_drift_fleet_merges_total{model=\"d\",outcome=\"failed\"} 0.0");
      java.util.regex.Matcher score = java.util.regex.Pattern.compile(
          "modelgate_drift_fleet_score\\{feature=\"\\[0\\]\",model=\"d\",statistic=\"ks\",tensor=\"x\",version=\"1\"\\} ([0-9.]+)")
          .matcher(scrape);
      assertThat(score.find()).isTrue();
      assertThat(Double.parseDouble(score.group(1))).isBetween(0.25, 0.31);
      assertThat(other.server.fleetDrift().round()).isEmpty();
      assertThat(other.stats.prometheus().scrape()).doesNotContain("modelgate_drift_fleet");

      // A model no replica profiles any more: its series go at the next round.
      other.close();
      judge.repository.unloadVersion("d", 1, Duration.ofSeconds(5));
      judge.server.drift().flush().get(10, TimeUnit.SECONDS);
      eventually("no snapshot of d carries drift: the judge's version unloaded, the other's gone with it", () -> {
        judge.server.fleet().publish();
        return judge.server.control().store().snapshots("d").stream().noneMatch(io.modelgate.proto.admin.v1.ReplicaSnapshot::hasDrift);
      });
      assertThat(judge.server.fleetDrift().round()).isEmpty();
      assertThat(judge.stats.prometheus().scrape()).doesNotContain("modelgate_drift_fleet");
    }
  }

  @Test
  void aFleetsMergedReference_isTakenByEveryReplica_andByOneStartedAfterIt() throws Exception {
    Path repository = driftRepository("fleetref-repository", 10000);
    var ask = io.modelgate.proto.admin.v1.SetDriftBaselineRequest.newBuilder().setModel("d").setVersion(1).setWindow("1m")
        .setMerged(true).build();
    try (var taken = new LogLines(io.modelgate.gateway.health.Drift.class);
        Gateway a = fleetReplica(repository, "/fleetref/", "a"); Gateway b = fleetReplica(repository, "/fleetref/", "b")) {
      send(a, 300);
      send(b, 200);
      assertThat(drift(b).getState()).isEqualTo("FORMING");
      published(b);

      var here = answered(() -> a.admin().setDriftBaseline(ask), b).getVersions(0);
      assertThat(here.getReferenceSamples()).isEqualTo(500);
      assertThat(here.getReference()).matches("the fleet's 1m window set by an operator at .*, merged from 2 replicas:"
          + " a \\(300\\), b \\(200\\)");
      eventually("b takes the fleet's reference", () -> drift(b).getReferenceSamples() == 500);
      assertThat(drift(b).getReference()).isEqualTo(here.getReference());
      // Once on each: a's follower, told of a's own write by the watch, finds it taken by a's load already.
      assertThat(taken.startingWith("model 'd' version 1: drift reference taken: the fleet's 1m window")).hasSize(2);

      // A replica started since takes it too, once its first request has laid its features out.
      try (Gateway c = fleetReplica(repository, "/fleetref/", "c")) {
        send(c, 5);
        eventually("c takes the fleet's reference", () -> drift(c).getReferenceSamples() == 500);
        assertThat(drift(c).getReference()).isEqualTo(here.getReference());

        // The version unloaded there (its profile goes) and loaded again: the new load takes it again.
        c.repository.unloadVersion("d", 1, Duration.ofSeconds(5));
        c.server.drift().flush().get(10, TimeUnit.SECONDS);
        c.repository.loadVersion("d", 1);
        send(c, 5);
        eventually("c's new load takes the fleet's reference", () -> drift(c).getReferenceSamples() == 500);
      }
      // Not from a golden run; not without a fleet.
      assertThatThrownBy(() -> a.admin().setDriftBaseline(ask.toBuilder().setGolden(true).build()))
          .hasMessageContaining("INVALID_ARGUMENT: a merged reference is the fleet's window");
    }
    assertThat(auditRecords("/fleetref/")).extracting(record -> record.getReplica() + " " + record.getCaller()
            .replaceAll(".*admin$", "OPERATOR") + " " + record.getDetail().replaceAll(", as .*? asked of", ", as OPERATOR asked of"))
        .containsExactlyInAnyOrder(
            "a OPERATOR reference from the fleet's 1m window, merged from 2 replicas: a (300), b (200), on every replica of"
                + " the same model file, each that starts later too",
            "b fleet reference from the fleet's 1m window, merged from 2 replicas: a (300), b (200), as OPERATOR asked of"
                + " every replica on replica a",
            "c fleet reference from the fleet's 1m window, merged from 2 replicas: a (300), b (200), as OPERATOR asked of"
                + " every replica on replica a",
            "c fleet reference from the fleet's 1m window, merged from 2 replicas: a (300), b (200), as OPERATOR asked of"
                + " every replica on replica a");

    // The model removed from the fleet: forgetting it drops its fleet reference from etcd, audited.
    Path without = Files.createDirectories(root.resolve("fleetref-without"));
    Gateway.write(without, "other", 1, Gateway.affine());
    try (Gateway d = fleetReplica(without, "/fleetref/", "d")) {
      assertThat(etcdKeys("/fleetref/drift-baselines/")).containsExactly("/fleetref/drift-baselines/d/1");
      assertThat(d.admin().listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance())
          .getModelsKeptList()).extracting(kept -> kept.getModel() + " " + kept.getDriftReferenceVersionsList())
          .containsExactly("d [1]");
      assertThat(d.admin().forgetModel(io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder().setModel("d").build())
          .getForgotten()).isEqualTo("forgot the fleet's drift reference of version 1");
      assertThat(etcdKeys("/fleetref/drift-baselines/")).isEmpty();
      assertThatThrownBy(() -> d.admin().forgetModel(io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder()
          .setModel("d").build())).hasMessageContaining("NOT_FOUND: nothing is kept for model 'd'");
    }
    refusedWithoutFleet("fleetref-repository", alone -> alone.admin().setDriftBaseline(ask));
  }

  /** What {@code call} does on a replica of the repository {@code name} without a fleet: refused, saying why. */
  private static void refusedWithoutFleet(String name, java.util.function.Consumer<Gateway> call) throws Exception {
    try (Gateway alone = Gateway.inProcess(root.resolve(name), Duration.ofSeconds(10), root.resolve("state-" + name + "-alone"),
        Clock.systemUTC())) {
      assertThatThrownBy(() -> call.accept(alone)).hasMessageContaining("FAILED_PRECONDITION: this replica has no fleet");
    }
  }

  @Test
  void aMergedDriftReport_isAnsweredByEachReplicasFleetThread_toldOfTheAskByEtcdsWatch() throws Exception {
    Path repository = driftRepository("told-repository", 100);
    var merged = io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder().setModel("d").setMerged(true).build();
    // Served as `serve` does, the fleet thread on; no reread but the watches' (the settings'): an ask
    // that no watch told b of would go unanswered within the asker's wait.
    try (Gateway a = Gateway.inProcessWithBackground(repository, root.resolve("state-told-a"),
            settings("/told/", "a", etcd.endpoints(), PROBES));
        Gateway b = Gateway.inProcessWithBackground(repository, root.resolve("state-told-b"),
            settings("/told/", "b", etcd.endpoints(), PROBES))) {
      send(a, 150);
      send(b, 120);
      eventually("b's statistics of d are published", () -> a.server.control().store().snapshots("d").stream()
          .anyMatch(snapshot -> snapshot.getReplica().equals("b")));

      var fleet = a.admin().getDrift(merged).getVersions(0);
      assertThat(fleet.getMergedFromList()).containsExactly("a", "b");
      assertThat(fleet.getNotMergedList()).isEmpty();
      assertThat(fleet.getProfiled()).isEqualTo(270);
    }
  }

  @Test
  void aMergedDriftReport_asksEveryReplicaForItsSketches_mergesEachAnswer_andNamesAReplicaThatDoesNotAnswer() throws Exception {
    Path repository = driftRepository("merge-repository", 100);
    var merged = io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder().setModel("d").setMerged(true).build();
    try (Gateway a = fleetReplica(repository, "/merge/", "a"); Gateway b = fleetReplica(repository, "/merge/", "b");
        Gateway c = fleetReplica(repository, "/merge/", "c")) {
      send(a, 300);
      send(b, 250);
      send(c, 40);
      assertThat(drift(c).getState()).isEqualTo("FORMING");
      assertThat(drift(b).getReferenceSamples()).isEqualTo(100);
      published(b);
      published(c);

      var report = askMerged(a, merged, b, c);
      assertThat(report.getReplica()).isEqualTo("fleet of 3 (a, b, c), merged on a");
      var fleet = report.getVersions(0);
      assertThat(fleet.getReplica()).isEqualTo(io.modelgate.gateway.health.DriftMerge.FLEET);
      assertThat(fleet.getState()).isEqualTo("READY");
      assertThat(fleet.getMergedFromList()).containsExactly("a", "b", "c");
      assertThat(fleet.getNotMergedList()).isEmpty();
      assertThat(fleet.getProfiled()).isEqualTo(590);
      assertThat(fleet.getReferenceSamples()).isEqualTo(200);
      assertThat(fleet.getReference()).isEqualTo("merged from 2 replicas' references: a: the first 100 profiled"
          + " requests (100); b: the first 100 profiled requests (100)");
      assertThat(fleet.getForming()).isEqualTo("the reference of 1 replica still forming (its windows are merged)");
      assertThat(fleet.getFeatures(0).getWindowsList()).extracting(w -> w.getWindow() + " " + w.getSamples())
          .containsExactly("1m 590", "5m 590", "15m 590");

      // A replica that publishes snapshots but does not answer (here a store alone, no server):
      // named once the wait is over; the others are merged all the same.
      try (EtcdControlStore ghost = new EtcdControlStore(settings("/merge/", "ghost", etcd.endpoints(), PROBES),
          new io.micrometer.core.instrument.simple.SimpleMeterRegistry(), Clock.systemUTC())) {
        ghost.watch(changes -> { });
        eventually("the ghost publishes", () -> {
          try {
            ghost.publish(io.modelgate.proto.admin.v1.ReplicaSnapshot.newBuilder().setReplica("ghost").setModel("d")
                .setVersion(1).setTimeMs(System.currentTimeMillis()).build());
            return true;
          } catch (RuntimeException e) {
            return false;
          }
        });
        var withGhost = askMerged(a, merged, b, c).getVersions(0);
        assertThat(withGhost.getMergedFromList()).containsExactly("a", "b", "c");
        assertThat(withGhost.getNotMergedList()).containsExactly("ghost: did not answer within 6000 ms");
      }
    }
    refusedWithoutFleet("merge-repository", alone -> alone.admin().getDrift(merged));
  }

  @Test
  void aDriftReferenceAskedOfTheFleet_isSetByEveryReplicaFromItsOwnWindow_andEachSaysWhatItDid() throws Exception {
    Path repository = driftRepository("drift-repository", 10000);
    var ask = io.modelgate.proto.admin.v1.SetDriftBaselineRequest.newBuilder().setModel("d").setVersion(1).setWindow("1m")
        .setFleet(true).build();
    try (Gateway a = fleetReplica(repository, "/drift/", "a"); Gateway b = fleetReplica(repository, "/drift/", "b")) {
      send(a, 300);
      send(b, 250);
      assertThat(drift(b).getState()).isEqualTo("FORMING");
      assertThat(drift(a).getReferenceSamples()).isZero();

      var here = a.admin().setDriftBaseline(ask).getVersions(0);
      assertThat(here.getReference()).startsWith("the 1m window set by an operator at ");
      assertThat(here.getReferenceSamples()).isEqualTo(300);
      eventually("b takes its own last minute as the reference", () -> drift(b).getReferenceSamples() == 250);
      assertThat(drift(b).getReference()).startsWith("the 1m window set by an operator at ");

      // Every replica's drift in one report: a's own as it is now, b's as b published it.
      published(b);
      var fleet = a.admin().getDrift(io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder().setModel("d").setFleet(true)
          .build());
      assertThat(fleet.getReplica()).isEqualTo("fleet of 2: a, b");
      assertThat(fleet.getVersionsList()).extracting(v -> v.getVersion() + " " + v.getReplica() + " " + v.getProfiled()
          + " " + v.getReferenceSamples()).containsExactly("1 a 300 300", "1 b 250 250");
      assertThat(fleet.getVersions(1).getAsOfMs()).isPositive();

      // A replica that served nothing in the window cannot: it says so where it is read, the audit log.
      try (Gateway c = fleetReplica(repository, "/drift/", "c")) {
        b.admin().setDriftBaseline(ask);
        eventually("c audits why it did not set it", () -> {
          try {
            return auditRecords("/drift/").stream()
                .anyMatch(record -> record.getReplica().equals("c") && record.getDetail().startsWith("NOT SET HERE"));
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
        });
        assertThat(drift(c).getReferenceSamples()).isZero();
      }
    }
    assertThat(auditRecords("/drift/")).extracting(record -> record.getReplica() + " " + record.getCaller()
            .replaceAll(".*admin$", "OPERATOR") + " " + record.getDetail().replaceAll(", as .*? asked of", ", as OPERATOR asked of"))
        .containsExactlyInAnyOrder( // a and c follow b's ask at once, each at its own look
            "a OPERATOR reference from the 1m window, here and on every other replica from its own",
            "b fleet reference from the 1m window, as OPERATOR asked of every replica on replica a",
            "b OPERATOR reference from the 1m window, here and on every other replica from its own",
            "a fleet reference from the 1m window, as OPERATOR asked of every replica on replica b",
            "c fleet NOT SET HERE: model 'd' version 1 has profiled no request in the last 1m (reference from the 1m"
                + " window, as OPERATOR asked of every replica on replica b)");
    // A replica without a fleet refuses it, and sets nothing.
    try (Gateway alone = Gateway.inProcess(root.resolve("drift-repository"), Duration.ofSeconds(10),
        root.resolve("state-drift-alone"), Clock.systemUTC())) {
      assertThatThrownBy(() -> alone.admin().setDriftBaseline(ask))
          .hasMessageContaining("FAILED_PRECONDITION: this replica has no fleet");
      assertThatThrownBy(() -> alone.admin().getDrift(io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder()
              .setModel("d").setFleet(true).build()))
          .hasMessageContaining("FAILED_PRECONDITION: this replica has no fleet");
    }
  }

  @Test
  void aGoldenRunAskedOfTheFleet_isRunByEveryReplica() throws Exception {
    Path demo = Files.createDirectories(root.resolve("drift-demo"));
    io.modelgate.gateway.demo.DemoRepository.materialize(demo);
    var ask = io.modelgate.proto.admin.v1.SetDriftBaselineRequest.newBuilder().setModel("cnn_mnist").setVersion(2)
        .setGolden(true).setFleet(true).build();
    try (Gateway a = Gateway.inProcess(demo, root.resolve("state-golden-a"), Clock.systemUTC(),
            settings("/golden/", "a", etcd.endpoints(), PROBES));
        Gateway b = Gateway.inProcess(demo, root.resolve("state-golden-b"), Clock.systemUTC(),
            settings("/golden/", "b", etcd.endpoints(), PROBES))) {
      assertThat(a.admin().setDriftBaseline(ask).getVersions(0).getReference()).isEqualTo("the golden set (62 examples)");
      eventually("b runs its golden set for the fleet", () -> {
        try {
          return auditRecords("/golden/").stream().anyMatch(record -> record.getReplica().equals("b")
              && record.getDetail().startsWith("reference from a run of the golden set, as "));
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      });
      assertThat(b.admin().getDrift(io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder().setModel("cnn_mnist")
          .setVersion(2).build()).getVersions(0).getReference()).isEqualTo("the golden set (62 examples)");
    }
  }

  @Test
  void aFleetsUsage_addsUpEveryReplicasLedger_andOutlivesAReplica() throws Exception {
    io.modelgate.proto.admin.v1.GetUsageRequest fleet = io.modelgate.proto.admin.v1.GetUsageRequest.newBuilder()
        .setSince("2000-01-01").setFleet(true).build();
    try (Gateway a = replica("/usage/", "a")) {
      try (Gateway b = replica("/usage/", "b")) {
        for (int i = 0; i < 30; i++) {
          a.blocking().modelInfer(io.modelgate.gateway.testing.Tensors.affine(1, 2, 3).setModelName("m").build());
        }
        for (int i = 0; i < 20; i++) {
          b.blocking().modelInfer(io.modelgate.gateway.testing.Tensors.affine(1, 2, 3).setModelName("m").build());
        }
        // b shares what it wrote; a writes its own as it answers the fleet report.
        b.server.usage().flush();
        io.modelgate.proto.admin.v1.UsageReport both = a.admin().getUsage(fleet);
        assertThat(both.getReplica()).isEqualTo("fleet of 2: a, b");
        assertThat(both.getRecordsList()).extracting(r -> r.getTenant() + "/" + r.getModel() + ":" + r.getRequests() + ":" + r.getRows())
            .containsExactly("anonymous/m:50:50");
        // Without --fleet, a replica's own ledger.
        assertThat(a.admin().getUsage(fleet.toBuilder().setFleet(false).build()).getRecords(0).getRequests()).isEqualTo(30);
        // Served after b's last write: shared as b stops (its store is closed after its last usage).
        for (int i = 0; i < 5; i++) {
          b.blocking().modelInfer(io.modelgate.gateway.testing.Tensors.affine(1, 2, 3).setModelName("m").build());
        }
      }
      // b is gone; what it served is still counted, to its last call.
      assertThat(a.admin().getUsage(fleet).getRecords(0).getRequests()).isEqualTo(55);
    }
  }

  @Test
  void theFleetsUsage_beforeAnHour_isDeleted_byAnyReplica_theHoursFromItOnStay() throws Exception {
    java.time.Instant base = java.time.Instant.now().truncatedTo(java.time.temporal.ChronoUnit.HOURS).minus(Duration.ofDays(3));
    List<String> hours = List.of(0, 1, 2).stream().map(h -> io.modelgate.gateway.usage.Usage.hour(base.plusSeconds(h * 3600L), false)).toList();
    try (Gateway a = replica("/retain/", "a"); Gateway b = replica("/retain/", "b")) {
      for (Gateway replica : List.of(a, b)) {
        for (String hour : hours) {
          replica.server.control().store().putUsage(hour, io.modelgate.proto.admin.v1.UsageReport.newBuilder().setSince(hour)
              .addRecords(io.modelgate.proto.admin.v1.UsageRecord.newBuilder().setTenant("t").setModel("m").setVersion("1").setRequests(1))
              .build());
        }
      }
      ControlStore store = b.server.control().store();
      assertThat(store.deleteUsageBefore(hours.get(1))).isEqualTo(2);
      assertThat(store.deleteUsageBefore(hours.get(1))).isZero();
      assertThat(a.server.control().store().usage(hours.get(0), "2100-01-01T00"))
          .extracting(io.modelgate.proto.admin.v1.UsageReport::getSince)
          .containsExactlyInAnyOrder(hours.get(1), hours.get(1), hours.get(2), hours.get(2));
    }
  }

  @Test
  void aTokenMadeOnOneReplica_admitsOnEvery_andItsRevocationToo() throws Exception {
    try (Gateway a = replica("/access/", "a"); Gateway b = replica("/access/", "b")) {
      String secret = a.admin().createToken(io.modelgate.proto.admin.v1.CreateTokenRequest.newBuilder()
          .setName("dashboards").setRole("viewer").build()).getToken();
      // b reads the fleet's access again as etcd's watch tells it of the change (no other reread: settings above).
      eventually("b admits the token made on a", () -> {
        try {
          return b.adminAs(secret).listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance())
              .getModelsCount() > 0;
        } catch (io.grpc.StatusRuntimeException e) {
          return false;
        }
      });
      // Two replicas making tokens at once (a thread each: the common pool has one thread on two
      // cores from JDK 25 on): compare-and-swap keeps both.
      java.util.concurrent.ExecutorService both = java.util.concurrent.Executors.newFixedThreadPool(2);
      try {
        java.util.concurrent.Future<?> one = both.submit(() ->
            a.admin().createToken(io.modelgate.proto.admin.v1.CreateTokenRequest.newBuilder().setName("one").setRole("viewer").build()));
        java.util.concurrent.Future<?> two = both.submit(() ->
            b.admin().createToken(io.modelgate.proto.admin.v1.CreateTokenRequest.newBuilder().setName("two").setRole("viewer").build()));
        one.get(30, TimeUnit.SECONDS);
        two.get(30, TimeUnit.SECONDS);
      } finally {
        both.shutdownNow();
      }
      b.admin().revokeToken(io.modelgate.proto.admin.v1.RevokeTokenRequest.newBuilder().setName("dashboards").build());
      eventually("a refuses the token revoked on b", () -> {
        try {
          a.adminAs(secret).listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance());
          return false;
        } catch (io.grpc.StatusRuntimeException e) {
          return e.getStatus().getCode() == io.grpc.Status.Code.UNAUTHENTICATED;
        }
      });
      assertThat(a.admin().getAccess(io.modelgate.proto.admin.v1.GetAccessRequest.getDefaultInstance()).getTokensList())
          .extracting(t -> t.getName() + ":" + t.getSource())
          .containsExactly("admin:server", "one:api", "two:api");
    }
  }

  @Test
  void twoOperatorsOnTwoReplicas_changingTheSameModel_exactlyOneWins_theOtherIsAbortedWithTheRevision() throws Exception {
    try (Gateway a = replica("/cas/", "a"); Gateway b = replica("/cas/", "b")) {
      for (int round = 0; round < 20; round++) {
        long expected = revision(a);
        eventually("b at revision " + expected, () -> revision(b) == expected);
        CyclicBarrier together = new CyclicBarrier(2);
        ExecutorService two = Executors.newFixedThreadPool(2);
        int w = round;
        Future<Object> onA = two.submit(() -> { together.await(); return attempt(a, policy(100 - w, w + 1), expected); });
        Future<Object> onB = two.submit(() -> { together.await(); return attempt(b, policy(w + 1, 100 - w), expected); });
        List<Object> outcomes = List.of(onA.get(30, TimeUnit.SECONDS), onB.get(30, TimeUnit.SECONDS));
        two.shutdown();
        List<RoutingPolicy> won = outcomes.stream().filter(RoutingPolicy.class::isInstance).map(RoutingPolicy.class::cast).toList();
        List<StatusRuntimeException> lost =
            outcomes.stream().filter(StatusRuntimeException.class::isInstance).map(StatusRuntimeException.class::cast).toList();
        assertThat(won).as("round %d: %s", round, outcomes).hasSize(1);
        assertThat(lost).hasSize(1);
        assertThat(lost.get(0).getStatus().getCode()).isEqualTo(Status.Code.ABORTED);
        assertThat(lost.get(0).getStatus().getDescription()).contains("revision " + (expected + 1));
        RoutingPolicy winner = won.get(0);
        assertThat(winner.getRevision()).isEqualTo(expected + 1);
        // Both replicas route by the winner's policy.
        eventually("both replicas at the winner's policy",
            () -> a.server.router().route("m").policy().equals(winner) && b.server.router().route("m").policy().equals(winner));
      }
    }
  }

  private static Object attempt(Gateway replica, RoutingPolicy policy, long expected) {
    try {
      return set(replica, policy, expected);
    } catch (StatusRuntimeException e) {
      return e;
    }
  }

  @Test
  void everyReplicaAppliesAChange_throughTheWatch_andAReplicaStartingLaterReadsItAll() throws Exception {
    try (Gateway a = replica("/watch/", "a"); Gateway b = replica("/watch/", "b")) {
      int changes = 100;
      long[] micros = new long[changes];
      for (int i = 0; i < changes; i++) {
        long expected = revision(a);
        long started = System.nanoTime();
        RoutingPolicy next = set(a, policy(100 - i % 100, 1 + i % 50), expected);
        long deadline = started + TimeUnit.SECONDS.toNanos(30);
        while (revision(b) < next.getRevision()) {
          if (System.nanoTime() > deadline) {
            throw new AssertionError("replica b did not apply revision " + next.getRevision() + " within 30 s");
          }
          LockSupport.parkNanos(50_000);
        }
        micros[i] = (System.nanoTime() - started) / 1000;
        assertThat(b.server.router().route("m").policy()).isEqualTo(next);
      }
      Arrays.sort(micros);
      System.out.printf(
          "watch: %d changes made on replica a, applied by replica b (time from the admin call to b's router): p50 %.1f ms, p99 %.1f ms, max %.1f ms%n",
          changes, micros[changes / 2] / 1000.0, micros[(int) Math.ceil(changes * 0.99) - 1] / 1000.0, micros[changes - 1] / 1000.0);

      // A replica that starts now reads the full state before it serves.
      try (Gateway c = replica("/watch/", "c")) {
        assertThat(c.server.router().route("m").policy()).isEqualTo(a.server.router().route("m").policy());
        // and follows later changes.
        RoutingPolicy next = set(a, policy(1, 1), revision(a));
        eventually("c applies the next change", () -> revision(c) == next.getRevision());
        // Rollback works from any replica: the history is shared.
        RoutingPolicy rolledBack = c.admin().rollback(io.modelgate.proto.admin.v1.RollbackRequest.newBuilder()
            .setModel("m").setExpectedRevision(next.getRevision()).build());
        assertThat(rolledBack.getWeightsMap()).isEqualTo(policy(100 - 99, 1 + 99 % 50).getWeightsMap());
        eventually("a applies the rollback", () -> revision(a) == rolledBack.getRevision());
      }
    }
  }

  @Test
  void aReplicaCutOffFromEtcd_keepsServing_refusesChanges_andCatchesUpOnEveryChangeWhenBack() throws Exception {
    try (TcpProxy proxy = new TcpProxy(etcd.clientPort());
        Gateway a = replica("/cut/", "a");
        Gateway b = throughProxy("/cut/", "b", proxy)) {
      RoutingPolicy first = set(a, policy(1, 0), 0);
      eventually("b applies the first change", () -> revision(b) == first.getRevision());

      proxy.cut();
      eventually("b finds its store down", () -> !b.server.control().status().getUp());
      ListModelsResponse models = b.admin().listModels(ListModelsRequest.getDefaultInstance());
      assertThat(models.getReplica()).isEqualTo("b");
      assertThat(models.getControlStore().getUp()).isFalse();
      assertThat(models.getControlStore().getDownSinceMs()).isPositive();
      assertThatThrownBy(() -> set(b, policy(0, 1), first.getRevision()))
          .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
            assertThat(e.getStatus().getDescription()).contains("cannot be reached").contains("changes are refused");
          });
      // Traffic goes on with the routing last applied.
      for (int i = 0; i < 20; i++) {
        assertThat(b.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").build()).getModelVersion()).isEqualTo("1");
      }
      // Meanwhile the others change it five times.
      RoutingPolicy last = first;
      for (int i = 0; i < 5; i++) {
        last = set(a, i == 4 ? policy(0, 1) : policy(10 + i, 1), last.getRevision());
      }
      assertThat(revision(b)).isEqualTo(first.getRevision());

      proxy.mend();
      RoutingPolicy expected = last;
      eventually("b reconnects and applies every change", () -> b.server.router().route("m").policy().equals(expected));
      eventually("b finds its store up", () -> b.server.control().status().getUp());
      assertThat(b.blocking().modelInfer(Tensors.affine(1, 1, 2).setModelName("m").build()).getModelVersion()).isEqualTo("2");
      // and may change it again.
      RoutingPolicy again = set(b, policy(1, 1), expected.getRevision());
      eventually("a applies b's change", () -> revision(a) == again.getRevision());
    }
  }

  @Test
  void theJudgeCompactsEtcdsHistory_keepingAnInterval_andAReplicaAwayLongerCatchesUpOnEveryChange() throws Exception {
    try (TcpProxy proxy = new TcpProxy(etcd.clientPort());
        Gateway a = replica("/compact/", "a");
        Gateway b = throughProxy("/compact/", "b", proxy)) {
      RoutingPolicy first = set(a, policy(1, 0), 0);
      eventually("b applies the first change", () -> revision(b) == first.getRevision());
      long seenByB = etcdRevision();

      proxy.cut();
      eventually("b finds its store down", () -> !b.server.control().status().getUp());
      // b cannot renew a judge's lease while cut off: a judges (within the lease's 2 s).
      eventually("a judges", () -> judges(a));
      EtcdControlStore store = (EtcdControlStore) a.server.control().store();
      RoutingPolicy last = first;
      for (int i = 0; i < 5; i++) {
        last = set(a, i == 4 ? policy(0, 1) : policy(10 + i, 1), last.getRevision());
      }
      // The first call marks the revision now; the next compacts to it.
      long before = etcdRevision();
      assertThat(store.compactHistory()).isZero();
      assertThat(before).isGreaterThan(seenByB);
      long compacted = store.compactHistory();
      assertThat(compacted).isGreaterThanOrEqualTo(before);
      assertThat(b.server.control().store().judges()).isFalse();
      assertThat(((EtcdControlStore) b.server.control().store()).compactHistory()).as("only the judge compacts").isZero();
      // Etcd no longer has the revisions b would resume its watch from.
      try (io.etcd.jetcd.Client client = io.etcd.jetcd.Client.builder().endpoints(etcd.endpoints().toArray(URI[]::new)).build()) {
        assertThatThrownBy(() -> client.getKVClient().get(
                io.etcd.jetcd.ByteSequence.from("/compact/models/m", java.nio.charset.StandardCharsets.UTF_8),
                io.etcd.jetcd.options.GetOption.builder().withRevision(seenByB + 1).build()).get(10, TimeUnit.SECONDS))
            .hasMessageContaining("compacted");
      }
      assertThat(a.stats.prometheus().scrape()).contains("modelgate_etcd_compacted_revision " + compacted + ".0");

      proxy.mend();
      RoutingPolicy expected = last;
      eventually("b reads every record again and applies the last change", () -> b.server.router().route("m").policy().equals(expected));
      RoutingPolicy again = set(b, policy(1, 1), expected.getRevision());
      eventually("a applies b's change", () -> revision(a) == again.getRevision());
      // Compacting to a revision etcd has compacted already is no failure (nothing was written
      // between the last two calls: the mark is the revision compacted to).
      assertThat(store.compactHistory()).isEqualTo(compacted);
      assertThat(store.compactHistory()).as("b's change is after the mark").isGreaterThan(compacted);
    }
  }

  @Test
  void etcdOutOfSpace_isUpButRefusesChanges_sayingHowToFreeIt_andChangesResumeOnceFreed() throws Exception {
    try (EtcdServer small = EtcdServer.startWithQuota(root.resolve("etcd-nospace"), 2L << 20);
        io.etcd.jetcd.Client client = io.etcd.jetcd.Client.builder().endpoints(small.endpoints().toArray(URI[]::new)).build();
        Gateway a = replica("/nospace/", "a", small.endpoints())) {
      RoutingPolicy first = set(a, policy(1, 0), 0);
      // Another application fills etcd until it raises its NOSPACE alarm.
      io.etcd.jetcd.ByteSequence filler = io.etcd.jetcd.ByteSequence.from(new byte[100_000]);
      int put = 0;
      try {
        for (; put < 100; put++) {
          client.getKVClient().put(io.etcd.jetcd.ByteSequence.from("/filler/" + put, java.nio.charset.StandardCharsets.UTF_8),
              filler).get(10, TimeUnit.SECONDS);
        }
      } catch (java.util.concurrent.ExecutionException e) {
        assertThat(e).hasMessageContaining("database space exceeded");
      }
      assertThat(put).isLessThan(100);

      assertThatThrownBy(() -> set(a, policy(0, 1), first.getRevision()))
          .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
            assertThat(e.getStatus().getDescription()).contains("is out of space and refuses every write")
                .contains("etcdctl compact, etcdctl defrag, etcdctl alarm disarm").doesNotContain("cannot be reached");
          });
      ListModelsResponse models = a.admin().listModels(ListModelsRequest.getDefaultInstance());
      assertThat(models.getControlStore().getUp()).as("etcd answers").isTrue();
      assertThat(models.getControlStore().getOutOfSpace()).isTrue();
      assertThat(a.stats.prometheus().scrape()).contains("modelgate_control_store_out_of_space{kind=\"etcd\"} 1.0");
      assertThat(a.blocking().modelInfer(Tensors.affine(1, 1, 2).setModelName("m").build()).getModelVersion()).isEqualTo("1");

      // Freed as the message says (the filler deleted: etcd takes deletes while out of space).
      client.getKVClient().delete(io.etcd.jetcd.ByteSequence.from("/filler/", java.nio.charset.StandardCharsets.UTF_8),
          io.etcd.jetcd.options.DeleteOption.builder().isPrefix(true).build()).get(10, TimeUnit.SECONDS);
      long now = client.getKVClient().get(io.etcd.jetcd.ByteSequence.from("/", java.nio.charset.StandardCharsets.UTF_8))
          .get(10, TimeUnit.SECONDS).getHeader().getRevision();
      client.getKVClient().compact(now).get(10, TimeUnit.SECONDS);
      client.getMaintenanceClient().defragmentMember(small.endpoints().get(0).toString()).get(30, TimeUnit.SECONDS);
      for (io.etcd.jetcd.maintenance.AlarmMember alarm : client.getMaintenanceClient().listAlarms().get(10, TimeUnit.SECONDS).getAlarms()) {
        client.getMaintenanceClient().alarmDisarm(alarm).get(10, TimeUnit.SECONDS);
      }
      RoutingPolicy after = set(a, policy(0, 1), first.getRevision());
      assertThat(after.getRevision()).isGreaterThan(first.getRevision());
      assertThat(a.admin().listModels(ListModelsRequest.getDefaultInstance()).getControlStore().getOutOfSpace()).isFalse();
    }
  }

  @Test
  void etcdDownForAWhile_noRequestFails_changesAreRefused_andResumeWhenItReturns() throws Exception {
    try (Gateway a = replica("/outage/", "a"); Gateway b = replica("/outage/", "b")) {
      RoutingPolicy first = set(a, policy(1, 0), 0);
      eventually("b applies the first change", () -> revision(b) == first.getRevision());
      etcd.kill();
      try {
        eventually("both find the store down", () -> !a.server.control().status().getUp() && !b.server.control().status().getUp());
        assertThatThrownBy(() -> set(a, policy(0, 1), first.getRevision()))
            .isInstanceOfSatisfying(StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
        int answered = 0;
        for (int i = 0; i < 50; i++) {
          for (Gateway replica : List.of(a, b)) {
            assertThat(replica.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").build()).getModelVersion())
                .isEqualTo("1");
            answered++;
          }
        }
        assertThat(answered).isEqualTo(100);
      } finally {
        etcd.start();
      }
      eventually("both find the store up", () -> a.server.control().status().getUp() && b.server.control().status().getUp());
      RoutingPolicy after = set(a, policy(0, 1), first.getRevision());
      eventually("b applies the change made after the outage", () -> revision(b) == after.getRevision());
    }
  }

  /**
   * After a long outage gRPC waits seconds between connection attempts (up to two minutes), and a
   * call made meanwhile fails without trying; the store makes the channel try at once while etcd
   * is down, and waits for it to connect, so the operator's first change after etcd returns goes
   * through. The replica's probes are an hour apart here, so that only the change itself can
   * reconnect: without the reconnection the channel's next attempt is 5-8 s away when etcd
   * returns; without the wait the change is sent before the channel has connected. Either way the
   * change is refused.
   */
  @Test
  void afterALongOutage_theFirstChangeOnceEtcdIsBack_isAccepted() throws Exception {
    try (Gateway a = replica("/long-outage/", "a", etcd.endpoints(), Duration.ofHours(1))) {
      RoutingPolicy first = set(a, policy(1, 0), 0);
      etcd.kill();
      try {
        assertThatThrownBy(() -> set(a, policy(0, 1), first.getRevision()))
            .isInstanceOfSatisfying(StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
        assertThat(a.server.control().status().getUp()).as("found down by the refused change").isFalse();
        // Long enough for gRPC's connection backoff to grow past 5 s between attempts.
        Thread.sleep(15_000);
      } finally {
        etcd.start();
      }
      RoutingPolicy after = set(a, policy(0, 1), first.getRevision());
      assertThat(after.getRevision()).isGreaterThan(first.getRevision());
      assertThat(a.server.control().status().getUp()).isTrue();
    }
  }

  @Test
  void whatAReplicaFollows_isReadAgainAtEachChangeByEtcdsWatch_onlyItsOwnTopics_andAllOnceBackFromAnOutage() throws Exception {
    var audit = io.modelgate.proto.admin.v1.AuditRecord.newBuilder().setTimeMs(1).setCaller("test").setAction("Follow").build();
    var registry = new io.micrometer.core.instrument.simple.SimpleMeterRegistry();
    java.util.concurrent.ExecutorService reader = java.util.concurrent.Executors.newSingleThreadExecutor();
    try (TcpProxy proxy = new TcpProxy(etcd.clientPort());
        EtcdControlStore a = new EtcdControlStore(settings("/follow/", "a", etcd.endpoints(), PROBES), registry, Clock.systemUTC());
        EtcdControlStore b = new EtcdControlStore(settings("/follow/", "b",
            List.of(URI.create("http://127.0.0.1:" + proxy.port())), PROBES), registry, Clock.systemUTC())) {
      b.load();
      b.watch(changes -> {});
      Map<ControlStore.Topic, java.util.concurrent.atomic.AtomicInteger> told = new java.util.EnumMap<>(ControlStore.Topic.class);
      for (ControlStore.Topic topic : ControlStore.Topic.values()) {
        told.put(topic, new java.util.concurrent.atomic.AtomicInteger());
        b.follow(topic, reader, told.get(topic)::incrementAndGet);
      }
      eventually("each follower is told once its topic is watched", () -> told.values().stream().allMatch(n -> n.get() > 0));

      // Each topic changed on a: b's followers of it are told, and only they (no reread here but
      // those the watches ask for: the settings' reread is an hour).
      java.util.function.Consumer<ControlStore.Topic> change = topic -> {
        switch (topic) {
          case ACCESS -> a.commitAccess(io.modelgate.proto.admin.v1.ManagedAccess.newBuilder()
              .putTokens("t" + System.nanoTime(), io.modelgate.proto.admin.v1.ManagedToken.newBuilder().setRole("viewer").build())
              .build(), a.access().revision(), audit);
          case DIAGNOSTICS -> a.commitDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics.newBuilder()
              .addLogLevels(io.modelgate.proto.admin.v1.LogLevelSet.newBuilder().setLogger("x").setLevel("DEBUG")
                  .setUntilMs(System.currentTimeMillis() + 60_000))
              .build(), a.diagnostics().revision(), audit);
          case DRIFT_BASELINES -> a.putDriftBaseline(io.modelgate.proto.admin.v1.DriftBaselineAsked.newBuilder().setModel("m")
              .setVersion(1).setWindow("1m").setAskedBy("test").setReplica("a").setAskedAtMs(System.currentTimeMillis()).build(), audit);
          case DRIFT_SKETCH_ASKS -> a.askDriftSketches(io.modelgate.proto.admin.v1.DriftSketchesAsked.newBuilder().setModel("m")
              .setReplica("a").setAskedAtMs(System.currentTimeMillis()).build(), Duration.ofSeconds(30));
        }
      };
      for (ControlStore.Topic topic : ControlStore.Topic.values()) {
        Map<ControlStore.Topic, Integer> before = counts(told);
        change.accept(topic);
        eventually(topic + "'s follower is told of a's change", () -> told.get(topic).get() > before.get(topic));
        Map<ControlStore.Topic, Integer> others = counts(told);
        others.remove(topic);
        before.remove(topic);
        assertThat(others).as("the followers of the other topics").isEqualTo(before);
      }

      // Cut off, b hears of no change; back, it watches every topic again and tells every follower.
      proxy.cut();
      eventually("b finds its store down", () -> !b.status().getUp());
      long accessBefore = a.access().revision();
      change.accept(ControlStore.Topic.ACCESS);
      change.accept(ControlStore.Topic.DIAGNOSTICS);
      Map<ControlStore.Topic, Integer> cut = counts(told);
      proxy.mend();
      eventually("b, back, tells every follower to read again", () -> {
        Map<ControlStore.Topic, Integer> now = counts(told);
        return java.util.Arrays.stream(ControlStore.Topic.values()).allMatch(t -> now.get(t) > cut.get(t));
      });
      assertThat(b.access().revision()).isGreaterThan(accessBefore).isEqualTo(a.access().revision());
      // and hears of the next change as it happens.
      Map<ControlStore.Topic, Integer> back = counts(told);
      change.accept(ControlStore.Topic.DRIFT_SKETCH_ASKS);
      eventually("b hears of a's ask once back", () -> told.get(ControlStore.Topic.DRIFT_SKETCH_ASKS).get()
          > back.get(ControlStore.Topic.DRIFT_SKETCH_ASKS));
    } finally {
      reader.shutdownNow();
    }
  }

  private static Map<ControlStore.Topic, Integer> counts(Map<ControlStore.Topic, java.util.concurrent.atomic.AtomicInteger> told) {
    Map<ControlStore.Topic, Integer> counts = new java.util.EnumMap<>(ControlStore.Topic.class);
    told.forEach((topic, n) -> counts.put(topic, n.get()));
    return counts;
  }

  @Test
  void theFleetsDriftReferences_areReadByModel_andEachReadAgainOnceWrittenAgain() throws Exception {
    var first = io.modelgate.proto.admin.v1.DriftBaselineAsked.newBuilder().setModel("m").setVersion(1).setWindow("1m")
        .setAskedBy("test").setReplica("a").setAskedAtMs(1).build();
    var other = first.toBuilder().setModel("m2").build();
    var audit = io.modelgate.proto.admin.v1.AuditRecord.newBuilder().setTimeMs(1).setCaller("test")
        .setAction("SetDriftBaseline").build();
    try (EtcdControlStore a = new EtcdControlStore(settings("/refread/", "a", etcd.endpoints(), PROBES),
            new io.micrometer.core.instrument.simple.SimpleMeterRegistry(), Clock.systemUTC());
        EtcdControlStore b = new EtcdControlStore(settings("/refread/", "b", etcd.endpoints(), PROBES),
            new io.micrometer.core.instrument.simple.SimpleMeterRegistry(), Clock.systemUTC())) {
      a.putDriftBaseline(first, audit);
      a.putDriftBaseline(other, audit);
      assertThat(b.driftBaselines("")).containsExactly(first, other);
      assertThat(b.driftBaselines("m")).containsExactly(first);

      // Written again (on another replica): read again, whoever read it before.
      var second = first.toBuilder().setWindow("5m").setAskedAtMs(2).build();
      a.putDriftBaseline(second, audit);
      assertThat(b.driftBaselines("m")).containsExactly(second);
      assertThat(b.driftBaselines("")).containsExactly(second, other);

      // A value that is not a reference is left out, and read once written again as one.
      try (io.etcd.jetcd.Client client = io.etcd.jetcd.Client.builder().endpoints(etcd.endpoints().toArray(URI[]::new)).build()) {
        client.getKVClient().put(io.etcd.jetcd.ByteSequence.from("/refread/drift-baselines/m/2", java.nio.charset.StandardCharsets.UTF_8),
            io.etcd.jetcd.ByteSequence.from(new byte[] {(byte) 0xff, 1})).get(10, TimeUnit.SECONDS);
        assertThat(b.driftBaselines("m")).containsExactly(second);
        var two = first.toBuilder().setVersion(2).build();
        a.putDriftBaseline(two, audit);
        assertThat(b.driftBaselines("m")).containsExactly(second, two);
      }

      // The model's record forgotten (there is none: revision 0) takes its references, not m2's.
      a.forget("m", 0, audit);
      assertThat(b.driftBaselines("")).containsExactly(other);
      assertThat(etcdKeys("/refread/drift-baselines/")).containsExactly("/refread/drift-baselines/m2/1");
    }
  }

  @Test
  void auditRecordsPastTheRetention_andTheOldestPastTheMostKept_areDeleted_byAnyReplica() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    long now = Duration.ofDays(10).toMillis();
    clock.millis = now;
    long hour = Duration.ofHours(1).toMillis();
    ControlSettings keeping = settings("/auditlimits/", "a", etcd.endpoints(), PROBES).withAuditLimits(Duration.ofDays(1), 3);
    ControlSettings keepingAll = settings("/auditlimits/", "b", etcd.endpoints(), PROBES).withAuditLimits(Duration.ZERO, 0);
    io.micrometer.prometheusmetrics.PrometheusMeterRegistry registry =
        new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT);
    try (EtcdControlStore a = new EtcdControlStore(keeping, registry, clock);
        EtcdControlStore b = new EtcdControlStore(keepingAll, new io.micrometer.core.instrument.simple.SimpleMeterRegistry(), clock)) {
      // Eight records from two replicas, from 3 days ago to now.
      long[] ages = {72 * hour, 48 * hour, 25 * hour, 23 * hour, 2 * hour, hour, hour / 2, 0};
      for (int i = 0; i < ages.length; i++) {
        (i % 2 == 0 ? a : b).audit(io.modelgate.proto.admin.v1.AuditRecord.newBuilder().setTimeMs(now - ages[i])
            .setCaller("test").setAction("Record" + i).build());
      }
      assertThat(b.applyAuditLimits()).as("keeping every record").isZero();
      assertThat(auditActions()).hasSize(8);

      // Three older than a day; then two more, the oldest, past the three kept (one a request here).
      assertThat(a.applyAuditLimits(1)).isEqualTo(5);
      assertThat(auditActions()).containsExactly("Record5", "Record6", "Record7");
      assertThat(registry.scrape()).contains("modelgate_audit_records_deleted_total{reason=\"retention\"} 3.0")
          .contains("modelgate_audit_records_deleted_total{reason=\"limit\"} 2.0");
      assertThat(a.applyAuditLimits()).as("what is gone is not deleted again").isZero();

      // A day later the newest is a day old, not older: kept; a millisecond later it goes too.
      clock.millis += 24 * hour;
      assertThat(a.applyAuditLimits()).isEqualTo(2);
      assertThat(auditActions()).containsExactly("Record7");
      clock.millis += 1;
      assertThat(a.applyAuditLimits()).isEqualTo(1);
      assertThat(auditActions()).isEmpty();
    }
  }

  /** Etcd's revision now. */
  private static long etcdRevision() throws Exception {
    try (io.etcd.jetcd.Client client = io.etcd.jetcd.Client.builder().endpoints(etcd.endpoints().toArray(URI[]::new)).build()) {
      return client.getKVClient().get(io.etcd.jetcd.ByteSequence.from("/", java.nio.charset.StandardCharsets.UTF_8))
          .get(10, TimeUnit.SECONDS).getHeader().getRevision();
    }
  }

  /** The actions of the audit records under {@code /auditlimits/audit/} in etcd, in key order. */
  private static List<String> auditActions() throws Exception {
    return auditRecords("/auditlimits/").stream().map(io.modelgate.proto.admin.v1.AuditRecord::getAction).toList();
  }

  /** The audit records under {@code <prefix>audit/} in etcd, in key order. */
  private static List<io.modelgate.proto.admin.v1.AuditRecord> auditRecords(String prefix) throws Exception {
    List<io.modelgate.proto.admin.v1.AuditRecord> records = new ArrayList<>();
    for (byte[] value : etcdRead(prefix + "audit/").values()) {
      io.modelgate.proto.admin.v1.AuditRecord.Builder record = io.modelgate.proto.admin.v1.AuditRecord.newBuilder();
      com.google.protobuf.util.JsonFormat.parser().merge(new String(value, java.nio.charset.StandardCharsets.UTF_8), record);
      records.add(record.build());
    }
    return records;
  }

  /** The keys under {@code prefix} in etcd, in key order. */
  private static List<String> etcdKeys(String prefix) throws Exception {
    return new ArrayList<>(etcdRead(prefix).keySet());
  }

  /** The keys under {@code prefix} in etcd and their values, in key order. */
  private static java.util.SortedMap<String, byte[]> etcdRead(String prefix) throws Exception {
    try (io.etcd.jetcd.Client client = io.etcd.jetcd.Client.builder().endpoints(etcd.endpoints().toArray(URI[]::new)).build()) {
      java.util.SortedMap<String, byte[]> read = new java.util.TreeMap<>();
      for (io.etcd.jetcd.KeyValue kv : client.getKVClient().get(
          io.etcd.jetcd.ByteSequence.from(prefix, java.nio.charset.StandardCharsets.UTF_8),
          io.etcd.jetcd.options.GetOption.builder().isPrefix(true).build()).get(10, TimeUnit.SECONDS).getKvs()) {
        read.put(kv.getKey().toString(java.nio.charset.StandardCharsets.UTF_8), kv.getValue().getBytes());
      }
      return read;
    }
  }


  @Test
  void theClientsChannel_isReachable_soThatItCanReconnectAtOnce() throws Exception {
    try (io.etcd.jetcd.Client client = io.etcd.jetcd.Client.builder().endpoints(etcd.endpoints().toArray(URI[]::new)).build()) {
      client.getKVClient().get(io.etcd.jetcd.ByteSequence.from("/reach/", java.nio.charset.StandardCharsets.UTF_8))
          .get(10, TimeUnit.SECONDS);

      EtcdReconnect reconnect = EtcdReconnect.of(client);

      assertThat(reconnect.available()).as("jetcd's channel found by type").isTrue();
      assertThat(reconnect.channel()).isNotNull();
      reconnect.now();
      assertThat(reconnect.channel().isShutdown()).isFalse();
    }
  }

  @Test
  void exactlyOneReplicaJudges_andAnotherTakesOverWhenItIsCutOff() throws Exception {
    try (var storeLines = new LogLines(EtcdControlStore.class);
        TcpProxy proxyA = new TcpProxy(etcd.clientPort());
        TcpProxy proxyB = new TcpProxy(etcd.clientPort());
        Gateway a = throughProxy("/judge/", "a", proxyA);
        Gateway b = throughProxy("/judge/", "b", proxyB)) {
      eventually("a judge is elected", () -> judges(a) || judges(b));
      Gateway elected = judges(a) ? a : b;
      // Never two at once, and the same one all along, over longer than the lease's TTL (2 s): its
      // lease is renewed (at a third of the TTL).
      for (int i = 0; i < 150; i++) {
        assertThat(judges(a) && judges(b)).isFalse();
        assertThat(judges(elected)).isTrue();
        Thread.sleep(20);
      }
      assertThat(storeLines.startingWith("this replica")).as("elected once, its key never lost").singleElement().asString()
          .contains("was elected to judge rollouts");
      Gateway judge = elected;
      Gateway other = judge == a ? b : a;
      TcpProxy judgesLink = judge == a ? proxyA : proxyB;
      eventually("the other knows who judges",
          () -> other.server.control().status().getJudge().equals(judge.server.control().replica()));
      long cut = System.nanoTime();
      judgesLink.cut();
      eventually("the cut-off judge stops judging", () -> !judges(judge));
      eventually("the other takes over when the lease expires", () -> judges(other));
      System.out.printf("judge: replica %s cut off; %s took over after %d ms (lease TTL 2 s)%n",
          judge.server.control().replica(), other.server.control().replica(), (System.nanoTime() - cut) / 1_000_000);
      judgesLink.mend();
      eventually("the first one is back, and knows who judges now",
          () -> judge.server.control().status().getUp()
              && judge.server.control().status().getJudge().equals(other.server.control().replica()));
      assertThat(judges(judge)).isFalse();

      // The judge leaves cut off: its leases, revoked together, are said not revoked once.
      try (var lines = new LogLines(EtcdControlStore.class)) {
        (judge == a ? proxyB : proxyA).cut();
        other.server.control().leave();
        assertThat(lines.startingWith("this replica's lease")).singleElement().asString()
            .contains("not revoked as the replica stops");
      }
    }
  }

  @Test
  void theJudge_decidesOnTheSamplesOfEveryReplica_andTheFleetViewMergesThem() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(root, "fleet", "a", clock);
        Gateway b = replica(root, "fleet", "b", clock)) {
      Gateway[] pair = judgeAndOther(a, b);
      Gateway judge = pair[0];
      Gateway other = pair[1];
      startJudged(other, 50, io.modelgate.proto.admin.v1.RolloutSpec.newBuilder());
      eventually("the judge sees the rollout",
          () -> judge.server.control().current("m") != null && judge.server.control().current("m").getState().equals("RUNNING"));
      // Traffic only on the replica that does not judge: the judge has no samples of its own.
      pinned(other, 60, "1", "2");
      // Published once the other replica has its lease (its first probe may come after the judge's election).
      eventually("the other replica publishes its samples", () -> publishes(other));
      clock.millis += 61_000;
      io.modelgate.proto.admin.v1.Decision last = promoted(judge);
      assertThat(last.getEvidence().getReplicas()).isEqualTo(2);
      assertThat(last.getEvidence().getBaselineSamples()).isEqualTo(60);
      assertThat(last.getEvidence().getCandidateSamples()).isEqualTo(60);
      assertThat(last.getEvidence().getBaselineAnswers()).isEqualTo(60);
      assertThat(last.getEvidence().getCandidateAnswers()).isEqualTo(60);
      assertThat(last.getReason()).contains("samples of 2 replicas: a, b");
      eventually("the other replica routes to the promoted candidate",
          () -> other.server.router().route("m").policy().getWeightsMap().equals(java.util.Map.of(2L, 1)));

      // The fleet view: the judge's own (empty) minute and the other's, merged.
      a.stats.rotate();
      b.stats.rotate();
      other.server.fleet().publish();
      io.modelgate.proto.admin.v1.FleetStatsResponse fleet =
          judge.admin().getFleetStats(io.modelgate.proto.admin.v1.GetStatsRequest.newBuilder().setModel("m").build());
      assertThat(fleet.getReplica()).isEqualTo(judge.server.control().replica());
      assertThat(fleet.getVersionsList()).extracting(v -> v.getVersion()).containsExactly(1L, 2L);
      for (io.modelgate.proto.admin.v1.FleetVersionStats v : fleet.getVersionsList()) {
        assertThat(v.getReplicasList()).extracting(r -> r.getReplica()).containsExactly("a", "b");
        assertThat(v.getFleet().getRequests()).isEqualTo(60);
        assertThat(v.getFleet().getEndToEndMs().getCount()).isEqualTo(60);
        assertThat(v.getReplicasList().stream().mapToLong(r -> r.getWindow().getRequests()).sum()).isEqualTo(60);
        // Both replicas read one repository: the same file, named by each.
        String sha256 = judge.server.router().route("m").model().version(v.getVersion()).orElseThrow().serving().modelSha256();
        assertThat(v.getReplicasList()).extracting(r -> r.getModelSha256()).containsExactly(sha256, sha256);
        assertThat(v.getDifferentFiles()).isEmpty();
      }
    }
  }

  @Test
  void replicasServingAVersionFromDifferentFiles_areNamedInTheFleetView(@TempDir Path repoA, @TempDir Path repoB) throws Exception {
    // A deployment gone wrong: replica b's version 1 is another model than a's.
    Gateway.write(repoA, "m", 1, Gateway.affine());
    Gateway.write(repoB, "m", 1, Gateway.slowAffine(2));
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(repoA, "files", "a", clock);
        Gateway b = replica(repoB, "files", "b", clock)) {
      eventually("b publishes", () -> publishes(b));
      io.modelgate.proto.admin.v1.FleetVersionStats v1 =
          a.admin().getFleetStats(io.modelgate.proto.admin.v1.GetStatsRequest.newBuilder().setModel("m").build()).getVersions(0);
      String fileA = a.server.router().route("m").model().version(1).orElseThrow().serving().modelSha256();
      String fileB = b.server.router().route("m").model().version(1).orElseThrow().serving().modelSha256();
      assertThat(fileA).isNotEqualTo(fileB);
      assertThat(v1.getReplicasList()).extracting(r -> r.getReplica() + " " + r.getModelSha256())
          .containsExactly("a " + fileA, "b " + fileB);
      assertThat(v1.getDifferentFiles()).isEqualTo("a " + fileA.substring(0, 12) + ", b " + fileB.substring(0, 12));
    }
  }

  @Test
  void aControlledStep_isJudgedOnEveryReplicasSamplesOfTheControl(@TempDir Path models) throws Exception {
    // Version 3: the baseline's model file loaded again, the rollout's control.
    writeEqualVersions(models, 3);
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(models, "control", "a", clock);
        Gateway b = replica(models, "control", "b", clock)) {
      Gateway[] pair = judgeAndOther(a, b);
      Gateway judge = pair[0];
      Gateway other = pair[1];
      startJudged(other, 20, io.modelgate.proto.admin.v1.RolloutSpec.newBuilder().setControl(3));
      eventually("the judge routes the step", () -> judge.server.router().route("m").policy().getWeightsMap()
          .equals(java.util.Map.of(1L, 60, 2L, 20, 3L, 20)));
      // Traffic only on the replica that does not judge, and only to the candidate and the control,
      // in an interval of its statistics that closes within the step.
      pinned(other, 50, "2", "3");
      clock.millis += 5_000;
      other.stats.rotate();
      eventually("the other replica publishes its samples", () -> publishes(other));
      assertThat(judge.server.control().store().snapshots("m"))
          .filteredOn(snapshot -> snapshot.getReplica().equals(other.server.control().replica()) && snapshot.hasStep())
          .extracting(snapshot -> snapshot.getVersion()).containsExactlyInAnyOrder(2L, 3L);
      long since = judge.server.control().rollout("m").getStepStartedAtMs();
      clock.millis += 56_000;
      io.modelgate.proto.admin.v1.Decision last = promoted(judge);
      assertThat(last.getEvidence().getReference()).isEqualTo(3);
      assertThat(last.getEvidence().getReplicas()).isEqualTo(2);
      assertThat(last.getEvidence().getBaselineSamples()).isEqualTo(50);
      assertThat(last.getEvidence().getCandidateSamples()).isEqualTo(50);
      // Where the time went: the other replica's queue and compute times, published with its
      // samples (the judge's own intervals hold none), over its 5 s — as many as its closed
      // interval holds (a request's stages are recorded just after its answer is sent, so the last
      // may fall in the next interval).
      assertThat(last.getEvidence().getStageReplicas()).isEqualTo(2);
      long controlRuns = other.stats.stagesSince("m", 3, since).computeMicros().getTotalCount();
      long candidateRuns = other.stats.stagesSince("m", 2, since).queueMicros().getTotalCount();
      assertThat(controlRuns).isGreaterThanOrEqualTo(45);
      assertThat(last.getEvidence().getBaselineComputeMs().getCount()).isEqualTo(controlRuns);
      assertThat(last.getEvidence().getCandidateQueueMs().getCount()).isEqualTo(candidateRuns);
      assertThat(last.getEvidence().getStageSeconds()).isEqualTo(5);
    }
  }

  @Test
  void aCopiedControl_isLoadedOnEveryReplica_andUnloadedOnEveryOneWhenTheRolloutEnds(@TempDir Path models) throws Exception {
    writeEqualVersions(models, 2);
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(models, "copy", "a", clock);
        Gateway b = replica(models, "copy", "b", clock)) {
      Gateway[] pair = judgeAndOther(a, b);
      Gateway judge = pair[0];
      Gateway other = pair[1];
      io.modelgate.proto.admin.v1.Rollout started =
          startJudged(other, 20, io.modelgate.proto.admin.v1.RolloutSpec.newBuilder().setCopyControl(true));
      assertThat(started.getSpec().getControl()).isEqualTo(3);
      // The judge has the step's routing, but no copy yet: its route leaves version 3 out.
      eventually("the judge routes the step", () -> judge.server.router().route("m").policy().getWeightsMap()
          .equals(java.util.Map.of(1L, 60, 2L, 20, 3L, 20)));
      assertThat(judge.server.router().route("m").degraded()).contains("version 3");
      judge.server.versions().reconcileCopies();
      io.modelgate.runtime.repository.ModelVersion copy = judge.server.router().route("m").model().version(3).orElseThrow();
      assertThat(copy.isReady()).isTrue();
      assertThat(copy.copyOf()).isEqualTo(1);
      assertThat(judge.server.router().route("m").degraded()).isNull();

      // Each replica's copy answers its share.
      for (Gateway replica : List.of(judge, other)) {
        pinned(replica, 25, "2", "3");
      }
      eventually("the other replica publishes its samples", () -> publishes(other));
      clock.millis += 61_000;
      io.modelgate.proto.admin.v1.Decision last = promoted(judge);
      assertThat(last.getEvidence().getReference()).isEqualTo(3);
      assertThat(last.getEvidence().getReplicas()).isEqualTo(2);
      assertThat(last.getEvidence().getBaselineSamples()).isEqualTo(50);

      // Once each replica sees the rollout ended, its copy goes.
      eventually("the other replica sees the promotion", () -> other.server.control().rollout("m").getState().equals("PROMOTED"));
      for (Gateway replica : List.of(judge, other)) {
        replica.server.versions().reconcileCopies();
        assertThat(replica.server.router().route("m").model().version(3).orElseThrow().state())
            .isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
      }
    }
  }

  /** Model m's versions 1 and 2, and model kept's version 1, into each of {@code repos}. */
  private static void writeMAndKept(Path... repos) {
    for (Path repo : repos) {
      Gateway.write(repo, "m", 1, Gateway.affine());
      Gateway.write(repo, "m", 2, Gateway.affine());
      Gateway.write(repo, "kept", 1, Gateway.affine());
    }
  }

  /** Replica {@code name} of the fleet under {@code /prefix/}, serving {@code repo} on the test's {@code clock}. */
  private static Gateway replica(Path repo, String prefix, String name, java.time.Clock clock) throws Exception {
    return replica(repo, prefix, name, clock, etcd.endpoints());
  }

  /** As {@link #replica(Path, String, String, java.time.Clock)}, reaching etcd at {@code endpoints}. */
  private static Gateway replica(Path repo, String prefix, String name, java.time.Clock clock, List<URI> endpoints)
      throws Exception {
    return Gateway.inProcess(repo, root.resolve("state-" + prefix + "-" + name), clock,
        settings("/" + prefix + "/", name, endpoints, PROBES));
  }

  /** A replica under {@code prefix} reaching etcd only through {@code proxy}, which the test can cut. */
  private static Gateway throughProxy(String prefix, String name, TcpProxy proxy) throws Exception {
    return replica(prefix, name, List.of(URI.create("http://127.0.0.1:" + proxy.port())));
  }

  private static io.modelgate.runtime.repository.VersionState state(Gateway replica, String model, long version) {
    return replica.repository.model(model).flatMap(m -> m.version(version))
        .map(io.modelgate.runtime.repository.ModelVersion::state).orElse(null);
  }

  private static io.modelgate.proto.admin.v1.VersionInfo load(Gateway replica, String model, long version) {
    return replica.admin().loadVersion(io.modelgate.proto.admin.v1.LoadVersionRequest.newBuilder()
        .setModel(model).setVersion(version).build());
  }

  @Test
  void aLoadAskedOfEveryReplica_thatNoReplicaLeftHas_isWithdrawnByAnUnloadOnAnyReplica(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    for (Path repo : List.of(repoA, repoB)) {
      Gateway.write(repo, "m", 1, Gateway.affine());
    }
    Gateway.write(repoA, "m", 4, Gateway.affine());
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway b = replica(repoB, "withdraw", "b", clock)) {
      // a loads version 4, which only its repository has, and goes away for good.
      try (Gateway a = replica(repoA, "withdraw", "a", clock)) {
        assertThat(load(a, "m", 4).getState()).isEqualTo("READY");
        a.admin().setRouting(SetRoutingRequest.newBuilder()
            .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 9).putWeights(4, 1)).setExpectedRevision(0).build());
      }
      eventually("b sees the ask and the routing", () -> b.server.control().loads().containsKey("m")
          && b.server.router().route("m").policy().getRevision() == 1);
      b.server.versions().reconcileLoads();
      assertThat(b.admin().listModels(ListModelsRequest.getDefaultInstance()).getOwedLoadsList())
          .extracting(owed -> owed.getModel() + "/" + owed.getVersion()).containsExactly("m/4");

      // While routing names it, it is refused like any unload.
      assertThatThrownBy(() -> b.admin().unloadVersion(io.modelgate.proto.admin.v1.UnloadVersionRequest.newBuilder()
              .setModel("m").setVersion(4).build()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
          .hasMessageContaining("still takes traffic");
      b.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(1).build());

      // b has no version 4 to unload: the ask is withdrawn, and b owes nothing more.
      io.modelgate.proto.admin.v1.VersionInfo withdrawn = b.admin().unloadVersion(
          io.modelgate.proto.admin.v1.UnloadVersionRequest.newBuilder().setModel("m").setVersion(4).build());
      assertThat(withdrawn.getState()).isEqualTo("UNAVAILABLE");
      assertThat(withdrawn.getReason()).isEqualTo("not loaded on this replica (no version folder m/4 here): the load"
          + " asked of every replica withdrawn, an unload asked instead");
      assertThat(b.server.control().loads().get("m")).extracting(l -> l.getVersion() + " " + l.getLoaded() + " " + l.getReplica())
          .containsExactly("4 false b");
      b.server.versions().reconcileLoads();
      assertThat(b.admin().listModels(ListModelsRequest.getDefaultInstance()).getOwedLoadsList()).isEmpty();
      assertThat(b.stats.prometheus().scrape()).contains("modelgate_loads_retrying{asks=\"fleet\"} 0.0");

      // An unload with nothing to withdraw is refused as before.
      assertThatThrownBy(() -> b.admin().unloadVersion(io.modelgate.proto.admin.v1.UnloadVersionRequest.newBuilder()
              .setModel("m").setVersion(4).build()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND))
          .hasMessageContaining("model 'm' has no version 4");
    }
  }

  @Test
  void versionsLoadedAndUnloadedOnOneReplica_areOnEvery_aReplicaWithoutTheFolderTriesAgain_andOneStartingLaterFollows(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    for (Path repo : List.of(repoA, repoB)) {
      Gateway.write(repo, "m", 1, Gateway.affine());
      Gateway.write(repo, "m", 2, Gateway.affine());
    }
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    ControlSettings forB = settings("/loads/", "b", etcd.endpoints(), PROBES);
    try (Gateway a = replica(repoA, "loads", "a", clock)) {
      Gateway b = Gateway.inProcess(repoB, root.resolve("state-loads-b"), clock, forB);
      try {
        // Version 3 and a new model, in both repositories; a third version only in a's.
        for (Path repo : List.of(repoA, repoB)) {
          Gateway.write(repo, "m", 3, Gateway.affine());
          Gateway.write(repo, "n", 1, Gateway.affine());
        }
        Gateway.write(repoA, "m", 4, Gateway.affine());
        // b is told when a's writes change the asks (its server then follows at once).
        java.util.concurrent.atomic.AtomicInteger told = new java.util.concurrent.atomic.AtomicInteger();
        b.server.control().onLoadsChanged(told::incrementAndGet);
        assertThat(load(a, "m", 3).getState()).isEqualTo("READY");
        assertThat(load(a, "n", 1).getState()).isEqualTo("READY");
        assertThat(load(a, "m", 4).getState()).isEqualTo("READY");
        a.admin().unloadVersion(io.modelgate.proto.admin.v1.UnloadVersionRequest.newBuilder().setModel("m").setVersion(1).build());
        eventually("b sees the asks", () -> b.server.control().loads().getOrDefault("m", List.of()).size() == 3
            && b.server.control().loads().containsKey("n"));
        assertThat(a.server.control().loads().get("m"))
            .extracting(l -> l.getVersion() + " " + l.getLoaded() + " " + l.getReplica())
            .containsExactly("3 true a", "4 true a", "1 false a");
        assertThat(told.get()).isPositive();

        b.server.versions().reconcileLoads();
        assertThat(state(b, "m", 3)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
        assertThat(state(b, "n", 1)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
        assertThat(state(b, "m", 1)).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
        // Not told when a's writes change only the routing.
        int before = told.get();
        a.admin().setRouting(SetRoutingRequest.newBuilder()
            .setPolicy(RoutingPolicy.newBuilder().setModel("n").putWeights(1, 1)).setExpectedRevision(0).build());
        eventually("b applies n's routing", () -> b.server.router().route("n").policy().getRevision() == 1);
        assertThat(told).hasValue(before);
        // b has no folder m/4: it tries again 1 s later, then 2 s after that, meanwhile without it.
        assertThat(state(b, "m", 4)).isNull();
        clock.millis += 999;
        b.server.versions().reconcileLoads();
        Gateway.write(repoB, "m", 4, Gateway.affine());
        b.server.versions().reconcileLoads();
        assertThat(state(b, "m", 4)).as("not tried again within 1 s").isNull();
        assertThat(b.stats.prometheus().scrape()).contains("modelgate_loads_retrying{asks=\"fleet\"} 1.0")
            .contains("modelgate_loads_retrying{asks=\"control\"} 0.0");
        // admin models says what b owes.
        assertThat(b.admin().listModels(ListModelsRequest.getDefaultInstance()).getOwedLoadsList())
            .singleElement().satisfies(owed -> {
              assertThat(owed.getModel() + " " + owed.getVersion() + " " + owed.getAsks() + " " + owed.getReplica()
                  + " " + owed.getFailures()).isEqualTo("m 4 fleet a 1");
              assertThat(owed.getReason()).isEqualTo("model 'm' has no version folder m/4 in the repository");
              assertThat(owed.getNextTryMs()).isEqualTo(clock.millis() + 1);
            });
        clock.millis += 1;
        b.server.versions().reconcileLoads();
        assertThat(state(b, "m", 4)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
        assertThat(b.stats.prometheus().scrape()).contains("modelgate_loads_retrying{asks=\"fleet\"} 0.0");
        assertThat(b.admin().listModels(ListModelsRequest.getDefaultInstance()).getOwedLoadsList()).isEmpty();
        // What a did, a does not do again; b's loads are audited as the fleet's.
        a.server.versions().reconcileLoads();
        assertThat(state(a, "m", 1)).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
        assertThat(b.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("n").build()).getModelVersion()).isEqualTo("1");
      } finally {
        b.close();
      }

      // A replica starting after the asks follows them before it serves; those unloaded everywhere
      // it never loads (an unloaded version's reason would be "unloaded").
      a.admin().unloadVersion(io.modelgate.proto.admin.v1.UnloadVersionRequest.newBuilder().setModel("m").setVersion(2).build());
      try (Gateway restarted = Gateway.inProcess(repoB, root.resolve("state-loads-b"), clock, forB)) {
        for (long version : new long[] {1, 2}) {
          io.modelgate.runtime.repository.ModelVersion left = restarted.repository.model("m").orElseThrow().version(version).orElseThrow();
          assertThat(left.state()).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
          assertThat(left.reason()).startsWith("unloaded on every replica, as ").endsWith(" asked on replica a");
        }
        assertThat(state(restarted, "m", 4)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
        assertThat(restarted.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion())
            .isEqualTo("4");
      }
    }
  }

  private static float y0(Gateway replica) {
    return Tensors.floats(replica.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build())
        .getRawOutputContents(0))[0];
  }

  private static List<io.modelgate.proto.admin.v1.AuditRecord> fleetReloads() throws Exception {
    return auditRecords("/reloads/").stream().filter(r -> r.getAction().equals("FleetReload")).toList();
  }

  private static io.modelgate.runtime.repository.LoadedVersion serving(Gateway replica) {
    return replica.repository.model("m").orElseThrow().version(1).orElseThrow().serving();
  }

  @Test
  void aReloadOnOneReplica_reloadsTheVersionOnEveryReplicaOnce_andAReplicaStartingLaterDoesNotReloadIt(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    for (Path repo : List.of(repoA, repoB)) {
      Gateway.write(repo, "m", 1, Gateway.affine());
    }
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    ControlSettings forB = settings("/reloads/", "b", etcd.endpoints(), PROBES);
    LoadVersionRequest reload = LoadVersionRequest.newBuilder().setModel("m").setVersion(1).setReload(true).build();
    try (Gateway a = replica(repoA, "reloads", "a", clock)) {
      try (Gateway b = Gateway.inProcess(repoB, root.resolve("state-reloads-b"), clock, forB)) {
        assertThat(y0(a)).isEqualTo(3f);
        // The model file replaced on both replicas' disks, then reloaded on a.
        for (Path repo : List.of(repoA, repoB)) {
          Gateway.write(repo, "m", 1, Gateway.affineTimes(3));
        }
        assertThat(a.admin().loadVersion(reload).getState()).isEqualTo("READY");
        assertThat(y0(a)).isEqualTo(4f);
        eventually("b sees the reload", () -> b.server.control().loads().getOrDefault("m", List.of()).stream()
            .anyMatch(ask -> ask.getReloadedAtMs() != 0));
        assertThat(y0(b)).isEqualTo(3f);
        io.modelgate.runtime.repository.LoadedVersion onA = serving(a);
        b.server.versions().reconcileLoads();
        assertThat(y0(b)).isEqualTo(4f);
        // Once per reload: neither b again, nor a, which did it as asked.
        io.modelgate.runtime.repository.LoadedVersion onB = serving(b);
        b.server.versions().reconcileLoads();
        a.server.versions().reconcileLoads();
        assertThat(serving(b)).isSameAs(onB);
        assertThat(serving(a)).isSameAs(onA);
        assertThat(fleetReloads()).singleElement().satisfies(r -> assertThat(r.getReplica() + ": " + r.getDetail())
            .startsWith("b: READY, loaded again while it served: model.onnx sha256 " + onB.modelSha256())
            .endsWith(" asked on replica a"));

        // A reload whose new load fails on b (its file broken there): b serves as before, and says so.
        Gateway.write(repoA, "m", 1, Gateway.affineTimes(4));
        Gateway.write(repoB, "m", 1, "broken on b".getBytes());
        clock.millis += 1;
        a.admin().loadVersion(reload);
        assertThat(y0(a)).isEqualTo(5f);
        long stamp = a.server.control().loads().get("m").get(0).getReloadedAtMs();
        eventually("b sees the second reload", () -> b.server.control().loads().get("m").get(0).getReloadedAtMs() == stamp);
        b.server.versions().reconcileLoads();
        assertThat(y0(b)).isEqualTo(4f);
        assertThat(serving(b)).isSameAs(onB);
        assertThat(fleetReloads()).hasSize(2).last().satisfies(r -> assertThat(r.getDetail())
            .startsWith("not loaded again, serving as before: ").contains("m/1/model.onnx"));
        assertThat(b.stats.prometheus().scrape()).contains("modelgate_version_reloads_total{result=\"reloaded\"} 1.0")
            .contains("modelgate_version_reloads_total{result=\"failed\"} 1.0");
        Gateway.write(repoB, "m", 1, Gateway.affineTimes(4));
      }
      // b, started again, loads the file as it is: the reloads asked before are not done again.
      try (Gateway restarted = Gateway.inProcess(repoB, root.resolve("state-reloads-b"), clock, forB)) {
        io.modelgate.runtime.repository.LoadedVersion loaded = serving(restarted);
        restarted.server.versions().reconcileLoads();
        assertThat(serving(restarted)).isSameAs(loaded);
        assertThat(y0(restarted)).isEqualTo(5f);
        // Nor as it started (it reconciles once before it serves).
        assertThat(fleetReloads()).hasSize(2);
      }
    }
  }

  @Test
  void aReplicaWhoseCopyOfTheFileHasNotArrived_loadsTheVersionAgainOnceItHas(@TempDir Path repoA, @TempDir Path repoB)
      throws Exception {
    for (Path repo : List.of(repoA, repoB)) {
      Gateway.write(repo, "m", 1, Gateway.affine());
    }
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    LoadVersionRequest reload = LoadVersionRequest.newBuilder().setModel("m").setVersion(1).setReload(true).build();
    try (Gateway a = replica(repoA, "copies", "a", clock);
        Gateway b = replica(repoB, "copies", "b", clock)) {
      // The new file reaches a's disk; b's copy is late.
      Gateway.write(repoA, "m", 1, Gateway.affineTimes(3));
      a.admin().loadVersion(reload);
      eventually("b sees the reload", () -> b.server.control().loads().getOrDefault("m", List.of()).stream()
          .anyMatch(ask -> ask.getReloadedAtMs() != 0));
      b.server.versions().reconcileLoads();
      assertThat(y0(b)).as("b loaded its own file again, the old one").isEqualTo(3f);
      assertThat(b.server.versions().owed()).singleElement().satisfies(owed -> {
        assertThat(owed.getAsks()).isEqualTo("reload");
        assertThat(owed.getFailures()).isEqualTo(1);
        assertThat(owed.getReason()).startsWith("the model.onnx here (sha256 ").contains(") is not the one replica a loaded");
      });
      assertThat(b.server.versions().retrying(true)).isEqualTo(1);
      assertThat(fleetReloadsUnder("/copies/")).singleElement().satisfies(r -> assertThat(r.getDetail())
          .contains("is not the one replica a loaded").contains("loaded again once it is, tried in 1 s"));
      // Due again, the file still the old one: not loaded again (its file is read, not a session), the wait doubles.
      io.modelgate.runtime.repository.LoadedVersion old = serving(b);
      clock.millis += 1_000;
      b.server.versions().reconcileLoads();
      assertThat(serving(b)).isSameAs(old);
      assertThat(b.server.versions().owed().get(0).getFailures()).isEqualTo(2);
      // The copy arrives: loaded again at the next try, and owed no more.
      Gateway.write(repoB, "m", 1, Gateway.affineTimes(3));
      b.server.versions().reconcileLoads();
      assertThat(serving(b)).as("not before the next try").isSameAs(old);
      clock.millis += 2_000;
      b.server.versions().reconcileLoads();
      assertThat(y0(b)).isEqualTo(4f);
      assertThat(b.server.versions().owed()).isEmpty();
      assertThat(fleetReloadsUnder("/copies/")).hasSize(2).last().satisfies(r -> assertThat(r.getDetail())
          .startsWith("READY, loaded again while it served: model.onnx sha256 " + serving(b).modelSha256()));
      b.server.versions().reconcileLoads();
      assertThat(fleetReloadsUnder("/copies/")).hasSize(2);

      // Likewise model.yaml: edited on a's disk and loaded again there; b's copy is late.
      long firstStamp = b.server.control().loads().get("m").get(0).getReloadedAtMs();
      Gateway.config(repoA, "m", "max_batch_size: 8\n");
      a.admin().loadVersion(reload);
      eventually("b sees the second reload", () -> b.server.control().loads().get("m").stream()
          .anyMatch(ask -> ask.getReloadedAtMs() > firstStamp
              && !ask.getModelYamlSha256().equals(io.modelgate.runtime.repository.RepositoryFolder.NO_CONFIG)));
      b.server.versions().reconcileLoads();
      assertThat(serving(b).settings().maxBatchSize()).isNotEqualTo(8);
      assertThat(b.server.versions().owed()).singleElement().satisfies(owed -> assertThat(owed.getReason())
          .startsWith("the model.yaml here (none) is not the one replica a loaded with (sha256 "));
      old = serving(b);
      clock.millis += 1_000;
      b.server.versions().reconcileLoads();
      assertThat(serving(b)).as("its model.yaml unchanged: not loaded again").isSameAs(old);
      Gateway.config(repoB, "m", "max_batch_size: 8\n");
      clock.millis += 2_000;
      b.server.versions().reconcileLoads();
      assertThat(serving(b).settings().maxBatchSize()).isEqualTo(8);
      assertThat(b.server.versions().owed()).isEmpty();
    }
  }

  private static List<io.modelgate.proto.admin.v1.AuditRecord> fleetReloadsUnder(String prefix) throws Exception {
    return auditRecords(prefix).stream().filter(r -> r.getAction().equals("FleetReload")).toList();
  }

  /** Replica {@code name} of the fleet under {@code /prefix/} serving {@code repo}, which it polls for changes. */
  private static Gateway polling(Path repo, String prefix, String name) throws Exception {
    io.modelgate.gateway.server.AdminSettings plain = Gateway.adminSettings(root.resolve("state-" + prefix + "-" + name), -1);
    return Gateway.inProcess(repo, Duration.ofSeconds(10), Duration.ZERO, new io.modelgate.gateway.server.AdminSettings(
        plain.host(), plain.port(), plain.token(), plain.tls(), plain.metricsHost(), plain.metricsPort(),
        plain.stateDirectory(), settings("/" + prefix + "/", name, etcd.endpoints(), PROBES))
        .withRepositoryPoll(Duration.ofSeconds(1)), Clock.systemUTC());
  }

  @Test
  void aPolledRepository_inAFleet_isActedOnByTheJudgeAlone_andEveryReplicaFollowsAsItDoesAnOperatorsAsk(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    for (Path repo : List.of(repoA, repoB)) {
      Gateway.write(repo, "m", 1, Gateway.affine());
    }
    try (Gateway a = polling(repoA, "polls", "a");
        Gateway b = polling(repoB, "polls", "b")) {
      eventually("one replica judges", () -> judges(a) || judges(b));
      Gateway judge = judges(a) ? a : b;
      Gateway other = judge == a ? b : a;
      // A new version folder reaches both replicas' disks (a shared volume, or a sync to each).
      for (Path repo : List.of(repoA, repoB)) {
        Gateway.write(repo, "m", 2, Gateway.affineTimes(3));
      }
      for (int look = 0; look < 3; look++) {
        other.server.repositoryPoll().poll();
      }
      assertThat(state(other, "m", 2)).as("the other replica acts only as the fleet asks").isNull();
      judge.server.repositoryPoll().poll();
      judge.server.repositoryPoll().poll();
      assertThat(state(judge, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
      eventually("the other replica sees the load asked", () -> other.server.control().loads().getOrDefault("m", List.of())
          .stream().anyMatch(ask -> ask.getVersion() == 2 && ask.getLoaded()));
      other.server.versions().reconcileLoads();
      assertThat(state(other, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
      assertThat(y0(other)).isEqualTo(4f);
      List<io.modelgate.proto.admin.v1.AuditRecord> audit = auditRecords("/polls/");
      assertThat(audit).filteredOn(r -> r.getAction().equals("PollLoad")).singleElement()
          .satisfies(r -> assertThat(r.getCaller() + " on " + r.getReplica())
              .isEqualTo(io.modelgate.gateway.admin.RepositoryPoll.CALLER + " on " + judge.server.control().replica()));
      assertThat(audit).filteredOn(r -> r.getAction().equals("FleetLoad")).singleElement()
          .satisfies(r -> assertThat(r.getReplica()).isEqualTo(other.server.control().replica()));
      // Its later looks see nothing new to do: the change happened while it did not judge.
      other.server.repositoryPoll().poll();
      assertThat(other.server.repositoryPoll().actions(io.modelgate.gateway.admin.RepositoryPoll.Action.LOAD, true)).isZero();

      // The folder gone from both disks: the judge unloads it, the other follows.
      for (Path repo : List.of(repoA, repoB)) {
        Gateway.deleteModel(repo, "m/2");
      }
      judge.server.repositoryPoll().poll();
      judge.server.repositoryPoll().poll();
      assertThat(state(judge, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
      eventually("the other replica sees the unload asked", () -> other.server.control().loads().get("m").stream()
          .anyMatch(ask -> ask.getVersion() == 2 && !ask.getLoaded()));
      other.server.versions().reconcileLoads();
      assertThat(state(other, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
      // What the other keeps of the changes it saw: not a folder gone that serves nothing here.
      assertThat(other.server.repositoryPoll().changesFollowed()).contains("m/2");
      other.server.repositoryPoll().poll();
      other.server.repositoryPoll().poll();
      assertThat(other.server.repositoryPoll().changesFollowed()).doesNotContain("m/2");
    }
    // The folder back while the fleet was down: a replica starting alone keeps the fleet's unload
    // as it starts, and, judging, loads the version at its first look after.
    Gateway.write(repoA, "m", 2, Gateway.affineTimes(3));
    try (Gateway a = polling(repoA, "polls", "a")) {
      assertThat(state(a, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
      eventually("a judges", () -> judges(a));
      a.server.repositoryPoll().poll();
      assertThat(state(a, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
      assertThat(y0(a)).isEqualTo(4f);
    }
  }

  @Test
  void aChangeSeenWhileAnotherReplicaJudged_isActedOnWhenThisOneJudges_unlessItHasReachedIt(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    for (Path repo : List.of(repoA, repoB)) {
      Gateway.write(repo, "m", 1, Gateway.affine());
    }
    List<Gateway> open = new ArrayList<>();
    try {
      Gateway a = polling(repoA, "catchup", "a");
      open.add(a);
      Gateway b = polling(repoB, "catchup", "b");
      open.add(b);
      eventually("one replica judges", () -> judges(a) || judges(b));
      Gateway judge = judges(a) ? a : b;
      Gateway other = judge == a ? b : a;
      io.modelgate.gateway.admin.RepositoryPoll otherPoll = other.server.repositoryPoll();

      // Version 2 appears and model.yaml is edited: the judge loads version 2 and loads version 1
      // again; the other follows (it saw the changes too).
      for (Path repo : List.of(repoA, repoB)) {
        Gateway.write(repo, "m", 2, Gateway.affineTimes(3));
        Gateway.config(repo, "m", "max_batch_size: 8\n");
      }
      otherPoll.poll();
      otherPoll.poll();
      judge.server.repositoryPoll().poll();
      judge.server.repositoryPoll().poll();
      eventually("the other replica sees the load asked", () -> other.server.control().loads().getOrDefault("m", List.of())
          .stream().anyMatch(ask -> ask.getVersion() == 2 && ask.getLoaded()));
      eventually("the other replica sees the reload asked", () -> other.server.control().loads().get("m")
          .stream().anyMatch(ask -> ask.getVersion() == 1 && ask.getReloadedAtMs() > 0));
      other.server.versions().reconcileLoads();
      assertThat(state(other, "m", 2)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
      assertThat(other.repository.model("m").orElseThrow().version(1).orElseThrow().serving().settings().maxBatchSize())
          .isEqualTo(8);

      // Version 3 appears and version 1's file is replaced; the judge stops before it looks again.
      for (Path repo : List.of(repoA, repoB)) {
        Gateway.write(repo, "m", 3, Gateway.affineTimes(5));
        Gateway.write(repo, "m", 1, Gateway.affineTimes(7));
      }
      otherPoll.poll();
      otherPoll.poll();
      assertThat(state(other, "m", 3)).as("it acts only as the fleet asks while another judges").isNull();
      judge.close();
      open.remove(judge);
      eventually("the other takes over", () -> judges(other));

      // Its first look as the judge acts on what it saw and what has not reached it: version 2 is
      // left as it is, version 3 loaded, version 1 loaded again.
      otherPoll.poll();
      assertThat(state(other, "m", 3)).isEqualTo(io.modelgate.runtime.repository.VersionState.READY);
      assertThat(Tensors.floats(other.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("1").build())
          .getRawOutputContents(0))[0]).isEqualTo(8f);
      assertThat(otherPoll.actions(io.modelgate.gateway.admin.RepositoryPoll.Action.LOAD, true)).isEqualTo(1);
      assertThat(otherPoll.actions(io.modelgate.gateway.admin.RepositoryPoll.Action.RELOAD, true)).isEqualTo(1);
      assertThat(auditRecords("/catchup/")).filteredOn(r -> r.getReplica().equals(other.server.control().replica()))
          .extracting(r -> r.getAction() + " " + r.getModel() + "/" + r.getVersion())
          .contains("PollLoad m/3", "PollReload m/1").doesNotContain("PollReload m/2");
      // Acted on once: the next look finds nothing to do.
      otherPoll.poll();
      assertThat(otherPoll.actions(io.modelgate.gateway.admin.RepositoryPoll.Action.LOAD, true)).isEqualTo(1);
      assertThat(otherPoll.actions(io.modelgate.gateway.admin.RepositoryPoll.Action.RELOAD, true)).isEqualTo(1);
    } finally {
      for (Gateway g : open) {
        g.close();
      }
    }
  }

  @Test
  void aModelTakenDownOnOneReplica_isDownOnEvery_routedVersionsIncluded_andRemovedOnlyWhereItsFolderHasGone(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    writeMAndKept(repoA, repoB);
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(repoA, "down", "a", clock);
        Gateway b = replica(repoB, "down", "b", clock)) {
      a.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1).putWeights(2, 1)).setExpectedRevision(0).build());
      eventually("b applies m's routing", () -> b.server.router().route("m").policy().getRevision() == 1);

      // Retired on a's machine only: its folder deleted there, the model taken down from a.
      Gateway.deleteModel(repoA, "m");
      a.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
      eventually("b sees both unloads", () -> b.server.control().loads().getOrDefault("m", List.of()).stream()
          .filter(ask -> !ask.getLoaded()).count() == 2);
      b.server.versions().reconcileLoads();
      for (Gateway replica : List.of(a, b)) {
        for (long version : new long[] {1, 2}) {
          assertThat(state(replica, "m", version)).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
        }
        // Each serves its policy in part, saying so, and tells a request what to load.
        assertThat(replica.server.router().route("m").degraded()).contains("version 1 (UNAVAILABLE").contains("version 2 (UNAVAILABLE");
        assertThatThrownBy(() -> replica.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
            .hasMessageContaining("sends traffic only to versions that are not READY");
      }

      // Fifteen minutes on: a, whose folder has gone, removes it; b, whose folder is there, keeps
      // it listed (to be loaded again), saying nothing of a folder gone.
      clock.millis += io.modelgate.gateway.server.VersionRetirement.AFTER.toMillis();
      a.stats.rotate();
      b.stats.rotate();
      assertThat(a.repository.model("m")).isEmpty();
      assertThat(a.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsList())
          .extracting(io.modelgate.proto.admin.v1.ModelInfo::getName).containsExactly("kept");
      assertThat(b.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsList())
          .extracting(io.modelgate.proto.admin.v1.ModelInfo::getName, io.modelgate.proto.admin.v1.ModelInfo::getFolderGone)
          .containsExactly(org.assertj.core.groups.Tuple.tuple("kept", false), org.assertj.core.groups.Tuple.tuple("m", false));
      // b loads it again for the fleet; a, without the folder, owes it.
      assertThat(load(b, "m", 1).getState()).isEqualTo("READY");
      eventually("a sees the load", () -> a.server.control().loads().get("m").stream()
          .anyMatch(ask -> ask.getVersion() == 1 && ask.getLoaded()));
      a.server.versions().reconcileLoads();
      assertThat(a.admin().listModels(ListModelsRequest.getDefaultInstance()).getOwedLoadsList())
          .singleElement().satisfies(owed -> assertThat(owed.getReason())
              .isEqualTo("unknown model 'm': the repository has no folder m"));
      // Not forgotten from a while b, as its snapshots say, has it loaded.
      var forget = io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder().setModel("m").build();
      eventually("b publishes", () -> publishes(b));
      assertThat(a.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsKeptList()).singleElement()
          .satisfies(kept -> assertThat(kept.getLoadedOnList()).containsExactly("b (version 1)"));
      assertThatThrownBy(() -> a.admin().forgetModel(forget)).hasMessage("FAILED_PRECONDITION: model 'm' is loaded on"
          + " replica b (version 1), which route it by this record; take it down there first (admin unload --model m),"
          + " or forget it once they have removed it");
      // Taken down on b (its folder kept): forgotten from a, and the load a owed goes with the record.
      b.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
      b.server.fleet().publish();
      assertThat(a.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsKeptList()).singleElement()
          .satisfies(kept -> assertThat(kept.getLoadedOnList()).isEmpty());
      a.admin().forgetModel(forget);
      a.server.versions().reconcileLoads();
      assertThat(a.admin().listModels(ListModelsRequest.getDefaultInstance()).getOwedLoadsList()).isEmpty();
      // b, whose repository has the model, loads it again: a new record.
      assertThat(load(b, "m", 2).getState()).isEqualTo("READY");
    }
  }

  @Test
  void aRemovedModelForgotten_isForgottenByEveryReplicaLackingIt_oneCutOffMeanwhileIncluded_andKeptInForceWhereServed(
      @TempDir Path repoA, @TempDir Path repoB, @TempDir Path repoC) throws Exception {
    writeMAndKept(repoA, repoB, repoC);
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (TcpProxy proxy = new TcpProxy(etcd.clientPort());
        Gateway a = replica(repoA, "forgetm", "a", clock);
        Gateway b = replica(repoB, "forgetm", "b", clock, List.of(URI.create("http://127.0.0.1:" + proxy.port())));
        Gateway c = replica(repoC, "forgetm", "c", clock)) {
      RoutingPolicy half = a.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1).putWeights(2, 1)).setExpectedRevision(0).build());
      // Retired on a's and b's machines, kept on c's: taken down, then removed where its folder has gone.
      Gateway.deleteModel(repoA, "m");
      Gateway.deleteModel(repoB, "m");
      a.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
      for (Gateway other : List.of(b, c)) {
        eventually("the others see both unloads", () -> other.server.control().loads().getOrDefault("m", List.of()).stream()
            .filter(ask -> !ask.getLoaded()).count() == 2);
        other.server.versions().reconcileLoads();
      }
      clock.millis += io.modelgate.gateway.server.VersionRetirement.AFTER.toMillis();
      for (Gateway replica : List.of(a, b, c)) {
        replica.stats.rotate();
      }
      assertThat(a.repository.model("m")).isEmpty();
      assertThat(b.repository.model("m")).isEmpty();
      assertThat(c.repository.model("m")).isPresent();

      // Forgotten from a while b is cut off from etcd.
      proxy.cut();
      eventually("b finds its store down", () -> !b.server.control().status().getUp());
      assertThat(a.admin().forgetModel(io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder().setModel("m").build())
          .getForgotten()).startsWith("forgot routing revision 1 {1=1, 2=1}, ").endsWith(", the last load or unload of 2 versions");
      assertThat(a.server.control().loads()).doesNotContainKey("m");
      assertThat(b.server.control().loads()).containsKey("m");

      // b, back, reads every record again: m's is not among them, and b, which lacks the model,
      // forgets it too.
      proxy.mend();
      eventually("b forgets it once back", () -> !b.server.control().loads().containsKey("m"));

      // c, whose repository has the model, keeps it under the routing in force, and writes its next
      // changes as a new record (a write naming the old one, before c has the deletion, is taken
      // again on top of what the store has).
      assertThat(c.server.router().route("m").policy()).isEqualTo(half);
      assertThat(load(c, "m", 1).getState()).isEqualTo("READY");
      RoutingPolicy next = c.admin().setRouting(SetRoutingRequest.newBuilder()
          .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(1).build());
      assertThat(next.getRevision()).isEqualTo(2);
      assertThat(c.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion()).isEqualTo("1");
      eventually("a has c's new record", () -> a.server.control().loads().get("m") != null
          && a.server.control().loads().get("m").stream().anyMatch(ask -> ask.getReplica().equals("c") && ask.getLoaded()));
      assertThat(c.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion()).isEqualTo("1");
    }
  }

  @Test
  void aRolloutAbortedOnAReplicaLackingTheModel_restoresTheBaselineOnTheReplicasThatHaveIt(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    Gateway.write(repoA, "m", 1, Gateway.affine());
    Gateway.write(repoA, "m", 2, Gateway.affine());
    Gateway.write(repoB, "kept", 1, Gateway.affine());
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(repoA, "abortelsewhere", "a", clock);
        Gateway b = replica(repoB, "abortelsewhere", "b", clock)) {
      RoutingPolicy baseline = set(a, policy(1, 0), 0);
      assertThat(startJudged(a, 25, io.modelgate.proto.admin.v1.RolloutSpec.newBuilder()).getState()).isEqualTo("RUNNING");
      assertThat(a.server.router().route("m").policy().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(1L, 75, 2L, 25));
      eventually("b sees the rollout", () -> b.server.control().current("m") != null);

      io.modelgate.proto.admin.v1.Rollout aborted = b.admin().abortRollout(
          io.modelgate.proto.admin.v1.AbortRolloutRequest.newBuilder().setModel("m").build());
      assertThat(aborted.getState()).isEqualTo("ABORTED");
      eventually("a installs the baseline's routing", () -> a.server.router().route("m").policy().getRevision() == 3);
      assertThat(a.server.router().route("m").policy().getWeightsMap()).isEqualTo(baseline.getWeightsMap());
      assertThat(a.admin().getRollout(io.modelgate.proto.admin.v1.GetRolloutRequest.newBuilder().setModel("m").build())
          .getState()).isEqualTo("ABORTED");
      for (int i = 0; i < 20; i++) {
        assertThat(a.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").build()).getModelVersion()).isEqualTo("1");
      }
      // Other changes still need the model here.
      assertThatThrownBy(() -> set(b, policy(0, 1), 3)).hasMessageStartingWith("NOT_FOUND: unknown model 'm'");
    }
  }

  @Test
  void aJudgeLackingTheModel_judgesItsRollout_onTheSamplesAndGoldenResultsTheOthersPublish(
      @TempDir Path repoA, @TempDir Path repoB) throws Exception {
    // a serves the demo (two versions of cnn_mnist, a golden set); b, elected judge, lacks it.
    io.modelgate.gateway.demo.DemoRepository.materialize(repoA);
    Gateway.write(repoB, "kept", 1, Gateway.affine());
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway b = replica(repoB, "absentjudge", "b", clock)) {
      eventually("b is elected judge", () -> judges(b));
      b.server.control().tick();
      try (Gateway a = replica(repoA, "absentjudge", "a", clock)) {
        a.admin().setRouting(SetRoutingRequest.newBuilder().setPolicy(RoutingPolicy.newBuilder()
            .setModel("cnn_mnist").putWeights(1, 100)).setExpectedRevision(0).build());
        // The start runs both versions' golden sets on a.
        a.admin().startRollout(io.modelgate.proto.admin.v1.StartRolloutRequest.newBuilder()
            .setSpec(io.modelgate.proto.admin.v1.RolloutSpec.newBuilder().setModel("cnn_mnist").setBaseline(1)
                .setCandidate(2).addSteps(50).addSteps(100).setIntervalS(60)
                .setThresholds(io.modelgate.proto.admin.v1.Thresholds.newBuilder()
                    .setMinSamples(40).setMaxP99Ratio(100).setSignificance(1e-9)))
            .build());
        eventually("b sees the rollout", () -> b.server.control().current("cnn_mnist") != null);
        for (int i = 0; i < 60; i++) {
          for (String version : List.of("1", "2")) {
            a.blocking().modelInfer(Tensors.digit(io.modelgate.gateway.demo.MnistDigits.get(i)).setModelVersion(version).build());
          }
        }
        clock.millis += 61_000;
        // Nothing published yet: nothing to judge on, passed by and counted.
        b.server.control().tick();
        assertThat(b.server.control().rollout("cnn_mnist").getState()).isEqualTo("RUNNING");
        assertThat(b.server.control().unjudgedRollouts()).isEqualTo(1);

        // Once a publishes its samples and golden results, b judges on them alone, and promotes.
        eventually("a publishes", () -> publishes(a));
        assertThat(b.server.control().store().snapshots("cnn_mnist")).extracting(snapshot -> snapshot.getGolden().getState())
            .containsOnly("DONE");
        b.server.control().tick();
        io.modelgate.proto.admin.v1.Rollout done = b.server.control().rollout("cnn_mnist");
        io.modelgate.proto.admin.v1.Decision last = done.getDecisions(done.getDecisionsCount() - 1);
        assertThat(done.getState()).as(last.getReason()).isEqualTo("PROMOTED");
        assertThat(last.getReason()).contains("golden scores: baseline 1.0000, candidate 1.0000")
            .endsWith("(samples of 1 replicas: a)");
        assertThat(last.getEvidence().getReplicas()).isEqualTo(1);
        assertThat(last.getEvidence().getBaselineSamples()).isEqualTo(60);
        assertThat(last.getEvidence().getCandidateSamples()).isEqualTo(60);
        assertThat(last.getEvidence().getCandidateGoldenScore()).isEqualTo(1.0);
        assertThat(b.server.control().unjudgedRollouts()).isZero();
        eventually("a routes everything to the candidate",
            () -> a.server.router().route("cnn_mnist").policy().getWeightsMap().equals(java.util.Map.of(2L, 1)));
      }
    }
  }

  @Test
  void aVersionAReplicaForgets_leavesTheFleetsSnapshots_whileTheReplicaLives() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway a = replica(root, "forget", "a", clock);
        Gateway b = replica(root, "forget", "b", clock)) {
      a.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("1").build());
      // Published once a has its replica lease.
      eventually("a publishes", () -> publishes(a));
      assertThat(b.server.control().store().snapshots("m")).extracting(s -> s.getReplica() + "/" + s.getVersion())
          .contains("a/1", "a/2");

      // Unloaded on a and forgotten there after the longest window: its snapshot goes from etcd.
      a.repository.unloadVersion("m", 1, Duration.ofSeconds(5));
      clock.millis += io.modelgate.gateway.server.VersionRetirement.AFTER.toMillis();
      a.stats.rotate();
      a.server.fleet().publish();
      assertThat(b.server.control().store().snapshots("m")).extracting(s -> s.getReplica() + "/" + s.getVersion())
          .doesNotContain("a/1").contains("a/2");
    }
  }

  /**
   * Once one of {@code a} and {@code b} is elected judge: the judge and the other, the judge
   * judging, and the baseline (version 1) taking all traffic as a rollout needs.
   */
  private static Gateway[] judgeAndOther(Gateway a, Gateway b) throws Exception {
    eventually("a judge is elected", () -> judges(a) || judges(b));
    Gateway judge = judges(a) ? a : b;
    Gateway other = judge == a ? b : a;
    // Its scheduler would do this within a second: it starts judging (steps are judged after a
    // whole interval of its own).
    judge.server.control().tick();
    RoutingPolicy baseline = set(other, policy(1, 0), 0);
    eventually("the judge applies it", () -> revision(judge) == baseline.getRevision());
    return new Gateway[] {judge, other};
  }

  /** Model m's versions 1 to {@code count} in {@code models}, each the same model, not batched. */
  private static void writeEqualVersions(Path models, int count) throws Exception {
    for (int version = 1; version <= count; version++) {
      Gateway.write(models, "m", version, Gateway.affine());
    }
    Files.writeString(models.resolve("m/model.yaml"), "max_batch_size: 0\n");
  }

  /**
   * Starts on {@code replica} a rollout of model m's version 2 against version 1 at {@code
   * firstStep}% then 100%, with what {@code spec} sets (a control), judged on 40 samples at least
   * with a p99 limit no stall of this shared machine reaches (these tests check what is merged, not
   * statistics).
   */
  private static io.modelgate.proto.admin.v1.Rollout startJudged(Gateway replica, int firstStep,
      io.modelgate.proto.admin.v1.RolloutSpec.Builder spec) {
    return replica.admin().startRollout(io.modelgate.proto.admin.v1.StartRolloutRequest.newBuilder()
        .setSpec(spec.setModel("m").setBaseline(1).setCandidate(2).addSteps(firstStep).addSteps(100).setIntervalS(60)
            .setThresholds(io.modelgate.proto.admin.v1.Thresholds.newBuilder()
                .setMinSamples(40).setMaxP99Ratio(100).setSignificance(1e-9)))
        .build());
  }

  /** {@code each} calls to each of {@code versions} of model m on {@code replica}, in turn. */
  private static void pinned(Gateway replica, int each, String... versions) {
    for (int i = 0; i < each; i++) {
      for (String version : versions) {
        replica.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").setModelVersion(version).build());
      }
    }
  }

  /**
   * The judge's tick (its scheduler's, once a second), after which model m's rollout must be
   * PROMOTED: its last decision.
   */
  private static io.modelgate.proto.admin.v1.Decision promoted(Gateway judge) {
    judge.server.control().tick();
    io.modelgate.proto.admin.v1.Rollout done = judge.server.control().rollout("m");
    io.modelgate.proto.admin.v1.Decision last = done.getDecisions(done.getDecisionsCount() - 1);
    assertThat(done.getState()).as(last.getReason()).isEqualTo("PROMOTED");
    return last;
  }

  /** Whether {@code replica} published its snapshots: false until it holds its replica lease. */
  private static boolean publishes(Gateway replica) {
    try {
      replica.server.fleet().publish();
      return true;
    } catch (io.modelgate.runtime.error.InferenceException e) {
      return false;
    }
  }

  private static boolean judges(Gateway replica) {
    return replica.server.control().store().judges();
  }
}

package io.modelgate.gateway.control;

import io.modelgate.gateway.stats.Histograms;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.FleetStatsResponse;
import io.modelgate.proto.admin.v1.FleetVersionStats;
import io.modelgate.proto.admin.v1.ReplicaSnapshot;
import io.modelgate.proto.admin.v1.ReplicaWindowStats;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.StepSamples;
import io.modelgate.runtime.error.InferenceException;
import java.time.Clock;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * This replica's part in the fleet's statistics: every {@link #PUBLISH_INTERVAL_MS} it publishes,
 * per version, its last minute (answers by code, latency histogram) and, for the baseline and
 * candidate of a running rollout, its live samples since the step started; and it answers the
 * fleet view by merging every replica's snapshots. With a file store there is no fleet: it
 * publishes nothing and the view is this replica alone.
 *
 * <p>Threading: {@link #publish} runs on its own thread ({@code modelgate-fleet}); {@link #report}
 * on the admin caller's. It reads the control plane's rollouts without its lock.
 */
public final class Fleet implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Fleet.class);
  /** How often a replica publishes its snapshots, in milliseconds. */
  public static final long PUBLISH_INTERVAL_MS = 2000;

  private final ControlPlane control;
  private final StatsRegistry stats;
  private final io.modelgate.gateway.health.GoldenSets golden;
  private final io.modelgate.gateway.health.Drift drift;
  private final Clock clock;
  private final ScheduledExecutorService thread;
  private volatile long lastFailureLogMs;

  /**
   * @param golden the versions' golden-set results, published for a judge that lacks the model
   * @param drift the versions' drift, published for {@code admin drift --fleet}
   * @param schedule whether to publish on a background thread (tests call {@link #publish})
   */
  public Fleet(ControlPlane control, StatsRegistry stats, io.modelgate.gateway.health.GoldenSets golden,
      io.modelgate.gateway.health.Drift drift, Clock clock, boolean schedule) {
    this.control = control;
    this.stats = stats;
    this.golden = golden;
    this.drift = drift;
    this.clock = clock;
    if (schedule && control.store().shared()) {
      thread =
          Executors.newSingleThreadScheduledExecutor(
              r -> {
                Thread t = new Thread(r, "modelgate-fleet");
                t.setDaemon(true);
                return t;
              });
      thread.scheduleWithFixedDelay(this::publishQuietly, PUBLISH_INTERVAL_MS, PUBLISH_INTERVAL_MS, TimeUnit.MILLISECONDS);
    } else {
      thread = null;
    }
  }

  private void publishQuietly() {
    try {
      publish();
    } catch (RuntimeException e) {
      long now = System.currentTimeMillis();
      if (now - lastFailureLogMs > 60_000) {
        lastFailureLogMs = now;
        log.warn("fleet snapshots not published (logged once a minute): {}", e.getMessage());
      }
    }
  }

  /** A version this replica has published a snapshot of. */
  private record Published(String model, long version) {}

  /** Written by {@link #publish} alone (one thread at a time). */
  private Set<Published> published = Set.of();

  /**
   * Publishes this replica's snapshot of every version it keeps statistics for, and withdraws
   * those of versions it no longer does (forgotten once out of memory): their keys would stay, at
   * their last minute, as long as the replica lives. A withdrawal that fails is tried again next
   * time. A no-op with a file store.
   */
  public synchronized void publish() {
    if (!control.store().shared()) {
      return;
    }
    long now = clock.millis();
    Set<Published> kept = new HashSet<>();
    Map<String, Map<Long, io.modelgate.proto.admin.v1.VersionDrift>> drifts = new java.util.HashMap<>();
    for (VersionStats version : stats.all()) {
      ReplicaSnapshot.Builder snapshot = snapshot(version, now);
      io.modelgate.proto.admin.v1.VersionDrift drifted =
          drifts.computeIfAbsent(version.model(), this::drift).get(version.version());
      if (drifted != null) {
        snapshot.setDrift(drifted);
      }
      control.store().publish(snapshot.build());
      kept.add(new Published(version.model(), version.version()));
    }
    Set<Published> next = new HashSet<>(kept);
    RuntimeException failed = null;
    for (Published gone : published) {
      if (!kept.contains(gone)) {
        try {
          control.store().unpublish(gone.model(), gone.version());
        } catch (RuntimeException e) {
          next.add(gone);
          failed = failed == null ? e : failed;
        }
      }
    }
    published = next;
    if (failed != null) {
      throw failed;
    }
  }

  /**
   * The drift of {@code model}'s loaded versions that profile it, by version; empty where the drift
   * thread does not answer within a second (the snapshot then goes without it).
   */
  private Map<Long, io.modelgate.proto.admin.v1.VersionDrift> drift(String model) {
    Map<Long, io.modelgate.proto.admin.v1.VersionDrift> byVersion = new java.util.HashMap<>();
    try {
      for (io.modelgate.proto.admin.v1.VersionDrift version : drift.report(model, 0).get(1, TimeUnit.SECONDS)
          .getVersionsList()) {
        if (!version.getState().equals("OFF")) {
          byVersion.put(version.getVersion(), version);
        }
      }
    } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
      log.debug("model '{}': drift not published this time: {}", model, e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    return byVersion;
  }

  /**
   * Every replica's drift of {@code model}'s versions that profile it ({@code version} 0: all),
   * each version once per replica: this replica's as it is now, every other's as it last published
   * it (every {@link #PUBLISH_INTERVAL_MS} while it lives), by version, then replica.
   *
   * @throws InferenceException FAILED_PRECONDITION without a fleet; UNAVAILABLE when the store cannot be read
   */
  public io.modelgate.proto.admin.v1.DriftReport driftReport(String model, long version) {
    control.store().requireFleet();
    long now = clock.millis();
    List<io.modelgate.proto.admin.v1.VersionDrift> all = new ArrayList<>();
    drift(model).forEach((number, here) -> {
      if (version == 0 || number == version) {
        all.add(here.toBuilder().setReplica(control.replica()).setAsOfMs(now).build());
      }
    });
    for (ReplicaSnapshot snapshot : control.store().snapshots(model)) {
      if (!snapshot.getReplica().equals(control.replica()) && snapshot.hasDrift()
          && (version == 0 || snapshot.getVersion() == version)) {
        all.add(snapshot.getDrift().toBuilder().setReplica(snapshot.getReplica()).setAsOfMs(snapshot.getTimeMs()).build());
      }
    }
    all.sort(java.util.Comparator.comparingLong(io.modelgate.proto.admin.v1.VersionDrift::getVersion)
        .thenComparing(io.modelgate.proto.admin.v1.VersionDrift::getReplica));
    java.util.SortedSet<String> replicas = new java.util.TreeSet<>();
    all.forEach(entry -> replicas.add(entry.getReplica()));
    return io.modelgate.proto.admin.v1.DriftReport.newBuilder()
        .setModel(model)
        .setReplica("fleet of " + replicas.size() + ": " + String.join(", ", replicas))
        .addAllVersions(all)
        .build();
  }

  private ReplicaSnapshot.Builder snapshot(VersionStats version, long now) {
    ReplicaSnapshot.Builder snapshot = stats.lastMinute(version).setReplica(control.replica()).setTimeMs(now);
    control.router().route(version.model()).model().version(version.version()).ifPresent(v -> {
      io.modelgate.runtime.repository.LoadedVersion loaded = v.loadedOrNull();
      if (loaded != null) {
        snapshot.setModelSha256(loaded.modelSha256());
      }
      io.modelgate.proto.admin.v1.GoldenResult result = golden.result(v);
      snapshot.setGolden(result.getFailingCount() <= 3 ? result
          : result.toBuilder().clearFailing().addAllFailing(result.getFailingList().subList(0, 3)).build());
    });
    Rollout rollout = control.current(version.model());
    boolean running = rollout != null && rollout.getState().equals("RUNNING");
    long reference = running ? RolloutEvidence.reference(rollout) : 0;
    if (running && (reference == version.version() || rollout.getSpec().getCandidate() == version.version())) {
      VersionStats.ShadowAgreement shadow = version.shadowSince(rollout.getStepStartedAtMs());
      // This replica's pair over the same span, as the judge takes its own (RolloutEvidence): the
      // candidate and the version it is judged against at this step.
      RolloutSpec spec = rollout.getSpec();
      VersionStats.Samples[] pair = VersionStats.alignedSince(stats.find(spec.getModel(), reference),
          stats.find(spec.getModel(), spec.getCandidate()), rollout.getStepStartedAtMs());
      VersionStats.Samples mine = pair[reference == version.version() ? 0 : 1];
      StepSamples.Builder step = step(mine, rollout.getStepStartedAtMs()).toBuilder()
          .setShadowCompared(shadow.compared())
          .setShadowAgreed(shadow.agreed());
      StatsRegistry.Stages stages = stats.stagesSince(version.model(), version.version(), rollout.getStepStartedAtMs());
      if (stages != null) {
        step.setQueueUs(Histograms.encode(stages.queueMicros()))
            .setComputeUs(Histograms.encode(stages.computeMicros()))
            .setStageSeconds(stages.seconds());
      }
      snapshot.setStep(step);
    }
    return snapshot;
  }

  static StepSamples step(VersionStats.Samples samples, long sinceMs) {
    Histogram latencies = new Histogram(3);
    for (long micros : samples.latenciesMicros()) {
      latencies.recordValue(micros);
    }
    return StepSamples.newBuilder()
        .setSinceMs(sinceMs)
        .setLatenciesUs(Histograms.encode(latencies))
        .setErrors(samples.errors())
        .setAnswers(samples.answers())
        .build();
  }

  /**
   * The fleet's last minute per version: every replica's snapshot (this replica's taken now, the
   * others' as last published), merged, with a row per replica.
   *
   * @throws InferenceException UNAVAILABLE when the control store cannot be reached
   */
  public FleetStatsResponse report(String model, long version) {
    long now = clock.millis();
    Map<String, List<ReplicaSnapshot>> byVersion = new TreeMap<>();
    for (ReplicaSnapshot snapshot : control.store().snapshots(model)) {
      if (!snapshot.getReplica().equals(control.replica())) {
        byVersion.computeIfAbsent(key(snapshot.getModel(), snapshot.getVersion()), k -> new ArrayList<>()).add(snapshot);
      }
    }
    for (VersionStats local : stats.all()) {
      if (model.isEmpty() || local.model().equals(model)) {
        byVersion.computeIfAbsent(key(local.model(), local.version()), k -> new ArrayList<>()).add(snapshot(local, now).build());
      }
    }
    FleetStatsResponse.Builder response = FleetStatsResponse.newBuilder().setTimeMs(now).setReplica(control.replica());
    for (List<ReplicaSnapshot> snapshots : byVersion.values()) {
      ReplicaSnapshot first = snapshots.get(0);
      if (version != 0 && first.getVersion() != version) {
        continue;
      }
      snapshots.sort(java.util.Comparator.comparing(ReplicaSnapshot::getReplica));
      FleetVersionStats.Builder row =
          response.addVersionsBuilder()
              .setModel(first.getModel())
              .setVersion(first.getVersion())
              .setFleet(StatsRegistry.merged("1m", snapshots));
      java.util.Set<String> files = new java.util.TreeSet<>();
      for (ReplicaSnapshot snapshot : snapshots) {
        row.addReplicas(ReplicaWindowStats.newBuilder()
            .setReplica(snapshot.getReplica())
            .setTimeMs(snapshot.getTimeMs())
            .setWindow(StatsRegistry.merged("1m", List.of(snapshot)))
            .setModelSha256(snapshot.getModelSha256()));
        if (!snapshot.getModelSha256().isEmpty()) {
          files.add(snapshot.getModelSha256());
        }
      }
      if (files.size() > 1) {
        row.setDifferentFiles(snapshots.stream().filter(s -> !s.getModelSha256().isEmpty())
            .map(s -> s.getReplica() + " " + s.getModelSha256().substring(0, 12))
            .collect(java.util.stream.Collectors.joining(", ")));
      }
    }
    return response.build();
  }

  private static String key(String model, long version) {
    return model + "\u0000" + String.format("%020d", version);
  }

  @Override
  public void close() {
    if (thread != null) {
      thread.shutdownNow();
    }
  }
}

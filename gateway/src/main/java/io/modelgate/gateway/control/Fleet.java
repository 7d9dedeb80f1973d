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
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
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
          DaemonThreads.scheduled("modelgate-fleet");
      thread.scheduleWithFixedDelay(this::publishQuietly, PUBLISH_INTERVAL_MS, PUBLISH_INTERVAL_MS, TimeUnit.MILLISECONDS);
      control.store().follow(ControlStore.Topic.DRIFT_SKETCH_ASKS, thread, this::answerDriftAsksQuietly);
    } else {
      thread = null;
    }
  }

  private void publishQuietly() {
    try {
      publish();
    } catch (RuntimeException e) {
      if (Thread.currentThread().isInterrupted()) {
        return; // stopping: the write was cut short, not refused
      }
      long now = System.currentTimeMillis();
      if (now - lastFailureLogMs > 60_000) {
        lastFailureLogMs = now;
        log.warn("fleet snapshots not published (logged once a minute): {}", e.getMessage());
      }
    }
  }

  private void answerDriftAsksQuietly() {
    try {
      answerDriftAsks();
    } catch (RuntimeException e) {
      if (Thread.currentThread().isInterrupted()) {
        return; // stopping: cut short, not refused
      }
      long heldBack = unanswered.pass();
      if (heldBack >= 0) {
        log.warn("asks for this replica's drift sketches not answered ({})"
            + io.modelgate.runtime.logging.LogThrottle.since(heldBack), e.getMessage());
      }
    }
  }

  // ---- a merged drift report: asked of every replica, answered by each, merged by the asker ----

  /** How long an ask for drift sketches, and each answer, is kept in the store. */
  static final java.time.Duration ASK_KEPT = java.time.Duration.ofSeconds(30);
  /**
   * How long the asking replica waits for every other replica's answer: each answers as soon as
   * etcd's watch tells it of the ask, in tens of milliseconds, but waits up to {@link
   * #SKETCHES_WAIT_MS} for its drift thread's sketches.
   */
  static final long ANSWERS_WAIT_MS = 6000;
  /** How long a replica waits for its drift thread's sketches. */
  private static final long SKETCHES_WAIT_MS = 5000;

  private final io.modelgate.runtime.logging.LogThrottle unanswered =
      new io.modelgate.runtime.logging.LogThrottle(java.time.Duration.ofMinutes(1));
  /** The asks answered here ("model/asker@time"), pruned to those still kept; the fleet thread's. */
  private final Set<String> answered = new HashSet<>();

  /**
   * Answers every other replica's ask for this replica's drift sketches not yet answered: with
   * what the drift thread holds of the model's versions asked. On the fleet thread, whenever the
   * store says an ask may have come ({@link ControlStore#follow}).
   */
  void answerDriftAsks() {
    List<io.modelgate.proto.admin.v1.DriftSketchesAsked> asks = control.store().driftSketchAsks();
    Set<String> kept = new HashSet<>();
    for (io.modelgate.proto.admin.v1.DriftSketchesAsked ask : asks) {
      String key = ask.getModel() + "/" + ask.getReplica() + "@" + ask.getAskedAtMs();
      kept.add(key);
      if (ask.getReplica().equals(control.replica()) || answered.contains(key)) {
        continue;
      }
      control.store().answerDriftSketches(ask, bounded(sketches(ask.getModel(), ask.getVersion(), ask.getAskedAtMs())),
          ASK_KEPT);
      answered.add(key);
    }
    answered.retainAll(kept);
  }

  /** This replica's sketches of {@code model} ({@code version} 0: all), or why it has none, as an answer. */
  private io.modelgate.proto.admin.v1.DriftSketchesAnswer sketches(String model, long version, long askedAtMs) {
    io.modelgate.proto.admin.v1.DriftSketchesAnswer answer;
    try {
      answer = drift.sketches(model, version).get(SKETCHES_WAIT_MS, TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.ExecutionException e) {
      answer = io.modelgate.proto.admin.v1.DriftSketchesAnswer.newBuilder()
          .addMissing((version == 0 ? "every version" : String.valueOf(version)) + ": "
              + (e.getCause() == null ? e.toString() : e.getCause().getMessage()))
          .build();
    } catch (java.util.concurrent.TimeoutException e) {
      answer = io.modelgate.proto.admin.v1.DriftSketchesAnswer.newBuilder()
          .addMissing((version == 0 ? "every version" : String.valueOf(version))
              + ": the drift thread did not answer within " + SKETCHES_WAIT_MS + " ms")
          .build();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw InferenceException.unavailable("interrupted");
    }
    return answer.toBuilder().setReplica(control.replica()).setAskedAtMs(askedAtMs).build();
  }

  /**
   * Bytes an answer may take: etcd refuses a request over 1.5 MiB by default. Sketches are about
   * 3.5 KB each at most (KLL, k = 128), four per numeric feature (the reference and three
   * windows), so a version of up to some 70 numeric features fits.
   */
  public static final int ANSWER_LIMIT_BYTES = 1 << 20;

  /** {@code answer} with the versions that would take it over {@link #ANSWER_LIMIT_BYTES} left out, saying so. */
  static io.modelgate.proto.admin.v1.DriftSketchesAnswer bounded(io.modelgate.proto.admin.v1.DriftSketchesAnswer answer) {
    if (answer.getSerializedSize() <= ANSWER_LIMIT_BYTES) {
      return answer;
    }
    io.modelgate.proto.admin.v1.DriftSketchesAnswer.Builder out = answer.toBuilder().clearVersions();
    for (io.modelgate.proto.admin.v1.DriftSketches version : answer.getVersionsList()) {
      int size = version.getSerializedSize();
      if (out.build().getSerializedSize() + size + 16 <= ANSWER_LIMIT_BYTES) {
        out.addVersions(version);
      } else {
        out.addMissing(version.getVersion() + ": its sketches take " + (size + 1023) / 1024 + " KB, more than an answer"
            + " may carry through etcd (" + ANSWER_LIMIT_BYTES / 1024 + " KB with the versions before it)");
      }
    }
    return out.build();
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
   * The fleet's drift of {@code model}'s versions that profile it ({@code version} 0: all) as one
   * per version ({@link io.modelgate.gateway.health.DriftMerge}): asks every replica that publishes
   * snapshots of the model for its sketches, waits up to {@link #ANSWERS_WAIT_MS} for their
   * answers, and merges them with this replica's own. A replica that did not answer in time is
   * named among those not merged.
   *
   * <p>On the admin caller's thread, which it holds for up to {@link #ANSWERS_WAIT_MS}.
   *
   * @throws InferenceException FAILED_PRECONDITION without a fleet; UNAVAILABLE when the store
   *     cannot be read or written
   */
  public io.modelgate.proto.admin.v1.DriftReport mergedDriftReport(String model, long version) {
    FleetSketches fleet = sketchesOfTheFleet(model, version);
    io.modelgate.proto.admin.v1.DriftReport.Builder report = io.modelgate.proto.admin.v1.DriftReport.newBuilder()
        .setModel(model)
        .setReplica("fleet of " + fleet.replicas().size() + " (" + String.join(", ", fleet.replicas()) + "), merged on "
            + control.replica());
    for (long number : fleet.versions()) {
      report.addVersions(io.modelgate.gateway.health.DriftMerge.merge(number, fleet.of(number), fleet.notMerged(number))
          .toBuilder().setAsOfMs(fleet.askedAtMs()));
    }
    return report.build();
  }

  /**
   * Every replica's drift sketches of a model's versions, as one ask gathered them: this replica's
   * first, then each other's that answered, by name.
   *
   * @param replicas every replica asked, this one first
   * @param byVersion per version, each replica's sketches of it
   * @param notMerged per version (0: all), each replica without sketches of it and why, "replica: why"
   */
  public record FleetSketches(long askedAtMs, List<String> replicas,
      Map<Long, Map<String, io.modelgate.proto.admin.v1.DriftSketches>> byVersion, Map<Long, List<String>> notMerged) {
    /** The versions asked of that any replica has or named. */
    public java.util.SortedSet<Long> versions() {
      java.util.SortedSet<Long> numbers = new java.util.TreeSet<>(byVersion.keySet());
      numbers.addAll(notMerged.keySet());
      numbers.remove(0L);
      return numbers;
    }

    /** Each replica's sketches of {@code version}, this replica's first. */
    public Map<String, io.modelgate.proto.admin.v1.DriftSketches> of(long version) {
      return byVersion.getOrDefault(version, Map.of());
    }

    /** The replicas without sketches of {@code version}, and why. */
    public List<String> notMerged(long version) {
      List<String> left = new ArrayList<>(notMerged.getOrDefault(version, List.of()));
      left.addAll(notMerged.getOrDefault(0L, List.of()));
      return left;
    }
  }

  /**
   * Asks every replica that publishes snapshots of {@code model} for its drift sketches of its
   * versions ({@code version} 0: all), waits up to {@link #ANSWERS_WAIT_MS} for their answers, and
   * gathers them with this replica's own ({@link #askSketches}, then {@link #gather}). On the
   * admin caller's thread, which it holds for up to {@link #ANSWERS_WAIT_MS}.
   *
   * @throws InferenceException FAILED_PRECONDITION without a fleet; UNAVAILABLE when the store
   *     cannot be read or written
   */
  public FleetSketches sketchesOfTheFleet(String model, long version) {
    return gather(askSketches(model, version));
  }

  /**
   * An ask for every replica's drift sketches of a model, made ({@link #askSketches}) and not yet
   * gathered ({@link #gather}): several asked at once are answered at the replicas' same publish.
   *
   * @param others the replicas asked: those that publish snapshots of the model, this one aside
   * @param mine this replica's own sketches, taken as it asked
   * @param deadlineNanos until when ({@link System#nanoTime}) their answers are waited for
   */
  public record SketchesAsked(String model, long version, long askedAtMs, java.util.SortedSet<String> others,
      io.modelgate.proto.admin.v1.DriftSketchesAnswer mine, long deadlineNanos) {}

  /**
   * Asks every replica that publishes snapshots of {@code model} for its drift sketches of its
   * versions ({@code version} 0: all), and takes this replica's own; their answers are waited for
   * by {@link #gather}, up to {@link #ANSWERS_WAIT_MS} from now.
   *
   * @throws InferenceException FAILED_PRECONDITION without a fleet; UNAVAILABLE when the store
   *     cannot be read or written
   */
  public SketchesAsked askSketches(String model, long version) {
    control.store().requireFleet();
    long askedAt = clock.millis();
    io.modelgate.proto.admin.v1.DriftSketchesAsked ask = io.modelgate.proto.admin.v1.DriftSketchesAsked.newBuilder()
        .setModel(model).setVersion(version).setReplica(control.replica()).setAskedAtMs(askedAt).build();
    java.util.SortedSet<String> others = new java.util.TreeSet<>();
    for (ReplicaSnapshot snapshot : control.store().snapshots(model)) {
      if (!snapshot.getReplica().equals(control.replica())) {
        others.add(snapshot.getReplica());
      }
    }
    if (!others.isEmpty()) {
      control.store().askDriftSketches(ask, ASK_KEPT);
    }
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ANSWERS_WAIT_MS);
    return new SketchesAsked(model, version, askedAt, others, sketches(model, version, askedAt), deadline);
  }

  /**
   * Every replica's sketches as {@code asked} gathers them, waiting until each replica asked has
   * answered or the ask's deadline: this replica's first, then each other's that answered, by name.
   * A replica that did not answer in time is named among those not merged. Blocks the caller.
   *
   * @throws InferenceException UNAVAILABLE when the store cannot be read
   */
  public FleetSketches gather(SketchesAsked asked) {
    String model = asked.model();
    long version = asked.version();
    long askedAt = asked.askedAtMs();
    java.util.SortedSet<String> others = asked.others();
    io.modelgate.proto.admin.v1.DriftSketchesAnswer mine = asked.mine();
    long deadline = asked.deadlineNanos();
    Map<String, io.modelgate.proto.admin.v1.DriftSketchesAnswer> answers = new TreeMap<>();
    while (!others.isEmpty()) {
      // Who has answered, by the answers' keys alone (each answer is some 60 KB): read once all have.
      if (control.store().driftSketchAnswerers(model, askedAt).containsAll(others) || System.nanoTime() > deadline) {
        break;
      }
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw InferenceException.unavailable("interrupted while waiting for the replicas' drift sketches");
      }
    }
    if (!others.isEmpty()) {
      for (io.modelgate.proto.admin.v1.DriftSketchesAnswer answer : control.store().driftSketchAnswers(model, askedAt)) {
        if (answer.getAskedAtMs() == askedAt && others.contains(answer.getReplica())) {
          answers.put(answer.getReplica(), answer);
        }
      }
    }
    // Per version: this replica's sketches first (its layout is the one merged), then the others' by name.
    Map<Long, Map<String, io.modelgate.proto.admin.v1.DriftSketches>> byVersion = new TreeMap<>();
    Map<Long, List<String>> notMerged = new TreeMap<>();
    List<io.modelgate.proto.admin.v1.DriftSketchesAnswer> all = new ArrayList<>();
    all.add(mine);
    all.addAll(answers.values());
    for (io.modelgate.proto.admin.v1.DriftSketchesAnswer answer : all) {
      for (io.modelgate.proto.admin.v1.DriftSketches sketches : answer.getVersionsList()) {
        byVersion.computeIfAbsent(sketches.getVersion(), v -> new java.util.LinkedHashMap<>()).put(answer.getReplica(), sketches);
      }
      for (String missing : answer.getMissingList()) {
        int colon = missing.indexOf(": ");
        try {
          long number = Long.parseLong(missing.substring(0, colon));
          notMerged.computeIfAbsent(number, v -> new ArrayList<>()).add(answer.getReplica() + ": " + missing.substring(colon + 2));
        } catch (RuntimeException e) {
          // "every version: why": the replica's whole answer.
          notMerged.computeIfAbsent(version, v -> new ArrayList<>()).add(answer.getReplica() + ": " + missing);
        }
      }
    }
    java.util.SortedSet<String> silent = new java.util.TreeSet<>(others);
    silent.removeAll(answers.keySet());
    for (String replica : silent) {
      notMerged.computeIfAbsent(0L, v -> new ArrayList<>()).add(replica + ": did not answer within " + ANSWERS_WAIT_MS + " ms");
    }
    if (version != 0) {
      byVersion.computeIfAbsent(version, v -> new java.util.LinkedHashMap<>());
    }
    List<String> replicas = new ArrayList<>();
    replicas.add(control.replica());
    replicas.addAll(others);
    return new FleetSketches(askedAt, List.copyOf(replicas), byVersion, notMerged);
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

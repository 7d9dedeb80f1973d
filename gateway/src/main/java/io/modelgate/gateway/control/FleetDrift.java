package io.modelgate.gateway.control;

import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.modelgate.gateway.health.DriftMerge;
import io.modelgate.proto.admin.v1.FeatureDrift;
import io.modelgate.proto.admin.v1.ReplicaSnapshot;
import io.modelgate.proto.admin.v1.VersionDrift;
import io.modelgate.proto.admin.v1.WindowDrift;
import io.modelgate.runtime.logging.LogThrottle;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The fleet's drift, watched ({@code serve --fleet-drift-every}): every interval the replica that
 * judges rollouts merges every replica's drift sketches of each model that any replica profiles
 * ({@link Fleet#sketchesOfTheFleet}, {@link DriftMerge#merge}: what {@code admin drift --merged}
 * shows) and exports, for each version, the merged window the model alerts on as {@code
 * modelgate_drift_fleet_*} gauges — a shift too small for any one replica's share of the traffic to
 * call significant can be plain in the fleet's, and the alert {@code ModelgateFleetDrift} reads them.
 * Only the judge exports them, so that the fleet's series come from one replica at a time: a replica
 * that stops judging removes its series at its next round, as it removes those of a version no
 * longer merged and of a model whose merge failed (etcd down, say), rather than leave a stale score.
 *
 * <p>What a round costs: each other replica that publishes statistics of the model answers the ask
 * as soon as etcd's watch tells it of it, with its sketches (about 60 KB for the demo's model, at most 1 MiB), kept in
 * etcd for 30 s; the judge asks for every model at once and waits up to 6 s for the answers.
 *
 * <p>Threading: {@link #round} on its own thread ({@code modelgate-fleet-drift}), one round at a
 * time; the gauges are read by the metrics scrape (volatile values).
 */
public final class FleetDrift implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(FleetDrift.class);
  /** The series the judge exports, as Prometheus names them (alert rules and dashboards read them). */
  public static final List<String> SERIES = List.of("modelgate_drift_fleet_score", "modelgate_drift_fleet_drifted",
      "modelgate_drift_fleet_threshold", "modelgate_drift_fleet_replicas", "modelgate_drift_fleet_left_out",
      "modelgate_drift_fleet_merges_total");
  /** The shortest interval between rounds: each asks every replica for its sketches. */
  public static final Duration LEAST_EVERY = Duration.ofSeconds(10);

  private final ControlPlane control;
  private final Fleet fleet;
  private final MeterRegistry registry;
  private final ScheduledExecutorService thread;
  private final LogThrottle failing = new LogThrottle(Duration.ofMinutes(5));

  /** One feature of one version, as exported. */
  private record FeatureKey(String model, long version, String tensor, String feature, String statistic) {}

  /** One version, as exported. */
  private record VersionKey(String model, long version) {}

  /** A series' value and its meters; values written by the round, read by the scrape. */
  private static final class Exported {
    volatile double score = Double.NaN;
    volatile double drifted;
    volatile double threshold = Double.NaN;
    volatile double replicas;
    volatile double leftOut;
    final List<Meter> meters = new ArrayList<>();
  }

  /** Round's thread only (rounds are synchronized). */
  private final Map<FeatureKey, Exported> features = new HashMap<>();
  private final Map<VersionKey, Exported> versions = new HashMap<>();
  /** Each profiled model's merges by outcome, {merged, failed}; round's thread only. */
  private final Map<String, io.micrometer.core.instrument.Counter[]> merges = new HashMap<>();

  /**
   * @param every how often a round runs ({@link ControlSettings#fleetDriftEvery}, validated there);
   *     zero: never on its own (tests call {@link #round})
   * @param schedule whether to run rounds on a background thread
   */
  public FleetDrift(ControlPlane control, Fleet fleet, MeterRegistry registry, Duration every, boolean schedule) {
    this.control = control;
    this.fleet = fleet;
    this.registry = registry;
    if (schedule && !every.isZero() && control.store().shared()) {
      thread = DaemonThreads.scheduled("modelgate-fleet-drift");
      thread.scheduleWithFixedDelay(this::roundQuietly, every.toMillis(), every.toMillis(), TimeUnit.MILLISECONDS);
    } else {
      thread = null;
    }
  }

  private void roundQuietly() {
    try {
      round();
    } catch (RuntimeException e) {
      long heldBack = failing.pass();
      if (heldBack >= 0) {
        log.warn("the fleet's drift not merged this round ({})" + LogThrottle.since(heldBack), e.getMessage());
      }
    }
  }

  /**
   * One round: on the replica that judges rollouts, merges and exports the fleet's drift of every
   * model a replica profiles; on any other, removes what it exported. Returns the models merged.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   *     (what was exported is removed first)
   */
  public synchronized SortedSet<String> round() {
    SortedSet<String> merged = new TreeSet<>();
    if (!control.store().shared() || !control.store().judges()) {
      retain(Set.of(), Set.of());
      retainMerges(Set.of());
      return merged;
    }
    SortedSet<String> models = new TreeSet<>();
    try {
      for (ReplicaSnapshot snapshot : control.store().snapshots("")) {
        if (snapshot.hasDrift() && !snapshot.getDrift().getState().equals("OFF")) {
          models.add(snapshot.getModel());
        }
      }
    } catch (RuntimeException e) {
      // Not merged this round: each model merged before counts a failure, and its series go.
      for (String model : merges.keySet()) {
        count(model, false);
      }
      retain(Set.of(), Set.of());
      throw e;
    }
    Set<FeatureKey> seenFeatures = new HashSet<>();
    Set<VersionKey> seenVersions = new HashSet<>();
    // Every model asked at once, so that the replicas answer all as they are told of the asks, and
    // a replica that does not answer costs the round one wait, not one a model.
    List<Fleet.SketchesAsked> asked = new ArrayList<>();
    for (String model : models) {
      try {
        asked.add(fleet.askSketches(model, 0));
      } catch (RuntimeException e) {
        notMerged(model, e);
      }
    }
    for (Fleet.SketchesAsked ask : asked) {
      String model = ask.model();
      Fleet.FleetSketches gathered;
      try {
        gathered = fleet.gather(ask);
      } catch (RuntimeException e) {
        notMerged(model, e);
        continue;
      }
      for (long number : gathered.versions()) {
        VersionDrift drift = DriftMerge.merge(number, mostServedFirst(gathered.of(number)), gathered.notMerged(number));
        export(model, drift, seenFeatures, seenVersions);
      }
      merged.add(model);
      count(model, true);
    }
    retain(seenFeatures, seenVersions);
    retainMerges(models);
    return merged;
  }

  private void notMerged(String model, RuntimeException e) {
    count(model, false);
    long heldBack = failing.pass();
    if (heldBack >= 0) {
      log.warn("model '{}': the fleet's drift not merged this round ({}){}", model, e.getMessage(), LogThrottle.since(heldBack));
    }
  }

  /**
   * {@code byReplica} with the replicas of the model file most of them serve first, each group in
   * its order (ties: the file seen first): a merge takes the first replica's file and layout and
   * leaves the others out, and the fleet's drift is of what most of the fleet serves, whichever
   * replica judges (for {@code admin drift --merged} the asking replica's own comes first).
   */
  static Map<String, io.modelgate.proto.admin.v1.DriftSketches> mostServedFirst(
      Map<String, io.modelgate.proto.admin.v1.DriftSketches> byReplica) {
    Map<String, Integer> counts = new HashMap<>();
    String most = null;
    for (io.modelgate.proto.admin.v1.DriftSketches sketches : byReplica.values()) {
      int count = counts.merge(sketches.getModelSha256(), 1, Integer::sum);
      if (most == null || count > counts.get(most)) {
        most = sketches.getModelSha256();
      }
    }
    Map<String, io.modelgate.proto.admin.v1.DriftSketches> ordered = new java.util.LinkedHashMap<>();
    for (boolean ofMost : new boolean[] {true, false}) {
      for (Map.Entry<String, io.modelgate.proto.admin.v1.DriftSketches> e : byReplica.entrySet()) {
        if (e.getValue().getModelSha256().equals(most) == ofMost) {
          ordered.put(e.getKey(), e.getValue());
        }
      }
    }
    return ordered;
  }

  /** Sets the gauges of {@code drift}'s alerting window, registering those new. */
  private void export(String model, VersionDrift drift, Set<FeatureKey> seenFeatures, Set<VersionKey> seenVersions) {
    VersionKey versionKey = new VersionKey(model, drift.getVersion());
    seenVersions.add(versionKey);
    Exported version = versions.computeIfAbsent(versionKey, k -> {
      Exported made = new Exported();
      Tags tags = Tags.of("model", model, "version", Long.toString(k.version()));
      made.meters.add(gauge("modelgate.drift.fleet.replicas", tags, made, e -> e.replicas,
          "Replicas whose drift sketches of the version the last merge of the fleet's drift took in (on the replica that judges rollouts)"));
      made.meters.add(gauge("modelgate.drift.fleet.left.out", tags, made, e -> e.leftOut,
          "Replicas the last merge of the fleet's drift left out: they did not answer, serve another model file, or have profiled nothing"));
      return made;
    });
    version.replicas = drift.getMergedFromCount();
    version.leftOut = drift.getNotMergedCount();
    for (FeatureDrift feature : drift.getFeaturesList()) {
      FeatureKey key = new FeatureKey(model, drift.getVersion(), feature.getTensor(), feature.getFeature(),
          feature.getStatistic());
      seenFeatures.add(key);
      Exported exported = features.computeIfAbsent(key, k -> {
        Exported made = new Exported();
        Tags tags = Tags.of("model", model, "version", Long.toString(k.version()), "tensor", k.tensor(),
            "feature", k.feature(), "statistic", k.statistic());
        made.meters.add(gauge("modelgate.drift.fleet.score", tags, made, e -> e.score,
            "Drift of a feature over the fleet, every replica's window merged, against the fleet's merged reference (on the replica that judges rollouts); NaN while unscored"));
        made.meters.add(gauge("modelgate.drift.fleet.drifted", tags, made, e -> e.drifted,
            "1 while the fleet's merged drift score of the feature is over its threshold (and, for ks, significant)"));
        made.meters.add(gauge("modelgate.drift.fleet.threshold", tags, made, e -> e.threshold,
            "The threshold of the fleet's merged drift score, from model.yaml"));
        return made;
      });
      WindowDrift window = feature.getWindowsList().stream().filter(w -> w.getWindow().equals(drift.getWindow()))
          .findFirst().orElse(WindowDrift.getDefaultInstance());
      exported.score = window.getScored() ? window.getScore() : Double.NaN;
      exported.drifted = window.getDrifted() ? 1 : 0;
      exported.threshold = feature.getThreshold();
    }
  }

  private Meter gauge(String name, Tags tags, Exported made, java.util.function.ToDoubleFunction<Exported> value,
      String description) {
    return Gauge.builder(name, made, value).description(description).tags(tags).register(registry);
  }

  private void count(String model, boolean merged) {
    merges.computeIfAbsent(model, m -> new io.micrometer.core.instrument.Counter[] {merges(m, "merged"), merges(m, "failed")})
        [merged ? 0 : 1].increment();
  }

  private io.micrometer.core.instrument.Counter merges(String model, String outcome) {
    return io.micrometer.core.instrument.Counter.builder("modelgate.drift.fleet.merges")
        .description("Rounds of the fleet's drift of a model on the replica that judges rollouts, by outcome: merged, or"
            + " failed (the store could not be read or written; logged): its series go while they fail")
        .tags("model", model, "outcome", outcome).register(registry);
  }

  /** Removes the merge counters of the models not in {@code models}. */
  private void retainMerges(Set<String> models) {
    merges.entrySet().removeIf(e -> {
      if (models.contains(e.getKey())) {
        return false;
      }
      for (io.micrometer.core.instrument.Counter counter : e.getValue()) {
        registry.remove(counter);
      }
      return true;
    });
  }

  /** Removes the series of the features and versions not in these sets. */
  private void retain(Set<FeatureKey> keptFeatures, Set<VersionKey> keptVersions) {
    features.entrySet().removeIf(e -> !keptFeatures.contains(e.getKey()) && removed(e.getValue()));
    versions.entrySet().removeIf(e -> !keptVersions.contains(e.getKey()) && removed(e.getValue()));
  }

  private boolean removed(Exported exported) {
    for (Meter meter : exported.meters) {
      registry.remove(meter);
    }
    return true;
  }

  @Override
  public void close() {
    if (thread != null) {
      thread.shutdownNow();
    }
  }
}

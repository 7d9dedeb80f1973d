package io.modelgate.gateway.admin;

import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.control.ControlStore;
import io.modelgate.gateway.health.Drift;
import io.modelgate.gateway.health.GoldenSets;
import io.modelgate.proto.admin.v1.DriftBaselineAsked;
import io.modelgate.proto.admin.v1.DriftReport;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.logging.LogThrottle;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.time.Duration;
import java.util.HashSet;
import java.lang.ref.WeakReference;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Drift references an operator sets ({@code admin drift baseline}): on this replica, or with
 * {@code --fleet} on every replica of the fleet. One path for both: {@link #set} is what the admin
 * API calls here; a fleet's ask is kept in the control store (the latest per version), and each
 * other replica, told of it by etcd's watch ({@link ControlStore#follow}), sets it on itself
 * through the same steps, from its own window or its own golden run — each replica's reference is
 * of what it serves. Every
 * reference set is audited: where it was asked with the operator's name, on each other replica as
 * the fleet's ({@link VersionControl#FLEET_CALLER}), naming who asked where, or why it was not set
 * there (a replica that served no request in the window, say).
 *
 * <p>A replica follows the asks made after it started: one started later forms its reference as
 * its {@code model.yaml} says (its golden set, or its first requests). With {@code --merged} the
 * ask carries the fleet's reference itself — every replica's window merged — which every load of
 * the version takes as it is, once its first request has laid its features out: on every replica,
 * one started later, and one where the version was loaded again (unloaded and loaded, or reloaded in
 * place).
 *
 * <p>Threading: {@link #set} on the admin caller's thread, waiting for the drift thread (with
 * {@code merged}, for the follower's, which writes the fleet's reference and takes it here); the
 * follower on its own thread ({@code modelgate-drift-baselines}): it reads the asks whenever the
 * store says they may have changed, and looks every {@link #LOOK_EVERY}, without reading the store,
 * for a load here that has not taken the fleet's reference.
 */
public final class DriftBaselines implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(DriftBaselines.class);

  private final ControlPlane control;
  private final io.modelgate.gateway.control.Fleet fleet;
  private final Drift drift;
  private final GoldenSets golden;
  private final long startedMs;
  private final java.util.concurrent.ScheduledExecutorService follower;
  /** The fleet's references ({@code --merged} asks) as last read from the store; the follower's. */
  private List<DriftBaselineAsked> references = List.of();
  /**
   * The asks this replica has followed (model/version@time replica), pruned to those still kept;
   * the follower's thread alone (a fleet's reference asked here is taken there too). For a fleet's
   * reference, the load that took it (or would not), weakly: a later load of the version takes it
   * again; for an ask of each replica's own window, {@link #ONCE}.
   */
  private final Map<String, WeakReference<LoadedVersion>> followed = new java.util.HashMap<>();
  /** An ask followed once, whatever the version's load. */
  private static final WeakReference<LoadedVersion> ONCE = new WeakReference<>(null);
  private final LogThrottle unreadable = new LogThrottle(Duration.ofMinutes(1));
  /**
   * How often the follower looks, without reading the store, whether a load of a version has not
   * taken the fleet's reference it was asked to (a replica's new load, once its first request has
   * laid its features out): map lookups but for such a load.
   */
  static final Duration LOOK_EVERY = Duration.ofSeconds(2);

  /**
   * @param control the fleet's asks are kept and read there, and every reference set audited
   * @param fleet gathers every replica's sketches for a fleet's merged reference
   * @param clock when this replica started: asks before it are not followed
   */
  public DriftBaselines(ControlPlane control, io.modelgate.gateway.control.Fleet fleet, Drift drift, GoldenSets golden,
      Clock clock) {
    this.control = control;
    this.fleet = fleet;
    this.drift = drift;
    this.golden = golden;
    this.startedMs = clock.millis();
    if (control.store().shared()) {
      follower = DaemonThreads.scheduled("modelgate-drift-baselines");
      control.store().follow(ControlStore.Topic.DRIFT_BASELINES, follower, this::follow);
      follower.scheduleWithFixedDelay(this::lookAgain, LOOK_EVERY.toMillis(), LOOK_EVERY.toMillis(),
          java.util.concurrent.TimeUnit.MILLISECONDS);
    } else {
      follower = null;
    }
  }

  /**
   * Makes {@code window} (1m, 5m or 15m; empty: 15m) of {@code model}'s {@code version}, or with
   * {@code fromGolden} a run of its golden set, its drift reference here, and with {@code fleet} asks
   * every other replica to do the same from its own; with {@code merged} makes the fleet's window,
   * every replica's merged, the reference of every replica (kept for those started later). Returns
   * this replica's report.
   *
   * @throws InferenceException NOT_FOUND for a model or version there is not; FAILED_PRECONDITION
   *     for a model without drift profiling (or golden set, with {@code fromGolden}), a window with
   *     no request, or a fleet without one; UNAVAILABLE where the fleet could not be asked (the
   *     reference is then set here alone, and the message says so)
   */
  public DriftReport set(String model, long version, String window, boolean fromGolden, boolean fleet, boolean merged,
      String caller) {
    if (merged) {
      if (fromGolden) {
        throw InferenceException.invalidArgument("a merged reference is the fleet's window: --merged takes --window, not --golden");
      }
      return setMerged(model, version, window.isEmpty() ? "15m" : window, caller);
    }
    if (fleet) {
      control.store().requireFleet();
    }
    String taken = fromGolden ? "" : window.isEmpty() ? "15m" : window;
    DriftReport report = apply(versionOf(model, version), taken, fromGolden);
    String detail = describe(taken, fromGolden);
    if (fleet) {
      try {
        control.putDriftBaseline(DriftBaselineAsked.newBuilder().setModel(model).setVersion(version).setWindow(taken)
            .setGolden(fromGolden).setAskedBy(caller).setReplica(control.replica()).setAskedAtMs(control.clock().millis())
            .build(), detail + ", here and on every other replica from its own");
      } catch (InferenceException e) {
        throw InferenceException.unavailable("the drift reference was set on this replica, but not asked of the"
            + " fleet: " + e.getMessage());
      }
    } else {
      control.audit(caller, "SetDriftBaseline", model, version, detail);
    }
    log.info("model '{}' version {}: drift {} as {} asked{}", model, version, detail, caller,
        fleet ? " of every replica" : "");
    return report;
  }

  /**
   * One reference for the fleet: every replica's {@code window} of the version merged ({@link
   * io.modelgate.gateway.control.Fleet#sketchesOfTheFleet}, {@link io.modelgate.gateway.health.DriftMerge#reference}),
   * kept in the control store (audited) for every replica to take as it is, and taken here.
   */
  private DriftReport setMerged(String model, long number, String window, String caller) {
    control.store().requireFleet();
    if (!io.modelgate.runtime.repository.DriftSettings.WINDOWS.contains(window)) {
      throw InferenceException.invalidArgument("window " + InferenceException.quote(window) + " (expected one of: "
          + io.modelgate.runtime.repository.DriftSettings.WINDOWS + ")");
    }
    ModelVersion version = versionOf(model, number);
    io.modelgate.gateway.control.Fleet.FleetSketches gathered = fleet.sketchesOfTheFleet(model, number);
    List<String> left = gathered.notMerged(number);
    long now = control.clock().millis();
    io.modelgate.proto.admin.v1.DriftSketches reference = io.modelgate.gateway.health.DriftMerge.reference(number,
        gathered.of(number), window, left, "the fleet's " + window + " window set by an operator at "
            + java.time.Instant.ofEpochMilli(now));
    String detail = reference.getReferenceSource().replaceFirst(" set by an operator at [^,]*", "")
        + ", on every replica of the same model file, each that starts later too"
        + (left.isEmpty() ? "" : "; left out: " + String.join("; ", left));
    DriftBaselineAsked asked = DriftBaselineAsked.newBuilder().setModel(model).setVersion(number).setWindow(window)
        .setAskedBy(caller).setReplica(control.replica()).setAskedAtMs(now).setReference(reference).build();
    if (asked.getSerializedSize() > io.modelgate.gateway.control.Fleet.ANSWER_LIMIT_BYTES) {
      throw InferenceException.failedPrecondition("the fleet's reference takes " + asked.getSerializedSize() / 1024
          + " KB, more than etcd is given in one value (" + io.modelgate.gateway.control.Fleet.ANSWER_LIMIT_BYTES / 1024 + " KB)");
    }
    // Written and taken here on the follower's thread, as one task: the watch's word of the write
    // reaches the follower after it, which finds the reference taken by this load already.
    return onFollower(() -> {
      control.putDriftBaseline(asked, "reference from " + detail);
      log.info("model '{}' version {}: drift reference from {} as {} asked", model, number, detail, caller);
      return takeAsked(version, asked);
    });
  }

  /**
   * This replica's load of {@code version} takes the fleet's reference asked here; returns the
   * report after it. Follower's thread.
   */
  private DriftReport takeAsked(ModelVersion version, DriftBaselineAsked asked) {
    LoadedVersion loaded = version.loadedOrNull();
    try {
      DriftReport report = AdminService.awaitDrift(drift.adoptReference(version, asked.getReference()));
      followed.put(key(asked), new WeakReference<>(loaded));
      return report;
    } catch (InferenceException e) {
      if (e.code() == io.modelgate.runtime.error.ErrorCode.UNAVAILABLE) {
        // Not laid out here yet: the follower takes it once it is.
        return AdminService.awaitDrift(drift.report(version.model(), version.number()));
      }
      followed.put(key(asked), new WeakReference<>(loaded)); // the caller is told why, not the log again
      throw e;
    }
  }

  /** Runs {@code task} on the follower's thread and waits for it; its exception is thrown here. */
  private <T> T onFollower(java.util.concurrent.Callable<T> task) {
    java.util.concurrent.Future<T> done;
    try {
      done = follower.submit(task);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      throw InferenceException.unavailable("this replica is stopping");
    }
    try {
      return done.get();
    } catch (java.util.concurrent.CancellationException e) {
      throw InferenceException.unavailable("this replica is stopping");
    } catch (java.util.concurrent.ExecutionException e) {
      if (e.getCause() instanceof RuntimeException cause) {
        throw cause;
      }
      throw InferenceException.internal("setting the fleet's drift reference failed", e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw InferenceException.unavailable("interrupted");
    }
  }

  private static String key(DriftBaselineAsked ask) {
    return ask.getModel() + "/" + ask.getVersion() + "@" + ask.getAskedAtMs() + " " + ask.getReplica();
  }

  private ModelVersion versionOf(String model, long number) {
    io.modelgate.runtime.repository.Model found = control.router().route(model).model();
    return found.versions().stream()
        .filter(v -> v.number() == number)
        .findFirst()
        .orElseThrow(() -> InferenceException.notFound("model '" + found.name() + "' has no version " + number));
  }

  /** Sets the reference here: from {@code window}, or from a golden run; returns the report after it. */
  private DriftReport apply(ModelVersion version, String window, boolean fromGolden) {
    if (!fromGolden) {
      return AdminService.awaitDrift(drift.baseline(version, window));
    }
    if (!golden.hasGoldenSet(version.model())) {
      throw InferenceException.failedPrecondition("model '" + version.model() + "' has no golden set to take a drift"
          + " reference from");
    }
    if (version.serving().settings().drift() == null) {
      throw InferenceException.failedPrecondition("model '" + version.model()
          + "' has no drift profiling (add drift to its model.yaml)");
    }
    // The golden run forms the reference (Drift observes it); the report is made after it.
    drift.takeReferenceFromNextGoldenRun(version);
    golden.validate(version);
    return AdminService.awaitDrift(drift.report(version.model(), version.number()));
  }

  private static String describe(String window, boolean fromGolden) {
    return fromGolden ? "reference from a run of the golden set" : "reference from the " + window + " window";
  }

  /** Sets each ask of the fleet not yet followed here; on the follower's thread. */
  private void follow() {
    List<DriftBaselineAsked> asks;
    try {
      asks = control.store().driftBaselines("");
    } catch (RuntimeException e) {
      if (Thread.currentThread().isInterrupted()) {
        return; // stopping: the read was cut short, not refused
      }
      long heldBack = unreadable.pass();
      if (heldBack >= 0) {
        log.warn("cannot read the drift references asked of the fleet ({}); asked ones are set once it can"
            + LogThrottle.since(heldBack), e.getMessage());
      }
      return;
    }
    Set<String> kept = new HashSet<>();
    List<DriftBaselineAsked> merged = new java.util.ArrayList<>();
    for (DriftBaselineAsked ask : asks) {
      String key = key(ask);
      kept.add(key);
      if (ask.hasReference()) {
        merged.add(ask);
        take(ask, key);
        continue;
      }
      if (ask.getReplica().equals(control.replica()) || ask.getAskedAtMs() < startedMs
          || followed.putIfAbsent(key, ONCE) != null) {
        continue;
      }
      String asked = ", as " + ask.getAskedBy() + " asked of every replica on replica " + ask.getReplica();
      String detail = describe(ask.getWindow(), ask.getGolden());
      try {
        apply(versionOf(ask.getModel(), ask.getVersion()), ask.getWindow(), ask.getGolden());
        control.audit(VersionControl.FLEET_CALLER, "SetDriftBaseline", ask.getModel(), ask.getVersion(), detail + asked);
        log.info("model '{}' version {}: drift {}{}", ask.getModel(), ask.getVersion(), detail, asked);
      } catch (RuntimeException e) {
        control.audit(VersionControl.FLEET_CALLER, "SetDriftBaseline", ask.getModel(), ask.getVersion(),
            "NOT SET HERE: " + e.getMessage() + " (" + detail + asked + ")");
        log.warn("model '{}' version {}: drift {} not set here{}: {}", ask.getModel(), ask.getVersion(), detail, asked,
            e.getMessage());
      }
    }
    followed.keySet().retainAll(kept);
    references = List.copyOf(merged);
  }

  /** Offers the fleet's references last read to each load of their versions not yet given them. Follower's thread. */
  private void lookAgain() {
    for (DriftBaselineAsked ask : references) {
      take(ask, key(ask));
    }
  }

  /**
   * Takes a fleet's reference ({@code admin drift baseline --merged}) on the version's load that has
   * not taken it yet, whenever it was asked: on a replica started since, and again on a version
   * loaded again since, once its first request has laid its features out (until then, and while
   * the version is not loaded here, it looks again every {@link #LOOK_EVERY}). Audited here (but on
   * the replica that asked, which audited the ask), or why it was not taken. Follower's thread.
   */
  private void take(DriftBaselineAsked ask, String key) {
    io.modelgate.gateway.routing.Route route = control.router().routeOrNull(ask.getModel());
    ModelVersion version = route == null ? null : route.model().version(ask.getVersion()).orElse(null);
    LoadedVersion loaded = version == null ? null : version.loadedOrNull();
    WeakReference<LoadedVersion> took = followed.get(key);
    if (loaded == null || (took != null && took.get() == loaded)) {
      return; // not here, or not loaded: looked at again; or this load has taken it (or would not)
    }
    String asked = ", as " + ask.getAskedBy() + " asked of every replica on replica " + ask.getReplica();
    String detail = "reference from " + ask.getReference().getReferenceSource().replaceFirst(" set by an operator at [^,]*", "");
    try {
      AdminService.awaitDrift(drift.adoptReference(version, ask.getReference()));
    } catch (InferenceException e) {
      if (e.code() == io.modelgate.runtime.error.ErrorCode.UNAVAILABLE) {
        return; // no request profiled yet here (or unloaded since): taken at a later look
      }
      followed.put(key, new WeakReference<>(loaded));
      control.audit(VersionControl.FLEET_CALLER, "SetDriftBaseline", ask.getModel(), ask.getVersion(),
          "NOT SET HERE: " + e.getMessage() + " (" + detail + asked + ")");
      log.warn("model '{}' version {}: the fleet's drift reference not taken here{}: {}", ask.getModel(), ask.getVersion(),
          asked, e.getMessage());
      return;
    }
    followed.put(key, new WeakReference<>(loaded));
    if (!ask.getReplica().equals(control.replica())) {
      control.audit(VersionControl.FLEET_CALLER, "SetDriftBaseline", ask.getModel(), ask.getVersion(), detail + asked);
    }
    log.info("model '{}' version {}: drift {}{}", ask.getModel(), ask.getVersion(), detail, asked);
  }

  @Override
  public void close() {
    if (follower != null) {
      // A task not yet run is cancelled, so that an admin call waiting for it is answered.
      for (Runnable queued : follower.shutdownNow()) {
        if (queued instanceof java.util.concurrent.Future<?> task) {
          task.cancel(false);
        }
      }
    }
  }
}

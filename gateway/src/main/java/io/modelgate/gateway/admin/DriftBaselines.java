package io.modelgate.gateway.admin;

import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.health.Drift;
import io.modelgate.gateway.health.GoldenSets;
import io.modelgate.gateway.status.LogThrottle;
import io.modelgate.proto.admin.v1.DriftBaselineAsked;
import io.modelgate.proto.admin.v1.DriftReport;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.ModelVersion;
import java.time.Clock;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Drift references an operator sets ({@code admin drift baseline}): on this replica, or with
 * {@code --fleet} on every replica of the fleet. One path for both: {@link #set} is what the admin
 * API calls here; a fleet's ask is kept in the control store (the latest per version), and each
 * other replica, looking every {@link #FOLLOW_EVERY}, sets it on itself through the same steps, from
 * its own window or its own golden run — each replica's reference is of what it serves. Every
 * reference set is audited: where it was asked with the operator's name, on each other replica as
 * the fleet's ({@link VersionControl#FLEET_CALLER}), naming who asked where, or why it was not set
 * there (a replica that served no request in the window, say).
 *
 * <p>A replica follows the asks made after it started: one started later forms its reference as
 * its {@code model.yaml} says (its golden set, or its first requests).
 *
 * <p>Threading: {@link #set} on the admin caller's thread, waiting for the drift thread; the
 * follower on its own thread ({@code modelgate-drift-baselines}).
 */
public final class DriftBaselines implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(DriftBaselines.class);
  /** How often a replica of a fleet reads the references asked of every replica. */
  static final Duration FOLLOW_EVERY = Duration.ofSeconds(2);

  private final ControlPlane control;
  private final Drift drift;
  private final GoldenSets golden;
  private final long startedMs;
  private final ScheduledExecutorService follower;
  /** The asks this replica has followed (model/version@time replica), pruned to those still kept; the follower's. */
  private final Set<String> followed = new HashSet<>();
  private final LogThrottle unreadable = new LogThrottle(Duration.ofMinutes(1));

  /**
   * @param control the fleet's asks are kept and read there, and every reference set audited
   * @param clock when this replica started: asks before it are not followed
   */
  public DriftBaselines(ControlPlane control, Drift drift, GoldenSets golden, Clock clock) {
    this.control = control;
    this.drift = drift;
    this.golden = golden;
    this.startedMs = clock.millis();
    if (control.store().shared()) {
      follower = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "modelgate-drift-baselines");
        t.setDaemon(true);
        return t;
      });
      follower.scheduleWithFixedDelay(this::follow, FOLLOW_EVERY.toMillis(), FOLLOW_EVERY.toMillis(), TimeUnit.MILLISECONDS);
    } else {
      follower = null;
    }
  }

  /**
   * Makes {@code window} (1m, 5m or 15m; empty: 15m) of {@code model}'s {@code version}, or with
   * {@code fromGolden} a run of its golden set, its drift reference here, and with {@code fleet} asks
   * every other replica to do the same from its own. Returns this replica's report.
   *
   * @throws InferenceException NOT_FOUND for a model or version there is not; FAILED_PRECONDITION
   *     for a model without drift profiling (or golden set, with {@code fromGolden}), a window with
   *     no request, or a fleet without one; UNAVAILABLE where the fleet could not be asked (the
   *     reference is then set here alone, and the message says so)
   */
  public DriftReport set(String model, long version, String window, boolean fromGolden, boolean fleet, String caller) {
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
      asks = control.store().driftBaselines();
    } catch (RuntimeException e) {
      long heldBack = unreadable.pass();
      if (heldBack >= 0) {
        log.warn("cannot read the drift references asked of the fleet ({}); asked ones are set once it can"
            + LogThrottle.since(heldBack), e.getMessage());
      }
      return;
    }
    Set<String> kept = new HashSet<>();
    for (DriftBaselineAsked ask : asks) {
      String key = ask.getModel() + "/" + ask.getVersion() + "@" + ask.getAskedAtMs() + " " + ask.getReplica();
      kept.add(key);
      if (ask.getReplica().equals(control.replica()) || ask.getAskedAtMs() < startedMs || !followed.add(key)) {
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
    followed.retainAll(kept);
  }

  @Override
  public void close() {
    if (follower != null) {
      follower.shutdownNow();
    }
  }
}

package io.modelgate.gateway.control;

import io.modelgate.gateway.rollout.RolloutJudge;
import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.AdminState;
import io.modelgate.proto.admin.v1.AuditRecord;
import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelVersion;
import java.time.Clock;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one owner of the control state: routing policies and their history, rollouts, revisions,
 * persistence and the audit log. Operators (the admin API, the repository RPCs) and rollouts (an
 * automated operator, driven by this component's own scheduler thread) change them only here.
 *
 * <p>Threading: every change and every read of the mutable state holds this object's lock — one
 * lock, taken in one order (this, then the {@link Router}'s, which never calls back) — and this
 * component never calls into whoever asked. That is what the earlier pair lacked: the policy store
 * persisted by asking the rollout controller for its rollouts while the controller, judging a
 * step, called the store: two locks taken in both orders could deadlock. Request threads never
 * take the lock: they read the router's immutable routes; metrics read {@link #current} without it.
 *
 * <p>A change is validated, persisted (the state directory, written durably), audited, and only
 * then swapped in; a change that names a stale revision is ABORTED and changes nothing.
 */
public final class ControlPlane implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ControlPlane.class);
  /** Earlier policies kept per model for rollback. */
  static final int HISTORY = 32;
  /** The caller rollouts record in policies and the audit log. */
  static final String ROLLOUT_CALLER = "rollout";

  private final Router router;
  private final StateStore state;
  private final StatsRegistry stats;
  private final Clock clock;
  private final Map<String, Deque<RoutingPolicy>> history = new HashMap<>();
  /** Written under the lock; read without it only by {@link #current} (metrics). */
  private final Map<String, Rollout> rollouts = new ConcurrentSkipListMap<>();
  /** The revision each running rollout last set: another revision means an operator intervened. */
  private final Map<String, Long> ownRevision = new HashMap<>();
  private final ScheduledExecutorService scheduler;

  /**
   * @param stats where rollouts read their samples
   * @param schedule whether rollouts are judged by a background thread once a second; tests pass
   *     false and call {@link #tick}
   */
  public ControlPlane(Router router, StateStore state, StatsRegistry stats, Clock clock, boolean schedule) {
    this.router = router;
    this.state = state;
    this.stats = stats;
    this.clock = clock;
    if (schedule) {
      scheduler =
          Executors.newSingleThreadScheduledExecutor(
              r -> {
                Thread t = new Thread(r, "modelgate-rollouts");
                t.setDaemon(true);
                return t;
              });
      scheduler.scheduleWithFixedDelay(this::tickQuietly, 1, 1, TimeUnit.SECONDS);
    } else {
      scheduler = null;
    }
  }

  public Router router() {
    return router;
  }

  public Clock clock() {
    return clock;
  }

  /** Whether the state directory's last write succeeded. */
  public StateStore store() {
    return state;
  }

  // ---- routing ----

  /**
   * Replaces the policy of {@code requested.getModel()}.
   *
   * @throws InferenceException ABORTED for a stale {@code expectedRevision}; INVALID_ARGUMENT,
   *     NOT_FOUND or FAILED_PRECONDITION for a policy that does not fit the model
   */
  public synchronized RoutingPolicy set(
      RoutingPolicy requested, long expectedRevision, String caller, String action, String reason) {
    return apply(requested, expectedRevision, caller, action, reason, true);
  }

  /** Sends all weighted traffic to {@code version}, keeping the sticky and shadow settings. */
  public synchronized RoutingPolicy promote(String model, long version, long expectedRevision, String caller) {
    RoutingPolicy current = router.route(model).policy();
    RoutingPolicy.Builder next = current.toBuilder().clearWeights().putWeights(version, 1);
    if (current.getShadow().getVersion() == version) {
      next.clearShadow();
    }
    return apply(next.build(), expectedRevision, caller, "Promote", "promote version " + version + " to 100%", true);
  }

  /**
   * Restores the policy the current one replaced.
   *
   * @throws InferenceException FAILED_PRECONDITION when there is none
   */
  public synchronized RoutingPolicy rollback(String model, long expectedRevision, String caller) {
    Route current = router.route(model);
    Deque<RoutingPolicy> earlier = history.get(model);
    if (earlier == null || earlier.isEmpty()) {
      throw InferenceException.failedPrecondition(
          "model '" + model + "' has no earlier routing policy to roll back to");
    }
    RoutingPolicy previous = earlier.peekLast();
    RoutingPolicy restored =
        apply(
            previous,
            expectedRevision,
            caller,
            "Rollback",
            "rollback to the policy of revision " + previous.getRevision(),
            false);
    earlier.pollLast();
    persist();
    log.info("model '{}' rolled back from revision {}", model, current.policy().getRevision());
    return restored;
  }

  private RoutingPolicy apply(
      RoutingPolicy requested,
      long expectedRevision,
      String caller,
      String action,
      String reason,
      boolean remember) {
    String model = requested.getModel();
    Route current = router.route(model);
    long revision = current.policy().getRevision();
    if (revision != expectedRevision) {
      throw InferenceException.aborted(
          "routing of model '" + model + "' is at revision " + revision + ", not " + expectedRevision
              + "; read it again and retry");
    }
    RoutingPolicy next =
        requested.toBuilder()
            .setRevision(revision + 1)
            .setUpdatedBy(caller)
            .setUpdatedAtMs(clock.millis())
            .setReason(reason)
            .build();
    Route compiled = router.compile(next);
    if (remember) {
      Deque<RoutingPolicy> earlier = history.computeIfAbsent(model, m -> new ArrayDeque<>());
      earlier.addLast(current.policy());
      while (earlier.size() > HISTORY) {
        earlier.pollFirst();
      }
    }
    persist(next);
    state.audit(
        AuditRecord.newBuilder()
            .setTimeMs(next.getUpdatedAtMs())
            .setCaller(caller)
            .setAction(action)
            .setModel(model)
            .setDetail(reason)
            .setOldPolicy(current.policy())
            .setNewPolicy(next)
            .build());
    router.install(compiled, revision);
    log.info("model '{}' routing revision {} by {}: {} {}", model, next.getRevision(), caller, reason, next.getWeightsMap());
    return next;
  }

  /** Records an admin action that is not a routing change (load, unload, rollout events). */
  public synchronized void audit(String caller, String action, String model, long version, String detail) {
    state.audit(
        AuditRecord.newBuilder()
            .setTimeMs(clock.millis())
            .setCaller(caller)
            .setAction(action)
            .setModel(model)
            .setVersion(version)
            .setDetail(detail)
            .build());
  }

  /** Writes the current policies, their history and the rollouts to the state directory. Under the lock. */
  private void persist() {
    persist(null);
  }

  /** As {@link #persist()}, with {@code pending} in place of its model's current policy. */
  private void persist(RoutingPolicy pending) {
    AdminState.Builder saved = AdminState.newBuilder();
    for (String name : router.models()) {
      RoutingPolicy policy =
          pending != null && pending.getModel().equals(name) ? pending : router.route(name).policy();
      if (policy.getRevision() > 0) {
        saved.addPolicies(policy);
      }
    }
    for (Deque<RoutingPolicy> earlier : history.values()) {
      saved.addAllHistory(earlier);
    }
    saved.addAllRollouts(rollouts.values());
    state.save(saved.build());
  }

  /**
   * Reinstalls saved policies, their history and rollouts after a restart. A policy is never
   * dropped because a version it names is not READY (a corrupt file, a folder removed): it is
   * kept, at its revision, and routes among the READY versions it names, or refuses requests when
   * none is — traffic never falls back to another version, so a candidate is not promoted by
   * accident. Each such policy is logged as an error and shown by {@code admin models}; loading
   * the missing version restores it whole. Only a policy invalid in itself (or for an unknown
   * model) is skipped. A RUNNING rollout resumes its current step from now.
   */
  public synchronized void restore(AdminState saved) {
    for (RoutingPolicy policy : saved.getPoliciesList()) {
      try {
        Route compiled = router.compileKeeping(policy);
        router.installRestored(compiled);
        if (compiled.degraded() == null) {
          log.info("model '{}' routing restored at revision {}: {}", policy.getModel(), policy.getRevision(), policy.getWeightsMap());
        } else {
          log.error(
              "model '{}' routing restored at revision {} IN PART: {} {}; traffic goes only to the"
                  + " READY versions it names (refused UNAVAILABLE when none is) until they load",
              policy.getModel(), policy.getRevision(), policy.getWeightsMap(), compiled.degraded());
        }
      } catch (RuntimeException e) {
        log.error("model '{}': saved routing revision {} not restored: {}", policy.getModel(), policy.getRevision(), e.getMessage());
      }
    }
    for (RoutingPolicy policy : saved.getHistoryList()) {
      history.computeIfAbsent(policy.getModel(), m -> new ArrayDeque<>()).addLast(policy);
    }
  
    long now = clock.millis();
    for (Rollout rollout : saved.getRolloutsList()) {
      Rollout restored = rollout;
      if (rollout.getState().equals("RUNNING")) {
        restored = rollout.toBuilder().setStepStartedAtMs(now).build();
        ownRevision.put(rollout.getModel(), router.route(rollout.getModel()).policy().getRevision());
        log.info("rollout of model '{}' resumed at step {}%", rollout.getModel(),
            rollout.getSpec().getSteps(rollout.getStepIndex()));
      }
      rollouts.put(rollout.getModel(), restored);
    }
    }

  /**
   * Recompiles the current policy of {@code model} against its versions' states, keeping its
   * revision: after a version it names was loaded again, the policy serves whole again. A no-op
   * for a policy that serves whole.
   */
  public synchronized void refresh(String model) {
    Route current = router.route(model);
    if (current.degraded() == null) {
      return;
    }
    Route compiled = router.compileKeeping(current.policy());
    router.install(compiled, current.policy().getRevision());
    if (compiled.degraded() == null) {
      log.info("model '{}' routing revision {} serves whole again", model, current.policy().getRevision());
    }
  }

  // ---- rollouts ----

  /** Thresholds a spec leaves at 0 take these. */
  public static Thresholds withDefaults(Thresholds t) {
    Thresholds.Builder b = t.toBuilder();
    if (t.getMinSamples() == 0) {
      b.setMinSamples(200);
    }
    if (t.getMaxP99Ratio() == 0) {
      b.setMaxP99Ratio(1.10);
    }
    if (t.getMaxErrorRateIncrease() == 0) {
      b.setMaxErrorRateIncrease(0.01);
    }
    if (t.getSignificance() == 0) {
      b.setSignificance(0.01);
    }
    return b.build();
  }

  /** A spec with its defaults filled in: steps 5, 25, 50, 100 and a 60 s interval. */
  public static RolloutSpec withDefaults(RolloutSpec spec) {
    RolloutSpec.Builder b = spec.toBuilder();
    if (spec.getStepsCount() == 0) {
      b.addAllSteps(List.of(5, 25, 50, 100));
    }
    if (spec.getIntervalS() == 0) {
      b.setIntervalS(60);
    }
    return b.setThresholds(withDefaults(spec.getThresholds())).build();
  }

  /**
   * Starts a rollout: the candidate gets the first step's share at once.
   *
   * @throws InferenceException INVALID_ARGUMENT for a malformed spec, NOT_FOUND for an unknown
   *     model, FAILED_PRECONDITION when a version is not READY or a rollout already runs
   */
  public synchronized Rollout startRollout(RolloutSpec requested, String caller) {
    RolloutSpec spec = withDefaults(requested);
    validate(spec);
    Model model = router.route(spec.getModel()).model();
    ready(model, spec.getBaseline(), "baseline");
    ready(model, spec.getCandidate(), "candidate");
    Rollout existing = rollouts.get(spec.getModel());
    if (existing != null && existing.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition(
          "a rollout of model '" + spec.getModel() + "' is already running (candidate version "
              + existing.getSpec().getCandidate() + "); abort it first");
    }
    Route route = router.route(spec.getModel());
    RoutingPolicy current = route.policy();
    if (route.weightOf(spec.getBaseline()) == 0 || route.weightOf(spec.getCandidate()) > 0) {
      throw InferenceException.failedPrecondition(
          "a rollout starts from a policy in which the baseline (version " + spec.getBaseline()
              + ") takes traffic and the candidate (version " + spec.getCandidate() + ") takes none;"
              + " routing revision " + current.getRevision() + " is " + current.getWeightsMap()
              + (current.getWeightsCount() == 0 ? " (the default: the highest READY version)" : "")
              + ". Route the traffic to the baseline first");
    }
    // The policy to come back to. The default (no weights) would send everything to the highest
    // READY version, which may be the candidate: name the baseline instead.
    RoutingPolicy baselinePolicy =
        current.getWeightsCount() > 0 ? current : current.toBuilder().putWeights(spec.getBaseline(), 1).build();
    long now = clock.millis();
    Rollout rollout =
        Rollout.newBuilder()
            .setModel(spec.getModel())
            .setSpec(spec)
            .setState("RUNNING")
            .setStepIndex(0)
            .setStartedAtMs(now)
            .setStepStartedAtMs(now)
            .setBaselinePolicy(baselinePolicy)
            .addDecisions(
                Decision.newBuilder()
                    .setTimeMs(now)
                    .setStepPercent(spec.getSteps(0))
                    .setVerdict("START")
                    .setReason("rollout started by " + caller + ": candidate " + spec.getCandidate() + " at "
                        + spec.getSteps(0) + "%, baseline " + spec.getBaseline()))
            .build();
    RoutingPolicy applied = applyStep(rollout, 0, current.getRevision());
    rollouts.put(spec.getModel(), rollout);
    ownRevision.put(spec.getModel(), applied.getRevision());
    audit(caller, "StartRollout", spec.getModel(), spec.getCandidate(), spec.toString().replace('\n', ' '));
    persist();
    return rollout;
  }

  public synchronized Rollout rollout(String model) {
    Rollout rollout = rollouts.get(model);
    if (rollout == null) {
      throw InferenceException.notFound("model '" + model + "' has no rollout");
    }
    return rollout;
  }

  /** Stops a running rollout and restores the policy it started from. */
  public synchronized Rollout abortRollout(String model, String caller) {
    Rollout rollout = rollout(model);
    if (!rollout.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition(
          "the rollout of model '" + model + "' is " + rollout.getState() + ", not RUNNING");
    }
    Rollout aborted = restoreBaseline(rollout, "ABORTED", "ABORT", "aborted by " + caller, null);
    audit(caller, "AbortRollout", model, rollout.getSpec().getCandidate(), "aborted");
    return aborted;
  }

  private void tickQuietly() {
    try {
      tick();
    } catch (RuntimeException e) {
      log.error("rollout tick failed", e);
    }
  }

  /** Judges every running rollout whose step has lasted its interval. */
  public synchronized void tick() {
    long now = clock.millis();
    for (Rollout rollout : new ArrayList<>(rollouts.values())) {
      if (!rollout.getState().equals("RUNNING")) {
        continue;
      }
      String model = rollout.getModel();
      long current = router.route(model).policy().getRevision();
      Long own = ownRevision.get(model);
      if (own != null && current != own) {
        rollouts.put(model, rollout.toBuilder()
            .setState("ABORTED")
            .addDecisions(decision(now, rollout, "ABORT",
                "routing was changed outside the rollout (revision " + current + ", rollout set " + own
                    + "); the rollout stops and leaves it as it is", null))
            .build());
        persist();
        continue;
      }
      if (now - rollout.getStepStartedAtMs() >= rollout.getSpec().getIntervalS() * 1000L) {
        evaluate(rollout, now);
      }
    }
  }

  private void evaluate(Rollout rollout, long now) {
    RolloutSpec spec = rollout.getSpec();
    VersionStats baseline = stats.find(spec.getModel(), spec.getBaseline());
    VersionStats candidate = stats.find(spec.getModel(), spec.getCandidate());
    long since = rollout.getStepStartedAtMs();
    RolloutJudge.Judgement judgement =
        RolloutJudge.judge(
            spec.getThresholds(),
            baseline == null ? new VersionStats.Samples(new long[0], 0) : baseline.samplesSince(since),
            candidate == null ? new VersionStats.Samples(new long[0], 0) : candidate.samplesSince(since));
    String model = spec.getModel();
    switch (judgement.verdict()) {
      case WAIT -> {
        Decision last = rollout.getDecisions(rollout.getDecisionsCount() - 1);
        Rollout.Builder next = rollout.toBuilder();
        Decision wait = decision(now, rollout, "WAIT", judgement.reason(), judgement);
        if (last.getVerdict().equals("WAIT") && last.getStepPercent() == wait.getStepPercent()) {
          next.setDecisions(rollout.getDecisionsCount() - 1, wait);
        } else {
          next.addDecisions(wait);
        }
        rollouts.put(model, next.build());
      }
      case FAIL -> {
        restoreBaseline(rollout, "ROLLED_BACK", "ROLLBACK", judgement.reason(), judgement);
        log.warn("rollout of model '{}' rolled back: {}", model, judgement.reason());
      }
      case PASS -> {
        int nextStep = rollout.getStepIndex() + 1;
        long revision = router.route(model).policy().getRevision();
        // A step can be judged only while the baseline still takes traffic: passing the last step
        // below 100% promotes the candidate.
        if (nextStep >= spec.getStepsCount() || spec.getSteps(nextStep) >= 100) {
          RoutingPolicy promoted = promote(model, spec.getCandidate(), revision, ROLLOUT_CALLER);
          ownRevision.put(model, promoted.getRevision());
          rollouts.put(model, rollout.toBuilder()
              .setState("PROMOTED")
              .addDecisions(decision(now, rollout, "PROMOTE", judgement.reason(), judgement))
              .build());
          log.info("rollout of model '{}' promoted version {}: {}", model, spec.getCandidate(), judgement.reason());
        } else {
          Rollout advanced = rollout.toBuilder()
              .setStepIndex(nextStep)
              .setStepStartedAtMs(now)
              .addDecisions(decision(now, rollout, "ADVANCE",
                  judgement.reason() + "; next step " + spec.getSteps(nextStep) + "%", judgement))
              .build();
          RoutingPolicy applied = applyStep(advanced, nextStep, revision);
          ownRevision.put(model, applied.getRevision());
          rollouts.put(model, advanced);
          log.info("rollout of model '{}' advanced to {}%: {}", model, spec.getSteps(nextStep), judgement.reason());
        }
      }
    }
    persist();
  }

  private Rollout restoreBaseline(
      Rollout rollout, String state, String verdict, String reason, RolloutJudge.Judgement judgement) {
    String model = rollout.getModel();
    long now = clock.millis();
    long revision = router.route(model).policy().getRevision();
    RoutingPolicy restored =
        set(
            rollout.getBaselinePolicy().toBuilder().build(),
            revision,
            ROLLOUT_CALLER,
            "RolloutRestore",
            "rollout " + state.toLowerCase(java.util.Locale.ROOT) + ": " + reason);
    ownRevision.put(model, restored.getRevision());
    Rollout done =
        rollout.toBuilder()
            .setState(state)
            .addDecisions(decision(now, rollout, verdict, reason, judgement))
            .build();
    rollouts.put(model, done);
    persist();
    return done;
  }

  private RoutingPolicy applyStep(Rollout rollout, int step, long expectedRevision) {
    RolloutSpec spec = rollout.getSpec();
    int percent = spec.getSteps(step);
    RoutingPolicy.Builder policy =
        rollout.getBaselinePolicy().toBuilder().clearWeights().putWeights(spec.getCandidate(), percent);
    if (percent < 100) {
      policy.putWeights(spec.getBaseline(), 100 - percent);
    }
    return set(
        policy.build(),
        expectedRevision,
        ROLLOUT_CALLER,
        "RolloutStep",
        "rollout step " + (step + 1) + "/" + spec.getStepsCount() + ": candidate " + spec.getCandidate() + " at "
            + percent + "%");
  }

  private static Decision decision(
      long now, Rollout rollout, String verdict, String reason, RolloutJudge.Judgement judgement) {
    Decision.Builder decision =
        Decision.newBuilder()
            .setTimeMs(now)
            .setStepPercent(rollout.getSpec().getSteps(rollout.getStepIndex()))
            .setVerdict(verdict)
            .setReason(reason);
    if (judgement != null) {
      decision.setEvidence(judgement.evidence());
    }
    return decision.build();
  }

  private static void validate(RolloutSpec spec) {
    if (spec.getBaseline() == spec.getCandidate()) {
      throw InferenceException.invalidArgument(
          "baseline and candidate are both version " + spec.getBaseline() + " (expected: two versions)");
    }
    int previous = 0;
    for (int step : spec.getStepsList()) {
      if (step <= previous || step > 100) {
        throw InferenceException.invalidArgument(
            "steps " + spec.getStepsList() + " (expected: increasing percentages from 1 to 100, ending at 100)");
      }
      previous = step;
    }
    if (previous != 100 || spec.getSteps(0) == 100) {
      throw InferenceException.invalidArgument(
          "steps " + spec.getStepsList()
              + " (expected: one or more steps below 100, where the candidate is judged, then 100)");
    }
    Thresholds t = spec.getThresholds();
    if (t.getMaxP99Ratio() < 1 || t.getSignificance() <= 0 || t.getSignificance() >= 1 || t.getMaxErrorRateIncrease() < 0) {
      throw InferenceException.invalidArgument(
          "thresholds " + t.toString().replace('\n', ' ')
              + " (expected: max_p99_ratio >= 1, 0 < significance < 1, max_error_rate_increase >= 0)");
    }
  }

  private static void ready(Model model, long number, String role) {
    ModelVersion version =
        model
            .version(number)
            .orElseThrow(
                () -> InferenceException.notFound(role + " version " + number + " of model '" + model.name() + "' does not exist"));
    if (!version.isReady()) {
      throw InferenceException.failedPrecondition(
          role + " version " + number + " of model '" + model.name() + "' is " + version.state() + ", not READY");
    }
  }


  /** The rollout of {@code model}, or null; never blocks (for metrics). */
  public Rollout current(String model) {
    return rollouts.get(model);
  }

  @Override
  public void close() {
    if (scheduler != null) {
      scheduler.shutdownNow();
    }
  }
}

package io.modelgate.gateway.rollout;

import io.modelgate.gateway.admin.PolicyStore;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.AdminState;
import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelVersion;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Drives rollouts: an automated operator that moves a candidate version through weight steps and,
 * at the end of each step, judges it against the baseline over that step's window ({@link
 * RolloutJudge}). Pass: the next step, or, after the last step below 100%, promotion (the
 * candidate takes all traffic; with no baseline traffic left there is nothing to judge). Fail: the
 * policy the rollout started from comes back. Every change goes through the {@link PolicyStore}, like an operator's;
 * every decision is kept with its evidence.
 *
 * <p>A scheduler thread calls {@link #tick} once a second; it never runs on the request path. If
 * an operator changes the model's routing while a rollout runs, the rollout stops (ABORTED) rather
 * than overwrite the operator.
 */
public final class RolloutController implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RolloutController.class);
  static final String CALLER = "rollout";

  private final PolicyStore store;
  private final StatsRegistry stats;
  /** Written under this object's lock; read without it by {@link #current} (metrics). */
  private final Map<String, Rollout> rollouts = new java.util.concurrent.ConcurrentSkipListMap<>();
  private final Map<String, Long> ownRevision = new TreeMap<>();
  private final ScheduledExecutorService scheduler;

  public RolloutController(PolicyStore store, StatsRegistry stats, boolean schedule) {
    this.store = store;
    this.stats = stats;
    store.rolloutSource(this::snapshot);
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
  public synchronized Rollout start(RolloutSpec requested, String caller) {
    RolloutSpec spec = withDefaults(requested);
    validate(spec);
    Model model = store.router().route(spec.getModel()).model();
    ready(model, spec.getBaseline(), "baseline");
    ready(model, spec.getCandidate(), "candidate");
    Rollout existing = rollouts.get(spec.getModel());
    if (existing != null && existing.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition(
          "a rollout of model '" + spec.getModel() + "' is already running (candidate version "
              + existing.getSpec().getCandidate() + "); abort it first");
    }
    io.modelgate.gateway.routing.Route route = store.router().route(spec.getModel());
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
    long now = store.clock().millis();
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
    store.audit(caller, "StartRollout", spec.getModel(), spec.getCandidate(), spec.toString().replace('\n', ' '));
    store.persist();
    return rollout;
  }

  /** The rollout of {@code model}, or null; never blocks (for metrics). */
  public Rollout current(String model) {
    return rollouts.get(model);
  }

  public synchronized Rollout get(String model) {
    Rollout rollout = rollouts.get(model);
    if (rollout == null) {
      throw InferenceException.notFound("model '" + model + "' has no rollout");
    }
    return rollout;
  }

  /** Stops a running rollout and restores the policy it started from. */
  public synchronized Rollout abort(String model, String caller) {
    Rollout rollout = get(model);
    if (!rollout.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition(
          "the rollout of model '" + model + "' is " + rollout.getState() + ", not RUNNING");
    }
    Rollout aborted = restoreBaseline(rollout, "ABORTED", "ABORT", "aborted by " + caller, null);
    store.audit(caller, "AbortRollout", model, rollout.getSpec().getCandidate(), "aborted");
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
    long now = store.clock().millis();
    for (Rollout rollout : new ArrayList<>(rollouts.values())) {
      if (!rollout.getState().equals("RUNNING")) {
        continue;
      }
      String model = rollout.getModel();
      long current = store.router().route(model).policy().getRevision();
      Long own = ownRevision.get(model);
      if (own != null && current != own) {
        rollouts.put(model, rollout.toBuilder()
            .setState("ABORTED")
            .addDecisions(decision(now, rollout, "ABORT",
                "routing was changed outside the rollout (revision " + current + ", rollout set " + own
                    + "); the rollout stops and leaves it as it is", null))
            .build());
        store.persist();
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
        long revision = store.router().route(model).policy().getRevision();
        // A step can be judged only while the baseline still takes traffic: passing the last step
        // below 100% promotes the candidate.
        if (nextStep >= spec.getStepsCount() || spec.getSteps(nextStep) >= 100) {
          RoutingPolicy promoted = store.promote(model, spec.getCandidate(), revision, CALLER);
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
    store.persist();
  }

  private Rollout restoreBaseline(
      Rollout rollout, String state, String verdict, String reason, RolloutJudge.Judgement judgement) {
    String model = rollout.getModel();
    long now = store.clock().millis();
    long revision = store.router().route(model).policy().getRevision();
    RoutingPolicy restored =
        store.set(
            rollout.getBaselinePolicy().toBuilder().build(),
            revision,
            CALLER,
            "RolloutRestore",
            "rollout " + state.toLowerCase(java.util.Locale.ROOT) + ": " + reason);
    ownRevision.put(model, restored.getRevision());
    Rollout done =
        rollout.toBuilder()
            .setState(state)
            .addDecisions(decision(now, rollout, verdict, reason, judgement))
            .build();
    rollouts.put(model, done);
    store.persist();
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
    return store.set(
        policy.build(),
        expectedRevision,
        CALLER,
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

  /** The rollouts, for persistence. */
  synchronized List<Rollout> snapshot() {
    return List.copyOf(rollouts.values());
  }

  /** Brings back saved rollouts; a RUNNING one resumes its current step from now. */
  public synchronized void restore(AdminState saved) {
    long now = store.clock().millis();
    for (Rollout rollout : saved.getRolloutsList()) {
      Rollout restored = rollout;
      if (rollout.getState().equals("RUNNING")) {
        restored = rollout.toBuilder().setStepStartedAtMs(now).build();
        ownRevision.put(rollout.getModel(), store.router().route(rollout.getModel()).policy().getRevision());
        log.info("rollout of model '{}' resumed at step {}%", rollout.getModel(),
            rollout.getSpec().getSteps(rollout.getStepIndex()));
      }
      rollouts.put(rollout.getModel(), restored);
    }
  }

  @Override
  public void close() {
    if (scheduler != null) {
      scheduler.shutdownNow();
    }
  }
}

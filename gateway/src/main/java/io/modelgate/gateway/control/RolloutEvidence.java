package io.modelgate.gateway.control;

import io.modelgate.gateway.health.GoldenSets;
import io.modelgate.gateway.rollout.RolloutJudge;
import io.modelgate.gateway.rollout.RolloutSpecs;
import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.gateway.stats.Histograms;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.Evidence;
import io.modelgate.proto.admin.v1.GoldenResult;
import io.modelgate.proto.admin.v1.ReplicaSnapshot;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.StepSamples;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.runtime.repository.Model;
import java.util.List;

/**
 * What a rollout's step is judged on, and the judgement: both versions' latencies and errors since
 * the step started — this replica's, and in a fleet the other replicas' samples of the same step
 * as they last published them, each replica's weighed by the answers they stand for — or, in a shadow phase, the candidate's shadow agreement; then
 * both versions' golden-set scores, which fail a candidate that answers wrongly however fast it
 * is. The {@link ControlPlane} acts on the verdict (wait, roll back, advance, promote). A judge
 * whose repository lacks the model judges on the other replicas' samples and golden-set results
 * alone, as they publish them.
 *
 * <p>Threading: called by the control plane under its lock; reads statistics, the store's
 * published snapshots, golden-set results and routes, each safe to read from any thread, and
 * never calls back into the control plane, so it adds no lock of its own and no lock order.
 */
final class RolloutEvidence {
  private final Router router;
  private final ControlStore store;
  private final StatsRegistry stats;
  private final GoldenSets golden;
  private final String replica;

  RolloutEvidence(Router router, ControlStore store, StatsRegistry stats, GoldenSets golden, String replica) {
    this.router = router;
    this.store = store;
    this.stats = stats;
    this.golden = golden;
    this.replica = replica;
  }

  /**
   * The version {@code rollout}'s candidate is judged against at its current step: its control
   * where it has one and the step is at most {@link RolloutSpecs#MAX_CONTROLLED_STEP}%, otherwise
   * the baseline.
   */
  static long reference(Rollout rollout) {
    RolloutSpec spec = rollout.getSpec();
    boolean controlled = spec.getControl() != 0 && !rollout.getShadowPhase()
        && spec.getSteps(rollout.getStepIndex()) <= RolloutSpecs.MAX_CONTROLLED_STEP;
    return controlled ? spec.getControl() : spec.getBaseline();
  }

  /**
   * Judges {@code rollout}'s current step (or its shadow phase) on the samples since it started:
   * the candidate's against its {@link #reference}'s.
   */
  RolloutJudge.Judgement judge(Rollout rollout) {
    RolloutSpec spec = rollout.getSpec();
    long since = rollout.getStepStartedAtMs();
    long reference = reference(rollout);
    // Both over the same span: the step, or its end where a version's samples did not reach back.
    VersionStats.Samples[] local = VersionStats.alignedSince(
        stats.find(spec.getModel(), reference), stats.find(spec.getModel(), spec.getCandidate()), since);
    List<VersionStats.Samples> baselines = new java.util.ArrayList<>(List.of(local[0]));
    List<VersionStats.Samples> candidates = new java.util.ArrayList<>(List.of(local[1]));
    // This replica counts where it has the model (a judge lacking it has no samples of its own).
    java.util.Set<String> replicas = new java.util.TreeSet<>();
    if (router.routeOrNull(spec.getModel()) != null) {
      replicas.add(replica);
    }
    if (store.shared()) {
      // The other replicas' samples of the same step, as they last published them.
      for (ReplicaSnapshot snapshot : store.snapshots(spec.getModel())) {
        if (snapshot.getReplica().equals(replica) || !snapshot.hasStep() || snapshot.getStep().getSinceMs() != since) {
          continue;
        }
        if (snapshot.getVersion() == reference) {
          baselines.add(samples(snapshot.getStep()));
        } else if (snapshot.getVersion() == spec.getCandidate()) {
          candidates.add(samples(snapshot.getStep()));
        } else {
          continue;
        }
        replicas.add(snapshot.getReplica());
      }
    }
    // Each replica's samples weighed by the answers they stand for.
    VersionStats.Samples baseline = VersionStats.Samples.pooled(baselines);
    VersionStats.Samples candidate = VersionStats.Samples.pooled(candidates);
    RolloutJudge.Judgement judged =
        rollout.getShadowPhase()
            ? judgeShadow(spec, shadowAgreement(spec, since, replicas))
            : RolloutJudge.judge(spec.getThresholds(), baseline, candidate,
                reference == spec.getBaseline() ? "baseline" : "control");
    Evidence.Builder evidence = judged.evidence().toBuilder().setReplicas(replicas.size()).setReference(reference);
    if (!rollout.getShadowPhase() && baseline.fromMillis() > since) {
      evidence.setSamplesFromMs(baseline.fromMillis());
    }
    if (!rollout.getShadowPhase()) {
      stages(spec, reference, since, evidence);
    }
    // Predictive validity first: a candidate that answers wrongly fails however fast it is.
    Validity validity = validity(spec, evidence);
    return
        validity.verdict() != RolloutJudge.Verdict.PASS
            ? new RolloutJudge.Judgement(validity.verdict(), validity.reason(), evidence.build())
            : new RolloutJudge.Judgement(
                judged.verdict(),
                judged.reason() + validity.reason()
                    + (store.shared() ? " (samples of " + replicas.size() + " replicas: " + String.join(", ", replicas) + ")" : ""),
                evidence.build());
  }

  /**
   * Both versions' queue and compute times over the step's closed intervals, this replica's and
   * every other's that published them for the same step, added up: whether a slower candidate is
   * slower in its model's run or in the gateway's queue.
   */
  private void stages(RolloutSpec spec, long reference, long since, Evidence.Builder evidence) {
    StatsRegistry.Stages b = stats.stagesSince(spec.getModel(), reference, since);
    StatsRegistry.Stages c = stats.stagesSince(spec.getModel(), spec.getCandidate(), since);
    java.util.Set<String> replicas = new java.util.TreeSet<>();
    if (b != null && c != null) {
      replicas.add(replica);
    } else {
      // One of them never loaded here (the model absent, say): this replica adds nothing.
      b = StatsRegistry.Stages.none();
      c = StatsRegistry.Stages.none();
    }
    // The shortest span of those that have one (a replica with no interval closed in the step
    // adds nothing, and shortens nothing).
    double seconds = Math.min(b.seconds(), c.seconds());
    if (store.shared()) {
      for (ReplicaSnapshot snapshot : store.snapshots(spec.getModel())) {
        StepSamples step = snapshot.getStep();
        if (snapshot.getReplica().equals(replica) || !snapshot.hasStep() || step.getSinceMs() != since
            || step.getQueueUs().isEmpty() || step.getStageSeconds() == 0) {
          continue;
        }
        StatsRegistry.Stages into = snapshot.getVersion() == reference ? b : snapshot.getVersion() == spec.getCandidate() ? c : null;
        if (into == null) {
          continue;
        }
        org.HdrHistogram.Histogram queue = Histograms.decode(step.getQueueUs());
        org.HdrHistogram.Histogram compute = Histograms.decode(step.getComputeUs());
        if (queue.getMaxValue() > into.queueMicros().getHighestTrackableValue()
            || compute.getMaxValue() > into.computeMicros().getHighestTrackableValue()) {
          continue; // beyond what this replica's histograms hold (another build's): left out
        }
        into.queueMicros().add(queue);
        into.computeMicros().add(compute);
        seconds = seconds == 0 ? step.getStageSeconds() : Math.min(seconds, step.getStageSeconds());
        replicas.add(snapshot.getReplica());
      }
    }
    if (replicas.isEmpty()) {
      return;
    }
    evidence.setBaselineQueueMs(StatsRegistry.distribution(b.queueMicros(), 1000.0))
        .setCandidateQueueMs(StatsRegistry.distribution(c.queueMicros(), 1000.0))
        .setBaselineComputeMs(StatsRegistry.distribution(b.computeMicros(), 1000.0))
        .setCandidateComputeMs(StatsRegistry.distribution(c.computeMicros(), 1000.0))
        .setStageSeconds(seconds)
        .setStageReplicas(replicas.size());
  }

  /** Whether the candidate keeps its predictive validity, with a reason (appended to a pass). */
  record Validity(RolloutJudge.Verdict verdict, String reason) {}

  /**
   * The candidate's golden-set score against the baseline's (both into {@code evidence}, -1 when
   * the model has no golden set): FAIL when it is lower by more than {@code max_accuracy_drop} or
   * its set could not be run, WAIT while either has not been run on its current load.
   */
  Validity validity(RolloutSpec spec, Evidence.Builder evidence) {
    Route route = router.routeOrNull(spec.getModel());
    List<ReplicaSnapshot> published = route != null || !store.shared() ? List.of() : store.snapshots(spec.getModel());
    GoldenResult b = route != null ? goldenOf(route.model(), spec.getBaseline()) : published(published, spec.getBaseline());
    GoldenResult c = route != null ? goldenOf(route.model(), spec.getCandidate()) : published(published, spec.getCandidate());
    evidence.setBaselineGoldenScore(b.getState().equals("DONE") ? b.getScore() : -1)
        .setCandidateGoldenScore(c.getState().equals("DONE") ? c.getScore() : -1);
    if (b.getState().equals("NONE") && c.getState().equals("NONE")) {
      return new Validity(RolloutJudge.Verdict.PASS, "");
    }
    for (var role : List.of(java.util.Map.entry("candidate", c), java.util.Map.entry("baseline", b))) {
      GoldenResult r = role.getValue();
      switch (r.getState()) {
        case "FAILED" -> {
          return new Validity(RolloutJudge.Verdict.FAIL, "the golden set could not be run on the " + role.getKey() + ": " + r.getError());
        }
        case "PENDING", "RUNNING" -> {
          return new Validity(RolloutJudge.Verdict.WAIT, "waiting for the golden set of the " + role.getKey() + " (" + r.getState() + ")");
        }
        default -> { }
      }
    }
    double drop = spec.getThresholds().getMaxAccuracyDrop();
    if (c.getScore() < b.getScore() - drop - 1e-12) {
      return new Validity(RolloutJudge.Verdict.FAIL, String.format(
          "candidate golden score %.4f (%d/%d) is below the baseline's %.4f (%d/%d) by more than %.4f; first failing: %s",
          c.getScore(), c.getPassed(), c.getExamples(), b.getScore(), b.getPassed(), b.getExamples(), drop,
          c.getFailingCount() == 0 ? "-" : String.join("; ", c.getFailingList().subList(0, Math.min(3, c.getFailingCount())))));
    }
    return new Validity(RolloutJudge.Verdict.PASS, String.format("; golden scores: baseline %.4f, candidate %.4f (allowed drop %.4f)",
        b.getScore(), c.getScore(), drop));
  }

  private GoldenResult goldenOf(Model model, long number) {
    return model.version(number).map(golden::result).orElse(GoldenResult.newBuilder().setState("NONE").build());
  }

  /**
   * A version's golden-set result as the replicas that have it published it, for a judge that
   * lacks the model: a score where one replica has one (each runs the same set on the same file,
   * as the fleet view's file check shows), else a failure to run it, else NONE where they say
   * the model has no set; PENDING while none has said (not run yet, or no replica publishes it).
   */
  static GoldenResult published(List<ReplicaSnapshot> snapshots, long version) {
    GoldenResult best = null;
    for (ReplicaSnapshot snapshot : snapshots) {
      if (snapshot.getVersion() != version || !snapshot.hasGolden()) {
        continue;
      }
      GoldenResult r = snapshot.getGolden();
      if (best == null || rank(r) > rank(best)) {
        best = r;
      }
    }
    return best == null || rank(best) == 0 ? GoldenResult.newBuilder().setState("PENDING").build() : best;
  }

  private static int rank(GoldenResult r) {
    return switch (r.getState()) {
      case "DONE" -> 3;
      case "FAILED" -> 2;
      case "NONE" -> 1;
      default -> 0;
    };
  }

  /**
   * The candidate's shadow comparisons since the step started: this replica's, and in a fleet the
   * others' as last published (their replicas added to {@code replicas}).
   */
  private VersionStats.ShadowAgreement shadowAgreement(RolloutSpec spec, long since, java.util.Set<String> replicas) {
    VersionStats candidate = stats.find(spec.getModel(), spec.getCandidate());
    VersionStats.ShadowAgreement mine = candidate == null ? new VersionStats.ShadowAgreement(0, 0) : candidate.shadowSince(since);
    long compared = mine.compared();
    long agreed = mine.agreed();
    if (store.shared()) {
      for (ReplicaSnapshot snapshot : store.snapshots(spec.getModel())) {
        if (!snapshot.getReplica().equals(replica) && snapshot.getVersion() == spec.getCandidate()
            && snapshot.hasStep() && snapshot.getStep().getSinceMs() == since) {
          compared += snapshot.getStep().getShadowCompared();
          agreed += snapshot.getStep().getShadowAgreed();
          replicas.add(snapshot.getReplica());
        }
      }
    }
    return new VersionStats.ShadowAgreement(compared, agreed);
  }

  /** The shadow phase's verdict: WAIT for min_samples comparisons, then PASS at or above the agreement required. */
  private static RolloutJudge.Judgement judgeShadow(RolloutSpec spec, VersionStats.ShadowAgreement agreement) {
    Thresholds t = spec.getThresholds();
    Evidence evidence = Evidence.newBuilder()
        .setShadowCompared(agreement.compared())
        .setShadowAgreed(agreement.agreed())
        .build();
    if (agreement.compared() < t.getMinSamples()) {
      return new RolloutJudge.Judgement(RolloutJudge.Verdict.WAIT,
          String.format("waiting for shadow comparisons: %d/%d", agreement.compared(), t.getMinSamples()), evidence);
    }
    String measured = String.format("shadow agreement %.2f%% (%d of %d copies had the primary's argmax)",
        agreement.rate() * 100, agreement.agreed(), agreement.compared());
    if (agreement.rate() < t.getMinShadowAgreement()) {
      return new RolloutJudge.Judgement(RolloutJudge.Verdict.FAIL,
          measured + String.format(" is below the %.2f%% required", t.getMinShadowAgreement() * 100), evidence);
    }
    return new RolloutJudge.Judgement(RolloutJudge.Verdict.PASS,
        measured + String.format(", at least %.2f%% required", t.getMinShadowAgreement() * 100), evidence);
  }

  /** Another replica's samples of a step, as it published them. */
  static VersionStats.Samples samples(StepSamples published) {
    long[] latencies = Histograms.values(Histograms.decode(published.getLatenciesUs()));
    // A replica of before the field: each of its samples one answer.
    long answers = published.getAnswers() > 0 ? published.getAnswers() : latencies.length + published.getErrors();
    return new VersionStats.Samples(latencies, published.getErrors(), published.getSinceMs(), answers);
  }
}

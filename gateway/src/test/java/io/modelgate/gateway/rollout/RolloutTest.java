package io.modelgate.gateway.rollout;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.AbortRolloutRequest;
import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.Evidence;
import io.modelgate.proto.admin.v1.GetRolloutRequest;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.StartRolloutRequest;
import io.modelgate.proto.admin.v1.Thresholds;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Rollouts judged on real traffic through the gateway. The clock is the test's: a step ends when
 * the test moves it past the interval and calls tick().
 */
class RolloutTest {
  @TempDir Path root;
  Gateway gateway;
  final TestClock clock = new TestClock();

  @AfterEach
  void stop() {
    if (gateway != null) {
      gateway.close();
    }
  }

  private void start(byte[] candidate) throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, candidate);
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock);
    // The default would send everything to version 2; a rollout starts from the baseline serving.
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(0).build());
  }

  /**
   * The significance of the tests whose candidate is the baseline's model: below the smallest p
   * the rank test can give these tests' steps (about 4e-18 for 50 samples wholly above 50, 1e-34
   * for 100 above 100), so that their latencies cannot fail them. Two equal versions on this
   * shared 2-core machine can differ for a whole step — one version's batcher thread woken on the
   * core the client and the event loop keep busy — and did by p = 1.9e-16 (a CI run: the
   * candidate's 50 calls nearly all slower than the control's) and 7.5e-14 at the 1e-12 used
   * before. These tests check the rollout's mechanics (routing, reference, verdicts, evidence);
   * the slower candidates' tests, p < 1e-6 with hundreds of samples, check the statistics.
   */
  private static final double EQUAL_SIGNIFICANCE = 1e-40;

  private Rollout startRollout(int... steps) {
    return startRollout(1.10, steps);
  }

  private Rollout startRollout(double maxP99Ratio, int... steps) {
    return startRollout(maxP99Ratio, 1e-6, steps);
  }

  private Rollout startRollout(double maxP99Ratio, double significance, int... steps) {
    return startJudged(maxP99Ratio, significance, 0, steps);
  }

  /** Version 2 against version 1, with {@code control} (0: none), 40 samples a step at least. */
  private Rollout startJudged(double maxP99Ratio, double significance, long control, int... steps) {
    RolloutSpec.Builder spec =
        RolloutSpec.newBuilder()
            .setModel("m")
            .setBaseline(1)
            .setCandidate(2)
            .setControl(control)
            .setIntervalS(60)
            .setThresholds(
                Thresholds.newBuilder().setMinSamples(40).setMaxP99Ratio(maxP99Ratio).setSignificance(significance));
    for (int step : steps) {
      spec.addSteps(step);
    }
    return gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(spec).build());
  }

  /**
   * Traffic to both versions, pinned so that each gets enough samples whatever the weights. Which
   * version goes first alternates, so that neither always meets the other's trailing work.
   */
  private void traffic(int perVersion) {
    for (int i = 0; i < perVersion; i++) {
      for (String version : i % 2 == 0 ? List.of("1", "2") : List.of("2", "1")) {
        gateway.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").setModelVersion(version).build());
      }
    }
  }

  private Rollout endStep() {
    clock.millis += 61_000;
    gateway.server.control().tick();
    return gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build());
  }

  private RoutingPolicy routing() {
    return gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build());
  }

  @Test
  void anEqualCandidate_advancesThroughEveryStep_andIsPromoted() throws Exception {
    start(Gateway.affine());
    // Both versions run the same model on a shared, busy machine: the significance is one no
    // step's samples can reach (EQUAL_SIGNIFICANCE); a real slowdown (the next test) fails both.
    traffic(20);
    Rollout started = startRollout(2.0, EQUAL_SIGNIFICANCE, 25, 50, 100);
    assertThat(started.getState()).isEqualTo("RUNNING");
    assertThat(routing().getWeightsMap()).containsEntry(1L, 75).containsEntry(2L, 25);

    traffic(10);
    Rollout waiting = endStep();
    assertThat(waiting.getState()).isEqualTo("RUNNING");
    assertThat(last(waiting).getVerdict()).isEqualTo("WAIT");
    assertThat(last(waiting).getReason()).contains("waiting for samples");

    traffic(50);
    Rollout advanced = endStep();
    assertThat(last(advanced).getVerdict()).as(last(advanced).toString()).isEqualTo("ADVANCE");
    assertThat(advanced.getStepIndex()).isEqualTo(1);
    assertThat(routing().getWeightsMap()).containsEntry(1L, 50).containsEntry(2L, 50);

    traffic(50);
    Rollout promoted = endStep();
    assertThat(promoted.getState()).as(last(promoted).toString()).isEqualTo("PROMOTED");
    Decision decision = last(promoted);
    assertThat(decision.getVerdict()).isEqualTo("PROMOTE");
    Evidence evidence = decision.getEvidence();
    assertThat(evidence.getBaselineSamples()).isGreaterThanOrEqualTo(40);
    assertThat(evidence.getCandidateSamples()).isGreaterThanOrEqualTo(40);
    // The rank test's p, whatever it came to.
    assertThat(evidence.getPValue()).isGreaterThan(0.0).isLessThanOrEqualTo(1.0);
    assertThat(routing().getWeightsMap()).containsOnlyKeys(2L);
    assertThat(routing().getUpdatedBy()).isEqualTo("rollout");
  }

  @Test
  void aSlowerCandidate_isRolledBack_withItsEvidence() throws Exception {
    // About 5.6 ms a call: well past the stalls of a busy 2-core machine.
    start(Gateway.slowAffine(240));
    // Warm both versions first, and take enough samples that a few pauses (JIT, GC, a busy
    // neighbour) on this shared machine cannot make the baseline's p99: with 200 samples each, p99
    // is the third slowest call, and three 3 ms stalls of the baseline once passed the step (a CI
    // run); with 600, it takes seven. With a candidate of 1.4 ms a call, seven stalls of the
    // baseline over 2 ms on a machine busy with other tests once made it pass the step; the
    // candidate now takes four times as long.
    traffic(20);
    startRollout(5, 25, 50, 100);
    // A statistics interval closes as the step starts, and the next one ends with the step: its
    // queue and compute times are the step's.
    gateway.stats.rotate();
    traffic(600);
    clock.millis += 61_000;
    gateway.stats.rotate();
    clock.millis -= 61_000;
    Rollout rolledBack = endStep();
    assertThat(rolledBack.getState()).as(last(rolledBack).toString()).isEqualTo("ROLLED_BACK");
    Decision decision = last(rolledBack);
    assertThat(decision.getVerdict()).isEqualTo("ROLLBACK");
    assertThat(decision.getReason()).contains("significantly larger").contains("Mann-Whitney");
    Evidence evidence = decision.getEvidence();
    assertThat(evidence.getCandidateP99Ms()).isGreaterThan(evidence.getBaselineP99Ms());
    assertThat(evidence.getP99Ratio()).isGreaterThan(1.10);
    assertThat(evidence.getPValue()).isLessThan(1e-6);
    // Where it is slower: in the model's run, its 600 requests measured in the step. (An executor
    // records a run's times after it answers, so the last may fall in the next interval.)
    assertThat(evidence.getStageSeconds()).isEqualTo(61);
    assertThat(evidence.getCandidateComputeMs().getCount()).isBetween(590L, 601L);
    assertThat(evidence.getBaselineComputeMs().getCount()).isBetween(590L, 601L);
    assertThat(evidence.getCandidateComputeMs().getP50()).isGreaterThan(4 * evidence.getBaselineComputeMs().getP50());
    assertThat(evidence.getCandidateQueueMs().getCount()).isBetween(590L, 601L);
    // The baseline takes all traffic again.
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion())
        .isEqualTo("1");
  }

  @Test
  void aFailingCandidate_isRolledBackOnItsErrorRate() throws Exception {
    start(io.modelgate.runtime.onnx.OnnxGraphBuilder.create("failing", 17)
        .input("x", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, -1, 3)
        .output("y", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, 7)
        .initializer("shape", new long[] {7}, 1)
        .node("Reshape", List.of("x", "shape"), List.of("y"))
        .build());
    startRollout(10, 100);
    for (int i = 0; i < 50; i++) {
      gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("1").build());
      assertThatThrownBy(() ->
          gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("2").build()))
          .isInstanceOf(StatusRuntimeException.class);
    }
    Rollout rolledBack = endStep();
    assertThat(rolledBack.getState()).isEqualTo("ROLLED_BACK");
    assertThat(last(rolledBack).getReason()).contains("error rate 100.00%");
  }

  @Test
  void anOperatorChange_stopsTheRollout() throws Exception {
    start(Gateway.affine());
    Rollout started = startRollout(5, 100);
    // A low first step without a control is noted where it starts.
    assertThat(last(started).getReason()).contains("note: at a first step below 25% without a control the candidate"
        + " runs rarely and computes slower than the busy baseline, whatever its model (see --control)");
    long revision = routing().getRevision();
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(revision).build());
    Rollout stopped = endStep();
    assertThat(stopped.getState()).isEqualTo("ABORTED");
    assertThat(last(stopped).getReason()).contains("changed outside the rollout");
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
  }

  @Test
  void abort_restoresThePolicyTheRolloutStartedFrom() throws Exception {
    start(Gateway.affine());
    startRollout(50, 100);
    Rollout aborted = gateway.admin().abortRollout(AbortRolloutRequest.newBuilder().setModel("m").build());
    assertThat(aborted.getState()).isEqualTo("ABORTED");
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
  }

  @Test
  void takingTheModelDown_abortsItsRollout_first() throws Exception {
    start(Gateway.affine());
    startRollout(50, 100);
    gateway.admin().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel("m").build());
    Rollout aborted = gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build());
    assertThat(aborted.getState()).isEqualTo("ABORTED");
    assertThat(last(aborted).getReason()).startsWith("aborted by ");
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
    List<String> audit = Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE));
    assertThat(audit.stream().map(line -> line.replaceAll(".*\"action\":\"([A-Za-z]+)\".*", "$1")).toList())
        .containsSubsequence("StartRollout", "AbortRollout", "UnloadModel", "UnloadModel");
  }

  @Test
  void aRolloutOfAModelRemovedFromTheRepository_isPassedByTheJudge_andAbortedAllTheSame_thenTheModelForgotten()
      throws Exception {
    start(Gateway.affine());
    startRollout(2.0, EQUAL_SIGNIFICANCE, 50, 100);
    // Its versions gone without the rollout being ended (as a replica following another's unloads
    // may see it), then its folder: after the retirement window the model is removed here.
    gateway.repository.unloadVersion("m", 1, Duration.ofSeconds(5));
    gateway.repository.unloadVersion("m", 2, Duration.ofSeconds(5));
    Gateway.deleteModel(root, "m");
    clock.millis += io.modelgate.gateway.server.VersionRetirement.AFTER.toMillis();
    gateway.stats.rotate();
    assertThat(gateway.repository.model("m")).isEmpty();
    // A tick passes it by (it threw NOT_FOUND before, every second, judging none after it).
    clock.millis += 61_000;
    gateway.server.control().tick();
    assertThat(gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build()).getState())
        .isEqualTo("RUNNING");
    assertThat(gateway.stats.scrape()).contains("modelgate_rollouts_unjudged 1.0");
    var forget = io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder().setModel("m").build();
    assertThatThrownBy(() -> gateway.admin().forgetModel(forget))
        .hasMessage("FAILED_PRECONDITION: model 'm' has a RUNNING rollout; abort it first (admin rollout abort --model m)");

    // Aborted though the model is not here (it was NOT_FOUND): the baseline's routing written back.
    Rollout aborted = gateway.admin().abortRollout(
        io.modelgate.proto.admin.v1.AbortRolloutRequest.newBuilder().setModel("m").build());
    assertThat(aborted.getState()).isEqualTo("ABORTED");
    assertThat(last(aborted).getReason()).startsWith("aborted by ");
    List<String> audit = Files.readAllLines(root.resolve(".state").resolve(io.modelgate.gateway.control.StateStore.AUDIT_FILE));
    assertThat(audit.subList(audit.size() - 2, audit.size())).satisfiesExactly(
        restore -> assertThat(restore).contains("\"action\":\"RolloutRestore\"")
            .containsPattern("\"newPolicy\":\\{\"model\":\"m\",\"revision\":\"3\",\"weights\":\\{\"1\":1\\}"),
        abort -> assertThat(abort).contains("\"action\":\"AbortRollout\""));
    gateway.server.control().tick();
    assertThat(gateway.stats.scrape()).contains("modelgate_rollouts_unjudged 0.0");
    assertThat(gateway.admin().forgetModel(forget).getForgotten())
        .isEqualTo("forgot routing revision 3 {1=1}, 3 earlier policies, its last rollout (ABORTED)");
  }

  @Test
  void aRunningRollout_survivesARestart() throws Exception {
    start(Gateway.affine());
    startRollout(2.0, EQUAL_SIGNIFICANCE, 25, 50, 100);
    gateway.close();
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock);
    Rollout restored = gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build());
    assertThat(restored.getState()).isEqualTo("RUNNING");
    assertThat(routing().getWeightsMap()).containsEntry(2L, 25);
    traffic(50);
    Decision judged = last(endStep());
    assertThat(judged.getVerdict()).as(judged.toString()).isEqualTo("ADVANCE");
  }

  @Test
  void aRolloutMustStartWhereTheBaselineServesAndTheCandidateDoesNot() throws Exception {
    start(Gateway.affine());
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(2, 1)).setExpectedRevision(1).build());
    assertThatThrownBy(() -> startRollout(50, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
        .hasMessageContaining("the baseline (version 1) takes traffic and the candidate (version 2) takes none");
  }

  @Test
  void invalidSpecs_areRefused() throws Exception {
    start(Gateway.affine());
    assertThatThrownBy(() -> startRollout(100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
        .hasMessageContaining("one or more steps below 100");
    assertThatThrownBy(() -> startRollout(50, 40, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
        .hasMessageContaining("increasing percentages");
    RolloutSpec negativeMargin = RolloutSpec.newBuilder().setModel("m").setBaseline(1).setCandidate(2).addSteps(50)
        .addSteps(100).setThresholds(Thresholds.newBuilder().setLatencyMargin(-0.1)).build();
    assertThatThrownBy(() -> gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(negativeMargin).build()))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
        .hasMessageContaining("latency_margin: -0.1").hasMessageContaining("0 <= latency_margin <= 1");
    startRollout(50, 100);
    assertThatThrownBy(() -> startRollout(50, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
        .hasMessageContaining("already running");
  }

  /** Versions 1 and 2 as {@link #start}, and version 3 with {@code control}'s bytes. */
  private void startWithControl(byte[] candidate, byte[] control) throws Exception {
    Gateway.write(root, "m", 3, control);
    start(candidate);
  }

  private void startWithControl(byte[] control) throws Exception {
    startWithControl(Gateway.affine(), control);
  }

  private Rollout startControlled(long control, int... steps) {
    return startJudged(2.0, EQUAL_SIGNIFICANCE, control, steps);
  }

  /** Traffic pinned to {@code versions} in turn, {@code each} calls to each. */
  private void pinned(int each, String... versions) {
    for (int i = 0; i < each; i++) {
      for (String version : versions) {
        gateway.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").setModelVersion(version).build());
      }
    }
  }

  @Test
  void aControl_takesTheCandidatesShareUpToHalf_andTheCandidateIsJudgedAgainstIt_thenAgainstTheBaseline() throws Exception {
    startWithControl(Gateway.affine());
    Rollout started = startControlled(3, 10, 50, 60, 100);
    assertThat(last(started).getReason()).contains("control 3 (the baseline's model) at the candidate's share up to 50%");
    assertThat(last(started).getReason()).doesNotContain("note:");
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(1L, 80, 2L, 10, 3L, 10));

    // Only the control and the candidate answer in this step: judged against the baseline, the
    // step would wait for its samples.
    pinned(50, "2", "3");
    Rollout first = endStep();
    assertThat(last(first).getVerdict()).as(last(first).getReason()).isEqualTo("ADVANCE");
    assertThat(last(first).getEvidence().getReference()).isEqualTo(3);
    assertThat(last(first).getEvidence().getBaselineSamples()).isEqualTo(50);
    assertThat(last(first).getReason()).contains("the control's + 5%");
    // At 50% the control takes the other half: the baseline none.
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(2L, 50, 3L, 50));

    pinned(50, "2", "3");
    Rollout second = endStep();
    assertThat(last(second).getVerdict()).as(last(second).getReason()).isEqualTo("ADVANCE");
    assertThat(last(second).getEvidence().getReference()).isEqualTo(3);
    // Above half: no control; the candidate is judged against the baseline again.
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(1L, 40, 2L, 60));

    pinned(50, "3", "2");
    Rollout waiting = endStep();
    assertThat(last(waiting).getVerdict()).isEqualTo("WAIT");
    assertThat(last(waiting).getReason()).contains("baseline 0/40");
    // The control's figures named as such while it is the reference.
    assertThat(last(second).getReason()).contains("the control's + 5%");
    pinned(50, "1", "2");
    Rollout promoted = endStep();
    assertThat(promoted.getState()).as(last(promoted).getReason()).isEqualTo("PROMOTED");
    assertThat(last(promoted).getEvidence().getReference()).isEqualTo(1);
    assertThat(routing().getWeightsMap()).containsOnlyKeys(2L);
  }

  @Test
  void aSlowerCandidate_isRolledBackAgainstTheControl_atALowStep() throws Exception {
    // As aSlowerCandidate_isRolledBack_withItsEvidence: four times as slow, the default p99 limit,
    // and 600 samples each, so that the control's p99 is its seventh slowest call (a few stalls
    // of this shared machine cannot make it the candidate's).
    startWithControl(Gateway.slowAffine(240), Gateway.affine());
    pinned(20, "1", "2", "3");
    startJudged(1.10, 1e-6, 3, 5, 25, 100);
    pinned(600, "2", "3");
    Rollout rolledBack = endStep();
    assertThat(rolledBack.getState()).as(last(rolledBack).toString()).isEqualTo("ROLLED_BACK");
    Evidence evidence = last(rolledBack).getEvidence();
    assertThat(evidence.getReference()).isEqualTo(3);
    assertThat(evidence.getP99Ratio()).isGreaterThan(1.10);
    assertThat(last(rolledBack).getReason()).as(last(rolledBack).toString())
        .contains("the control's").contains("than the control's + 5%");
    assertThat(evidence.getPValue()).isLessThan(1e-6);
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
  }

  @Test
  void aRolledBackOrAbortedRollout_leavesTheControlWithoutTraffic() throws Exception {
    startWithControl(Gateway.affine());
    startControlled(3, 25, 100);
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(1L, 50, 2L, 25, 3L, 25));
    gateway.admin().abortRollout(AbortRolloutRequest.newBuilder().setModel("m").build());
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
  }

  @Test
  void aControl_mustBeAReadyCopyOfTheBaseline_takingNoTraffic() throws Exception {
    startWithControl(Gateway.slowAffine(2));
    assertThatThrownBy(() -> startControlled(3, 10, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
        .hasMessageContaining("control version 3 of model 'm' is not a copy of baseline version 1: it loaded a model.onnx of sha256 "
            + version(3).loadedOrNull().modelSha256() + ", the baseline one of sha256 " + version(1).loadedOrNull().modelSha256());
    assertThatThrownBy(() -> startControlled(2, 10, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
        .hasMessageContaining("control version 2 (expected: a third version");
    assertThatThrownBy(() -> startControlled(7, 10, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND))
        .hasMessageContaining("control version 7 of model 'm' does not exist");
    // None started: the policy is the baseline's.
    assertThatThrownBy(() -> gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build()))
        .hasMessageContaining("model 'm' has no rollout");
    assertThat(routing().getWeightsMap()).containsOnlyKeys(1L);
  }

  @Test
  void aControlTakingTraffic_isRefused() throws Exception {
    startWithControl(Gateway.affine());
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 3).putWeights(3, 1)).setExpectedRevision(1).build());
    assertThatThrownBy(() -> startControlled(3, 10, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
        .hasMessageContaining("the control (version 3) takes traffic");
  }

  /**
   * Version 2 against version 1 with a control the gateway copies from the baseline, 40 samples a
   * step at least. The checks are of the copy's life, not of statistics (the tests above): a p99
   * limit no stall of this shared machine reaches.
   */
  private Rollout startCopied(int... steps) {
    RolloutSpec.Builder spec = RolloutSpec.newBuilder().setModel("m").setBaseline(1).setCandidate(2).setCopyControl(true)
        .setIntervalS(60)
        .setThresholds(Thresholds.newBuilder().setMinSamples(40).setMaxP99Ratio(100).setSignificance(EQUAL_SIGNIFICANCE));
    for (int step : steps) {
      spec.addSteps(step);
    }
    return gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(spec).build());
  }

  /** The audit log's lines of {@code action}. */
  private java.util.List<String> audited(String action) throws java.io.IOException {
    return Files.readAllLines(root.resolve(".state/audit.log")).stream().filter(line -> line.contains(action)).toList();
  }

  private io.modelgate.runtime.repository.ModelVersion version(long number) {
    return gateway.server.router().route("m").model().version(number).orElseThrow();
  }

  @Test
  void aCopiedControl_isLoadedForTheRollout_judgedAgainst_andUnloadedWhenItEnds() throws Exception {
    start(Gateway.affine());
    Rollout started = startCopied(10, 100);
    // Version 3: one above the model's two, the baseline's file loaded again.
    assertThat(started.getSpec().getControl()).isEqualTo(3);
    assertThat(version(3).isReady()).isTrue();
    assertThat(version(3).copyOf()).isEqualTo(1);
    assertThat(last(started).getReason()).contains("control 3 (the baseline's model, loaded again by the gateway)");
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(1L, 80, 2L, 10, 3L, 10));
    var listed = gateway.admin().listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance())
        .getModelsList().get(0).getVersionsList();
    assertThat(listed).extracting(v -> v.getVersion() + "/" + v.getState() + "/" + v.getCopyOf())
        .containsExactly("1/READY/0", "2/READY/0", "3/READY/1");
    // While the rollout runs, reconciling keeps it.
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).isReady()).isTrue();

    pinned(25, "2", "3");
    pinned(25, "3", "2");
    Rollout promoted = endStep();
    assertThat(promoted.getState()).as(last(promoted).getReason()).isEqualTo("PROMOTED");
    assertThat(last(promoted).getEvidence().getReference()).isEqualTo(3);
    // Once the rollout has ended, the copy goes (the server reconciles every second).
    assertThat(version(3).isReady()).isTrue();
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).state()).isEqualTo(io.modelgate.runtime.repository.VersionState.UNAVAILABLE);
    assertThat(routing().getWeightsMap()).containsOnlyKeys(2L);

    // The next rollout's copy takes the same number again: a copy of the new baseline, 2.
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(2, 1)).setExpectedRevision(routing().getRevision()).build());
    Rollout back = gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(started.getSpec().toBuilder()
        .setBaseline(2).setCandidate(1).setControl(0)).build());
    assertThat(back.getSpec().getControl()).isEqualTo(3);
    assertThat(version(3).copyOf()).isEqualTo(2);
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(2L, 80, 1L, 10, 3L, 10));
    gateway.admin().abortRollout(AbortRolloutRequest.newBuilder().setModel("m").build());
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).isReady()).isFalse();
  }

  @Test
  void aCopiedControl_isLoadedAgainWhenTheServerRestartsDuringItsRollout() throws Exception {
    start(Gateway.affine());
    startCopied(10, 100);
    gateway.close();
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state"), clock);
    assertThat(gateway.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build()).getState()).isEqualTo("RUNNING");
    assertThat(version(3).isReady()).isTrue();
    assertThat(version(3).copyOf()).isEqualTo(1);
    assertThat(gateway.server.router().route("m").degraded()).isNull();
    assertThat(routing().getWeightsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of(1L, 80, 2L, 10, 3L, 10));
  }

  @Test
  void aCopiedControl_thatStopsServing_isLoadedAgain_triedAgainAfterAWaitThatDoublesWhileItDoesNotLoad() throws Exception {
    start(Gateway.affine());
    startCopied(10, 100);
    // The copy stops serving while the baseline's model file is away from its folder (a deployment
    // tool replacing it, say): it cannot load again until the file is back.
    Path file = root.resolve("m/1/model.onnx");
    Path aside = root.resolve("model.onnx.aside");
    Files.move(file, aside);
    gateway.repository.unloadVersion("m", 3, Duration.ofSeconds(5), "its batcher failed");
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).state()).isEqualTo(io.modelgate.runtime.repository.VersionState.FAILED);
    assertThat(version(3).reason()).startsWith("missing model file ").endsWith("m/1/model.onnx (expected: an ONNX model)");
    // Tried again 1 s after its first failure, then 2 s after its second.
    clock.millis += 999;
    gateway.server.versions().reconcileCopies();
    clock.millis += 1;
    gateway.server.versions().reconcileCopies();
    Files.move(aside, file);
    clock.millis += 1_999;
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).state()).as("not tried again within 2 s of the second failure")
        .isEqualTo(io.modelgate.runtime.repository.VersionState.FAILED);
    assertThat(audited("LoadControl")).as("one start and two failed tries").hasSize(3);
    assertThat(gateway.stats.prometheus().scrape()).contains("modelgate_loads_retrying{asks=\"control\"} 1.0");
    clock.millis += 1;
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).isReady()).isTrue();
    assertThat(version(3).copyOf()).isEqualTo(1);
    assertThat(audited("LoadControl")).hasSize(4);
    assertThat(gateway.stats.prometheus().scrape()).contains("modelgate_loads_retrying{asks=\"control\"} 0.0");
    // Judged against it as before.
    pinned(25, "2", "3");
    pinned(25, "3", "2");
    Rollout promoted = endStep();
    assertThat(promoted.getState()).as(last(promoted).getReason()).isEqualTo("PROMOTED");
    assertThat(last(promoted).getEvidence().getReference()).isEqualTo(3);
    // Once the rollout has ended, a copy that stopped serving is not loaded again.
    gateway.server.versions().reconcileCopies();
    gateway.repository.unloadVersion("m", 2, Duration.ofSeconds(5), "a test");
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).isReady()).isFalse();
  }

  @Test
  void aCopiedControl_whoseRolloutDoesNotStart_isUnloaded() throws Exception {
    start(Gateway.affine());
    // The candidate already takes traffic: the start is refused after the copy loaded.
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1).putWeights(2, 1)).setExpectedRevision(1).build());
    assertThatThrownBy(() -> startCopied(10, 100))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
        .hasMessageContaining("Route the traffic to the baseline first (admin promote --model m --version 1, or admin routes set)");
    assertThat(version(3).isReady()).isTrue();
    gateway.server.versions().reconcileCopies();
    assertThat(version(3).isReady()).isFalse();
    // A version folder of the number asked for is not copied over.
    Gateway.write(root, "m", 4, Gateway.affine());
    assertThatThrownBy(() -> gateway.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(
            RolloutSpec.newBuilder().setModel("m").setBaseline(1).setCandidate(2).setCopyControl(true).setControl(4)
                .addSteps(10).addSteps(100)).build()))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION))
        .hasMessageContaining("model 'm' has a version folder m/4; a copy takes a number that no folder has");
    // Without a number, the copy takes one above that folder's.
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(routing().getRevision()).build());
    assertThat(startCopied(10, 100).getSpec().getControl()).isEqualTo(5);
  }

  private static Decision last(Rollout rollout) {
    return rollout.getDecisions(rollout.getDecisionsCount() - 1);
  }
}

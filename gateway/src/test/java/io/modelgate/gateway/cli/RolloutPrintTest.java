package io.modelgate.gateway.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.Distribution;
import io.modelgate.proto.admin.v1.Evidence;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.Thresholds;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

class RolloutPrintTest {
  private static String print(Rollout rollout) {
    StringWriter text = new StringWriter();
    try (PrintWriter out = new PrintWriter(text)) {
      AdminCommand.RolloutCommand.print(out, rollout);
    }
    return text.toString();
  }

  private static Distribution p50p99(double p50, double p99) {
    return Distribution.newBuilder().setCount(100).setP50(p50).setP99(p99).build();
  }

  @Test
  void aDecision_showsItsMargin_whereTheSamplesStart_andTheQueueAndComputeOfBothVersions() {
    Evidence evidence = Evidence.newBuilder()
        .setBaselineSamples(8_190).setBaselineAnswers(131_040).setCandidateSamples(3_000).setCandidateAnswers(3_000)
        .setP99Ratio(7.7)
        .setSamplesFromMs(1_800_000_050_000L)
        .setBaselineQueueMs(p50p99(0.01, 0.1)).setCandidateQueueMs(p50p99(0.05, 1.2))
        .setBaselineComputeMs(p50p99(0.04, 0.09)).setCandidateComputeMs(p50p99(0.041, 0.095))
        .setStageSeconds(55)
        .setBaselineGoldenScore(-1).setCandidateGoldenScore(-1)
        .build();
    Rollout rollout = Rollout.newBuilder().setModel("m").setState("ROLLED_BACK")
        .setSpec(RolloutSpec.newBuilder().setBaseline(1).setCandidate(2).addSteps(10).addSteps(100).setIntervalS(60)
            .setThresholds(Thresholds.newBuilder().setMinSamples(200).setMaxP99Ratio(1.1).setSignificance(0.01)
                .setLatencyMargin(0.05)))
        .addDecisions(Decision.newBuilder().setTimeMs(1_800_000_060_000L).setStepPercent(10).setVerdict("ROLLBACK")
            .setReason("candidate p99 ...").setEvidence(evidence))
        .build();

    String text = print(rollout);
    assertThat(text).contains("significance 0.0100 of latencies above the baseline's + 5%");
    assertThat(text).contains("evidence  samples 8190 (of ~131040 answers) vs 3000;");
    assertThat(text).contains("samples from 2027-01-15T08:00:50Z, the step's last 10.0 s (as far back as a version's samples reach)");
    assertThat(text).contains("queue p50 0.010 vs 0.050 ms, p99 0.100 vs 1.200 ms; compute p50 0.040 vs 0.041 ms,"
        + " p99 0.090 vs 0.095 ms (this replica, the step's last 55 s)");
    // Each line of the evidence labelled once.
    assertThat(text.split("evidence", -1)).hasSize(2);
  }

  @Test
  void aControlledRollout_namesItsControl_andTheVersionEachDecisionJudgedAgainst() {
    Rollout rollout = Rollout.newBuilder().setModel("m").setState("RUNNING").setStepIndex(1)
        .setSpec(RolloutSpec.newBuilder().setBaseline(1).setCandidate(2).setControl(3).addSteps(10).addSteps(75)
            .addSteps(100).setIntervalS(60)
            .setThresholds(Thresholds.newBuilder().setMinSamples(200).setMaxP99Ratio(1.1).setSignificance(0.01)))
        .addDecisions(Decision.newBuilder().setTimeMs(1_800_000_060_000L).setStepPercent(10).setVerdict("ADVANCE")
            .setReason("within thresholds").setEvidence(Evidence.newBuilder().setReference(3)
                .setBaselineSamples(900).setCandidateSamples(910).setBaselineGoldenScore(-1).setCandidateGoldenScore(-1)))
        .addDecisions(Decision.newBuilder().setTimeMs(1_800_000_120_000L).setStepPercent(75).setVerdict("WAIT")
            .setReason("waiting").setEvidence(Evidence.newBuilder().setReference(1)
                .setBaselineSamples(10).setCandidateSamples(30).setBaselineGoldenScore(-1).setCandidateGoldenScore(-1)))
        .build();

    String text = print(rollout);
    assertThat(text).contains("control v3 (the baseline's model) takes the candidate's share at steps up to 50%");
    assertThat(text).contains("evidence  against control v3 (the baseline's model at the candidate's share): its figures first");
    // Once, at the step judged against the control.
    assertThat(text.split("against control", -1)).hasSize(2);
  }
}

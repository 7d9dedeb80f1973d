package io.modelgate.gateway.rollout;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.Thresholds;
import java.util.Random;
import org.junit.jupiter.api.Test;

class RolloutJudgeTest {
  /**
   * Latencies around {@code medianMicros} (spread ±20%), {@code slowTail} of them 1.8 times as slow:
   * a quiet batcher's wake-ups at the tail.
   */
  private static VersionStats.Samples samples(long seed, int n, double medianMicros, int slowTail) {
    Random random = new Random(seed);
    long[] latencies = new long[n];
    for (int i = 0; i < n; i++) {
      double value = medianMicros * (0.8 + 0.4 * random.nextDouble());
      latencies[i] = Math.round(i < slowTail ? value * 1.8 : value);
    }
    return new VersionStats.Samples(latencies, 0);
  }

  private static Thresholds defaults() {
    return RolloutSpecs.withDefaults(Thresholds.getDefaultInstance());
  }

  @Test
  void aSlowdownWithinTheMargin_failsNoStep_evenWithANoisyP99AndThousandsOfSamples() {
    // The candidate 2% slower throughout, and a tail that makes its p99 1.5x or more the
    // baseline's: without a margin the rank test finds 2% significant in 3,000 samples each.
    VersionStats.Samples baseline = samples(1, 3_000, 100, 0);
    VersionStats.Samples candidate = samples(2, 3_000, 102, 60);
    assertThat(defaults().getLatencyMargin()).isEqualTo(0.05);

    RolloutJudge.Judgement judged = RolloutJudge.judge(defaults(), baseline, candidate);
    assertThat(judged.evidence().getP99Ratio()).isGreaterThan(1.5);
    assertThat(judged.verdict()).as(judged.reason()).isEqualTo(RolloutJudge.Verdict.PASS);
    // Said as what it is: a p99 over its limit, not borne out by the latencies as a whole.
    assertThat(judged.reason()).matches("not significantly slower: p99 ratio 1\\.\\d\\d is over its limit 1\\.10, but the"
        + " latencies are not significantly larger than the baseline's \\+ 5% \\(Mann-Whitney p = [0-9.e-]+, not below"
        + " 0\\.01\\), error rates 0\\.00% vs 0\\.00%");

    Thresholds noMargin = defaults().toBuilder().setLatencyMargin(0).build();
    RolloutJudge.Judgement strict = RolloutJudge.judge(noMargin, baseline, candidate);
    assertThat(strict.verdict()).as(strict.reason()).isEqualTo(RolloutJudge.Verdict.FAIL);
    assertThat(strict.reason()).contains("significantly larger (Mann-Whitney");
  }

  @Test
  void aSlowdownBeyondTheMargin_failsTheStep() {
    VersionStats.Samples baseline = samples(1, 3_000, 100, 0);
    VersionStats.Samples candidate = samples(2, 3_000, 115, 60);
    RolloutJudge.Judgement judged = RolloutJudge.judge(defaults(), baseline, candidate);
    assertThat(judged.verdict()).as(judged.reason()).isEqualTo(RolloutJudge.Verdict.FAIL);
    assertThat(judged.reason()).contains("significantly larger than the baseline's + 5% (Mann-Whitney p = ");
    assertThat(judged.evidence().getPValue()).isLessThan(1e-6);
  }

  @Test
  void aSlowdownBeyondTheMargin_withAP99WithinItsLimit_passes() {
    // Only both together fail: a candidate 8% slower throughout (beyond the margin, and
    // significant) whose p99 stays within 1.10x the baseline's.
    VersionStats.Samples baseline = samples(1, 3_000, 100, 0);
    VersionStats.Samples candidate = samples(2, 3_000, 108, 0);
    RolloutJudge.Judgement judged = RolloutJudge.judge(defaults(), baseline, candidate);
    assertThat(judged.evidence().getP99Ratio()).isLessThan(1.10);
    assertThat(judged.evidence().getPValue()).isLessThan(0.01);
    assertThat(judged.verdict()).as(judged.reason()).isEqualTo(RolloutJudge.Verdict.PASS);
    assertThat(judged.reason()).startsWith("within thresholds: p99 ratio 1.0").contains("(limit 1.10), Mann-Whitney p = ")
        .contains("(against the baseline's + 5%)");
  }

  @Test
  void theMarginIsWrittenAsAPercentage() {
    assertThat(RolloutJudge.percent(0.05)).isEqualTo("5%");
    assertThat(RolloutJudge.percent(0.025)).isEqualTo("2.5%");
    assertThat(RolloutJudge.percent(0)).isEqualTo("0%");
  }

  @Test
  void theMinimum_countsTheAnswersSamplesStandFor_soThatOneAboveWhatAVersionKeepsOneByOne_isReached() {
    Thresholds many = defaults().toBuilder().setMinSamples(50_000).build();
    VersionStats.Samples every = samples(1, 3_000, 100, 0);
    // 3,200 samples, one in 16 of 51,200 answers.
    VersionStats.Samples oneInSixteen = samples(2, 3_200, 100, 0);
    VersionStats.Samples sampled = new VersionStats.Samples(oneInSixteen.latenciesMicros(), 0, 0, 3_200L * 16);

    RolloutJudge.Judgement waiting = RolloutJudge.judge(many, sampled, every);
    assertThat(waiting.verdict()).isEqualTo(RolloutJudge.Verdict.WAIT);
    assertThat(waiting.reason()).isEqualTo("waiting for samples: baseline 51200/50000, candidate 3000/50000");
    assertThat(waiting.evidence().getBaselineSamples()).isEqualTo(3_200);
    assertThat(waiting.evidence().getBaselineAnswers()).isEqualTo(51_200);

    RolloutJudge.Judgement judged = RolloutJudge.judge(many, sampled, sampled);
    assertThat(judged.verdict()).as(judged.reason()).isEqualTo(RolloutJudge.Verdict.PASS);
  }
}

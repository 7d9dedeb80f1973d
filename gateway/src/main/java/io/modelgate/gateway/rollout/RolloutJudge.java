package io.modelgate.gateway.rollout;

import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.Evidence;
import io.modelgate.proto.admin.v1.Thresholds;
import java.util.Arrays;

/**
 * Judges one rollout step: the candidate against the baseline over the same time window.
 *
 * <ul>
 *   <li>WAIT while either has fewer than {@code min_samples} answered requests in the window.
 *   <li>Fail when the candidate's error rate exceeds the baseline's by more than {@code
 *       max_error_rate_increase}.
 *   <li>Fail when the candidate is slower in both senses: its p99 exceeds {@code max_p99_ratio}
 *       times the baseline's, and a one-sided Mann-Whitney U test finds its latencies larger than
 *       the baseline's times (1 + {@code latency_margin}) at the {@code significance} level.
 *       Requiring both keeps a noisy p99 from a small window from failing a rollout; the margin
 *       keeps a real but negligible slowdown from doing so, which without it a test on thousands
 *       of samples finds significant (a candidate 1% slower at the median, and a p99 that a few
 *       wake-ups of a quiet batcher made 1.7 times the baseline's, once rolled back the guide's
 *       equal candidate).
 *   <li>Pass otherwise.
 * </ul>
 */
public final class RolloutJudge {
  public enum Verdict {
    WAIT,
    PASS,
    FAIL
  }

  public record Judgement(Verdict verdict, String reason, Evidence evidence) {}

  private RolloutJudge() {}

  public static Judgement judge(Thresholds thresholds, VersionStats.Samples baseline, VersionStats.Samples candidate) {
    return judge(thresholds, baseline, candidate, "baseline");
  }

  /**
   * As {@link #judge(Thresholds, VersionStats.Samples, VersionStats.Samples)}, the reasons naming
   * what the candidate is compared with: {@code "baseline"}, or {@code "control"} where a rollout's
   * control took the candidate's share.
   */
  public static Judgement judge(Thresholds thresholds, VersionStats.Samples baseline, VersionStats.Samples candidate,
      String reference) {
    long[] b = baseline.latenciesMicros().clone();
    long[] c = candidate.latenciesMicros().clone();
    Arrays.sort(b);
    Arrays.sort(c);
    double baseErrors = rate(baseline.errors(), baseline.total());
    double candErrors = rate(candidate.errors(), candidate.total());
    Evidence.Builder evidence =
        Evidence.newBuilder()
            .setBaselineSamples(baseline.total())
            .setCandidateSamples(candidate.total())
            .setBaselineAnswers(baseline.answers())
            .setCandidateAnswers(candidate.answers())
            .setBaselineP50Ms(percentile(b, 50) / 1000.0)
            .setCandidateP50Ms(percentile(c, 50) / 1000.0)
            .setBaselineP99Ms(percentile(b, 99) / 1000.0)
            .setCandidateP99Ms(percentile(c, 99) / 1000.0)
            .setBaselineErrorRate(baseErrors)
            .setCandidateErrorRate(candErrors);
    long min = thresholds.getMinSamples();
    // Answers, not samples: a busy version's samples are one in N of its answers (at least about
    // a thousand of them), and a minimum above what it keeps one by one must still be reached.
    if (baseline.answers() < min || candidate.answers() < min) {
      return new Judgement(
          Verdict.WAIT,
          String.format(
              "waiting for samples: %s %d/%d, candidate %d/%d",
              reference, baseline.answers(), min, candidate.answers(), min),
          evidence.build());
    }
    if (candErrors > baseErrors + thresholds.getMaxErrorRateIncrease()) {
      return new Judgement(
          Verdict.FAIL,
          String.format(
              "candidate error rate %.2f%% exceeds the %s's %.2f%% by more than %.2f%%",
              candErrors * 100, reference, baseErrors * 100, thresholds.getMaxErrorRateIncrease() * 100),
          evidence.build());
    }
    double baseP99 = Math.max(percentile(b, 99), 1);
    double ratio = percentile(c, 99) / baseP99;
    double margin = thresholds.getLatencyMargin();
    MannWhitney.Result test = MannWhitney.secondGreater(scaled(b, 1 + margin), c);
    evidence.setP99Ratio(ratio).setMannWhitneyU(test.u()).setZ(test.z()).setPValue(test.pValue());
    boolean slower = ratio > thresholds.getMaxP99Ratio();
    boolean significant = test.pValue() < thresholds.getSignificance();
    if (slower && significant) {
      return new Judgement(
          Verdict.FAIL,
          String.format(
              "candidate p99 %.3f ms is %.2fx the %s's %.3f ms (limit %.2fx) and its latencies"
                  + " are significantly larger%s (Mann-Whitney p = %.2g < %.2g)",
              percentile(c, 99) / 1000.0, ratio, reference, baseP99 / 1000.0, thresholds.getMaxP99Ratio(),
              margin > 0 ? " than the " + reference + "'s + " + percent(margin) : "",
              test.pValue(), thresholds.getSignificance()),
          evidence.build());
    }
    String against = margin > 0 ? " (against the " + reference + "'s + " + percent(margin) + ")" : "";
    if (slower) {
      // A p99 over its limit that the rank test does not bear out: a few slow answers in the step's
      // samples, which a step fails only when its latencies as a whole are larger. Said so, rather
      // than "within thresholds" beside a ratio over its limit.
      return new Judgement(
          Verdict.PASS,
          String.format(
              "not significantly slower: p99 ratio %.2f is over its limit %.2f, but the latencies are not"
                  + " significantly larger than the %s's%s (Mann-Whitney p = %.2g, not below %s), error rates"
                  + " %.2f%% vs %.2f%%",
              ratio, thresholds.getMaxP99Ratio(), reference, margin > 0 ? " + " + percent(margin) : "",
              test.pValue(), thresholds.getSignificance(), candErrors * 100, baseErrors * 100),
          evidence.build());
    }
    return new Judgement(
        Verdict.PASS,
        String.format(
            "within thresholds: p99 ratio %.2f (limit %.2f), Mann-Whitney p = %.2g%s, error rates %.2f%%"
                + " vs %.2f%%",
            ratio, thresholds.getMaxP99Ratio(), test.pValue(), against, candErrors * 100, baseErrors * 100),
        evidence.build());
  }

  /** A share as a percentage, without trailing zeros: 0.05 is "5%", 0.025 "2.5%". */
  public static String percent(double share) {
    return java.math.BigDecimal.valueOf(share * 100).round(new java.math.MathContext(4)).stripTrailingZeros().toPlainString() + "%";
  }

  /** Each value times {@code factor}, rounded: the baseline the candidate must not exceed. */
  private static long[] scaled(long[] values, double factor) {
    if (factor == 1) {
      return values;
    }
    long[] out = new long[values.length];
    for (int i = 0; i < values.length; i++) {
      out[i] = Math.round(values[i] * factor);
    }
    return out;
  }

  private static double rate(long errors, long total) {
    return total == 0 ? 0 : errors / (double) total;
  }

  /** The value at {@code percent} of sorted values (nearest rank), 0 when empty. */
  static double percentile(long[] sorted, double percent) {
    if (sorted.length == 0) {
      return 0;
    }
    int index = (int) Math.ceil(percent / 100.0 * sorted.length) - 1;
    return sorted[Math.min(Math.max(index, 0), sorted.length - 1)];
  }
}

package io.modelgate.gateway.rollout;

import java.util.Arrays;

/**
 * The Mann-Whitney U test (Wilcoxon rank-sum), one-sided: do the values of the second sample
 * tend to be larger than those of the first? Normal approximation with tie and continuity
 * corrections, which is sound for the hundreds of samples a rollout step requires.
 */
public final class MannWhitney {
  /** U of the second sample, its z score, and the one-sided p-value. */
  public record Result(double u, double z, double pValue) {}

  private MannWhitney() {}

  /**
   * Tests whether {@code second} tends to exceed {@code first}. Values must be non-negative and
   * below 2^62 (latencies in microseconds).
   */
  public static Result secondGreater(long[] first, long[] second) {
    int n1 = first.length;
    int n2 = second.length;
    if (n1 == 0 || n2 == 0) {
      return new Result(0, 0, 1);
    }
    int n = n1 + n2;
    long[] all = new long[n];
    for (int i = 0; i < n1; i++) {
      all[i] = first[i] << 1;
    }
    for (int i = 0; i < n2; i++) {
      all[n1 + i] = (second[i] << 1) | 1;
    }
    Arrays.sort(all);
    double rankSumSecond = 0;
    double tieTerm = 0;
    int i = 0;
    while (i < n) {
      int j = i;
      while (j + 1 < n && (all[j + 1] >>> 1) == (all[i] >>> 1)) {
        j++;
      }
      double rank = (i + j) / 2.0 + 1; // ranks are 1-based; ties share their mean rank
      for (int k = i; k <= j; k++) {
        if ((all[k] & 1) == 1) {
          rankSumSecond += rank;
        }
      }
      double t = j - i + 1;
      tieTerm += t * t * t - t;
      i = j + 1;
    }
    double u = rankSumSecond - n2 * (n2 + 1) / 2.0;
    double mean = n1 * (double) n2 / 2.0;
    double variance = n1 * (double) n2 / 12.0 * ((n + 1) - tieTerm / ((double) n * (n - 1)));
    if (variance <= 0) {
      return new Result(u, 0, 1);
    }
    double z = (u - mean - 0.5) / Math.sqrt(variance);
    return new Result(u, z, upperTail(z));
  }

  /** P(Z > z) for a standard normal Z. */
  static double upperTail(double z) {
    return 0.5 * erfc(z / Math.sqrt(2));
  }

  /** The complementary error function, fractional error below 1.2e-7 (Numerical Recipes' erfcc). */
  static double erfc(double x) {
    double z = Math.abs(x);
    double t = 1 / (1 + 0.5 * z);
    double r =
        t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
            + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
            + t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0 ? r : 2 - r;
  }
}

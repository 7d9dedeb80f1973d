package io.modelgate.gateway.rollout;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.Random;
import org.junit.jupiter.api.Test;

class MannWhitneyTest {
  @Test
  void separatedSamples_matchTheHandComputedStatistic() {
    // U = 25 of 25; mean 12.5; variance 5*5*11/12; z = (25 - 12.5 - 0.5) / 4.7871 = 2.5067.
    MannWhitney.Result r = MannWhitney.secondGreater(new long[] {1, 2, 3, 4, 5}, new long[] {6, 7, 8, 9, 10});
    assertThat(r.u()).isEqualTo(25);
    assertThat(r.z()).isCloseTo(2.5067, within(1e-3));
    assertThat(r.pValue()).isCloseTo(0.00609, within(1e-4));
  }

  @Test
  void tiesShareTheirMeanRank() {
    MannWhitney.Result r = MannWhitney.secondGreater(new long[] {1, 2, 2}, new long[] {2, 3});
    // Ranks: 1 -> 1; the three 2s -> 3; 3 -> 5. Second sample: 3 + 5 = 8; U = 8 - 3 = 5.
    assertThat(r.u()).isEqualTo(5);
  }

  @Test
  void identicalDistributions_areNotSignificant_andShiftedOnesAre() {
    Random random = new Random(1);
    long[] a = new long[500];
    long[] b = new long[500];
    long[] slower = new long[500];
    for (int i = 0; i < 500; i++) {
      a[i] = 1000 + random.nextInt(200);
      b[i] = 1000 + random.nextInt(200);
      slower[i] = 1100 + random.nextInt(200);
    }
    assertThat(MannWhitney.secondGreater(a, b).pValue()).isGreaterThan(0.01);
    assertThat(MannWhitney.secondGreater(a, slower).pValue()).isLessThan(1e-9);
    assertThat(MannWhitney.secondGreater(slower, a).pValue()).isGreaterThan(0.99);
  }

  @Test
  void upperTail_matchesTheStandardNormal() {
    assertThat(MannWhitney.upperTail(0)).isCloseTo(0.5, within(1e-7));
    assertThat(MannWhitney.upperTail(1.959964)).isCloseTo(0.025, within(1e-6));
    assertThat(MannWhitney.upperTail(-1.644854)).isCloseTo(0.95, within(1e-6));
  }
}

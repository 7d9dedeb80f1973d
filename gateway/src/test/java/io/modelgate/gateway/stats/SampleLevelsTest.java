package io.modelgate.gateway.stats;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

class SampleLevelsTest {
  private static final long EPOCH = 1_800_000_000_000L;

  private static long sample(long millis, long micros) {
    return millis << 32 | micros;
  }

  @Test
  void whileEveryAnswerFits_theSamplesAreEveryAnswer() {
    SampleLevels levels = new SampleLevels(1024, 512);
    for (int ms = 0; ms < 1000; ms++) {
      levels.record(sample(ms, ms));
    }
    levels.record(sample(999, SampleLevels.ERROR));
    SampleLevels.Read read = levels.since(500, EPOCH);
    assertThat(read.oneIn()).isEqualTo(1);
    assertThat(read.fromMillis()).isEqualTo(EPOCH + 500);
    assertThat(read.latenciesMicros()).hasSize(500);
    assertThat(Arrays.stream(read.latenciesMicros()).min().getAsLong()).isEqualTo(500);
    assertThat(read.errors()).isEqualTo(1);
  }

  @Test
  void aSpanLongerThanEveryAnswerKept_isSampledUniformlyOverAllOfIt() {
    SampleLevels levels = new SampleLevels(1024, 512);
    // 6,000 answers, one a millisecond, each's latency its time: the finest level keeps the last
    // 1,024; one in 16 (about 375) reaches back to the start.
    for (int ms = 0; ms < 6000; ms++) {
      levels.record(sample(ms, ms + 1));
    }
    SampleLevels.Read read = levels.since(0, EPOCH);
    assertThat(read.oneIn()).isEqualTo(16);
    assertThat(read.fromMillis()).isEqualTo(EPOCH);
    long n = read.latenciesMicros().length;
    // A binomial count with mean 375 and a standard deviation of 19: these bounds are 7 of them.
    assertThat(n).isBetween(240L, 510L);
    // Uniform over the span: the first half holds about half (a standard deviation of 2.6%).
    long firstHalf = Arrays.stream(read.latenciesMicros()).filter(micros -> micros <= 3000).count();
    assertThat((double) firstHalf / n).isBetween(0.3, 0.7);
    // A later start reached by every answer: every answer again.
    SampleLevels.Read recent = levels.since(5000, EPOCH);
    assertThat(recent.oneIn()).isEqualTo(1);
    assertThat(recent.latenciesMicros()).hasSize(1000);
  }

  @Test
  void whereNoLevelReachesBack_theOneReachingFurthest_isCompleteOnlyFromItsOldestMillisecond() {
    SampleLevels levels = new SampleLevels(16, 16);
    // 4,096 × 16 × 4 answers: even one in 4,096 (about 64 kept of 16 places) covers only its last
    // quarter or so; finer levels less.
    for (long i = 0; i < 4096L * 16 * 4; i++) {
      levels.record(sample(i / 100, 7));
    }
    SampleLevels.Read read = levels.since(0, EPOCH);
    assertThat(read.oneIn()).isEqualTo(4096);
    assertThat(read.fromMillis()).isGreaterThan(EPOCH);
    assertThat(read.latenciesMicros()).hasSizeLessThanOrEqualTo(16);
    assertThat(Arrays.stream(read.latenciesMicros()).allMatch(micros -> micros == 7)).isTrue();
  }

  @Test
  void lengthsMustBePowersOfTwo() {
    assertThatThrownBy(() -> new SampleLevels(1000, 512)).isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void memoryIsFixed() {
    assertThat(SampleLevels.footprintBytes()).isEqualTo(8L * (16_384 + 3 * 8_192));
  }
}

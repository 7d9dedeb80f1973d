package io.modelgate.gateway.stats;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.grpc.Status;
import io.modelgate.proto.admin.v1.Distribution;
import io.modelgate.proto.admin.v1.StatsResponse;
import io.modelgate.proto.admin.v1.WindowStats;
import io.modelgate.gateway.testing.TestClock;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class VersionStatsTest {
  private static WindowStats window(StatsResponse report, String name) {
    return report.getVersions(0).getWindowsList().stream()
        .filter(w -> w.getWindow().equals(name)).findFirst().orElseThrow();
  }

  @Test
  void percentiles_matchAKnownDistribution_withinTheHistogramsPrecision() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 1);
      // 1 ms to 10 s, uniformly: 100 000 values.
      for (int i = 1; i <= 100_000; i++) {
        stats.recordAnswer(Status.Code.OK, TimeUnit.MICROSECONDS.toNanos(i * 100L), clock.millis());
      }
      registry.rotate();
      Distribution e2e = window(registry.report("m", 1), "1m").getEndToEndMs();
      // Two significant digits: each value within 1% of the exact percentile.
      assertThat(e2e.getCount()).isEqualTo(100_000);
      assertThat(e2e.getP50()).isCloseTo(5_000, within(50.0));
      assertThat(e2e.getP90()).isCloseTo(9_000, within(90.0));
      assertThat(e2e.getP99()).isCloseTo(9_900, within(99.0));
      assertThat(e2e.getP999()).isCloseTo(9_990, within(100.0));
      assertThat(e2e.getMax()).isCloseTo(10_000, within(100.0));
      assertThat(e2e.getMean()).isCloseTo(5_000.05, within(50.0));
    }
  }

  @Test
  void windows_addUpTheirIntervals_andAllAddsUpEverything() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 1);
      // 20 minutes of intervals: 10 answers each, one UNAVAILABLE every interval.
      for (int interval = 0; interval < 240; interval++) {
        for (int i = 0; i < 9; i++) {
          stats.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
        }
        stats.recordAnswer(Status.Code.UNAVAILABLE, 1_000_000, clock.millis());
        clock.millis += 5_000;
        registry.rotate();
      }
      StatsResponse report = registry.report("m", 1);
      assertThat(window(report, "1m").getRequests()).isEqualTo(12 * 10);
      assertThat(window(report, "1m").getSeconds()).isEqualTo(60);
      assertThat(window(report, "1m").getRequestsPerSecond()).isEqualTo(2.0);
      assertThat(window(report, "5m").getRequests()).isEqualTo(60 * 10);
      assertThat(window(report, "15m").getRequests()).isEqualTo(180 * 10);
      assertThat(window(report, "15m").getErrorsByCodeMap()).containsEntry("UNAVAILABLE", 180L);
      assertThat(window(report, "all").getRequests()).isEqualTo(240 * 10);
      assertThat(window(report, "all").getEndToEndMs().getCount()).isEqualTo(240 * 9);
      // Every window ends at the last close; an answer since is in none of them until the next.
      long closed = clock.millis;
      for (String name : List.of("1m", "5m", "15m", "all")) {
        assertThat(window(report, name).getThroughMs()).as(name).isEqualTo(closed);
      }
      clock.millis += 2_000;
      stats.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
      StatsResponse later = registry.report("m", 1);
      assertThat(later.getTimeMs() - window(later, "1m").getThroughMs()).isEqualTo(2_000);
      assertThat(window(later, "all").getRequests()).isEqualTo(240 * 10);
      clock.millis += 3_000;
      registry.rotate();
      assertThat(window(registry.report("m", 1), "all").getThroughMs()).isEqualTo(closed + 5_000);
      assertThat(window(registry.report("m", 1), "all").getRequests()).isEqualTo(240 * 10 + 1);
    }
  }

  @Test
  void aBusyVersionsSamples_coverTheWholeStep_oneInSixteen_whereItsEveryAnswerDoNot() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats busy = registry.create("m", 1);
      VersionStats quiet = registry.create("m", 2);
      long stepStart = clock.millis;
      // 20 s: the busy version answers every millisecond (20,000: more than it keeps one by one),
      // slowly in the step's first half; the quiet one every tenth millisecond.
      for (int ms = 0; ms < 20_000; ms++) {
        busy.recordAnswer(Status.Code.OK, ms < 10_000 ? 9_000_000 : 1_000_000, stepStart + ms);
        if (ms % 10 == 0) {
          quiet.recordAnswer(Status.Code.OK, 2_000_000, stepStart + ms);
        }
      }
      VersionStats.Samples[] pair = VersionStats.alignedSince(busy, quiet, stepStart);
      VersionStats.Samples sampled = pair[0];
      assertThat(sampled.fromMillis()).isEqualTo(stepStart);
      // One in 16 of 20,000: about 1,250 (a standard deviation of 34), standing for about 20,000.
      assertThat(sampled.total()).isBetween(1_000L, 1_500L);
      assertThat(sampled.answers()).isEqualTo(sampled.total() * 16);
      // The slow first half is in them (before, the last 16,384 answers held 6,384 of its 10,000).
      long slow = java.util.Arrays.stream(sampled.latenciesMicros()).filter(micros -> micros == 9_000).count();
      assertThat((double) slow / sampled.total()).isBetween(0.4, 0.6);
      // The quiet one: every answer, over the same whole step.
      assertThat(pair[1].fromMillis()).isEqualTo(stepStart);
      assertThat(pair[1].total()).isEqualTo(2_000);
      assertThat(pair[1].answers()).isEqualTo(2_000);
      // A later start that every answer reaches: every answer.
      VersionStats.Samples late = busy.samplesSince(stepStart + 19_000);
      assertThat(late.total()).isEqualTo(1_000);
      assertThat(late.answers()).isEqualTo(1_000);
    }
  }

  @Test
  void aRolloutsTwoVersions_areSampledOverTheSameSpan_whereOnesSamplesDoNotReachBackToTheStepsStart() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats busy = registry.create("m", 1);
      VersionStats quiet = registry.create("m", 2);
      long stepStart = clock.millis;
      // 40 million answers over 4,000 s (10 a millisecond): one in 4,096 keeps about 9,800, more
      // than its 8,192 places, so not even it reaches back to the start.
      for (long i = 0; i < 40_000_000L; i++) {
        busy.recordAnswer(Status.Code.OK, 1_000_000, stepStart + i / 10);
        if (i % 10_000 == 0) {
          quiet.recordAnswer(Status.Code.OK, 2_000_000, stepStart + i / 10);
        }
      }
      VersionStats.Samples busyAlone = busy.samplesSince(stepStart);
      assertThat(busyAlone.fromMillis()).isGreaterThan(stepStart);
      long from = busyAlone.fromMillis();
      assertThat(quiet.samplesSince(stepStart).fromMillis()).isEqualTo(stepStart);
      assertThat(quiet.samplesSince(stepStart).total()).isEqualTo(4_000);

      // Together, both from where the busy one's samples are complete.
      VersionStats.Samples[] pair = VersionStats.alignedSince(busy, quiet, stepStart);
      assertThat(pair[0].fromMillis()).isEqualTo(from);
      assertThat(pair[1].fromMillis()).isEqualTo(from);
      assertThat(pair[1].total()).isEqualTo(4_000 - (from - stepStart + 999) / 1_000);
      // Neither reaching back past the step: the step itself, whoever is missing.
      VersionStats.Samples[] late = VersionStats.alignedSince(quiet, null, stepStart + 3_900_000);
      assertThat(late[0].fromMillis()).isEqualTo(stepStart + 3_900_000);
      assertThat(late[0].total()).isEqualTo(100);
      assertThat(late[1].total()).isZero();
    }
  }

  @Test
  void stagesSince_sumTheIntervalsThatBeganAtOrAfterAStepsStart_withinTheLastMinute() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 1);
      // Intervals of 5 s with 1, 2, 3, ... requests (queue 100 µs, compute 2 ms); the step starts
      // at the close of the third.
      long stepStart = 0;
      for (int interval = 1; interval <= 20; interval++) {
        for (int i = 0; i < interval; i++) {
          stats.recordRequest(100_000, 2_000_000);
        }
        clock.millis += 5_000;
        registry.rotate();
        if (interval == 3) {
          stepStart = clock.millis;
        }
        if (interval == 6) {
          // Three intervals since the step started: 4 + 5 + 6 requests over 15 s.
          StatsRegistry.Stages since = registry.stagesSince("m", 1, stepStart);
          assertThat(since.queueMicros().getTotalCount()).isEqualTo(15);
          assertThat(since.computeMicros().getTotalCount()).isEqualTo(15);
          // Within the histograms' precision (3 significant digits).
          assertThat(since.computeMicros().getValueAtPercentile(50)).isBetween(1_995L, 2_010L);
          assertThat(since.queueMicros().getValueAtPercentile(50)).isEqualTo(100);
          assertThat(since.seconds()).isEqualTo(15);
          // A start within an interval leaves that interval out.
          assertThat(registry.stagesSince("m", 1, stepStart + 1).queueMicros().getTotalCount()).isEqualTo(11);
          assertThat(registry.stagesSince("m", 1, clock.millis + 1).queueMicros().getTotalCount()).isZero();
        }
      }
      // Seventeen intervals later, the last minute's twelve: 9 + ... + 20.
      assertThat(registry.stagesSince("m", 1, stepStart).queueMicros().getTotalCount()).isEqualTo((9 + 20) * 12 / 2);
      assertThat(registry.stagesSince("m", 1, stepStart).seconds()).isEqualTo(60);
      assertThat(registry.stagesSince("nowhere", 1, stepStart)).isNull();
    }
  }

  @Test
  void windows_longerThanAMinute_areTheMinuteBeingFilledPlusWholeMinutes() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 1);
      // 20 minutes and 15 seconds: one answer per interval.
      for (int interval = 0; interval < 243; interval++) {
        stats.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
        clock.millis += 5_000;
        registry.rotate();
      }
      StatsResponse report = registry.report("m", 1);
      assertThat(window(report, "1m").getRequests()).isEqualTo(12);
      // 15 s being filled + 4 whole minutes: 255 s, the longest span within 5 minutes.
      assertThat(window(report, "5m").getSeconds()).isEqualTo(255);
      assertThat(window(report, "5m").getRequests()).isEqualTo(51);
      assertThat(window(report, "15m").getSeconds()).isEqualTo(855);
      assertThat(window(report, "all").getRequests()).isEqualTo(243);
    }
  }

  @Test
  void memory_isFixedPerVersion_atMostFiveMegabytes_andDoesNotGrowWithTime() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 1);
      long atStart = stats.footprintBytes();
      assertThat(atStart).isLessThanOrEqualTo(5L << 20);
      // An hour of intervals with values over the whole range.
      for (int interval = 0; interval < 720; interval++) {
        for (int i = 0; i < 50; i++) {
          long micros = 1L << (i % 31);
          stats.recordAnswer(Status.Code.OK, micros * 1000, clock.millis());
          stats.recordRequest(micros * 1000, micros * 500);
          stats.recordBatch(1, 1 << (i % 20), micros * 1000);
        }
        clock.millis += 5_000;
        registry.rotate();
      }
      assertThat(stats.footprintBytes()).isEqualTo(atStart);
    }
  }

  @Test
  void memory_tenVersionsOverFifteenMinutes_staysWithinTheirStatedFootprint() {
    TestClock clock = new TestClock();
    Runtime runtime = Runtime.getRuntime();
    long before = usedAfterGc(runtime);
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats[] versions = new VersionStats[10];
      for (int v = 0; v < versions.length; v++) {
        versions[v] = registry.create("m", v + 1);
      }
      // Twenty minutes of five-second intervals: every ring is full and has wrapped.
      for (int interval = 0; interval < 240; interval++) {
        for (VersionStats stats : versions) {
          stats.recordAnswer(Status.Code.OK, 1_000_000 + interval * 1000L, clock.millis());
        }
        clock.millis += 5_000;
        registry.rotate();
      }
      long used = usedAfterGc(runtime) - before;
      // Before the fix each version held ~119 MB after 15 minutes (180 intervals × 4 histograms
      // of three significant digits); now each stays within its stated fixed footprint.
      assertThat(used).isLessThan(10 * (versions[0].footprintBytes() + (1L << 20)));
      assertThat(versions[0].footprintBytes()).isLessThanOrEqualTo(5L << 20);
    }
  }

  private static long usedAfterGc(Runtime runtime) {
    for (int i = 0; i < 3; i++) {
      System.gc();
    }
    return runtime.totalMemory() - runtime.freeMemory();
  }

  @Test
  void rotation_survivesAFailure_logsAndCountsIt_andKeepsRecording() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats broken = registry.create("m", 1);
      VersionStats healthy = registry.create("m", 2);
      registry.beforeRotate =
          v -> {
            if (v == broken) {
              throw new OutOfMemoryError("simulated");
            }
          };
      broken.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
      healthy.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
      clock.millis += 5_000;
      registry.rotate();
      assertThat(registry.scrape()).contains("modelgate_stats_rotation_failures_total 1.0");
      assertThat(window(registry.report("m", 2), "1m").getRequests()).isEqualTo(1);
      // The fault clears: the next rotation closes what was recorded meanwhile.
      registry.beforeRotate = v -> {};
      broken.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
      clock.millis += 5_000;
      registry.rotate();
      assertThat(window(registry.report("m", 1), "1m").getRequests()).isEqualTo(2);
    }
  }

  @Test
  void prometheus_exportsHistogramBucketsLabelledByModelAndVersion() {
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false)) {
      VersionStats stats = registry.create("m", 7);
      stats.recordAnswer(Status.Code.OK, 2_000_000, System.currentTimeMillis());
      stats.recordRequest(500_000, 1_000_000);
      stats.recordBatch(3, 12, 1_000_000);
      String text = registry.scrape();
      assertThat(text)
          .contains("modelgate_request_duration_seconds_bucket{model=\"m\",stage=\"end_to_end\",version=\"7\",le=")
          .contains("modelgate_request_duration_seconds_count{model=\"m\",stage=\"queue\",version=\"7\"} 1")
          .contains("modelgate_requests_total{code=\"OK\",model=\"m\",version=\"7\"} 1.0")
          .contains("modelgate_batch_rows_bucket{model=\"m\",version=\"7\",le=")
          .contains("modelgate_request_duration_seconds_count{model=\"m\",stage=\"compute\",version=\"7\"} 1");
      // A fixed, small set of buckets per histogram: 16 latency bounds and +Inf.
      long buckets =
          text.lines()
              .filter(l -> l.startsWith("modelgate_request_duration_seconds_bucket{model=\"m\",stage=\"end_to_end\""))
              .count();
      assertThat(buckets).isEqualTo(17);
    }
  }

  @Test
  void samplesSince_returnsRecentLatenciesAndErrors() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 1);
      stats.recordAnswer(Status.Code.OK, 1_000_000, clock.millis());
      clock.millis += 10_000;
      long since = clock.millis();
      stats.recordAnswer(Status.Code.OK, 2_000_000, clock.millis());
      stats.recordAnswer(Status.Code.INTERNAL, 1_000, clock.millis());
      VersionStats.Samples samples = stats.samplesSince(since);
      assertThat(samples.latenciesMicros()).containsExactly(2_000);
      assertThat(samples.errors()).isEqualTo(1);
    }
  }

  @Test
  void shadowCopies_areCountedAndTimed_butNeverRolloutSamples() {
    TestClock clock = new TestClock();
    try (StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), clock, false)) {
      VersionStats stats = registry.create("m", 2);
      long since = clock.millis();
      stats.recordAnswer(Status.Code.OK, 1_000_000, clock.millis(), true);
      stats.recordAnswer(Status.Code.INTERNAL, 1_000_000, clock.millis(), true);
      stats.recordAnswer(Status.Code.OK, 3_000_000, clock.millis(), false);
      VersionStats.Samples samples = stats.samplesSince(since);
      assertThat(samples.latenciesMicros()).containsExactly(3_000);
      assertThat(samples.errors()).isZero();
      registry.rotate();
      assertThat(window(registry.report("m", 2), "1m").getRequests()).isEqualTo(3);
    }
  }
}

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
      // Three significant digits: each value within 0.1% of the exact percentile.
      assertThat(e2e.getCount()).isEqualTo(100_000);
      assertThat(e2e.getP50()).isCloseTo(5_000, within(5.0));
      assertThat(e2e.getP90()).isCloseTo(9_000, within(9.0));
      assertThat(e2e.getP99()).isCloseTo(9_900, within(9.9));
      assertThat(e2e.getP999()).isCloseTo(9_990, within(10.0));
      assertThat(e2e.getMax()).isCloseTo(10_000, within(10.0));
      assertThat(e2e.getMean()).isCloseTo(5_000.05, within(5.0));
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
          .contains("modelgate_batch_rows_bucket{model=\"m\",version=\"7\",le=");
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
}

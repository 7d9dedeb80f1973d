package io.modelgate.gateway.usage;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.GetUsageRequest;
import io.modelgate.proto.admin.v1.UsageRecord;
import io.modelgate.proto.admin.v1.UsageReport;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelStatisticsRequest;
import io.modelgate.proto.inference.ModelStatisticsResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Usage for chargeback on the demo model, three tenants sending at once so that their requests
 * share batches: requests and rows match what the clients sent exactly; the compute shares add up
 * to the executions' measured time; the ledger survives a restart.
 */
class UsageTest {
  @TempDir Path root;

  /** Tenant, key, requests, rows per request. */
  private record Sender(String tenant, String key, int requests, int rows) {}

  private static final List<Sender> SENDERS = List.of(
      new Sender("a", "mgk_usage-key-a-0123456789abcdef", 300, 1),
      new Sender("b", "mgk_usage-key-b-0123456789abcdef", 200, 2),
      new Sender("c", "mgk_usage-key-c-0123456789abcdef", 100, 4));

  private static ModelInferRequest digits(int rows) {
    float[] pixels = new float[rows * MnistDigits.PIXELS];
    for (int r = 0; r < rows; r++) {
      System.arraycopy(MnistDigits.get(r).pixels(), 0, pixels, r * MnistDigits.PIXELS, MnistDigits.PIXELS);
    }
    return ModelInferRequest.newBuilder().setModelName("cnn_mnist")
        .addInputs(Tensors.input("input_image", "FP32", rows, 1, 28, 28))
        .addRawInputContents(Tensors.rawFloats(pixels)).build();
  }

  /** The executions' measured run of the model so far, over every batch size, in ns. */
  private static long executionNanos(Gateway gateway) {
    ModelStatisticsResponse stats = gateway.blockingAs(SENDERS.get(0).key())
        .modelStatistics(ModelStatisticsRequest.newBuilder().setName("cnn_mnist").setVersion("2").build());
    return stats.getModelStats(0).getBatchStatsList().stream().mapToLong(b -> b.getComputeInfer().getNs()).sum();
  }

  @Test
  void threeTenants_areCountedExactly_computeSharesAddUpToTheExecutions_andTheLedgerSurvivesARestart() throws Exception {
    DemoRepository.materialize(root);
    StringBuilder yaml = new StringBuilder("tenants:\n");
    for (Sender s : SENDERS) {
      yaml.append("  ").append(s.tenant()).append(":\n    api_keys: [").append(CallerPolicy.hash(s.key())).append("]\n");
    }
    Path callers = root.resolve("callers.yaml");
    Files.writeString(callers, yaml);
    UsageReport before;
    try (Gateway gateway = Gateway.inProcessWithCallers(root, callers, Clock.systemUTC())) {
      long executedBefore = executionNanos(gateway);
      ExecutorService threads = Executors.newFixedThreadPool(12);
      List<Future<?>> sent = new ArrayList<>();
      Map<String, AtomicLong> answered = new java.util.concurrent.ConcurrentHashMap<>();
      for (Sender s : SENDERS) {
        ModelInferRequest request = digits(s.rows());
        for (int t = 0; t < 4; t++) {
          sent.add(threads.submit(() -> {
            for (int i = 0; i < s.requests() / 4; i++) {
              gateway.blockingAs(s.key()).modelInfer(request);
              answered.computeIfAbsent(s.tenant(), k -> new AtomicLong()).incrementAndGet();
            }
            return null;
          }));
        }
      }
      for (Future<?> f : sent) {
        f.get(120, TimeUnit.SECONDS);
      }
      threads.shutdown();
      long executed = executionNanos(gateway) - executedBefore;

      before = gateway.admin().getUsage(GetUsageRequest.newBuilder().setSince("2000-01-01").build());
      Map<String, UsageRecord> byTenant = before.getRecordsList().stream()
          .collect(Collectors.toMap(UsageRecord::getTenant, r -> r));
      assertThat(byTenant).containsOnlyKeys("a", "b", "c");
      for (Sender s : SENDERS) {
        UsageRecord record = byTenant.get(s.tenant());
        assertThat(record.getModel()).isEqualTo("cnn_mnist");
        assertThat(record.getVersion()).isEqualTo("2");
        assertThat(record.getRequests()).as(s.tenant()).isEqualTo(answered.get(s.tenant()).get()).isEqualTo(s.requests());
        assertThat(record.getRows()).as(s.tenant()).isEqualTo((long) s.requests() * s.rows());
        assertThat(record.getErrorCount()).isZero();
        assertThat(record.getBytesIn()).isEqualTo((long) s.requests() * digits(s.rows()).getSerializedSize());
        assertThat(record.getBytesOut()).isEqualTo((long) s.requests() * s.rows() * 10 * 4);
      }
      double shares = before.getRecordsList().stream().mapToDouble(UsageRecord::getComputeSeconds).sum();
      System.out.printf("compute: tenants' shares %.6f s, executions %.6f s; per tenant %s%n", shares, executed / 1e9,
          before.getRecordsList().stream().map(r -> r.getTenant() + "=" + String.format("%.4f", r.getComputeSeconds())).toList());
      assertThat(shares).isCloseTo(executed / 1e9, within(executed / 1e9 * 0.01));
      // More rows, more compute: c's 400 rows in 100 requests cost about what b's 400 rows in 200 do.
      assertThat(byTenant.get("c").getComputeSeconds()).isGreaterThan(byTenant.get("a").getComputeSeconds() * 0.5);

      String scrape = gateway.stats.prometheus().scrape();
      assertThat(scrape).contains("modelgate_usage_requests_total{code=\"OK\",model=\"cnn_mnist\",tenant=\"b\",version=\"2\"} 200.0");
      assertThat(scrape).contains("modelgate_usage_rows_total{model=\"cnn_mnist\",tenant=\"c\",version=\"2\"} 400.0");
    }
    // The ledger is written on stop and read back on start.
    try (Gateway again = Gateway.inProcessWithCallers(root, callers, Clock.systemUTC())) {
      UsageReport after = again.admin().getUsage(GetUsageRequest.newBuilder().setSince("2000-01-01").build());
      assertThat(after.getRecordsList()).extracting(r -> r.getTenant() + ":" + r.getRequests() + ":" + r.getRows())
          .containsExactlyElementsOf(before.getRecordsList().stream()
              .map(r -> r.getTenant() + ":" + r.getRequests() + ":" + r.getRows()).toList());
      assertThat(after.getRecordsList().stream().mapToDouble(UsageRecord::getComputeSeconds).sum())
          .isCloseTo(before.getRecordsList().stream().mapToDouble(UsageRecord::getComputeSeconds).sum(), within(1e-6));
      // A tenant narrows the report.
      assertThat(again.admin().getUsage(GetUsageRequest.newBuilder().setSince("2000-01-01").setTenant("b").build())
          .getRecordsList()).extracting(UsageRecord::getTenant).containsExactly("b");
      // A span that is empty is refused, saying which end is wrong.
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> again.admin().getUsage(
              GetUsageRequest.newBuilder().setSince("2999-01-01").build()))
          .hasMessageStartingWith("INVALID_ARGUMENT: since 2999-01-01T00:00:00Z is not before now (")
          .hasMessageEndingWith("Z): usage is kept for the hours gone by")
          .hasMessageNotContaining(".");
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> again.admin().getUsage(
              GetUsageRequest.newBuilder().setSince("2026-12-02").setUntil("2026-12-01T10:00:00Z").build()))
          .hasMessage("INVALID_ARGUMENT: until 2026-12-01T10:00:00Z is not after since 2026-12-02T00:00:00Z");
    }
  }

  @Test
  void memoryHoldsTheLastHoursOnly_olderHoursAreReportedFromTheLedger() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    Path ledger = root.resolve("usage");
    Usage usage = new Usage(new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
        io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT), clock, "r1", ledger);
    try {
      java.time.Instant start = java.time.Instant.ofEpochMilli(clock.millis());
      for (int hour = 0; hour < 30; hour++) {
        for (int i = 0; i <= hour; i++) {
          usage.record("t", "m", "1", io.grpc.Status.Code.OK, 2, 2, 1000, 10, 20, "id", 1);
        }
        usage.flush();
        clock.millis += 3_600_000L;
      }
      usage.flush();
      assertThat(usage.hoursInMemory()).isLessThanOrEqualTo(Usage.LIVE_HOURS);
      // Every hour is still in the report: 1 + 2 + ... + 30 requests.
      UsageReport all = usage.report(start, java.time.Instant.ofEpochMilli(clock.millis()), "", "");
      assertThat(all.getRecords(0).getRequests()).isEqualTo(30 * 31 / 2);
      assertThat(all.getRecords(0).getRows()).isEqualTo(30 * 31);
      // An hour in the middle, from its file.
      UsageReport tenth = usage.report(start.plusSeconds(9 * 3600), start.plusSeconds(10 * 3600), "", "");
      assertThat(tenth.getRecords(0).getRequests()).isEqualTo(10);
    } finally {
      usage.close();
    }
  }

  /**
   * A process restarted without --replica takes a new name (host and process id); the hours its
   * earlier names wrote to the same state directory, the current hour included, stay in its report.
   */
  @Test
  void aRestartUnderANewName_keepsTheHoursTheEarlierNamesWrote() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    Path ledger = root.resolve("usage");
    java.time.Instant start = java.time.Instant.ofEpochMilli(clock.millis());
    for (String name : List.of("host-100", "host-200")) {
      Usage usage = new Usage(new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
          io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT), clock, name, ledger);
      for (int i = 0; i < 3; i++) {
        usage.record("t", "m", "1", io.grpc.Status.Code.OK, 2, 2, 1000, 10, 20, "id", 1);
      }
      usage.close();
      clock.millis += 60_000;
    }
    // A third, in the same hour and an hour later, reports all of it.
    Usage third = new Usage(new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
        io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT), clock, "host-300", ledger);
    try {
      third.record("t", "m", "1", io.grpc.Status.Code.UNAVAILABLE, 1, 0, 0, 10, 0, "id", 1);
      UsageReport report = third.report(start, start.plusSeconds(7200), "", "");
      assertThat(report.getRecordsCount()).isEqualTo(1);
      assertThat(report.getRecords(0).getRequests()).isEqualTo(7);
      assertThat(report.getRecords(0).getRows()).isEqualTo(12);
      assertThat(report.getRecords(0).getErrorsMap()).containsExactly(Map.entry("UNAVAILABLE", 1L));
      assertThat(report.getReplica()).isEqualTo("host-300");
      assertThat(report.getLedgersList()).containsExactly("host-300", "host-100", "host-200");
      // Its own hour is counted once, whether from memory or from its file.
      third.flush();
      assertThat(third.report(start, start.plusSeconds(7200), "", "").getRecords(0).getRequests()).isEqualTo(7);
      clock.millis += 3_600_000L;
      third.flush();
      assertThat(third.report(start, start.plusSeconds(7200), "", "").getRecords(0).getRequests()).isEqualTo(7);
    } finally {
      third.close();
    }
  }

  /**
   * With a retention of a day, each hour's write deletes the ledger's hours older than a day: the
   * files of every replica name and, once an hour, the fleet's; a fleet that cannot be reached is
   * tried again at the next write.
   */
  @Test
  void hoursPastTheRetention_areDeleted_fromTheFilesOfEveryName_andFromTheFleet() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    Path ledger = root.resolve("usage");
    Usage earlier = new Usage(new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
        io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT), clock, "old-name", ledger);
    earlier.record("t", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 1);
    earlier.close();
    java.time.Instant start = java.time.Instant.ofEpochMilli(clock.millis());
    clock.millis += 3_600_000L;

    List<String> cutoffs = new ArrayList<>();
    AtomicLong failuresLeft = new AtomicLong(1);
    Usage usage = new Usage(new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
        io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT), clock, "r1", ledger, AccessLog.off(), java.time.Duration.ofDays(1));
    usage.shareWith((hour, report) -> {}, cutoff -> {
      cutoffs.add(cutoff);
      if (failuresLeft.getAndDecrement() > 0) {
        throw io.modelgate.runtime.error.InferenceException.unavailable("etcd down");
      }
      return 2;
    });
    try {
      // The first write of an hour meets a fleet that cannot be reached: the next write tries again,
      // and the one after does not (done for this hour).
      usage.flush();
      usage.flush();
      usage.flush();
      assertThat(cutoffs).hasSize(2).allSatisfy(c -> assertThat(c).isEqualTo(Usage.HOUR.format(start.minusSeconds(23 * 3600))));
      // Thirty hours, a request in each, a write at each.
      for (int hour = 1; hour <= 30; hour++) {
        usage.record("t", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 1);
        usage.flush();
        clock.millis += 3_600_000L;
      }
      usage.flush();
      java.time.Instant now = java.time.Instant.ofEpochMilli(clock.millis());
      assertThat(cutoffs).hasSize(2 + 30).last().isEqualTo(Usage.HOUR.format(now.minusSeconds(24 * 3600)));
      // The files left: this name's last 24 hours; the old name's hour went with the others.
      assertThat(usage.ledgerFiles()).hasSize(24).allSatisfy(f -> {
        assertThat(f.replica()).isEqualTo("r1");
        assertThat(f.hour() * 3_600_000L).isGreaterThanOrEqualTo(now.minusSeconds(24 * 3600).toEpochMilli());
      });
      assertThat(usage.report(start.minusSeconds(3600), now, "", "").getRecords(0).getRequests()).isEqualTo(24);
    } finally {
      usage.close();
    }
  }

  @Test
  void refusals_areCountedByReason_inPrometheus() throws Exception {
    io.micrometer.prometheusmetrics.PrometheusMeterRegistry registry = new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
        io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT);
    Usage usage = new Usage(registry, new io.modelgate.gateway.testing.TestClock(), "r1", null);
    try {
      io.grpc.Status.Code exhausted = io.grpc.Status.Code.RESOURCE_EXHAUSTED;
      usage.record("t", "m", "1", exhausted, io.modelgate.runtime.error.Refusal.QUOTA, 1, 0, 0, 10, 0, "id", 1000);
      usage.record("t", "m", "1", exhausted, io.modelgate.runtime.error.Refusal.QUOTA, 1, 0, 0, 10, 0, "id", 1000);
      usage.record("t", "m", "1", exhausted, io.modelgate.runtime.error.Refusal.FAIR_SHARE, 1, 0, 0, 10, 0, "id", 1000);
      usage.record("t", "m", "1", exhausted, io.modelgate.runtime.error.Refusal.REQUEST_MEMORY, 1, 0, 0, 10, 0, "id", 1000);
      // Without a reason (a refusal of another kind), and answers, count by code only.
      usage.record("t", "m", "1", exhausted, null, 1, 0, 0, 10, 0, "id", 1000);
      usage.record("t", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 1000);
      String scrape = registry.scrape();
      assertThat(scrape).contains("modelgate_usage_refused_total{model=\"m\",reason=\"quota\",tenant=\"t\",version=\"1\"} 2.0");
      assertThat(scrape).contains("modelgate_usage_refused_total{model=\"m\",reason=\"fair_share\",tenant=\"t\",version=\"1\"} 1.0");
      assertThat(scrape).contains("modelgate_usage_refused_total{model=\"m\",reason=\"queue_full\",tenant=\"t\",version=\"1\"} 0.0");
      assertThat(scrape).contains(
          "modelgate_usage_refused_total{model=\"m\",reason=\"request_memory\",tenant=\"t\",version=\"1\"} 1.0");
      assertThat(scrape).contains(
          "modelgate_usage_requests_total{code=\"RESOURCE_EXHAUSTED\",model=\"m\",tenant=\"t\",version=\"1\"} 5.0");
      // Retired with the version's other series.
      usage.retire("m", "1");
      assertThat(registry.scrape()).doesNotContain("modelgate_usage_refused_total{");
    } finally {
      usage.close();
    }
  }

  @Test
  void eachTenantsLatency_isInPrometheus_overTheLastMinute() throws Exception {
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    io.micrometer.prometheusmetrics.PrometheusMeterRegistry registry = new io.micrometer.prometheusmetrics.PrometheusMeterRegistry(
        io.micrometer.prometheusmetrics.PrometheusConfig.DEFAULT);
    Usage usage = new Usage(registry, clock, "r1", null);
    try {
      // quiet: 99 answers in 1 ms and one in 50 ms; busy: every answer in 20 ms; errors do not count.
      for (int i = 0; i < 99; i++) {
        usage.record("quiet", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 1_000_000);
      }
      usage.record("quiet", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 50_000_000);
      usage.record("quiet", "m", "1", io.grpc.Status.Code.RESOURCE_EXHAUSTED, 1, 0, 0, 10, 0, "id", 900_000_000);
      for (int i = 0; i < 10; i++) {
        usage.record("busy", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 20_000_000);
      }
      assertThat(usage.latency("quiet", "m", "1", 0.5)).isCloseTo(0.001, org.assertj.core.data.Offset.offset(0.00002));
      assertThat(usage.latency("quiet", "m", "1", 0.999)).isCloseTo(0.050, org.assertj.core.data.Offset.offset(0.001));
      assertThat(usage.latency("busy", "m", "1", 0.5)).isCloseTo(0.020, org.assertj.core.data.Offset.offset(0.0004));
      String scrape = registry.scrape();
      assertThat(scrape).containsPattern(
          "modelgate_usage_latency_seconds\\{model=\"m\",quantile=\"0\\.5\",tenant=\"busy\",version=\"1\"} 0\\.020");
      // A minute later the window has moved on.
      clock.millis += 61_000;
      assertThat(usage.latency("quiet", "m", "1", 0.5)).isNaN();
      usage.record("quiet", "m", "1", io.grpc.Status.Code.OK, 1, 1, 1000, 10, 20, "id", 3_000_000);
      assertThat(usage.latency("quiet", "m", "1", 0.999)).isCloseTo(0.003, org.assertj.core.data.Offset.offset(0.0001));
    } finally {
      usage.close();
    }
  }
}

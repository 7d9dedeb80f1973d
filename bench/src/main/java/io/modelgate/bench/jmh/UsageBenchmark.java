package io.modelgate.bench.jmh;

import io.grpc.Status;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.modelgate.gateway.callers.CallerAuth;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.callers.Quotas;
import io.modelgate.gateway.usage.AccessLog;
import io.modelgate.gateway.usage.Usage;
import java.time.Clock;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What callers and chargeback cost per request: recording its usage (two counter cells, the access
 * log's draw at 1%), and admitting it under a quota of requests and rows a second (two token
 * buckets) and in flight; on one thread and on two.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
public class UsageBenchmark {
  private Usage usage;
  private Quotas quotas;
  private CallerAuth.Caller limited;

  @Setup
  public void setUp() {
    usage = new Usage(new PrometheusMeterRegistry(PrometheusConfig.DEFAULT), Clock.systemUTC(), "bench", null,
        new AccessLog(AccessLog.DEFAULT_RATE), java.time.Duration.ZERO);
    quotas = new Quotas(Clock.systemUTC());
    limited = new CallerAuth.Caller("t", "api_key", new CallerPolicy.Tenant("t", List.of(), Set.of(), Set.of(),
        new CallerPolicy.Quota(1e6, 1e6, 1_000_000)));
  }

  @Benchmark
  public void recordUsage() {
    usage.record("tenant-a", "cnn_mnist", "2", Status.Code.OK, 1, 8, 400_000, 3192, 40, "id", 1_000_000);
  }

  @Benchmark
  @Threads(2)
  public void recordUsageTwoThreads() {
    usage.record("tenant-a", "cnn_mnist", "2", Status.Code.OK, 1, 8, 400_000, 3192, 40, "id", 1_000_000);
  }

  /** Admitted or refused (the loop outruns a million a second): the decision either way. */
  @Benchmark
  public boolean admitUnderQuota() {
    try {
      quotas.admit(limited, 1).release();
      return true;
    } catch (io.modelgate.runtime.error.InferenceException refused) {
      return false;
    }
  }
}

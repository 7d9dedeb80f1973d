package io.modelgate.bench.jmh;

import io.grpc.Status;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.stats.VersionStats;
import java.time.Clock;
import java.time.Duration;
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
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What statistics cost per request: one answer (HdrHistogram, counters, Prometheus timer, sample
 * ring) and one execution (queue and compute histograms, rows), on one thread and on two.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
public class StatsBenchmark {
  private StatsRegistry registry;
  private VersionStats stats;
  private final Clock clock = Clock.systemUTC();

  @Setup
  public void setUp() {
    registry = new StatsRegistry(Duration.ofSeconds(5), clock, true);
    stats = registry.create("m", 1);
  }

  @TearDown
  public void tearDown() {
    registry.close();
  }

  @Benchmark
  public void recordAnswer() {
    stats.recordAnswer(Status.Code.OK, 1_234_567, clock.millis());
  }

  @Benchmark
  public void recordStages() {
    stats.recordRequest(250_000, 1_000_000);
    stats.recordBatch(4, 16, 1_000_000);
  }

  @Benchmark
  @Threads(2)
  public void recordAnswerTwoThreads() {
    stats.recordAnswer(Status.Code.OK, 1_234_567, clock.millis());
  }
}

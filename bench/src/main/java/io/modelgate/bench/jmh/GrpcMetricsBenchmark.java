package io.modelgate.bench.jmh;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.micrometer.core.instrument.binder.grpc.MetricCollectingServerInterceptor;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
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
import org.openjdk.jmh.annotations.Warmup;

/**
 * What Micrometer's gRPC server meters (the interceptor the gateway installs on both ports) cost
 * per call: the same trivial unary call (health Check) over the in-process transport, without and
 * with the interceptor, in the same run. Compare the difference with a whole inference call
 * ({@code InProcessGatewayBenchmark}).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class GrpcMetricsBenchmark {
  private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private Server plain;
  private Server metered;
  private ManagedChannel plainChannel;
  private ManagedChannel meteredChannel;
  private HealthGrpc.HealthBlockingStub plainStub;
  private HealthGrpc.HealthBlockingStub meteredStub;
  private final HealthCheckRequest request = HealthCheckRequest.getDefaultInstance();

  @Setup
  public void setUp() throws Exception {
    HealthStatusManager health = new HealthStatusManager();
    String a = InProcessServerBuilder.generateName();
    String b = InProcessServerBuilder.generateName();
    plain = InProcessServerBuilder.forName(a).directExecutor().addService(health.getHealthService()).build().start();
    metered =
        InProcessServerBuilder.forName(b)
            .directExecutor()
            .addService(
                ServerInterceptors.intercept(
                    health.getHealthService(), new MetricCollectingServerInterceptor(registry)))
            .build()
            .start();
    plainChannel = InProcessChannelBuilder.forName(a).directExecutor().build();
    meteredChannel = InProcessChannelBuilder.forName(b).directExecutor().build();
    plainStub = HealthGrpc.newBlockingStub(plainChannel);
    meteredStub = HealthGrpc.newBlockingStub(meteredChannel);
  }

  @TearDown
  public void tearDown() {
    plainChannel.shutdownNow();
    meteredChannel.shutdownNow();
    plain.shutdownNow();
    metered.shutdownNow();
    registry.close();
  }

  @Benchmark
  public HealthCheckResponse withoutMeters() {
    return plainStub.check(request);
  }

  @Benchmark
  public HealthCheckResponse withMeters() {
    return meteredStub.check(request);
  }
}

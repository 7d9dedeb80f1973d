package io.modelgate.bench.jmh;

import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.StickyRouting;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
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

/** The router's pick per request: default, pinned, weighted (alias method) and sticky (rendezvous). */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class RoutingBenchmark {
  private Path root;
  private ModelRepository repository;
  private Route defaultRoute;
  private Route weighted;
  private Route sticky;
  private final ModelInferRequest plain = ModelInferRequest.newBuilder().setModelName("m").build();
  private final ModelInferRequest pinned =
      ModelInferRequest.newBuilder().setModelName("m").setModelVersion("2").build();
  private final ModelInferRequest keyed =
      ModelInferRequest.newBuilder()
          .setModelName("m")
          .putParameters("user", InferParameter.newBuilder().setStringParam("user-12345").build())
          .build();

  @Setup
  public void setUp() throws Exception {
    root = Files.createTempDirectory("modelgate-jmh-routing-");
    byte[] identity =
        OnnxGraphBuilder.create("identity", 17)
            .input("x", OnnxGraphBuilder.FLOAT, -1, 4)
            .output("y", OnnxGraphBuilder.FLOAT, -1, 4)
            .node("Identity", List.of("x"), List.of("y"))
            .build();
    for (int version = 1; version <= 3; version++) {
      Path dir = Files.createDirectories(root.resolve("m").resolve(Integer.toString(version)));
      Files.write(dir.resolve("model.onnx"), identity);
    }
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
    Router router = new Router(repository);
    defaultRoute = router.route("m");
    RoutingPolicy policy =
        RoutingPolicy.newBuilder().setModel("m").setRevision(1).putWeights(1, 80).putWeights(2, 15).putWeights(3, 5).build();
    weighted = router.compile(policy);
    sticky = router.compile(policy.toBuilder().setSticky(StickyRouting.newBuilder().setParameter("user")).build());
  }

  @TearDown
  public void tearDown() throws Exception {
    repository.close(Duration.ofSeconds(5));
    try (var paths = Files.walk(root)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  @Benchmark
  public Object defaultHighestReady() {
    return defaultRoute.select(plain);
  }

  @Benchmark
  public Object pinnedVersion() {
    return weighted.select(pinned);
  }

  @Benchmark
  public Object weightedThreeVersions() {
    return weighted.select(plain);
  }

  @Benchmark
  public Object stickyByParameter() {
    return sticky.select(keyed);
  }
}

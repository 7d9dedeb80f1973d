package io.modelgate.bench;

import io.grpc.ManagedChannel;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.ShadowRouting;
import io.modelgate.proto.admin.v1.StickyRouting;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * What routing costs end to end: the same model and load, with requests pinned to a version (the
 * baseline), left to the default, split by weights, kept by a sticky key, and split with a shadow
 * copy. Statistics are recorded in every scenario, as in production. Scenarios interleave over
 * rounds in one gateway.
 */
@Command(
    name = "routing",
    mixinStandardHelpOptions = true,
    description = "End-to-end cost of routing (and shadow traffic) against requests pinned to a version.")
final class RoutingCostBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", defaultValue = "cnn_mnist") String model;
  @Option(names = "--concurrency", defaultValue = "16") int concurrency;
  @Option(names = "--connections", defaultValue = "2") int connections;
  @Option(names = "--duration", defaultValue = "8") int durationSeconds;
  @Option(names = "--warmup", defaultValue = "6") int warmupSeconds;
  @Option(names = "--rounds", defaultValue = "3") int rounds;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    BenchModels.BenchModel bench = BenchModels.byName(model);
    Path root = Files.createTempDirectory("modelgate-bench-routing-");
    for (int version = 1; version <= 2; version++) {
      Path dir = Files.createDirectories(root.resolve("m").resolve(Integer.toString(version)));
      Files.write(dir.resolve("model.onnx"), bench.onnx());
    }
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    ModelRepository repository =
        ModelRepository.load(
            root, new ModelSettings(null, new SessionSettings(1, 1), new SchedulerSettings(1024, 1)), stats);
    GatewayServer server =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, 64 << 20, 1, Duration.ofSeconds(10)),
            new AdminSettings("127.0.0.1", 0, java.util.UUID.randomUUID().toString(), null, "127.0.0.1", -1,
                root.resolve(".state")),
            repository,
            stats);
    List<ManagedChannel> channels = io.modelgate.bench.load.ClientChannels.open("127.0.0.1:" + server.port(), connections);
    ModelInferRequest base = bench.request("m");
    ModelInferRequest pinned = base.toBuilder().setModelVersion("1").build();
    ModelInferRequest keyed =
        base.toBuilder().putParameters("user", InferParameter.newBuilder().setStringParam("user-42").build()).build();
    // The first three serve everything from version 1, so that only the routing code differs; the
    // last two split traffic over both versions, as a canary does.
    RoutingPolicy onlyOne = RoutingPolicy.newBuilder().setModel("m").putWeights(1, 100).putWeights(2, 0).build();
    RoutingPolicy split = RoutingPolicy.newBuilder().setModel("m").putWeights(1, 90).putWeights(2, 10).build();
    Map<String, Scenario> scenarios = new LinkedHashMap<>();
    scenarios.put("pinned v1 (baseline)", new Scenario(pinned, onlyOne));
    scenarios.put("weighted pick, v1 100%", new Scenario(base, onlyOne));
    scenarios.put("sticky pick, v1 100%", new Scenario(keyed,
        onlyOne.toBuilder().setSticky(StickyRouting.newBuilder().setParameter("user")).build()));
    scenarios.put("canary split 90/10", new Scenario(base, split));
    scenarios.put("canary 90/10 + 10% shadow", new Scenario(base,
        split.toBuilder().setShadow(ShadowRouting.newBuilder().setVersion(2).setSampleRate(0.1)).build()));
    Map<String, List<LoadGenerator.Result>> results = new LinkedHashMap<>();
    try {
      out.printf("routing cost: model %s, %d callers over %d connections, %d s warm-up + %d s, %d rounds%n",
          model, concurrency, connections, warmupSeconds, durationSeconds, rounds);
      out.flush();
      for (int round = 1; round <= rounds; round++) {
        for (Map.Entry<String, Scenario> entry : scenarios.entrySet()) {
          Scenario scenario = entry.getValue();
          if (scenario.policy() != null) {
            long revision = server.router().route("m").policy().getRevision();
            server.control().set(scenario.policy(), revision, "bench", "SetRouting", entry.getKey());
          }
          LoadGenerator.Result result =
              new LoadGenerator(channels, scenario.request())
                  .run(LoadGenerator.Options.closed(concurrency, false, Duration.ofSeconds(warmupSeconds),
                      Duration.ofSeconds(durationSeconds)), line -> {});
          results.computeIfAbsent(entry.getKey(), k -> new ArrayList<>()).add(result);
          out.printf("  round %d %-30s %8.0f calls/s  p50 %.3f ms  p99 %.3f ms  errors %s%n", round, entry.getKey(),
              result.throughput(), result.latencyMicros().getValueAtPercentile(50) / 1000.0,
              result.latencyMicros().getValueAtPercentile(99) / 1000.0, result.errors());
          out.flush();
        }
      }
    } finally {
      for (ManagedChannel channel : channels) {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }
      server.stop();
      stats.close();
      try (var paths = Files.walk(root)) {
        paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
    ScenarioTable.print(out, results, "pinned");
    return 0;
  }

  private record Scenario(ModelInferRequest request, RoutingPolicy policy) {}
}

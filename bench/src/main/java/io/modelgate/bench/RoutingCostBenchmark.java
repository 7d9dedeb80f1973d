package io.modelgate.bench;

import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.ShadowRouting;
import io.modelgate.proto.admin.v1.StickyRouting;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
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

  @Option(names = "--model", defaultValue = "cnn_mnist", description = "The model: mlp, mlp_large, cnn_mnist or minilm. Default: ${DEFAULT-VALUE}.") String model;
  @Option(names = "--concurrency", defaultValue = "16", description = "Closed-loop callers. Default: ${DEFAULT-VALUE}.") int concurrency;
  @Option(names = "--connections", defaultValue = "2", description = "HTTP/2 connections they share. Default: ${DEFAULT-VALUE}.") int connections;
  @Option(names = "--duration", defaultValue = "8", description = "Seconds measured, per scenario and round. Default: ${DEFAULT-VALUE}.") int durationSeconds;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;
  @Option(names = "--warmup", defaultValue = "6", description = "Seconds of unrecorded load before each measurement. Default: ${DEFAULT-VALUE}.") int warmupSeconds;
  @Option(names = "--rounds", defaultValue = "3", description = "Rounds, each running every scenario once, in turn. Default: ${DEFAULT-VALUE}.") int rounds;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    BenchModels.BenchModel bench = BenchModels.byName(model);
    Path root = Files.createTempDirectory("modelgate-bench-routing-");
    for (int version = 1; version <= 2; version++) {
      Path dir = Files.createDirectories(root.resolve("m").resolve(Integer.toString(version)));
      Files.write(dir.resolve("model.onnx"), bench.onnx());
    }
    BenchGateway gateway = BenchGateway.start(root, connections, false);
    GatewayServer server = gateway.server();
    io.modelgate.bench.load.Connections channels = gateway.channels();
    ModelInferRequest base = bench.request("m");
    ModelInferRequest pinned = base.toBuilder().setModelVersion("1").build();
    ModelInferRequest keyed =
        base.toBuilder().putParameters("user", InferParameter.newBuilder().setStringParam("user-42").build()).build();
    // The first three serve everything from version 1, so that only the routing code differs; the
    // fourth splits traffic over both versions, as a canary does; the last copies 10% of version
    // 1's traffic to version 2 as a shadow (a shadow takes no live traffic).
    RoutingPolicy onlyOne = RoutingPolicy.newBuilder().setModel("m").putWeights(1, 100).putWeights(2, 0).build();
    RoutingPolicy split = RoutingPolicy.newBuilder().setModel("m").putWeights(1, 90).putWeights(2, 10).build();
    Map<String, Scenario> scenarios = new LinkedHashMap<>();
    scenarios.put("pinned v1 (baseline)", new Scenario(pinned, onlyOne));
    scenarios.put("weighted pick, v1 100%", new Scenario(base, onlyOne));
    scenarios.put("sticky pick, v1 100%", new Scenario(keyed,
        onlyOne.toBuilder().setSticky(StickyRouting.newBuilder().setParameter("user")).build()));
    scenarios.put("canary split 90/10", new Scenario(base, split));
    scenarios.put("v1 100% + 10% shadow to v2", new Scenario(base,
        onlyOne.toBuilder().setShadow(ShadowRouting.newBuilder().setVersion(2).setSampleRate(0.1)).build()));
    Map<String, List<LoadGenerator.Result>> results = new LinkedHashMap<>();
    try {
      out.printf("routing cost: model %s, %d callers over %d connections, %d s warm-up + %d s, %d rounds%n",
          model, concurrency, connections, warmupSeconds, durationSeconds, rounds);
      out.flush();
      jitSettle.settle(() -> {
        for (Map.Entry<String, Scenario> entry : scenarios.entrySet()) {
          route(server, entry.getKey(), entry.getValue());
          new LoadGenerator(channels, entry.getValue().request())
              .run(LoadGenerator.Options.closed(concurrency, false, Duration.ofSeconds(1), Duration.ZERO), line -> {});
        }
      }, out);
      for (int round = 1; round <= rounds; round++) {
        for (Map.Entry<String, Scenario> entry : scenarios.entrySet()) {
          Scenario scenario = entry.getValue();
          route(server, entry.getKey(), scenario);
          LoadGenerator.Result result =
              new LoadGenerator(channels, scenario.request())
                  .run(LoadGenerator.Options.closed(concurrency, false, Duration.ofSeconds(warmupSeconds),
                      Duration.ofSeconds(durationSeconds)), line -> {});
          results.computeIfAbsent(entry.getKey(), k -> new ArrayList<>()).add(result);
          ScenarioTable.printRound(out, round, entry.getKey(), result);
        }
      }
    } finally {
      gateway.close();
    }
    ScenarioTable.print(out, results, "pinned");
    return 0;
  }

  /** Sets the scenario's routing policy, when it has one. */
  private static void route(GatewayServer server, String name, Scenario scenario) {
    if (scenario.policy() != null) {
      long revision = server.router().route("m").policy().getRevision();
      server.control().set(scenario.policy(), revision, "bench", "SetRouting", name);
    }
  }

  private record Scenario(ModelInferRequest request, RoutingPolicy policy) {}
}

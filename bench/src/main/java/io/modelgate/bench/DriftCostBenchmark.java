package io.modelgate.bench;

import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.proto.admin.v1.VersionDrift;
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
 * What drift profiling costs end to end: one gateway serving the same model twice, once without
 * drift (the baseline) and once profiling a share of its requests; the scenarios interleave over
 * rounds, so that both see the same machine. Reports throughput and p99 as ratios, and how many
 * sampled requests the profiler dropped (a profiler that drops costs less and sees less).
 */
@Command(
    name = "drift",
    mixinStandardHelpOptions = true,
    description = "End-to-end cost of drift profiling, against the same model without it.")
final class DriftCostBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @picocli.CommandLine.Mixin ClosedLoopRounds load;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;

  @Option(names = "--sample-rates", split = ",", defaultValue = "1.0,0.1",
      description = "The drift.sample_rate of each profiled scenario. Default: ${DEFAULT-VALUE}.")
  List<Double> sampleRates;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    BenchModels.BenchModel bench = BenchModels.byName(load.model);
    Path root = Files.createTempDirectory("modelgate-bench-drift-");
    Map<String, String> models = new LinkedHashMap<>();
    models.put("drift off (baseline)", "off");
    for (int i = 0; i < sampleRates.size(); i++) {
      models.put(String.format("drift on, sample_rate %s", sampleRates.get(i)), "on" + i);
    }
    for (String name : models.values()) {
      Path dir = Files.createDirectories(root.resolve(name).resolve("1"));
      Files.write(dir.resolve("model.onnx"), bench.onnx());
      if (name.startsWith("on")) {
        double rate = sampleRates.get(Integer.parseInt(name.substring(2)));
        Files.writeString(root.resolve(name).resolve("model.yaml"),
            "drift:\n  sample_rate: " + rate + "\n  reference: requests\n  window: 1m\n");
      }
    }
    BenchGateway gateway = BenchGateway.start(root, load.connections, true);
    GatewayServer server = gateway.server();
    io.modelgate.bench.load.Connections channels = gateway.channels();
    Map<String, List<LoadGenerator.Result>> results;
    try {
      out.printf("drift cost: model %s, %d callers over %d connections, %d s JIT warm-up, then %d rounds of %d s warm-up + %d s"
          + " per scenario, in rotating order%n", load.model, load.concurrency, load.connections, load.jitWarmupSeconds,
          load.rounds, load.warmupSeconds, load.durationSeconds);
      out.flush();
      long processStart = ((com.sun.management.OperatingSystemMXBean)
          java.lang.management.ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
      List<Map.Entry<String, String>> order = new ArrayList<>(models.entrySet());
      for (Map.Entry<String, String> entry : order) {
        new LoadGenerator(channels, bench.request(entry.getValue()))
            .run(LoadGenerator.Options.closed(load.concurrency, false, Duration.ZERO,
                Duration.ofSeconds(Math.max(1, load.jitWarmupSeconds / order.size()))), line -> {});
      }
      jitSettle.settle(() -> {
        for (Map.Entry<String, String> entry : order) {
          new LoadGenerator(channels, bench.request(entry.getValue()))
              .run(LoadGenerator.Options.closed(load.concurrency, false, Duration.ofSeconds(1), Duration.ZERO), line -> {});
        }
      }, out);
      Map<String, ClosedLoopRounds.Scenario> scenarios = new LinkedHashMap<>();
      for (Map.Entry<String, String> entry : models.entrySet()) {
        ModelInferRequest request = bench.request(entry.getValue());
        scenarios.put(entry.getKey(), options -> new LoadGenerator(channels, request).run(options, line -> {}));
      }
      results = load.rounds(out, scenarios);
      server.drift().flush().get(30, TimeUnit.SECONDS);
      long profilerNanos = profilerCpuNanos();
      long processNanos = ((com.sun.management.OperatingSystemMXBean)
          java.lang.management.ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime() - processStart;
      long profiledTotal = 0;
      for (Map.Entry<String, String> entry : models.entrySet()) {
        if (entry.getValue().startsWith("on")) {
          profiledTotal += server.drift().report(entry.getValue(), 1).get(30, TimeUnit.SECONDS).getVersions(0).getProfiled();
        }
      }
      out.printf("  profiler thread CPU: %.2f s in all, %.2f us per profiled request, %.2f%% of the process's CPU"
          + " (server and load generator)%n", profilerNanos / 1e9, profilerNanos / 1e3 / Math.max(1, profiledTotal),
          100.0 * profilerNanos / Math.max(1, processNanos));
      for (Map.Entry<String, String> entry : models.entrySet()) {
        if (entry.getValue().startsWith("on")) {
          VersionDrift drift = server.drift().report(entry.getValue(), 1).get(30, TimeUnit.SECONDS).getVersions(0);
          out.printf("  %s: %d requests profiled, %d dropped, %d features, reference %s%n", entry.getKey(),
              drift.getProfiled(), drift.getDropped(), drift.getFeaturesCount(), drift.getReference());
        }
      }
    } finally {
      gateway.close();
    }
    ScenarioTable.print(out, results, "off");
    return 0;
  }

  /** CPU time of the drift profiler's thread so far. */
  private static long profilerCpuNanos() {
    java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
    for (Thread thread : Thread.getAllStackTraces().keySet()) {
      if (thread.getName().equals("modelgate-drift")) {
        return threads.getThreadCpuTime(thread.getId());
      }
    }
    return 0;
  }
}

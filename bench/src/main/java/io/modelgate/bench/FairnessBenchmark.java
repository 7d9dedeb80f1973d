package io.modelgate.bench;

import io.modelgate.bench.load.Connections;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Fair admission under a flood: one version, two tenants of a callers file. Measures the
 * version's capacity (closed loop), then a small tenant alone at a tenth of it (open loop), then
 * the same small tenant while a big one floods with many callers; reports the small tenant's
 * latency and refusals in both, and the flood's served and refused requests.
 */
@Command(
    name = "fairness",
    mixinStandardHelpOptions = true,
    description = "A small tenant's latency and refusals alone and under another tenant's flood (fair admission).")
final class FairnessBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", defaultValue = "cnn_mnist") String model;
  @Option(names = "--flood-callers", defaultValue = "512", description = "Closed-loop callers of the flooding tenant.") int floodCallers;
  @Option(names = "--flood-rows", defaultValue = "1", description = "Rows in each of the flood's requests.") int floodRows;
  @Option(names = "--small-share", defaultValue = "0.1", description = "The small tenant's rate, as a share of capacity.") double smallShare;
  @Option(names = "--duration", defaultValue = "10") int durationSeconds;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;
  @Option(names = "--warmup", defaultValue = "5") int warmupSeconds;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    BenchModels.BenchModel bench = BenchModels.byName(model);
    Path root = Files.createTempDirectory("modelgate-bench-fairness-");
    Path dir = Files.createDirectories(root.resolve("m").resolve("1"));
    Files.write(dir.resolve("model.onnx"), bench.onnx());
    String big = "mgk_bench-big-" + java.util.UUID.randomUUID();
    String small = "mgk_bench-small-" + java.util.UUID.randomUUID();
    String quiet = "mgk_bench-quiet-" + java.util.UUID.randomUUID();
    // Two tenants alike at the small rate, one alone and one under the flood, so that the server's
    // per-tenant latency of each run is its own.
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n  big:\n    api_keys: [" + CallerPolicy.hash(big) + "]\n"
        + "  small:\n    api_keys: [" + CallerPolicy.hash(small) + "]\n"
        + "  quiet:\n    api_keys: [" + CallerPolicy.hash(quiet) + "]\n");
    ModelInferRequest request = bench.request("m");
    Duration warmup = Duration.ofSeconds(warmupSeconds);
    Duration duration = Duration.ofSeconds(durationSeconds);
    try (BenchGateway gateway = BenchGateway.start(root, 2, true, root.resolve("callers.yaml"))) {
      String target = "127.0.0.1:" + gateway.server().port();
      Connections bigChannels = Connections.open(target, 2, big);
      Connections smallChannels = Connections.open(target, 1, small);
      Connections quietChannels = Connections.open(target, 1, quiet);
      try {
        LoadGenerator capacityLoad = new LoadGenerator(bigChannels, request);
        jitSettle.settle(
            () -> capacityLoad.run(LoadGenerator.Options.closed(64, false, Duration.ofSeconds(1), Duration.ZERO), line -> {}),
            out);
        LoadGenerator.Result capacity = capacityLoad.run(LoadGenerator.Options.closed(64, false, warmup, duration), line -> {});
        double rate = capacity.throughput() * smallShare;
        out.printf("fairness: model %s, capacity %.0f calls/s (64 closed-loop callers), small tenant at %.0f calls/s, flood of %d callers sending %d row(s) a request%n",
            model, capacity.throughput(), rate, floodCallers, floodRows);
        LoadGenerator.Result alone = new LoadGenerator(smallChannels, request)
            .run(LoadGenerator.Options.open(rate, false, warmup, duration), line -> {});
        CompletableFuture<LoadGenerator.Result> flood = CompletableFuture.supplyAsync(() -> {
          try {
            return new LoadGenerator(bigChannels, floodRows == 1 ? request : bench.batchRequest("m", floodRows))
                .run(LoadGenerator.Options.closed(floodCallers, false, Duration.ZERO, warmup.plus(duration).plusSeconds(2)).backingOff(), line -> {});
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
        });
        Thread.sleep(1000);
        var before = gateway.stats().find("m", 1).statistics();
        LoadGenerator.Result under = new LoadGenerator(quietChannels, request)
            .run(LoadGenerator.Options.open(rate, false, warmup, duration), line -> {});
        var after = gateway.stats().find("m", 1).statistics();
        LoadGenerator.Result flooded = flood.get(5, TimeUnit.MINUTES);
        out.println();
        out.println("| run | tenant | calls/s | p50 ms | p99 ms | p99.9 ms | errors | server p50 ms | server p99 ms |");
        out.println("|---|---|---|---|---|---|---|---|---|");
        var usage = gateway.server().usage();
        row(out, "capacity", "big, 64 callers", capacity, null, null);
        row(out, "alone", "small", alone, usage, "small");
        row(out, "under the flood", "quiet (as small)", under, usage, "quiet");
        row(out, "under the flood", "big, " + floodCallers + " callers", flooded, null, null);
        out.printf("%nsmall tenant's p99 under the flood / alone: %.2f at the client, %.2f at the server%n",
            under.latencyMicros().getValueAtPercentile(99) / (double) Math.max(1, alone.latencyMicros().getValueAtPercentile(99)),
            usage.latency("quiet", "m", "1", 0.99) / Math.max(1e-9, usage.latency("small", "m", "1", 0.99)));
        long executions = after.getExecutionCount() - before.getExecutionCount();
        long rows = after.getInferenceCount() - before.getInferenceCount();
        // compute_infer, as in Triton, counts every request with its whole batch's run: its ns over
        // its count is the run a request waited through, on average.
        double computeNanos = after.getInferenceStats().getComputeInfer().getNs() - before.getInferenceStats().getComputeInfer().getNs();
        long requests = after.getInferenceStats().getComputeInfer().getCount() - before.getInferenceStats().getComputeInfer().getCount();
        out.printf("during the flood: %d executions of %.1f rows on average; a request's batch ran %.3f ms on average%n",
            executions, rows / (double) Math.max(1, executions), computeNanos / Math.max(1, requests) / 1e6);
        out.flush();
      } finally {
        bigChannels.close();
        smallChannels.close();
        quietChannels.close();
      }
    }
    return 0;
  }

  private static void row(PrintWriter out, String run, String tenant, LoadGenerator.Result r,
      io.modelgate.gateway.usage.Usage usage, String server) {
    out.printf("| %s | %s | %.0f | %.3f | %.3f | %.3f | %s | %s | %s |%n", run, tenant, r.throughput(),
        r.latencyMicros().getValueAtPercentile(50) / 1000.0, r.latencyMicros().getValueAtPercentile(99) / 1000.0,
        r.latencyMicros().getValueAtPercentile(99.9) / 1000.0, r.errors(),
        server == null ? "" : String.format("%.3f", usage.latency(server, "m", "1", 0.5) * 1000),
        server == null ? "" : String.format("%.3f", usage.latency(server, "m", "1", 0.99) * 1000));
  }
}

package io.modelgate.bench;

import io.modelgate.bench.load.Connections;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.bench.load.Reports;
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

  @Option(names = "--model", defaultValue = "cnn_mnist", description = "The model: mlp, mlp_large, cnn_mnist or minilm. Default: ${DEFAULT-VALUE}.") String model;
  @Option(names = "--flood-callers", defaultValue = "512", description = "Closed-loop callers of the flooding tenant. Default: ${DEFAULT-VALUE}.") int floodCallers;
  @Option(names = "--flood-rows", defaultValue = "1", description = "Rows in each of the flood's requests. Default: ${DEFAULT-VALUE}.") int floodRows;
  @Option(names = "--small-share", defaultValue = "0.1", description = "The small tenant's rate, as a share of capacity. Default: ${DEFAULT-VALUE}.") double smallShare;
  @Option(names = "--duration", defaultValue = "10", description = "Seconds measured, alone and under the flood. Default: ${DEFAULT-VALUE}.") int durationSeconds;
  @Option(names = "--flood-process", negatable = true, defaultValue = "true", fallbackValue = "true",
      description = "Run the flood's load generator in a JVM of its own (the default), as a flood from other"
          + " machines would be; --no-flood-process runs it in this JVM, sharing the client's event loop and the"
          + " heap with the measured tenant's client and the server.")
  boolean floodProcess;
  @Option(names = "--flood-nice", defaultValue = "0",
      description = "With --flood-process: run the flood under nice -n N (Linux), so that on a small machine its"
          + " client takes the cores only when the server and the measured tenant leave them. Default: ${DEFAULT-VALUE}.")
  int floodNice;
  @Option(names = "--flood-cpus", paramLabel = "LIST",
      description = "With --flood-process: run the flood's JVM on these CPUs (a taskset -c list, Linux), e.g. 8-15;"
          + " run this benchmark itself under taskset -c on others (0-7), so that the server and the measured"
          + " tenant's light client have cores the flood's client does not use, as with a flood from other machines."
          + " Default: the CPUs of this JVM.")
  String floodCpus;
  @Option(names = "--flood-connections", defaultValue = "2",
      description = "Connections of the flood's load generator. Default: ${DEFAULT-VALUE}.") int floodConnections;
  @Option(names = "--event-loops", defaultValue = "1",
      description = "The server's event loops (serve --event-loop-threads). Default: ${DEFAULT-VALUE}.") int eventLoops;
  @Option(names = "--instances", defaultValue = "1", description = "Executors of the version. Default: ${DEFAULT-VALUE}.") int instances;
  @Option(names = "--reserved-instances", defaultValue = "0",
      description = "Executors kept for tenants without a backlog (model.yaml reserved_instances). Default: ${DEFAULT-VALUE}.")
  int reservedInstances;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;
  @Option(names = "--warmup", defaultValue = "5", description = "Seconds of unrecorded load before each measurement. Default: ${DEFAULT-VALUE}.") int warmupSeconds;

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
    String warm = "mgk_bench-warm-" + java.util.UUID.randomUUID();
    // Two tenants alike at the small rate, one alone and one under the flood, so that the server's
    // per-tenant latency of each run is its own.
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n  big:\n    api_keys: [" + CallerPolicy.hash(big) + "]\n"
        + "  small:\n    api_keys: [" + CallerPolicy.hash(small) + "]\n"
        + "  quiet:\n    api_keys: [" + CallerPolicy.hash(quiet) + "]\n"
        + "  warm:\n    api_keys: [" + CallerPolicy.hash(warm) + "]\n");
    ModelInferRequest request = bench.request("m");
    Duration warmup = Duration.ofSeconds(warmupSeconds);
    Duration duration = Duration.ofSeconds(durationSeconds);
    if (floodNice < 0 || floodNice > 19) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--flood-nice " + floodNice + " (expected: 0 to 19)");
    }
    if (floodCpus != null && (!floodProcess || !floodCpus.matches("[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*"))) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--flood-cpus " + floodCpus
          + " (expected: a CPU list such as 8-15 or 2,3, with --flood-process)");
    }
    if (floodConnections < 1 || eventLoops < 1) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--flood-connections " + floodConnections
          + ", --event-loops " + eventLoops + " (expected: 1 or more each)");
    }
    io.modelgate.runtime.execution.SchedulerSettings scheduler;
    try {
      scheduler = new io.modelgate.runtime.execution.SchedulerSettings(1024, instances, 0, List.of(), reservedInstances);
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--instances " + instances
          + ", --reserved-instances " + reservedInstances + ": " + e.getMessage());
    }
    try (BenchGateway gateway = BenchGateway.start(root, 2, true, root.resolve("callers.yaml"), scheduler, eventLoops)) {
      String target = "127.0.0.1:" + gateway.server().port();
      Connections bigChannels = Connections.open(target, 2, big);
      Connections smallChannels = Connections.open(target, 1, small);
      Connections quietChannels = Connections.open(target, 1, quiet);
      Connections warmChannels = Connections.open(target, 1, warm);
      FloodProcess floodChild = null;
      try {
        LoadGenerator capacityLoad = new LoadGenerator(bigChannels, request);
        jitSettle.settle(
            () -> capacityLoad.run(LoadGenerator.Options.closed(64, false, Duration.ofSeconds(1), Duration.ZERO), line -> {}),
            out);
        LoadGenerator.Result capacity = capacityLoad.run(LoadGenerator.Options.closed(64, false, warmup, duration), line -> {});
        double rate = capacity.throughput() * smallShare;
        out.printf("fairness: model %s (%d executor(s), %d reserved, %d event loop(s)), capacity %.0f calls/s (64 closed-loop callers), small tenant at %.0f calls/s, flood of %d callers sending %d row(s) a request, %s; server and measured tenant on CPUs %s%n",
            model, instances, reservedInstances, eventLoops, capacity.throughput(), rate, floodCallers, floodRows,
            !floodProcess ? "from this JVM" : "from a JVM of its own" + (floodNice > 0 ? " under nice -n " + floodNice : "")
                + (floodCpus != null ? " on CPUs " + floodCpus : ""),
            allowedCpus());
        ModelInferRequest floodRequest = floodRows == 1 ? request : bench.batchRequest("m", floodRows);
        // The flood takes paths the capacity run did not (refusals, lanes, the light tenant's own
        // batches): the JIT settles on them too before anything is measured.
        LoadGenerator settleFlood = new LoadGenerator(bigChannels, floodRequest);
        LoadGenerator settleQuiet = new LoadGenerator(warmChannels, request); // a tenant of its own: no figure counts it
        jitSettle.settle(() -> {
          CompletableFuture<LoadGenerator.Result> slice = OwnThread.supply("fairness-settle-flood", () ->
              settleFlood.run(LoadGenerator.Options.closed(floodCallers, false, Duration.ofSeconds(1), Duration.ZERO).backingOff(), line -> {}));
          try {
            settleQuiet.run(LoadGenerator.Options.open(rate, false, Duration.ofSeconds(1), Duration.ZERO), line -> {});
            slice.join();
          } catch (InterruptedException e) {
            throw e;
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
        }, out);
        ServerThreads threadsBeforeAlone = ServerThreads.read(gateway.stats().prometheus());
        LoadGenerator.Result alone = new LoadGenerator(smallChannels, request)
            .run(LoadGenerator.Options.open(rate, false, warmup, duration), line -> {});
        ServerThreads threadsAfterAlone = ServerThreads.read(gateway.stats().prometheus());
        // The flood outlasts the measured tenant's run, which starts once the flood floods (and,
        // from its own JVM, has settled its JIT): by a margin, and in this JVM by its first second.
        Duration floodLength = warmup.plus(duration).plusSeconds(floodProcess ? 5 : 1 + 2);
        CompletableFuture<LoadGenerator.Result> flood = null;
        if (floodProcess) {
          floodChild = FloodProcess.start(root, target, big, floodRequest, floodCallers, floodConnections,
              (int) floodLength.toSeconds(), jitSettle.seconds, floodNice, floodCpus); // returns flooding, its JIT settled
          if (jitSettle.enabled()) {
            out.printf("  the flood's load generator: %s%n", floodChild.settling());
            out.flush();
          }
        } else {
          flood = OwnThread.supply("fairness-flood", () -> new LoadGenerator(bigChannels, floodRequest)
              .run(LoadGenerator.Options.closed(floodCallers, false, Duration.ZERO, floodLength).backingOff(), line -> {}));
          Thread.sleep(1000);
        }
        var before = gateway.stats().find("m", 1).statistics();
        ServerThreads threadsBeforeUnder = ServerThreads.read(gateway.stats().prometheus());
        LoadGenerator.Result under = new LoadGenerator(quietChannels, request)
            .run(LoadGenerator.Options.open(rate, false, warmup, duration), line -> {});
        ServerThreads threadsAfterUnder = ServerThreads.read(gateway.stats().prometheus());
        var after = gateway.stats().find("m", 1).statistics();
        Reports.Summary flooded;
        if (floodChild != null) {
          flooded = floodChild.finish(Duration.ofMinutes(2));
        } else {
          flooded = Reports.summarize("flood", "", flood.get(5, TimeUnit.MINUTES));
        }
        out.println();
        out.println("| run | tenant | calls/s | p50 ms | p99 ms | p99.9 ms | errors | server p50 ms | server p99 ms |");
        out.println("|---|---|---|---|---|---|---|---|---|");
        var usage = gateway.server().usage();
        row(out, "capacity", "big, 64 callers", Reports.summarize("capacity", "", capacity), null, null);
        row(out, "alone", "small", Reports.summarize("alone", "", alone), usage, "small");
        row(out, "under the flood", "quiet (as small)", Reports.summarize("quiet", "", under), usage, "quiet");
        row(out, "under the flood", "big, " + floodCallers + " callers", flooded, null, null);
        out.printf("%nsmall tenant's p99 under the flood / alone: %.2f at the client, %.2f at the server%n",
            under.latencyMicros().getValueAtPercentile(99) / (double) Math.max(1, alone.latencyMicros().getValueAtPercentile(99)),
            usage.latency("quiet", "m", "1", 0.99) / Math.max(1e-9, usage.latency("small", "m", "1", 0.99)));
        // The machine's own stalls while the small tenant was measured (its load generator's 1 ms
        // sleeper): on cores the flood saturates, a quiet request waits for a core as that thread does.
        out.printf("stalls of the machine while the small tenant was measured (a thread sleeping 1 ms, how late it woke):"
                + " alone p99 %.3f ms, max %.3f ms%s; under the flood p99 %.3f ms, max %.3f ms%s%n",
            alone.hiccupMicros().getValueAtPercentile(99) / 1000.0, alone.hiccupMicros().getMaxValue() / 1000.0,
            Reports.stallsSplit(Reports.summarize("alone", "", alone)),
            under.hiccupMicros().getValueAtPercentile(99) / 1000.0, under.hiccupMicros().getMaxValue() / 1000.0,
            Reports.stallsSplit(Reports.summarize("quiet", "", under)));
        // The server's own threads over the same runs (its scrape's counters): under the flood its
        // event loop and model threads wait for a core as the sleeper does.
        out.printf("the server's threads during the small tenant's run alone: %s%n",
            ServerThreads.between(threadsBeforeAlone, threadsAfterAlone));
        out.printf("the server's threads during the small tenant's run under the flood: %s%n",
            ServerThreads.between(threadsBeforeUnder, threadsAfterUnder));
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
        warmChannels.close();
        if (floodChild != null) {
          floodChild.close(); // ended already, unless this run failed first
        }
      }
    }
    return 0;
  }

  /** The CPUs this JVM may run on (Linux: its Cpus_allowed_list), or how many where that is not known. */
  static String allowedCpus() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("Cpus_allowed_list:")) {
          return line.substring(line.indexOf(':') + 1).trim();
        }
      }
    } catch (java.io.IOException | RuntimeException e) {
      // not Linux: say how many
    }
    return "(" + Runtime.getRuntime().availableProcessors() + ")";
  }

  private static void row(PrintWriter out, String run, String tenant, Reports.Summary r,
      io.modelgate.gateway.usage.Usage usage, String server) {
    out.printf("| %s | %s | %.0f | %.3f | %.3f | %.3f | %s | %s | %s |%n", run, tenant, r.throughput(),
        r.p50Ms(), r.p99Ms(), r.p999Ms(), r.errors(),
        server == null ? "" : String.format("%.3f", usage.latency(server, "m", "1", 0.5) * 1000),
        server == null ? "" : String.format("%.3f", usage.latency(server, "m", "1", 0.99) * 1000));
  }
}

package io.modelgate.bench;

import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.admin.v1.Distribution;
import io.modelgate.proto.admin.v1.WindowStats;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Batching on against batching off, in the same run and the same process: one gateway on loopback
 * serves each model twice (as {@code <model>_batched} with {@code max_batch_size} and {@code
 * max_queue_delay_us}, and as {@code <model>_unbatched} with {@code max_batch_size: 0}), and a
 * closed loop of callers drives each in turn. In-process ONNX Runtime times at batch 1 and at the
 * batch sizes the batcher formed are measured in the same run.
 */
@Command(
    name = "batching",
    mixinStandardHelpOptions = true,
    description = "Dynamic batching on vs off through the gateway, with in-process ONNX Runtime baselines.")
final class BatchingBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--models", split = ",", defaultValue = "mlp,cnn_mnist", description = "Models: mlp, cnn_mnist. Default: ${DEFAULT-VALUE}.")
  List<String> models;

  @Option(names = "--concurrency", defaultValue = "64", description = "Callers, each with one call in flight. Default: ${DEFAULT-VALUE}.")
  int concurrency;

  @Option(names = "--connections", defaultValue = "4", description = "HTTP/2 connections the callers share. Default: ${DEFAULT-VALUE}.")
  int connections;

  @Option(names = "--duration", defaultValue = "10", description = "Seconds measured per scenario. Default: ${DEFAULT-VALUE}.")
  int durationSeconds;

  @picocli.CommandLine.Mixin JitSettleOption jitSettle;

  @Option(names = "--warmup", defaultValue = "5", description = "Seconds of unrecorded load before each scenario. Default: ${DEFAULT-VALUE}.")
  int warmupSeconds;

  @Option(names = "--rounds", defaultValue = "2", description = "Times each off/on pair runs, interleaved. Default: ${DEFAULT-VALUE}.")
  int rounds;

  @Option(names = "--max-batch-size", defaultValue = "64", description = "max_batch_size of the batched versions. Default: ${DEFAULT-VALUE}.")
  int maxBatchSize;

  @Option(names = "--max-queue-delay-us", defaultValue = "500", description = "max_queue_delay_us of the batched versions. Default: ${DEFAULT-VALUE}.")
  long maxQueueDelayMicros;

  @Option(names = "--intra-op-threads", defaultValue = "1", description = "ONNX Runtime intra-op threads. Default: ${DEFAULT-VALUE}.")
  int intraOpThreads;

  @Option(names = "--event-loop-threads", defaultValue = "1", description = "Server event loops. Default: ${DEFAULT-VALUE}.")
  int eventLoopThreads;

  @Option(names = "--out", description = "Folder for the Markdown summary and .hgrm latency files.")
  Path out;

  record Row(
      String model,
      String batching,
      int round,
      LoadGenerator.Result result,
      Distribution rows,
      Distribution computeMs,
      Distribution queueMs) {}

  @Override
  public Integer call() throws Exception {
    PrintWriter console = spec.commandLine().getOut();
    Path root = Files.createTempDirectory("modelgate-bench-batching-");
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    for (String name : models) {
      BenchModels.BenchModel model = BenchModels.byName(name);
      writeVersion(root, name + "_batched", model.onnx(),
          "max_batch_size: " + maxBatchSize + "\nmax_queue_delay_us: " + maxQueueDelayMicros + "\n");
      writeVersion(root, name + "_unbatched", model.onnx(), "max_batch_size: 0\n");
    }
    SessionSettings session = new SessionSettings(intraOpThreads, 1);
    ModelRepository repository =
        ModelRepository.load(root, new ModelSettings(null, session, new SchedulerSettings(1024, 1)), stats);
    GatewayServer server =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, 64 << 20, eventLoopThreads, Duration.ofSeconds(10)),
            new AdminSettings(
                "127.0.0.1", 0, java.util.UUID.randomUUID().toString(), null, "127.0.0.1", -1,
                root.resolve(".state")),
            repository,
            stats);
    io.modelgate.bench.load.Connections channels = io.modelgate.bench.load.Connections.open("127.0.0.1:" + server.port(), connections);
    List<Row> rows = new ArrayList<>();
    try {
      console.printf(
          "batching benchmark: %s, %d callers over %d connections, %d s warm-up + %d s per scenario,"
              + " %d rounds; batched: max_batch_size %d, max_queue_delay_us %d%n",
          models, concurrency, connections, warmupSeconds, durationSeconds, rounds, maxBatchSize,
          maxQueueDelayMicros);
      console.flush();
      jitSettle.settle(() -> {
        for (String name : models) {
          for (String served : List.of(name + "_unbatched", name + "_batched")) {
            new LoadGenerator(channels, BenchModels.byName(name).request(served))
                .run(LoadGenerator.Options.closed(concurrency, false, Duration.ofSeconds(1), Duration.ZERO), line -> {});
          }
        }
      }, console);
      for (int round = 1; round <= rounds; round++) {
        for (String name : models) {
          BenchModels.BenchModel model = BenchModels.byName(name);
          for (String mode : List.of("off", "on")) {
            String served = name + (mode.equals("on") ? "_batched" : "_unbatched");
            LoadGenerator.Result result =
                new LoadGenerator(channels, model.request(served))
                    .run(
                        LoadGenerator.Options.closed(
                            concurrency, false, Duration.ofSeconds(warmupSeconds), Duration.ofSeconds(durationSeconds)),
                        line -> {},
                        stats::rotate,
                        stats::rotate);
            WindowStats serverSide = stats.latest(served, 1);
            Row row = new Row(name, mode, round, result, serverSide.getBatchRows(), serverSide.getComputeMs(), serverSide.getQueueMs());
            rows.add(row);
            console.println(line(row));
            console.flush();
          }
        }
      }
    } finally {
      channels.close();
      server.stop();
      stats.close();
      deleteTree(root);
    }
    String summary = summary(rows, session);
    console.println();
    console.print(summary);
    console.flush();
    if (out != null) {
      Files.createDirectories(out);
      Files.writeString(out.resolve("batching.md"), summary, StandardCharsets.UTF_8);
      for (Row row : rows) {
        try (java.io.PrintStream hgrm =
            new java.io.PrintStream(
                Files.newOutputStream(
                    out.resolve("batching-" + row.model() + "-" + row.batching() + "-r" + row.round() + ".hgrm")),
                false,
                StandardCharsets.UTF_8)) {
          row.result().latencyMicros().outputPercentileDistribution(hgrm, 1000.0);
        }
      }
    }
    return 0;
  }

  static void writeVersion(Path root, String name, byte[] onnx, String yaml) throws IOException {
    Path dir = Files.createDirectories(root.resolve(name).resolve("1"));
    Files.write(dir.resolve("model.onnx"), onnx);
    Files.writeString(root.resolve(name).resolve("model.yaml"), yaml);
  }

  private static String line(Row row) {
    Histogram h = row.result().latencyMicros();
    return String.format(
        "  %-10s batching %-3s round %d: %9.0f calls/s  p50 %7.3f ms  p99 %7.3f ms  rows/exec %5.1f"
            + "  errors %s",
        row.model(), row.batching(), row.round(), row.result().throughput(),
        h.getValueAtPercentile(50) / 1000.0, h.getValueAtPercentile(99) / 1000.0,
        row.rows().getMean(), row.result().errors());
  }

  private String summary(List<Row> rows, SessionSettings session) throws Exception {
    StringBuilder md = new StringBuilder();
    md.append("Run ").append(ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME))
        .append(", ").append(Runtime.getRuntime().availableProcessors()).append(" cores, JVM ")
        .append(System.getProperty("java.vm.name")).append(' ').append(System.getProperty("java.version"))
        .append(", client and server in one process over loopback.\n\n");
    md.append("| model | batching | round | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | rows/exec (mean, max) | server compute/exec p50, p99 µs | errors |\n");
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (Row row : rows) {
      Histogram h = row.result().latencyMicros();
      md.append(String.format(
          "| %s | %s | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f, %d | %d, %d | %s |%n",
          row.model(), row.batching(), row.round(), row.result().throughput(),
          h.getValueAtPercentile(50) / 1000.0, h.getValueAtPercentile(90) / 1000.0,
          h.getValueAtPercentile(99) / 1000.0, h.getValueAtPercentile(99.9) / 1000.0,
          h.getMaxValue() / 1000.0, row.rows().getMean(), (long) row.rows().getMax(),
          Math.round(row.computeMs().getP50() * 1000), Math.round(row.computeMs().getP99() * 1000),
          row.result().errors().isEmpty() ? "0" : row.result().errors().toString()));
    }
    md.append("\n| model | throughput on/off | p99 on | max_queue_delay + 2 x batch compute (p99) | p99 target | in-process ORT: batch 1, batch ").append(maxBatchSize).append(" (median µs) |\n");
    md.append("|---|---|---|---|---|---|\n");
    for (String name : models) {
      double off = 0;
      double on = 0;
      long p99On = 0;
      long computeP99 = 0;
      int n = 0;
      for (Row row : rows) {
        if (!row.model().equals(name)) {
          continue;
        }
        if (row.batching().equals("off")) {
          off += row.result().throughput();
        } else {
          on += row.result().throughput();
          p99On = Math.max(p99On, row.result().latencyMicros().getValueAtPercentile(99));
          computeP99 = Math.max(computeP99, Math.round(row.computeMs().getP99() * 1000));
          n++;
        }
      }
      BenchModels.BenchModel model = BenchModels.byName(name);
      double b1 = ComputeBaseline.medianMicros(model, session, 1, 500);
      double bMax = ComputeBaseline.medianMicros(model, session, maxBatchSize, 100);
      long bound = maxQueueDelayMicros + 2 * computeP99;
      md.append(String.format(
          "| %s | %.2fx | %.3f ms | %.3f ms | %s | %.1f, %.1f |%n",
          name, off == 0 ? 0 : on / off, p99On / 1000.0, bound / 1000.0,
          p99On <= bound ? "met" : "missed", b1, bMax));
      if (n == 0) {
        md.append("(no batched rounds)\n");
      }
    }
    return md.toString();
  }

  static void deleteTree(Path root) throws IOException {
    try (var paths = Files.walk(root)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}

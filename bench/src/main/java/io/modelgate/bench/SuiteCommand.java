package io.modelgate.bench;

import io.modelgate.bench.load.Inputs;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.bench.load.Plots;
import io.modelgate.bench.load.Reports;
import io.modelgate.bench.load.Sweep;
import io.modelgate.bench.load.TransportCeiling;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelMetadataRequest;
import io.modelgate.proto.inference.ModelMetadataResponse;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The benchmark suite: for each model, in one run and one process, (a) ONNX Runtime in-process,
 * (b) a bare grpc-java server answering a canned response of the same size (the transport
 * ceiling), (c) modelgate with batching off, (d) with batching on, and (e) a 90/10 split over two
 * versions — closed loop at 64 callers and at 1, a rate sweep on (d), and open loop at half the
 * highest sustainable rate. Closed- and open-loop scenarios run in interleaved rounds whose counts
 * and histograms are added, so that a slow spell on a shared machine falls on all of them. Prints
 * the machine's bound B (cores over the transport's CPU per call plus compute per row at the batch
 * size reached) and (d)'s throughput against it. Writes Markdown, JSON, .hgrm files and PNG plots.
 */
@Command(
    name = "suite",
    mixinStandardHelpOptions = true,
    description = "Every scenario and its baselines in one run: tables, JSON, .hgrm and PNG plots.")
final class SuiteCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--models", split = ",", defaultValue = "cnn_mnist,mlp", description = "mlp, cnn_mnist, minilm. Default: ${DEFAULT-VALUE}.") List<String> models;
  @Option(names = "--concurrency", defaultValue = "64", description = "Closed-loop callers of the throughput scenarios. Default: ${DEFAULT-VALUE}.") int concurrency;
  @Option(names = "--connections", defaultValue = "4", description = "HTTP/2 connections they share. Default: ${DEFAULT-VALUE}.") int connections;
  @Option(names = "--jit-warmup", defaultValue = "20", description = "Seconds of unrecorded load, per model, before the first scenario, so that the JIT has compiled the hot paths of client and servers (short runs otherwise measure the compiler). Default: ${DEFAULT-VALUE}.") int jitWarmup;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;
  @Option(names = "--warmup", defaultValue = "3", description = "Seconds, per scenario. Default: ${DEFAULT-VALUE}.") int warmup;
  @Option(names = "--duration", defaultValue = "8", description = "Seconds, per scenario. Default: ${DEFAULT-VALUE}.") int duration;
  @Option(names = "--p99-target", description = "Rate sweep target, ms. Default: per model, the larger of 5 ms and five times its batch-1 compute time.") Double p99TargetOption;
  @Option(names = "--streaming", description = "ModelStreamInfer instead of ModelInfer.") boolean streaming;
  @Option(names = "--rounds", defaultValue = "2", description = "Rounds of the closed- and open-loop scenarios, interleaved and added up. Default: ${DEFAULT-VALUE}.") int rounds;
  @Option(names = "--sweep-steps", defaultValue = "12", description = "Most rates the sweep tries before halving. Default: ${DEFAULT-VALUE}.") int sweepSteps;
  @Option(names = "--instances", defaultValue = "1", description = "Executors per version of modelgate (model.yaml's instances): batches run on this many threads at once. Default: ${DEFAULT-VALUE}.") int instances;
  @Option(names = "--large-batch-rows", defaultValue = "0", description = "With --large-batch-intra-op: batches of at least this many rows run on a second session with that many intra-op threads (model.yaml's large_batch_rows). Default: ${DEFAULT-VALUE} (one session).") int largeBatchRows;
  @Option(names = "--large-batch-intra-op", defaultValue = "0", description = "The second session's intra-op threads (model.yaml's large_batch_intra_op_threads). Default: ${DEFAULT-VALUE}.") int largeBatchIntraOp;
  @Option(names = "--intra-op", defaultValue = "1", description = "ONNX Runtime intra-op threads of modelgate's sessions (the compute baselines (a) and B's compute per row always use one, the CPU a row costs). Default: ${DEFAULT-VALUE}.") int intraOp;
  @Option(names = "--out", required = true, description = "Folder for the results.") Path out;

  @Override
  public Integer call() throws Exception {
    if (rounds < 1 || warmup < 0 || jitWarmup < 0 || duration < 1 || concurrency < 1 || connections < 1) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), String.format(
          "--rounds %d, --warmup %d, --duration %d, --concurrency %d, --connections %d "
              + "(expected: rounds, duration, concurrency and connections >= 1, warm-up >= 0)",
          rounds, warmup, duration, concurrency, connections));
    }
    PrintWriter console = spec.commandLine().getOut();
    Files.createDirectories(out);
    StringBuilder md = new StringBuilder();
    md.append("Run ").append(ZonedDateTime.now()).append(", ").append(LoadCommand.environment())
        .append(", client and servers in one JVM over loopback; ").append(streaming ? "ModelStreamInfer" : "ModelInfer")
        .append(", ").append(connections).append(" connections, ").append(jitWarmup).append(" s JIT warm-up per model")
        .append(jitSettle.enabled() ? " and up to " + jitSettle.seconds + " s more until the compilers are quiet" : "").append(", then ")
        .append(warmup).append(" s warm-up + ")
        .append(duration).append(" s per scenario and round, ").append(rounds)
        .append(rounds == 1 ? " round" : " rounds, interleaved and added up").append(".\n\n");
    Map<String, Object> json = new LinkedHashMap<>();
    for (String name : models) {
      md.append(model(name, console, json));
    }
    Files.writeString(out.resolve("suite.md"), md.toString(), StandardCharsets.UTF_8);
    Reports.writeJson(out.resolve("suite.json"), json);
    console.println();
    console.print(md);
    console.flush();
    return 0;
  }

  private String model(String name, PrintWriter console, Map<String, Object> json) throws Exception {
    BenchModels.BenchModel bench = BenchModels.byName(name);
    int batchRows = name.equals("minilm") ? 8 : 64;
    Path root = Files.createTempDirectory("modelgate-suite-");
    write(root, name + "_unbatched", 1, bench.onnx(), "max_batch_size: 0\n");
    String large = largeBatchRows == 0 && largeBatchIntraOp == 0 ? ""
        : "large_batch_rows: " + largeBatchRows + "\nlarge_batch_intra_op_threads: " + largeBatchIntraOp + "\n";
    write(root, name + "_batched", 1, bench.onnx(), "max_batch_size: " + batchRows + "\n" + large);
    write(root, name + "_split", 1, bench.onnx(), "max_batch_size: " + batchRows + "\n" + large);
    write(root, name + "_split", 2, bench.onnx(), null);
    SessionSettings session = new SessionSettings(1, 1);
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    ModelRepository repository =
        ModelRepository.load(root, new ModelSettings(null, new SessionSettings(intraOp, 1), new SchedulerSettings(4096, instances)), stats);
    GatewayServer gateway =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, 64 << 20, 1, Duration.ofSeconds(10)),
            new AdminSettings("127.0.0.1", 0, java.util.UUID.randomUUID().toString(), null, "127.0.0.1", -1, root.resolve(".state")),
            repository, stats);
    gateway.control().set(
        RoutingPolicy.newBuilder().setModel(name + "_split").putWeights(1, 90).putWeights(2, 10).build(),
        0, "bench", "SetRouting", "90/10 split");
    io.modelgate.bench.load.Connections toGateway = channels(gateway.port());
    Map<String, long[]> oneRow = BenchModels.rowShapes(name, 1);
    ModelMetadataResponse metadata = GRPCInferenceServiceGrpc.newBlockingStub(toGateway.channels().get(0))
        .withDeadlineAfter(30, TimeUnit.SECONDS)
        .modelMetadata(ModelMetadataRequest.newBuilder().setName(name + "_batched").build());
    ModelInferRequest template = Inputs.random(metadata, "", oneRow, 7);
    ModelInferResponse canned = GRPCInferenceServiceGrpc.newBlockingStub(toGateway.channels().get(0))
        .withDeadlineAfter(30, TimeUnit.SECONDS)
        .modelInfer(template.toBuilder().setModelName(name + "_batched").build());
    double b1 = ComputeBaseline.medianMicros(bench.onnx(), template, 1, session, name.equals("minilm") ? 40 : 300);
    ModelInferRequest batch = Inputs.random(metadata, "", BenchModels.rowShapes(name, batchRows), 7);
    double bN = ComputeBaseline.medianMicros(bench.onnx(), batch, batchRows, session, name.equals("minilm") ? 10 : 50);
    double p99Target = p99TargetOption != null ? p99TargetOption : Math.max(5, Math.ceil(5 * b1 / 1000));
    TransportCeiling ceiling = new TransportCeiling(canned, 1);
    io.modelgate.bench.load.Connections toCeiling = channels(ceiling.port());
    Map<String, LoadGenerator.Result> raw = new LinkedHashMap<>();
    Map<String, String> loads = new LinkedHashMap<>();
    Map<String, List<Sweep.Point>> sweeps = new LinkedHashMap<>();
    List<String> closedMany = List.of(
        "(b) transport ceiling", "(c) modelgate, batching off", "(d) modelgate, batching on", "(e) modelgate, 90/10 split");
    List<String> openHalf = List.of(
        "(d) modelgate, batching on, open loop at half the highest rate", "(b) transport ceiling, open loop at the same rate");
    double highest;
    boolean bounded;
    double clientLimit;
    JitSettling.Outcome jit;
    // (d) at many callers: its executions and rows, for the batch size it reached.
    long executionsOn = 0;
    long rowsOn = 0;
    // (d) at many callers: the server's threads' CPU and waits over its rounds (the scrape's counters).
    ServerThreads threadsOn = null;
    long callsOn = 0;
    double clientOn = 0;
    try {
      console.printf("== %s%n", name);
      console.flush();
      LoadGenerator bare = new LoadGenerator(toCeiling, template.toBuilder().setModelName(name).build());
      LoadGenerator off = new LoadGenerator(toGateway, template.toBuilder().setModelName(name + "_unbatched").build());
      LoadGenerator on = new LoadGenerator(toGateway, template.toBuilder().setModelName(name + "_batched").build());
      LoadGenerator split = new LoadGenerator(toGateway, template.toBuilder().setModelName(name + "_split").build());
      LoadGenerator.Options many = LoadGenerator.Options.closed(concurrency, streaming, Duration.ofSeconds(warmup), Duration.ofSeconds(duration));
      LoadGenerator.Options one = LoadGenerator.Options.closed(1, streaming, Duration.ofSeconds(warmup), Duration.ofSeconds(duration));
      if (jitWarmup > 0) {
        console.printf("  JIT warm-up: %d s unrecorded against (b), (d) and (e)%n", jitWarmup);
        console.flush();
        Duration third = Duration.ofMillis(jitWarmup * 1000L / 3);
        for (LoadGenerator generator : List.of(bare, on, split)) {
          generator.run(LoadGenerator.Options.closed(concurrency, streaming, third, Duration.ZERO), line -> {});
        }
      }
      jit = jitSettle.settle(() -> {
        for (LoadGenerator generator : List.of(bare, on, split)) {
          generator.run(LoadGenerator.Options.closed(concurrency, streaming, Duration.ofSeconds(1), Duration.ZERO), line -> {});
        }
      }, console);
      VersionStats batched = stats.find(name + "_batched", 1);
      for (int round = 1; round <= rounds; round++) {
        run(raw, loads, round, closedMany.get(0), bare, many, console);
        run(raw, loads, round, closedMany.get(1), off, many, console);
        io.modelgate.proto.inference.ModelStatistics before = batched.statistics();
        // The server's threads over the measured period only (not the round's warm-up), as its calls are.
        AtomicReference<ServerThreads> threadsBefore = new AtomicReference<>();
        AtomicReference<ServerThreads> threadsAfter = new AtomicReference<>();
        AtomicReference<Double> clientBefore = new AtomicReference<>(0.0);
        AtomicReference<Double> clientAfter = new AtomicReference<>(0.0);
        long callsBefore = raw.containsKey(closedMany.get(2)) ? raw.get(closedMany.get(2)).completed() : 0;
        run(raw, loads, round, closedMany.get(2), on, many, console,
            () -> {
              threadsBefore.set(ServerThreads.read(stats.prometheus()));
              clientBefore.set(ServerThreads.loadGeneratorCpuSeconds());
            },
            () -> {
              threadsAfter.set(ServerThreads.read(stats.prometheus()));
              clientAfter.set(ServerThreads.loadGeneratorCpuSeconds());
            });
        io.modelgate.proto.inference.ModelStatistics after = batched.statistics();
        if (threadsAfter.get() != null && threadsBefore.get() != null) {
          threadsOn = threadsAfter.get().since(threadsBefore.get()).plus(threadsOn);
          clientOn += clientAfter.get() - clientBefore.get();
          callsOn += raw.get(closedMany.get(2)).completed() - callsBefore;
        }
        executionsOn += after.getExecutionCount() - before.getExecutionCount();
        rowsOn += after.getInferenceCount() - before.getInferenceCount();
        run(raw, loads, round, closedMany.get(3), split, many, console);
        run(raw, loads, round, "(b) transport ceiling, 1 caller", bare, one, console);
        run(raw, loads, round, "(d) modelgate, batching on, 1 caller", on, one, console);
      }
      double start = Math.max(1, Math.floor(raw.get(closedMany.get(2)).throughput() * 0.1));
      // Each rate is first run against (b) by the same client: the sweep stops where the client
      // itself cannot hold a rate, instead of measuring the client.
      Sweep.Outcome sweepOn = Sweep.run(on, bare, start, 1.4, p99Target, streaming, Duration.ofSeconds(Math.min(warmup, 2)),
          Duration.ofSeconds(Math.max(1, duration / 2)), sweepSteps, line -> { console.println(line); console.flush(); });
      sweeps.put("(d) modelgate, batching on", sweepOn.points());
      highest = sweepOn.highestSustainable();
      bounded = sweepOn.bounded();
      clientLimit = sweepOn.clientLimit();
      if (highest > 0) {
        LoadGenerator.Options half = LoadGenerator.Options.open(highest / 2, streaming, Duration.ofSeconds(warmup), Duration.ofSeconds(duration));
        for (int round = 1; round <= rounds; round++) {
          run(raw, loads, round, openHalf.get(0), on, half, console);
          run(raw, loads, round, openHalf.get(1), bare, half, console);
        }
      }
    } finally {
      toGateway.close();
      toCeiling.close();
      ceiling.close();
      gateway.stop();
      stats.close();
    }
    Map<String, Reports.Summary> results = new LinkedHashMap<>();
    raw.forEach((label, r) -> results.put(label, Reports.summarize(label, loads.get(label), r)));
    Map<String, Histogram> closedHistograms = new LinkedHashMap<>();
    closedMany.forEach(label -> closedHistograms.put(label, raw.get(label).latencyMicros()));
    Map<String, Histogram> openHistograms = new LinkedHashMap<>();
    openHalf.stream().filter(raw::containsKey).forEach(label -> openHistograms.put(label, raw.get(label).latencyMicros()));
    String prefix = Reports.fileName(name);
    Plots.percentiles(out.resolve(prefix + "-closed-" + concurrency + ".png"),
        name + ": latency by percentile, closed loop, " + concurrency + " callers", closedHistograms);
    if (!openHistograms.isEmpty()) {
      Plots.percentiles(out.resolve(prefix + "-open-half-rate.png"),
          name + String.format(": latency by percentile, open loop at %.0f req/s", highest / 2), openHistograms);
    }
    Plots.sweep(out.resolve(prefix + "-sweep.png"), name + ": p99 against throughput (open loop)", sweeps, p99Target);

    Reports.Summary bareMany = results.get("(b) transport ceiling");
    Reports.Summary bestMany = results.get("(d) modelgate, batching on").throughput()
        >= results.get("(c) modelgate, batching off").throughput()
        ? results.get("(d) modelgate, batching on") : results.get("(c) modelgate, batching off");
    double p1 = bestMany.throughput() / bareMany.throughput();
    double added = (results.get("(d) modelgate, batching on, 1 caller").p50Ms()
        - results.get("(b) transport ceiling, 1 caller").p50Ms()) * 1000;
    Reports.Summary atHalf = results.get("(d) modelgate, batching on, open loop at half the highest rate");
    // Calibration: at half the highest rate, the same client against the bare server must hold the
    // rate within the sweep's target; else the run measured the client, and P5 is not reported.
    Reports.Summary bareHalf = results.get("(b) transport ceiling, open loop at the same rate");
    boolean halfClientBound = bareHalf != null
        && (bareHalf.throughput() < 0.95 * highest / 2 || bareHalf.p99Ms() > p99Target);
    if (halfClientBound) {
      atHalf = null;
    }
    // The machine's bound: every call costs the transport's CPU (the bare server's and the
    // client's, measured in this process while (b) ran) and its row's share of a model run at the
    // batch size (d) reached; the cores can do no more than that.
    int reached = (int) Math.max(1, Math.min(batchRows, Math.round(rowsOn / (double) Math.max(1, executionsOn))));
    ModelInferRequest reachedBatch = reached == 1 ? template
        : Inputs.random(metadata, "", BenchModels.rowShapes(name, reached), 7);
    double transportPerCall = raw.get("(b) transport ceiling").processCpuMicrosPerCall();
    int cores = Runtime.getRuntime().availableProcessors();
    // Compute per row as throughput pays it: the mean over seconds of runs, at the batch size (d)
    // reached; once on one core with the others idle, once on every core at the same time (the
    // transport's term is measured with every core busy; where cores share execution units, only
    // the second is its like).
    Duration computeWarmup = Duration.ofSeconds(1);
    Duration computeMeasured = Duration.ofSeconds(name.equals("minilm") ? 6 : 3);
    double computePerRow = ComputeBaseline.meanMicrosPerRow(
        bench.onnx(), reachedBatch, reached, session, 1, computeWarmup, computeMeasured);
    double busyComputePerRow = ComputeBaseline.meanMicrosPerRow(
        bench.onnx(), reachedBatch, reached, session, cores, computeWarmup, computeMeasured);
    double bound = transportPerCall > 0 ? cores * 1e6 / (transportPerCall + computePerRow) : Double.NaN;
    double busyBound = transportPerCall > 0 ? cores * 1e6 / (transportPerCall + busyComputePerRow) : Double.NaN;
    double ofBound = results.get("(d) modelgate, batching on").throughput() / bound;
    double ofBusyBound = results.get("(d) modelgate, batching on").throughput() / busyBound;
    Map<String, Object> targets = new LinkedHashMap<>();
    targets.put("machine bound B, calls/s", bound);
    targets.put("B's terms: cores, transport CPU per call us (bare server and client), compute per row us, batch rows reached",
        List.of(cores, transportPerCall, computePerRow, reached));
    targets.put("(d) throughput at " + concurrency + " callers / B", ofBound);
    targets.put("machine bound with every core computing, B_busy, calls/s", busyBound);
    targets.put("compute per row us with every core computing (mean)", busyComputePerRow);
    targets.put("(d) throughput at " + concurrency + " callers / B_busy", ofBusyBound);
    // Heap per call: client and server share this process, and the client is the same in (b) and
    // (d), so the difference is what modelgate allocates beyond the bare server (transport, request
    // parsing and a built response included in both).
    double bareHeap = raw.get("(b) transport ceiling").processHeapBytesPerCall();
    double gatewayHeap = raw.get("(d) modelgate, batching on").processHeapBytesPerCall();
    targets.put("heap allocated per call, bytes: (b) bare server + client, (d) modelgate + client, (d) - (b)",
        List.of(bareHeap, gatewayHeap, gatewayHeap - bareHeap));
    // The hot path's latency targets, against the bare server in the same run: p50 at one caller
    // within its p50 + batch-1 compute + 20 us; p99.9 at half the highest rate within 1.5x its own.
    double bareP50 = results.get("(b) transport ceiling, 1 caller").p50Ms() * 1000;
    double p50Bound = bareP50 + b1 + 20;
    double gatewayP50 = results.get("(d) modelgate, batching on, 1 caller").p50Ms() * 1000;
    Double tailRatio = atHalf == null || bareHalf == null || bareHalf.p999Ms() <= 0 ? null : atHalf.p999Ms() / bareHalf.p999Ms();
    targets.put("p50 at 1 caller, us, and its bound (bare p50 + batch-1 compute + 20 us)", List.of(gatewayP50, p50Bound));
    targets.put("p99.9 at half the highest rate / the bare server's at the same rate (target <= 1.5)", tailRatio);
    // The platform's stalls while each open-loop run measured (a thread of this process asking to
    // sleep 1 ms): a stall as long as a p99.9 is in that p99.9, whichever server ran.
    Reports.Summary halfRun = results.get("(d) modelgate, batching on, open loop at half the highest rate");
    List<Double> halfStalls = halfRun == null || bareHalf == null ? null
        : List.of(halfRun.hiccupP999Ms(), halfRun.hiccupMaxMs(), bareHalf.hiccupP999Ms(), bareHalf.hiccupMaxMs());
    targets.put("stalls of this process at half the highest rate, ms (a thread sleeping 1 ms woke this late): "
        + "(d) p99.9, (d) max, (b) p99.9, (b) max", halfStalls);
    targets.put("share of those stalls (wakes 1 ms or more late) spent waiting for a core, (d), (b); -1 unknown or none",
        halfRun == null || bareHalf == null ? null : List.of(halfRun.stallsWaitingShare(), bareHalf.stallsWaitingShare()));
    targets.put("P1 throughput at " + concurrency + " callers / transport ceiling", p1);
    targets.put("P3 added p50 at 1 caller, us", added);
    targets.put("P3 bound, us (50 + batch-1 compute)", 50 + b1);
    targets.put("P5 p99.9 at half the highest sustainable rate, ms", atHalf == null ? null : atHalf.p999Ms());
    targets.put("highest sustainable rate (p99 <= " + p99Target + " ms), req/s", highest);
    targets.put("highest rate bounded by a miss", bounded);
    targets.put("client limit: the rate the client could not hold against the bare server, req/s (0: not reached)", clientLimit);
    targets.put("P5 client-bound (the client could not hold half the highest rate against the bare server)", halfClientBound);
    Map<String, Object> jitJson = new LinkedHashMap<>();
    jitJson.put("settled", jit.settled());
    jitJson.put("furtherWarmupSeconds", jit.spent().toMillis() / 1000.0);
    jitJson.put("compilersBusyLastSlice", Double.isNaN(jit.lastBusy()) ? null : jit.lastBusy());
    Map<String, Object> modelJson = new LinkedHashMap<>();
    modelJson.put("jit", jitJson);
    modelJson.put("results", results.values());
    modelJson.put("sweep", sweeps);
    modelJson.put("onnxRuntimeInProcessMicros", Map.of("batch1", b1, "batch" + batchRows, bN));
    modelJson.put("targets", targets);
    json.put(name, modelJson);
    for (Map.Entry<String, LoadGenerator.Result> e : raw.entrySet()) {
      Reports.writeHgrm(out.resolve(prefix + "-" + Reports.fileName(e.getKey()) + ".hgrm"), e.getValue().latencyMicros());
    }

    StringBuilder md = new StringBuilder();
    md.append("### ").append(name).append("\n\n");
    md.append(String.format("Settings: modelgate with 1 event loop, queue capacity 4096, %d instance%s, max_queue_delay 0 "
            + "(a batch is whatever waits when an executor is free), max_batch_size %d for (d) and (e), 0 for (c); "
            + "ONNX Runtime CPU, %d intra-op and 1 inter-op thread%s; one row per request, %s.%n%n",
        instances, instances == 1 ? "" : "s", batchRows, intraOp,
        largeBatchRows == 0 ? "" : " (batches of " + largeBatchRows + " rows or more on a second session of "
            + largeBatchIntraOp + " intra-op threads)",
        shapes(BenchModels.rowShapes(name, 1))));
    if (jitSettle.enabled()) {
      md.append(jitSettle.describe(jit)).append(".\n\n");
    }
    md.append(String.format("(a) ONNX Runtime in-process, same executor code, no gRPC: batch 1 %.1f µs (%.0f items/s), batch %d %.1f µs (%.0f items/s).%n%n",
        b1, 1e6 / b1, batchRows, bN, batchRows * 1e6 / bN));
    md.append(Reports.header());
    for (Reports.Summary s : results.values()) {
      md.append(Reports.row(s));
    }
    md.append("\nSweep of (d), open loop, p99 target ").append(p99Target).append(" ms; each rate first run against (b), the"
        + " bare server, by the same client (a row marked client-bound is the client's own limit: (d) was not measured):"
        + "\n\n| rate | achieved | p99 ms | p99.9 ms | errors | meets |\n|---|---|---|---|---|---|\n");
    for (Sweep.Point p : sweeps.values().iterator().next()) {
      md.append(String.format("| %.0f | %.0f | %.3f | %.3f | %d | %s |%n", p.rate(), p.achieved(), p.p99Ms(), p.p999Ms(), p.errors(),
          p.clientBound() ? "client-bound" : p.meets() ? "yes" : "no"));
    }
    if (clientLimit > 0) {
      md.append(String.format("%nThe sweep stopped at the client's own limit: at %.0f req/s the client could not hold the rate"
          + " against the bare server, so the highest rate of modelgate is at least %.0f req/s, not measured beyond.%n", clientLimit, highest));
    }
    md.append(String.format("%nMachine bound: B = %d cores / (%.1f µs of CPU per call for the transport — the bare server"
            + " and the client, measured while (b) ran — + %.1f µs of compute per row at the %d rows a batch (d) reached, the"
            + " mean over seconds of runs on one core)"
            + " = %.0f calls/s; (d) at %d callers made %.0f calls/s, **%.2f × B** (target ≥ 0.8 × B: %s).%n",
        cores, transportPerCall, computePerRow, reached, bound, concurrency,
        results.get("(d) modelgate, batching on").throughput(), ofBound, ofBound >= 0.8 ? "met" : "missed"));
    md.append(String.format("%nThe same bound with the compute measured as the transport is, every core busy (a session"
            + " per core at once): %.1f µs per row (%.2f× the figure on one core), B_busy = %.0f calls/s; (d) made **%.2f ×"
            + " B_busy** (%s). Where cores share execution units, B overstates the machine and B_busy is its bound.%n",
        busyComputePerRow, busyComputePerRow / computePerRow, busyBound, ofBusyBound, ofBusyBound >= 0.8 ? "met" : "missed"));
    // Where (d)'s CPU went, from the server's own scrape (its threads by what they do).
    String spentOn = ServerThreads.perCall(threadsOn, callsOn, clientOn);
    targets.put("(d) at " + concurrency + " callers: CPU a call by the server's threads, and the share of their busy time"
        + " spent waiting for a core", spentOn);
    md.append(String.format("%nWhere (d)'s CPU went at %d callers, a call, by the server's threads (its scrape's"
            + " `modelgate_threads_*`; `model` holds ONNX Runtime's pool threads too, the load generator is named apart; in"
            + " brackets the share of each group's busy time spent waiting for a core): %s.%n", concurrency, spentOn));
    md.append(String.format("%nHeap allocated per call at %d callers (this process: client and server): (b) %.0f bytes,"
            + " (d) %.0f bytes; modelgate allocates **%.0f bytes** per call beyond the bare server (target ≤ 1 KB: %s).%n",
        concurrency, bareHeap, gatewayHeap, gatewayHeap - bareHeap, gatewayHeap - bareHeap <= 1024 ? "met" : "missed"));
    md.append(String.format("%nLatency against the bare server: p50 at 1 caller %.0f µs against %.0f µs (its p50 %.0f µs"
            + " + batch-1 compute %.0f µs + 20 µs: %s); p99.9 at half the highest rate %s the bare server's at the same rate"
            + " (target ≤ 1.5×: %s).%n",
        gatewayP50, p50Bound, bareP50, b1, gatewayP50 <= p50Bound ? "met" : "missed",
        tailRatio == null ? "n/a" : String.format("%.2f ×", tailRatio),
        tailRatio == null ? "not measured" : tailRatio <= 1.5 ? "met" : "missed"));
    if (halfStalls != null) {
      boolean stalled = Reports.platformStalled(halfRun) || Reports.platformStalled(bareHalf);
      md.append(String.format("While the two ran at that rate, a thread of this process that asks to sleep 1 ms at a time"
              + " woke up to %.3f ms late during (d) (p99.9 of its wakes %.3f ms; (d)'s latency p99.9 %.3f ms%s) and up to"
              + " %.3f ms during (b) (%.3f ms; (b)'s latency p99.9 %.3f ms%s)%s%n",
          halfStalls.get(1), halfStalls.get(0), halfRun.p999Ms(), Reports.stallsSplit(halfRun),
          halfStalls.get(3), halfStalls.get(2), bareHalf.p999Ms(), Reports.stallsSplit(bareHalf),
          stalled ? ": stalls of the machine as long as half a p99.9, so the ratio compares the platform's stalls"
              + " as much as the servers."
              : "."));
    }
    md.append(String.format("%nTargets: **P1** %.2f× the transport ceiling at %d callers (target ≥ 0.8×: %s); "
            + "**P3** added p50 at 1 caller %.0f µs against a bound of %.0f µs (50 µs + batch-1 compute: %s); "
            + "**P5** p99.9 at half the highest sustainable rate (%.0f req/s%s) %s ms (target ≤ 2 ms: %s).%n%n",
        p1, concurrency, p1 >= 0.8 ? "met" : "missed", added, 50 + b1, added <= 50 + b1 ? "met" : "missed",
        highest / 2, bounded ? "" : clientLimit > 0 ? "; the sweep stopped at the client's limit, so this is at most half the true highest"
            : "; the sweep met every rate it tried, so this is below half the true highest",
        halfClientBound ? "client-bound, not used" : atHalf == null ? "n/a" : String.format("%.3f", atHalf.p999Ms()),
        atHalf == null ? "n/a" : atHalf.p999Ms() <= 2 ? "met" : "missed"));
    md.append("Plots: `").append(prefix).append("-closed-").append(concurrency).append(".png`, ")
        .append(openHistograms.isEmpty() ? "" : "`" + prefix + "-open-half-rate.png`, ")
        .append('`').append(prefix).append("-sweep.png`.\n\n");
    deleteTree(root);
    return md.toString();
  }

  /** Runs one scenario once and adds its result to the scenario's rounds so far. */
  private void run(Map<String, LoadGenerator.Result> raw, Map<String, String> loads, int round, String label,
      LoadGenerator generator, LoadGenerator.Options options, PrintWriter console) throws InterruptedException {
    run(raw, loads, round, label, generator, options, console, () -> {}, () -> {});
  }

  /**
   * As {@link #run(Map, Map, int, String, LoadGenerator, LoadGenerator.Options, PrintWriter)}, with
   * {@code onMeasure} and {@code onMeasured} called as the measured period opens and closes.
   */
  private void run(Map<String, LoadGenerator.Result> raw, Map<String, String> loads, int round, String label,
      LoadGenerator generator, LoadGenerator.Options options, PrintWriter console, Runnable onMeasure, Runnable onMeasured)
      throws InterruptedException {
    console.printf("  round %d %s: %s%n", round, label, options.describe());
    console.flush();
    LoadGenerator.Result result = generator.run(options, line -> {}, onMeasure, onMeasured);
    raw.merge(label, result, LoadGenerator.Result::plus);
    loads.put(label, options.describe());
    Reports.Summary summary = Reports.summarize(label, options.describe(), result);
    console.printf("    %.0f req/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, errors %s%n", summary.throughput(),
        summary.p50Ms(), summary.p99Ms(), summary.p999Ms(), summary.errors());
    console.flush();
  }

  private io.modelgate.bench.load.Connections channels(int port) {
    return io.modelgate.bench.load.Connections.open("127.0.0.1:" + port, connections);
  }

  private static void write(Path root, String model, int version, byte[] onnx, String yaml) throws Exception {
    Path dir = Files.createDirectories(root.resolve(model).resolve(Integer.toString(version)));
    Files.write(dir.resolve("model.onnx"), onnx);
    if (yaml != null) {
      Files.writeString(root.resolve(model).resolve("model.yaml"), yaml);
    }
  }

  private static String shapes(Map<String, long[]> shapes) {
    StringBuilder text = new StringBuilder();
    new java.util.TreeMap<>(shapes).forEach((input, shape) -> text.append(text.length() == 0 ? "" : ", ")
        .append(input).append(' ').append(java.util.Arrays.toString(shape)));
    return text.toString();
  }

  private static void deleteTree(Path root) throws Exception {
    try (var paths = Files.walk(root)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}

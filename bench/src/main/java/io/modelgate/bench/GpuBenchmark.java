package io.modelgate.bench;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.providers.OrtCUDAProviderOptions;
import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.admin.v1.WindowStats;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.ExecutionProvider;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.repository.ModelVersion;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The GPU path measured on a GPU, in one process and one run, each part printed as it finishes
 * (a run cut short still says what it reached):
 *
 * <ol>
 *   <li>correctness: the MLP 1024→4096→4096→1024 on the execution provider against ONNX Runtime on
 *       the CPU, in-process and through the gateway (largest absolute difference), and the demo's
 *       cnn_mnist through the gateway against its 62 labelled digits;
 *   <li>in-process ONNX Runtime on the provider at batch 1 to 512 (bare {@code session.run} on
 *       host tensors, and through the gateway's executor), with a profile of where a large batch's
 *       time goes (kernels against the rest: copies between host and device, launches);
 *   <li>the gateway serving the MLP on loopback to closed-loop callers in the same process, at each
 *       concurrency, batching off ({@code max_batch_size: 0}) and on, and on with more executor
 *       instances.
 * </ol>
 *
 * <p>{@code --provider cpu} rehearses the same run on a machine without a GPU (slowly: the MLP is
 * 48 MFLOP a row; {@code --model mlp} is a smaller one).
 */
@Command(
    name = "gpu",
    mixinStandardHelpOptions = true,
    description = "The GPU path: correctness against the CPU, in-process ONNX Runtime at batch 1..512, "
        + "and the gateway serving a CUDA MLP with batching off and on.")
final class GpuBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--provider", defaultValue = "cuda", description = "cuda, or cpu to rehearse without a GPU. Default: ${DEFAULT-VALUE}.")
  String provider;

  @Option(names = "--concurrency", split = ",", defaultValue = "1,64,256,512",
      description = "Closed-loop callers of each gateway scenario. Default: ${DEFAULT-VALUE}.")
  List<Integer> concurrencies;

  @Option(names = "--instances", split = ",", defaultValue = "2,4",
      description = "Executor instances of the extra batched versions, run at the two largest concurrencies. Default: ${DEFAULT-VALUE}.")
  List<Integer> instances;

  @Option(names = "--connections", defaultValue = "16", description = "HTTP/2 connections the callers share. Default: ${DEFAULT-VALUE}.")
  int connections;

  @Option(names = "--event-loop-threads", defaultValue = "8", description = "Server event loops (the H200 runs used 8 of its 16 cores). Default: ${DEFAULT-VALUE}.")
  int eventLoopThreads;

  @Option(names = "--max-batch-size", defaultValue = "512", description = "max_batch_size of the batched versions. Default: ${DEFAULT-VALUE}.")
  int maxBatchSize;

  @Option(names = "--max-queue-delay-us", defaultValue = "200", description = "max_queue_delay_us of the batched versions. Default: ${DEFAULT-VALUE}.")
  long maxQueueDelayMicros;

  @Option(names = "--rows-per-request", defaultValue = "8",
      description = "Rows of each request in the extra multi-row scenarios on the batched version at the two largest"
          + " concurrencies (1: none). Default: ${DEFAULT-VALUE}.")
  int rowsPerRequest;

  @Option(names = "--warmup", defaultValue = "2", description = "Seconds of unrecorded load before each scenario. Default: ${DEFAULT-VALUE}.")
  int warmupSeconds;

  @Option(names = "--duration", defaultValue = "5", description = "Seconds measured per scenario. Default: ${DEFAULT-VALUE}.")
  int durationSeconds;

  @Option(names = "--batches", split = ",", defaultValue = "1,64,256,512",
      description = "Batch sizes timed in-process. Default: ${DEFAULT-VALUE}.")
  List<Integer> batches;

  @Option(names = "--iterations", defaultValue = "300", description = "Timed runs per in-process batch size. Default: ${DEFAULT-VALUE}.")
  int iterations;

  @Option(names = "--parts", split = ",", defaultValue = "correctness,in-process,ceiling,gateway",
      description = "Parts to run: correctness, in-process, ceiling (the transport alone: canned answers of"
          + " the MLP's size, no model), gateway. Default: ${DEFAULT-VALUE}.")
  List<String> parts;

  @Option(names = "--streaming", description = "Gateway scenarios over ModelStreamInfer streams instead of unary calls.")
  boolean streaming;

  @Option(names = "--model", defaultValue = "mlp_large",
      description = "mlp_large (1024→4096→4096→1024), or mlp (256→1024→1024→16) for a quick rehearsal. Default: ${DEFAULT-VALUE}.")
  String modelName;

  @Option(names = "--out", description = "Folder for gpu.md (the summary) and the ONNX Runtime profile.")
  Path out;

  private static final int CHECK_ROWS = 64;

  private final StringBuilder md = new StringBuilder();
  /** The model's input row width, and what it is called in the summary. */
  private int width;
  private String shape;
  private PrintWriter console;

  @Override
  public Integer call() throws Exception {
    console = spec.commandLine().getOut();
    ExecutionProvider ep = ExecutionProvider.fromConfigName(provider).orElseThrow(
        () -> new picocli.CommandLine.ParameterException(spec.commandLine(), "--provider cuda or cpu expected"));
    if (out != null) {
      Files.createDirectories(out);
    }
    say("# GPU benchmark, " + ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME) + "\n\n"
        + "Provider " + provider + "; ONNX Runtime providers available: " + OrtEnvironment.getAvailableProviders()
        + "; " + Runtime.getRuntime().availableProcessors() + " cores; JVM " + System.getProperty("java.vm.name")
        + " " + System.getProperty("java.version") + "; client and server in one process over loopback.\n");
    if (!modelName.equals("mlp_large") && !modelName.equals("mlp")) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--model mlp_large or mlp expected");
    }
    BenchModels.BenchModel mlp = BenchModels.byName(modelName);
    width = (int) mlp.rowShape()[0];
    shape = modelName.equals("mlp") ? "MLP 256→1024→1024→16" : "MLP 1024→4096→4096→1024";
    Path root = Files.createTempDirectory("modelgate-bench-gpu-");
    try {
      Path mlpFile = root.resolve("mlp_large.onnx");
      Files.write(mlpFile, mlp.onnx());
      float[] checkRows = gaussianRows(CHECK_ROWS, width, 7);
      float[] cpuAnswers = inProcessCorrectness(mlpFile, checkRows, ep);
      if (parts.contains("in-process")) {
        inProcessTimes(mlpFile, mlp, ep);
      }
      if (parts.contains("ceiling")) {
        ceiling(mlp);
      }
      if (parts.contains("gateway")) {
        gateway(root, mlp, checkRows, cpuAnswers);
      }
    } finally {
      BatchingBenchmark.deleteTree(root);
      console.flush();
    }
    return 0;
  }

  // ---- 1 and 2: in-process ---------------------------------------------------------------------

  /** Compares the provider's answers with the CPU's; returns the CPU's, {@code CHECK_ROWS} rows. */
  private float[] inProcessCorrectness(Path file, float[] rows, ExecutionProvider ep) throws Exception {
    say("\n## Correctness\n\n");
    float[] cpu;
    try (OrtSession session = session(file, ExecutionProvider.CPU, 0, null)) {
      cpu = run(session, rows, CHECK_ROWS);
    }
    say(String.format("%s, %d random rows: CPU answers' largest magnitude %.4f.%n%n", shape,
        CHECK_ROWS, maxAbs(cpu)));
    if (!parts.contains("correctness")) {
      return cpu;
    }
    say("| in-process session | largest abs difference from the CPU | within 1e-3 |\n|---|---|---|\n");
    for (String tf32 : ep == ExecutionProvider.CUDA ? List.of("1", "0") : List.of("-")) {
      try (OrtSession session = session(file, ep, 1, tf32.equals("-") ? null : tf32)) {
        float[] answers = run(session, rows, CHECK_ROWS);
        double diff = maxAbsDiff(cpu, answers);
        say(String.format("| %s%s | %.3g | %s |%n", provider,
            tf32.equals("-") ? "" : (tf32.equals("1") ? " (use_tf32 1, ONNX Runtime's default)" : " (use_tf32 0)"),
            diff, diff <= 1e-3 ? "yes" : "**no**"));
      }
    }
    return cpu;
  }

  private void inProcessTimes(Path file, BenchModels.BenchModel mlp, ExecutionProvider ep) throws Exception {
    say("\n## In-process ONNX Runtime (" + provider + "), " + shape + "\n\n"
        + "Bare: `session.run` on host tensors made once, " + iterations + " timed runs after 50 unmeasured."
        + " Executor: the gateway's own executor (input copy into its buffer, run, output split per request)"
        + " on one request of that many rows.\n\n"
        + "FP32: full precision (`use_tf32 0`, the gateway's default); TF32: ONNX Runtime's default"
        + " (`cuda_tf32: true` in model.yaml).\n\n"
        + "| batch | bare median ms | bare p99 ms | bare rows/s | TF32 bare median ms | TF32 bare rows/s"
        + " | executor median ms | executor rows/s |\n"
        + "|---|---|---|---|---|---|---|---|\n");
    SessionSettings settings = new SessionSettings(1, 1, ep, 0, false, 0, 0, false);
    boolean cuda = ep == ExecutionProvider.CUDA;
    try (OrtSession session = session(file, ep, 1, cuda ? "0" : null);
        OrtSession tf32 = cuda ? session(file, ep, 1, "1") : null) {
      for (int batch : batches) {
        float[] rows = gaussianRows(batch, width, batch);
        long[] nanos = bare(session, rows, batch);
        double median = nanos[iterations / 2] / 1e6;
        double p99 = nanos[(int) Math.min(iterations - 1, Math.ceil(iterations * 0.99) - 1)] / 1e6;
        double tf32Median = tf32 == null ? Double.NaN : bare(tf32, rows, batch)[iterations / 2] / 1e6;
        double executor = ComputeBaseline.medianMicros(mlp, settings, batch, Math.max(20, iterations / 3)) / 1000.0;
        say(String.format("| %d | %.3f | %.3f | %,.0f | %.3f | %,.0f | %.3f | %,.0f |%n",
            batch, median, p99, batch / median * 1000, tf32Median, batch / tf32Median * 1000, executor,
            batch / executor * 1000));
      }
    }
    if (out != null) {
      profile(file, ep);
    }
  }

  /** Sorted nanoseconds of {@link #iterations} runs of {@code batch} rows, after 50 unmeasured. */
  private long[] bare(OrtSession session, float[] rows, int batch) throws OrtException {
    long[] nanos = new long[iterations];
    try (OnnxTensor x = OnnxTensor.createTensor(OrtEnvironment.getEnvironment(), FloatBuffer.wrap(rows),
        new long[] {batch, width})) {
      Map<String, OnnxTensor> feed = Map.of("x", x);
      for (int i = 0; i < 50; i++) {
        session.run(feed).close();
      }
      for (int i = 0; i < iterations; i++) {
        long start = System.nanoTime();
        session.run(feed).close();
        nanos[i] = System.nanoTime() - start;
      }
    }
    Arrays.sort(nanos);
    return nanos;
  }

  /** Where a 512-row batch's time goes: ONNX Runtime's own profile of 20 runs. */
  private void profile(Path file, ExecutionProvider ep) throws Exception {
    int batch = batches.stream().mapToInt(Integer::intValue).max().orElse(512);
    String prefix = out.resolve("ort-profile").toString();
    String written;
    try (OrtSession.SessionOptions options = options(ep, 1, ep == ExecutionProvider.CUDA ? "0" : null)) {
      options.enableProfiling(prefix);
      try (OrtSession session = OrtEnvironment.getEnvironment().createSession(file.toString(), options);
          OnnxTensor x = OnnxTensor.createTensor(OrtEnvironment.getEnvironment(),
              FloatBuffer.wrap(gaussianRows(batch, width, 3)), new long[] {batch, width})) {
        for (int i = 0; i < 20; i++) {
          session.run(Map.of("x", x)).close();
        }
        written = session.endProfiling();
      }
    }
    com.fasterxml.jackson.databind.JsonNode events =
        new com.fasterxml.jackson.databind.ObjectMapper().readTree(Path.of(written).toFile());
    long runs = 0;
    long runMicros = 0;
    long kernelMicros = 0;
    long copyMicros = 0;
    java.util.TreeMap<String, Long> byOp = new java.util.TreeMap<>();
    for (com.fasterxml.jackson.databind.JsonNode event : events) {
      String name = event.path("name").asText();
      long dur = event.path("dur").asLong();
      if (name.equals("model_run")) {
        runs++;
        runMicros += dur;
      } else if (event.path("cat").asText().equals("Node") && name.endsWith("_kernel_time")) {
        kernelMicros += dur;
        String op = event.path("args").path("op_name").asText();
        byOp.merge(op, dur, Long::sum);
        if (op.startsWith("Memcpy")) {
          copyMicros += dur;
        }
      }
    }
    boolean cuda = ep == ExecutionProvider.CUDA;
    say(String.format("%nONNX Runtime's profile of %d runs at batch %d (%s): model_run %.3f ms a run, of which"
            + " the nodes' own times %.3f ms (Memcpy nodes %.3f ms), the rest %.3f ms. %s By operator, ms a run: %s.%n",
        runs, batch, Path.of(written).getFileName(), runMicros / 1000.0 / Math.max(1, runs),
        kernelMicros / 1000.0 / Math.max(1, runs), copyMicros / 1000.0 / Math.max(1, runs),
        (runMicros - kernelMicros) / 1000.0 / Math.max(1, runs),
        cuda ? "On CUDA a node's time is its kernels' launch on the host (the GPU runs them later, on its own):"
            + " the rest is waiting for the GPU to finish and copying the inputs to it and the outputs back."
            : "On the CPU the nodes' times are their computing; the rest is feeding and fetching.",
        perRun(byOp, runs)));
  }

  private static String perRun(Map<String, Long> byOp, long runs) {
    StringBuilder text = new StringBuilder();
    byOp.forEach((op, micros) -> text.append(text.length() == 0 ? "" : ", ").append(op).append(' ')
        .append(String.format("%.3f", micros / 1000.0 / Math.max(1, runs))));
    return text.toString();
  }

  private static OrtSession.SessionOptions options(ExecutionProvider ep, int intraOpThreads, String tf32)
      throws OrtException {
    OrtSession.SessionOptions options = new OrtSession.SessionOptions();
    options.setIntraOpNumThreads(intraOpThreads);
    options.addConfigEntry("session.intra_op.allow_spinning", "0");
    options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
    if (ep == ExecutionProvider.CUDA) {
      if (tf32 == null) {
        options.addCUDA(0);
      } else {
        OrtCUDAProviderOptions cuda = new OrtCUDAProviderOptions(0);
        cuda.add("use_tf32", tf32);
        options.addCUDA(cuda);
      }
    }
    return options;
  }

  private static OrtSession session(Path file, ExecutionProvider ep, int intraOpThreads, String tf32)
      throws OrtException {
    try (OrtSession.SessionOptions options = options(ep, intraOpThreads, tf32)) {
      return OrtEnvironment.getEnvironment().createSession(file.toString(), options);
    }
  }

  private static float[] run(OrtSession session, float[] rows, int count) throws OrtException {
    try (OnnxTensor x = OnnxTensor.createTensor(OrtEnvironment.getEnvironment(), FloatBuffer.wrap(rows),
            new long[] {count, rows.length / count});
        OrtSession.Result result = session.run(Map.of("x", x))) {
      FloatBuffer y = ((OnnxTensor) result.get(0)).getFloatBuffer();
      float[] answers = new float[y.remaining()];
      y.get(answers);
      return answers;
    }
  }

  // ---- 3: the transport alone ------------------------------------------------------------------

  /**
   * The same callers against a bare grpc-java server answering every call with canned bytes of the
   * MLP's answer size, computing nothing: what client and transport manage on this machine, the
   * bound over the gateway's calls/s when both share its cores.
   */
  private void ceiling(BenchModels.BenchModel mlp) throws Exception {
    say(String.format("%n## The transport alone%n%nA bare grpc-java server (%d event loops) answering every call"
            + " with canned bytes of the MLP's answer size, no model; the gateway's callers (%s, %d connections),"
            + " %d s warm-up + %d s measured each.%n%n"
            + "| callers | rows/request | calls/s | rows/s | p50 ms | p99 ms |%n|---|---|---|---|---|---|%n",
        eventLoopThreads, streaming ? "streams" : "unary", connections, warmupSeconds, durationSeconds));
    List<Integer> sorted = concurrencies.stream().sorted().toList();
    for (int rows : rowsPerRequest > 1 ? List.of(1, rowsPerRequest) : List.of(1)) {
      ModelInferResponse canned = ModelInferResponse.newBuilder().setModelName("mlp_on").setModelVersion("1")
          .addOutputs(ModelInferResponse.InferOutputTensor.newBuilder().setName("y").setDatatype("FP32")
              .addShape(rows).addShape(outputWidth(mlp)))
          .addRawOutputContents(ByteString.copyFrom(new byte[4 * outputWidth(mlp) * rows]))
          .build();
      try (io.modelgate.bench.load.TransportCeiling bare =
              new io.modelgate.bench.load.TransportCeiling(canned, eventLoopThreads);
          io.modelgate.bench.load.Connections channels =
              io.modelgate.bench.load.Connections.open("127.0.0.1:" + bare.port(), connections)) {
        for (int callers : sorted.subList(Math.max(0, sorted.size() - 2), sorted.size())) {
          LoadGenerator.Result result = new LoadGenerator(channels, mlp.batchRequest("mlp_on", rows))
              .run(LoadGenerator.Options.closed(callers, streaming, Duration.ofSeconds(warmupSeconds),
                  Duration.ofSeconds(durationSeconds)), line -> {});
          Histogram h = result.latencyMicros();
          say(String.format("| %d | %d | %,.0f | %,.0f | %.3f | %.3f |%n", callers, rows, result.throughput(),
              result.throughput() * rows, h.getValueAtPercentile(50) / 1000.0, h.getValueAtPercentile(99) / 1000.0));
        }
      }
    }
  }

  // ---- 4: through the gateway ------------------------------------------------------------------

  private void gateway(Path root, BenchModels.BenchModel mlp, float[] checkRows, float[] cpuAnswers)
      throws Exception {
    Path repo = Files.createDirectories(root.resolve("repository"));
    String ep = "execution_provider: " + provider + "\n";
    String batched = ep + "max_batch_size: " + maxBatchSize + "\nmax_queue_delay_us: " + maxQueueDelayMicros
        + "\nqueue_capacity: " + Math.max(1024, 4 * maxBatchSize) + "\n";
    BatchingBenchmark.writeVersion(repo, "mlp_off", mlp.onnx(), ep + "max_batch_size: 0\nqueue_capacity: 1024\n");
    BatchingBenchmark.writeVersion(repo, "mlp_on", mlp.onnx(), batched);
    for (int count : instances) {
      BatchingBenchmark.writeVersion(repo, "mlp_on_x" + count, mlp.onnx(), batched + "instances: " + count + "\n");
    }
    int most = instances.stream().mapToInt(Integer::intValue).max().orElse(1);
    BatchingBenchmark.writeVersion(repo, "mlp_off_x" + most, mlp.onnx(),
        ep + "max_batch_size: 0\nqueue_capacity: 1024\ninstances: " + most + "\n");
    if (provider.equals("cuda")) {
      BatchingBenchmark.writeVersion(repo, "mlp_on_x" + most + "_tf32", mlp.onnx(),
          batched + "instances: " + most + "\ncuda_tf32: true\n");
    }
    BatchingBenchmark.writeVersion(repo, "cnn_mnist_" + provider, DemoRepository.original(), ep + "max_batch_size: 64\n");
    BatchingBenchmark.writeVersion(repo, "cnn_mnist_cpu_reference", DemoRepository.original(),
        "execution_provider: cpu\nmax_batch_size: 64\n");
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    long loading = System.nanoTime();
    ModelRepository repository = ModelRepository.load(repo,
        new ModelSettings(null, SessionSettings.DEFAULTS, new SchedulerSettings(1024, 1)), stats);
    say(String.format("%n## Through the gateway%n%nRepository loaded in %.1f s:%n%n",
        (System.nanoTime() - loading) / 1e9));
    for (Model model : repository.models()) {
      for (ModelVersion version : model.versions()) {
        String where = version.isReady() ? version.serving().executionProvider().configName()
            + (version.serving().fallbackReason().isEmpty() ? "" : " (fell back: " + version.serving().fallbackReason() + ")")
            : version.reason();
        say("- " + model.name() + "/" + version.numberText() + ": " + version.state() + ", " + where + "\n");
      }
    }
    GatewayServer server = GatewayServer.start(
        new ServerSettings("127.0.0.1", 0, 64 << 20, eventLoopThreads, Duration.ofSeconds(10)),
        new AdminSettings("127.0.0.1", 0, java.util.UUID.randomUUID().toString(), null, "127.0.0.1", -1,
            repo.resolve(".state")),
        repository, stats);
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext()
        .maxInboundMessageSize(64 << 20).build();
    io.modelgate.bench.load.Connections channels =
        io.modelgate.bench.load.Connections.open("127.0.0.1:" + server.port(), connections);
    try {
      GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
      gatewayCorrectness(stub, checkRows, cpuAnswers);
      digits(stub, "cnn_mnist_" + provider);
      load(channels, mlp, stats);
    } finally {
      channels.close();
      channel.shutdownNow();
      server.stop();
      stats.close();
    }
  }

  /** The check rows sent as single-row requests at once, so that they are batched; each against the CPU. */
  private void gatewayCorrectness(GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub, float[] rows,
      float[] cpu) throws Exception {
    List<String> checked = new ArrayList<>(List.of("mlp_off", "mlp_on"));
    if (provider.equals("cuda")) {
      checked.add("mlp_on_x" + instances.stream().mapToInt(Integer::intValue).max().orElse(1) + "_tf32");
    }
    for (String served : checked) {
      ExecutorService callers = Executors.newFixedThreadPool(CHECK_ROWS);
      try {
        List<Future<float[]>> answers = new ArrayList<>();
        for (int r = 0; r < CHECK_ROWS; r++) {
          float[] row = Arrays.copyOfRange(rows, r * width, (r + 1) * width);
          answers.add(callers.submit(() -> floats(stub.withDeadlineAfter(60, TimeUnit.SECONDS)
              .modelInfer(BenchModels.fp32Request(served, "x", new long[] {1, width}, row)))));
        }
        double diff = 0;
        int out = cpu.length / CHECK_ROWS;
        for (int r = 0; r < CHECK_ROWS; r++) {
          float[] answer = answers.get(r).get();
          diff = Math.max(diff, maxAbsDiff(Arrays.copyOfRange(cpu, r * out, (r + 1) * out), answer));
        }
        say(String.format("%nGateway %s: %d single-row requests sent together, largest abs difference from the"
            + " CPU %.3g (%s).%n", served, CHECK_ROWS, diff, diff <= 1e-3 ? "within 1e-3" : "**above 1e-3**"));
      } catch (Exception e) {
        say("\nGateway " + served + ": failed: " + e + "\n");
      } finally {
        callers.shutdownNow();
      }
    }
  }

  /** The demo's 62 labelled digits through {@code served}, against their labels and the CPU's logits. */
  private void digits(GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub, String served) {
    try {
      int right = 0;
      double diff = 0;
      List<MnistDigits.Digit> all = MnistDigits.all();
      for (MnistDigits.Digit digit : all) {
        long[] shape = {1, 1, 28, 28};
        float[] logits = floats(stub.withDeadlineAfter(60, TimeUnit.SECONDS)
            .modelInfer(BenchModels.fp32Request(served, "input_image", shape, digit.pixels())));
        float[] reference = floats(stub.withDeadlineAfter(60, TimeUnit.SECONDS)
            .modelInfer(BenchModels.fp32Request("cnn_mnist_cpu_reference", "input_image", shape, digit.pixels())));
        diff = Math.max(diff, maxAbsDiff(reference, logits));
        if (argmax(logits) == digit.label()) {
          right++;
        }
      }
      say(String.format("%nGateway %s: the demo's labelled digits %d/%d right; logits' largest abs difference from"
          + " the CPU version %.3g.%n", served, right, all.size(), diff));
    } catch (RuntimeException e) {
      say("\nGateway " + served + ": failed: " + e + "\n");
    }
  }

  private void load(io.modelgate.bench.load.Connections channels, BenchModels.BenchModel mlp, StatsRegistry stats)
      throws Exception {
    say(String.format("%nClosed loop of " + (streaming ? "ModelStreamInfer streams (one request in flight each)" : "unary calls") + ", %d connections, %d server event loops, %d s warm-up"
            + " + %d s measured each; batched versions: max_batch_size %d, max_queue_delay_us %d.%n%n",
        connections, eventLoopThreads, warmupSeconds, durationSeconds, maxBatchSize, maxQueueDelayMicros));
    say("| version | callers | rows/request | calls/s | rows/s | p50 ms | p99 ms | p99.9 ms | rows/exec mean | compute/exec p50 ms | queue p99 ms | errors |\n"
        + "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    // Warm the JIT on both paths before anything is recorded.
    for (String served : List.of("mlp_off", "mlp_on")) {
      new LoadGenerator(channels, mlp.request(served))
          .run(LoadGenerator.Options.closed(64, streaming, Duration.ofSeconds(2), Duration.ZERO), line -> {});
    }
    List<Integer> sorted = concurrencies.stream().sorted().toList();
    List<Integer> largest = sorted.subList(Math.max(0, sorted.size() - 2), sorted.size());
    for (int callers : sorted) {
      List<String> versions = new ArrayList<>(List.of("mlp_off", "mlp_on"));
      int most = instances.stream().mapToInt(Integer::intValue).max().orElse(1);
      if (largest.contains(callers)) {
        instances.forEach(count -> versions.add("mlp_on_x" + count));
        versions.add("mlp_off_x" + most);
        if (provider.equals("cuda")) {
          versions.add("mlp_on_x" + most + "_tf32");
        }
      }
      for (String served : versions) {
        scenario(channels, mlp, stats, served, callers, 1);
      }
    }
    if (rowsPerRequest > 1) {
      int most = instances.stream().mapToInt(Integer::intValue).max().orElse(1);
      for (int callers : largest) {
        scenario(channels, mlp, stats, "mlp_on", callers, rowsPerRequest);
        scenario(channels, mlp, stats, "mlp_on_x" + most, callers, rowsPerRequest);
      }
    }
  }

  private void scenario(io.modelgate.bench.load.Connections channels, BenchModels.BenchModel mlp, StatsRegistry stats,
      String served, int callers, int rows) throws Exception {
    LoadGenerator.Result result = new LoadGenerator(channels, mlp.batchRequest(served, rows))
        .run(LoadGenerator.Options.closed(callers, false, Duration.ofSeconds(warmupSeconds),
            Duration.ofSeconds(durationSeconds)), line -> {}, stats::rotate, stats::rotate);
    WindowStats server = stats.latest(served, 1);
    Histogram h = result.latencyMicros();
    say(String.format("| %s | %d | %d | %,.0f | %,.0f | %.3f | %.3f | %.3f | %.1f | %.3f | %.3f | %s |%n",
        served, callers, rows, result.throughput(), result.throughput() * rows, h.getValueAtPercentile(50) / 1000.0,
        h.getValueAtPercentile(99) / 1000.0, h.getValueAtPercentile(99.9) / 1000.0,
        server.getBatchRows().getMean(), server.getComputeMs().getP50(), server.getQueueMs().getP99(),
        result.errors().isEmpty() ? "0" : result.errors().toString()));
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private static int outputWidth(BenchModels.BenchModel mlp) {
    return mlp.name().equals("mlp") ? 16 : 1024;
  }

  private static float[] floats(ModelInferResponse response) {
    FloatBuffer buffer = response.getRawOutputContents(0).asReadOnlyByteBuffer()
        .order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
    float[] values = new float[buffer.remaining()];
    buffer.get(values);
    return values;
  }

  private static float[] gaussianRows(int rows, int width, long seed) {
    Random random = new Random(seed);
    float[] values = new float[rows * width];
    for (int i = 0; i < values.length; i++) {
      values[i] = (float) random.nextGaussian();
    }
    return values;
  }

  private static double maxAbsDiff(float[] a, float[] b) {
    if (a.length != b.length) {
      return Double.POSITIVE_INFINITY;
    }
    double max = 0;
    for (int i = 0; i < a.length; i++) {
      max = Math.max(max, Math.abs((double) a[i] - b[i]));
    }
    return max;
  }

  private static double maxAbs(float[] a) {
    double max = 0;
    for (float v : a) {
      max = Math.max(max, Math.abs(v));
    }
    return max;
  }

  private static int argmax(float[] values) {
    int best = 0;
    for (int i = 1; i < values.length; i++) {
      if (values[i] > values[best]) {
        best = i;
      }
    }
    return best;
  }

  /** Prints {@code text} at once and keeps it for gpu.md, rewritten after each part. */
  private void say(String text) {
    console.print(text);
    console.flush();
    md.append(text);
    if (out != null) {
      try {
        Files.writeString(out.resolve("gpu.md"), md, StandardCharsets.UTF_8);
      } catch (IOException e) {
        console.println("(gpu.md not written: " + e + ")");
      }
    }
  }

  static {
    // Loaded before anything else so that ONNX Runtime's natives come from the one place.
    OnnxModel.environment();
  }
}

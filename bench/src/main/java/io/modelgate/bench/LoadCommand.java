package io.modelgate.bench;

import io.grpc.ManagedChannel;
import io.modelgate.bench.load.Inputs;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.bench.load.Plots;
import io.modelgate.bench.load.Reports;
import io.modelgate.bench.load.Sweep;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelMetadataRequest;
import io.modelgate.proto.inference.ModelMetadataResponse;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code modelgate-bench load}: load any KServe v2 server and report latency honestly. */
@Command(
    name = "load",
    description = {
      "Loads a KServe v2 gRPC server with ModelInfer (or ModelStreamInfer with --streaming).",
      "--rate R: open loop at R requests/s, latency from each request's intended start (coordinated"
          + " omission corrected). --concurrency C: closed loop with C callers.",
      "--sweep: open loop at rising rates to find the highest rate whose p99 meets --p99-target."
    })
final class LoadCommand implements Callable<Integer> {
  /** Begins the line printed when {@code --jit-settle} has ended, settled or not (what a parent process waits for). */
  static final String SETTLING_ENDED = "client's JIT settling ended: ";

  @Spec CommandSpec spec;
  @picocli.CommandLine.Mixin io.modelgate.gateway.cli.HelpOption help;

  @Option(names = "--target", defaultValue = "localhost:8001", description = {"Server: HOST:PORT, or several separated by commas (a fleet). Every address a host name resolves to is a server (a headless Service: its pods); connections go round them. Default: ${DEFAULT-VALUE}."}) String target;
  @Option(names = "--model", required = true, description = "Model name.") String model;
  @Option(names = "--version", defaultValue = "", description = "Pinned version. Default: the server's choice.") String version;
  @Option(names = "--rate", description = "Open loop at this many requests/s.") Double rate;
  @Option(names = "--concurrency", description = "Closed loop with this many callers (default 16 unless --rate or --sweep).") Integer concurrency;
  @Option(names = "--api-key", defaultValue = "${env:MODELGATE_API_KEY}",
      description = "API key sent with every call (authorization: Bearer), for a server with a callers file."
          + " Default: the environment's MODELGATE_API_KEY, if set.")
  String apiKey;
  @Option(names = "--tls-ca", paramLabel = "PEM", description = "Use TLS, trusting this CA for the server's certificate.")
  Path tlsCa;
  @Option(names = "--tls-cert", paramLabel = "PEM", description = "With --tls-ca: this client certificate (PEM chain), for mutual TLS.")
  Path tlsCert;
  @Option(names = "--tls-key", paramLabel = "PEM", description = "With --tls-cert: its PKCS#8 private key.")
  Path tlsKey;
  @Option(names = "--back-off", description = "Closed loop: after RESOURCE_EXHAUSTED with a RetryInfo, a caller waits"
      + " the delay it asks before its next call, as a well-behaved client does (unary calls).")
  boolean backOff;
  @Option(names = "--connections", defaultValue = "2", description = "HTTP/2 connections. Default: ${DEFAULT-VALUE}.") int connections;
  @Option(names = "--streaming", description = "Use ModelStreamInfer, one stream per connection.") boolean streaming;
  @Option(names = "--check", description = {
      "Checking mode (unary): parse every answer whole and check it against the request (model, id,"
          + " outputs present, raw contents as long as shape and datatype say); failures count as CHECK_FAILED.",
      "It costs client CPU: measure peak rates without it."}) boolean check;
  @Option(names = "--warmup", defaultValue = "5", description = "Seconds not recorded. Default: ${DEFAULT-VALUE}.") int warmup;
  @Option(names = "--jit-settle", defaultValue = "0", paramLabel = "SECONDS", description = {
      "Before the warm-up, at most this many seconds of the same load, unrecorded, in 1 s slices, until this"
          + " client's own JIT compilers were busy under " + JitSettleOption.QUIET_PERCENT + "%% of a slice (a freshly started client"
          + " compiles for tens of seconds on a small machine, on the cores it shares with a local server). 0: none.",
      "Default: ${DEFAULT-VALUE}."}) int jitSettle;
  @Option(names = "--duration", defaultValue = "20", description = "Seconds recorded. Default: ${DEFAULT-VALUE}.") int duration;
  @Option(names = "--shape", description = "Shape of an input with variable dimensions, e.g. input_ids:1,128. Repeatable.") List<String> shapes = new ArrayList<>();
  @Option(names = "--input-file", description = "A ModelInferRequest in protobuf JSON, sent instead of random inputs.") Path inputFile;
  @Option(names = "--seed", defaultValue = "1", description = "Seed of the random inputs. Default: ${DEFAULT-VALUE}.") long seed;
  @Option(names = "--sweep", description = "Find the highest rate meeting --p99-target.") boolean sweep;
  @Option(names = "--p99-target", defaultValue = "5", description = "Sweep target, ms. Default: ${DEFAULT-VALUE}.") double p99Target;
  @Option(names = "--sweep-start", defaultValue = "200", description = "First sweep rate, requests/s. Default: ${DEFAULT-VALUE}.") double sweepStart;
  @Option(names = "--sweep-factor", defaultValue = "1.5", description = "Rate multiplier between sweep steps. Default: ${DEFAULT-VALUE}.") double sweepFactor;
  @Option(names = "--label", description = "Names the result (files, tables). Default: model and load.") String label;
  @Option(names = "--out", description = "Folder for JSON, .hgrm and PNG output.") Path out;
  @Option(names = "--write-grpc-frame", paramLabel = "FILE",
      description = "Write the request as one length-prefixed gRPC message (for h2load -d FILE) and exit without loading.")
  Path grpcFrame;

  @Override
  public Integer call() throws Exception {
    PrintWriter console = spec.commandLine().getOut();
    if (rate != null && concurrency != null || sweep && (rate != null || concurrency != null)) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--rate, --concurrency and --sweep: one at most (open loop, closed loop or a sweep)");
    }
    if (jitSettle < 0 || jitSettle > 0 && sweep) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--jit-settle " + jitSettle
          + (sweep ? ": not with --sweep (each of its rates has a warm-up of its own)" : " (expected: seconds >= 0)"));
    }
    if (connections < 1 || duration < 1 || warmup < 0) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), String.format(
          "--connections %d, --duration %d, --warmup %d (expected: connections and duration >= 1, warm-up >= 0)",
          connections, duration, warmup));
    }
    if (backOff && (rate != null || sweep || streaming)) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--back-off applies to closed-loop unary calls (--concurrency), not to --rate, --sweep or --streaming");
    }
    String key = apiKey == null || apiKey.isEmpty() ? null : apiKey;
    io.netty.handler.ssl.SslContext tls;
    try {
      tls = io.modelgate.gateway.tls.ClientTls.context(tlsCa, tlsCert, tlsKey);
    } catch (IllegalArgumentException | java.io.IOException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "TLS: " + e.getMessage());
    }
    io.modelgate.bench.load.Connections channels;
    try {
      channels = io.modelgate.bench.load.Connections.open(target, connections, key, tls);
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--target: " + e.getMessage());
    }
    java.util.List<java.net.InetSocketAddress> servers = channels.addresses();
    if (servers.size() > 1) {
      console.printf("%d connections over %d servers: %s%s%n", connections, servers.size(),
          servers.stream().map(a -> a.getHostString() + " (" + a.getAddress().getHostAddress() + "):" + a.getPort())
              .collect(java.util.stream.Collectors.joining(", ")),
          connections < servers.size() ? "; fewer connections than servers, so some get none (raise --connections)" : "");
      console.flush();
    }
    try {
      ModelInferRequest request;
      if (inputFile != null) {
        request = Inputs.fromFile(inputFile, model, version);
      } else {
        ModelMetadataResponse metadata = GRPCInferenceServiceGrpc.newBlockingStub(channels.channels().get(0))
            .withDeadlineAfter(30, TimeUnit.SECONDS)
            .modelMetadata(ModelMetadataRequest.newBuilder().setName(model).setVersion(version).build());
        Map<String, long[]> given = new HashMap<>();
        for (String shape : shapes) {
          Map.Entry<String, long[]> entry = Inputs.parseShape(shape);
          given.put(entry.getKey(), entry.getValue());
        }
        request = Inputs.random(metadata, version, given, seed);
      }
      if (grpcFrame != null) {
        byte[] body = request.toByteArray();
        java.nio.ByteBuffer frame = java.nio.ByteBuffer.allocate(5 + body.length);
        frame.put((byte) 0).putInt(body.length).put(body);
        Files.write(grpcFrame, frame.array());
        console.printf("wrote %s: one uncompressed gRPC message of %d bytes (ModelInfer of model %s)%n",
            grpcFrame, body.length, model);
        console.flush();
        return 0;
      }
      if (check && streaming) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--check applies to unary calls, not --streaming");
      }
      LoadGenerator generator = new LoadGenerator(channels, request, check);
      if (out != null) {
        Files.createDirectories(out);
      }
      if (sweep) {
        Sweep.Outcome outcome = Sweep.run(generator, null, sweepStart, sweepFactor, p99Target, streaming,
            Duration.ofSeconds(Math.max(1, warmup / 2)), Duration.ofSeconds(Math.max(2, duration / 2)), 20,
            line -> { console.println(line); console.flush(); });
        console.printf("highest rate meeting p99 <= %.3f ms: %s%.0f requests/s%s%n", p99Target,
            outcome.bounded() ? "" : ">= ", outcome.highestSustainable(),
            outcome.bounded() ? "" : " (no rate missed within the steps)");
        if (out != null) {
          String name = Reports.fileName(label == null ? model + "-sweep" : label);
          Reports.writeJson(out.resolve(name + ".json"), outcome);
          Plots.sweep(out.resolve(name + ".png"), "rate sweep: " + model, Map.of(model, outcome.points()), p99Target);
        }
        return 0;
      }
      LoadGenerator.Options options = rate != null
          ? LoadGenerator.Options.open(rate, streaming, Duration.ofSeconds(warmup), Duration.ofSeconds(duration))
          : LoadGenerator.Options.closed(concurrency == null ? 16 : concurrency, streaming,
              Duration.ofSeconds(warmup), Duration.ofSeconds(duration));
      if (backOff) {
        options = options.backingOff();
      }
      String setup = String.format("%s against %s, model %s%s, %d connections, %d s warm-up + %d s; client: %s",
          options.describe(), target, model, version.isEmpty() ? "" : " version " + version, connections, warmup,
          duration, environment());
      console.println(setup);
      console.flush();
      if (jitSettle > 0) {
        LoadGenerator.Options slice = options.timed(Duration.ofSeconds(1), Duration.ZERO);
        JitSettling.Outcome settled = JitSettling.settle(
            () -> generator.run(slice, line -> {}), Duration.ofSeconds(jitSettle), JitSettleOption.QUIET_PERCENT / 100.0);
        console.println("  " + SETTLING_ENDED + settled.describe(JitSettleOption.QUIET_PERCENT / 100.0));
        console.flush();
      }
      LoadGenerator.Result result = generator.run(options, line -> { console.println(line); console.flush(); });
      String name = label == null ? model + " " + options.describe() : label;
      Reports.Summary summary = Reports.summarize(name, options.describe(), result);
      console.println();
      console.print(Reports.text(summary));
      // Connections made again during the run (a server's GOAWAY) looked the target up again.
      java.util.List<java.net.InetSocketAddress> now = channels.current();
      java.util.Set<java.net.InetSocketAddress> before = new java.util.HashSet<>(servers);
      java.util.Set<java.net.InetSocketAddress> after = new java.util.LinkedHashSet<>(now);
      if (!before.equals(after)) {
        console.printf("the target looked up again as connections were made again: the connections end on %d servers: %s%n",
            after.size(), after.stream().map(a -> a.getHostString() + " (" + a.getAddress().getHostAddress() + "):" + a.getPort())
                .collect(java.util.stream.Collectors.joining(", ")));
      }
      if (out != null) {
        Files.writeString(out.resolve(Reports.fileName(name) + ".md"),
            "# " + name + "\n\n" + setup + "\n\n" + Reports.header() + Reports.row(summary));
        Map<String, Object> json = new java.util.LinkedHashMap<>();
        json.put("setup", setup);
        json.put("result", summary);
        Reports.writeJson(out.resolve(Reports.fileName(name) + ".json"), json);
        Reports.writeHgrm(out.resolve(Reports.fileName(name) + ".hgrm"), result.latencyMicros());
        Map<String, org.HdrHistogram.Histogram> curves = new java.util.LinkedHashMap<>();
        curves.put("all answers", result.latencyMicros());
        if (result.byVersion().size() > 1) {
          result.byVersion().forEach((v, h) -> curves.put("version " + v, h));
        }
        Plots.percentiles(out.resolve(Reports.fileName(name) + ".png"), name + ": latency by percentile", curves);
      }
      console.flush();
      return result.errorCount() == 0 ? 0 : 1;
    } finally {
      channels.close();
    }
  }

  /** The client's JVM and machine, as every result names them. */
  static String environment() {
    String cpu = "";
    try (var lines = Files.lines(java.nio.file.Path.of("/proc/cpuinfo"))) {
      cpu = lines.filter(l -> l.startsWith("model name")).findFirst()
          .map(l -> " (" + l.substring(l.indexOf(':') + 1).trim() + ")").orElse("");
    } catch (java.io.IOException | RuntimeException e) {
      // Not Linux, or not readable: the core count stands alone.
    }
    return String.format("%s %s, %d cores%s, %s %s", System.getProperty("java.vm.name"), System.getProperty("java.version"),
        Runtime.getRuntime().availableProcessors(), cpu, System.getProperty("os.name"), System.getProperty("os.arch"));
  }
}

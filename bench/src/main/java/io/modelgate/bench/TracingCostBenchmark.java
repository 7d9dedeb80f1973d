package io.modelgate.bench;

import com.sun.net.httpserver.HttpServer;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.tracing.TraceSettings;
import io.modelgate.gateway.tracing.Tracing;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.execution.SchedulerSettings;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicLong;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * What {@code serve --trace-endpoint} costs the requests a server answers: one gateway per
 * scenario, each serving the same model — tracing off (the baseline), and tracing on at each
 * sample rate asked (calls arrive without a {@code traceparent}, so the rate decides: 0 measures
 * the interceptor alone, 1 a span for every call) — sending its spans over OTLP/HTTP, or OTLP/gRPC,
 * to a sink in this JVM that reads and discards them, as a collector on the same machine would take
 * them.
 * Scenarios interleave over rounds on the same machine; reports throughput and p99 as ratios
 * against tracing off, and the spans each scenario sent and dropped.
 */
@Command(
    name = "tracing",
    mixinStandardHelpOptions = true,
    description = "End-to-end cost of tracing inference calls (OpenTelemetry spans over OTLP/HTTP or OTLP/gRPC), against"
        + " none.")
final class TracingCostBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @picocli.CommandLine.Mixin ClosedLoopRounds load;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;

  @Option(names = "--sample-rates", split = ",", defaultValue = "0,0.01,1",
      description = "The --trace-sample-rate of each traced scenario. Default: ${DEFAULT-VALUE}.")
  List<Double> sampleRates;

  @Option(names = "--protocols", split = ",", defaultValue = "http/protobuf",
      description = "How each traced scenario sends its spans, http/protobuf and/or grpc: a scenario per rate and"
          + " protocol. Default: ${DEFAULT-VALUE}.")
  List<String> protocols;

  @Option(names = "--compression", defaultValue = "none", paramLabel = "none|gzip",
      description = "Each traced scenario's --trace-compression; the OTLP/HTTP sink counts the bytes as sent (compressed),"
          + " the OTLP/gRPC one as decoded. Default: ${DEFAULT-VALUE}.")
  String compression;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    BenchModels.BenchModel bench = BenchModels.byName(load.model);
    ModelInferRequest request = bench.request(load.model);
    AtomicLong exports = new AtomicLong();
    AtomicLong exportedBytes = new AtomicLong();
    HttpServer sink = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    sink.createContext(TraceSettings.TRACES_PATH, exchange -> {
      exportedBytes.addAndGet(exchange.getRequestBody().readAllBytes().length);
      exports.incrementAndGet();
      exchange.getResponseHeaders().add("Content-Type", "application/x-protobuf");
      exchange.sendResponseHeaders(200, 0);
      exchange.close();
    });
    sink.start();
    io.grpc.Server grpcSink = TraceSinkCommand.grpcReceiver(new InetSocketAddress("127.0.0.1", 0), export -> {
      exportedBytes.addAndGet(export.getSerializedSize());
      exports.incrementAndGet();
    });
    Map<TraceSettings.Protocol, URI> endpoints = Map.of(
        TraceSettings.Protocol.HTTP, URI.create("http://127.0.0.1:" + sink.getAddress().getPort()),
        TraceSettings.Protocol.GRPC, URI.create("http://127.0.0.1:" + grpcSink.getPort()));
    Map<String, BenchGateway> gateways = new LinkedHashMap<>();
    Map<String, List<LoadGenerator.Result>> results;
    try {
      gateways.put("tracing off (baseline)", gateway(TraceSettings.OFF));
      for (double rate : sampleRates) {
        for (String name : protocols) {
          TraceSettings.Protocol protocol = TraceSettings.Protocol.named(name);
          gateways.put(String.format(java.util.Locale.ROOT, "traced at rate %s%s", rate,
                  protocols.size() > 1 ? " over " + protocol : ""),
              gateway(TraceSettings.to(protocol, endpoints.get(protocol), rate).withGzip(TraceSettings.gzip(compression))));
        }
      }
      out.printf("tracing cost: model %s, %d callers over %d connections, a gateway per scenario, %d s JIT warm-up, then %d"
          + " rounds of %d s warm-up + %d s per scenario, in rotating order%n", load.model, load.concurrency,
          load.connections, load.jitWarmupSeconds, load.rounds, load.warmupSeconds, load.durationSeconds);
      out.flush();
      List<String> order = new ArrayList<>(gateways.keySet());
      for (String name : order) {
        new LoadGenerator(gateways.get(name).channels(), request).run(LoadGenerator.Options.closed(load.concurrency, false,
            Duration.ZERO, Duration.ofSeconds(Math.max(1, load.jitWarmupSeconds / order.size()))), line -> {});
      }
      jitSettle.settle(() -> {
        for (String name : order) {
          new LoadGenerator(gateways.get(name).channels(), request)
              .run(LoadGenerator.Options.closed(load.concurrency, false, Duration.ofSeconds(1), Duration.ZERO), line -> {});
        }
      }, out);
      Map<String, ClosedLoopRounds.Scenario> scenarios = new LinkedHashMap<>();
      for (String name : order) {
        scenarios.put(name, options -> new LoadGenerator(gateways.get(name).channels(), request).run(options, line -> {}));
      }
      results = load.rounds(out, scenarios);
      for (Map.Entry<String, BenchGateway> entry : gateways.entrySet()) {
        Tracing tracing = entry.getValue().server().tracing();
        if (tracing.on()) {
          tracing.flush(Duration.ofSeconds(30));
          out.printf("  %s: %d spans sent, %d dropped (more than %d waiting), %d lost in failed sends%n", entry.getKey(),
              tracing.spans("exported"), tracing.spans("dropped"), Tracing.MOST_WAITING, tracing.spans("failed"));
        }
      }
      out.printf("  the sink took %d exports, %.1f MB%n", exports.get(), exportedBytes.get() / 1e6);
    } finally {
      for (BenchGateway gateway : gateways.values()) {
        gateway.close();
      }
      sink.stop(0);
      grpcSink.shutdownNow();
    }
    ScenarioTable.print(out, results, "off");
    return 0;
  }

  /** A gateway of its own serving the benchmark's model, traced as {@code traces} say. */
  private BenchGateway gateway(TraceSettings traces) throws java.io.IOException {
    Path root = Files.createTempDirectory("modelgate-bench-tracing-");
    Files.write(Files.createDirectories(root.resolve(load.model).resolve("1")).resolve("model.onnx"),
        BenchModels.byName(load.model).onnx());
    return BenchGateway.start(root, load.connections, true, null, new SchedulerSettings(1024, 1), 1,
        settings -> settings.withTraces(traces));
  }
}

package io.modelgate.bench.jmh;

import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * One ModelInfer through the whole gateway over the in-process transport (no sockets): routing,
 * decoding, the ring, ONNX Runtime on a 4-wide Identity model, statistics, the response. With
 * {@code access=callers}, the server has a callers file and each call an API key: the caller is
 * identified (a SHA-256 of the key), admitted under its tenant's quota and fair share of the queue
 * and of the request memory, and counted in the usage ledger.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class InProcessGatewayBenchmark {
  /** {@code open}: no callers file; {@code callers}: a callers file, one tenant, calls with its API key. */
  @Param({"open", "callers"})
  public String access;

  private static final String KEY = "jmh-tenant-key-0123456789";
  private Path root;
  private StatsRegistry stats;
  private GatewayServer server;
  private ManagedChannel channel;
  private GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub;
  private ModelInferRequest request;

  @Setup
  public void setUp() throws Exception {
    root = Files.createTempDirectory("modelgate-jmh-gateway-");
    Path dir = Files.createDirectories(root.resolve("identity/1"));
    Files.write(dir.resolve("model.onnx"),
        OnnxGraphBuilder.create("identity", 17)
            .input("x", OnnxGraphBuilder.FLOAT, -1, 4)
            .output("y", OnnxGraphBuilder.FLOAT, -1, 4)
            .node("Identity", List.of("x"), List.of("y"))
            .build());
    stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    ModelRepository repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS), stats);
    AdminSettings admin =
        new AdminSettings("127.0.0.1", 0, java.util.UUID.randomUUID().toString(), null, "127.0.0.1", -1, root.resolve(".state"));
    if (access.equals("callers")) {
      Files.writeString(root.resolve("callers.yaml"),
          "tenants:\n  jmh:\n    api_keys: [" + io.modelgate.gateway.callers.CallerPolicy.hash(KEY) + "]\n");
      admin = admin.withCallers(root.resolve("callers.yaml"));
    } else if (!access.equals("open")) {
      throw new IllegalArgumentException("access: " + access + " (expected: open or callers)");
    }
    String name = InProcessServerBuilder.generateName();
    server = GatewayServer.start(
        new GatewayServer.Transports(InProcessServerBuilder.forName(name), InProcessServerBuilder.forName(name + "-admin"), () -> {}),
        Duration.ofSeconds(5),
        admin, repository, stats);
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
    if (access.equals("callers")) {
      io.grpc.Metadata headers = new io.grpc.Metadata();
      headers.put(io.grpc.Metadata.Key.of("x-api-key", io.grpc.Metadata.ASCII_STRING_MARSHALLER), KEY);
      stub = stub.withInterceptors(io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    request = ModelInferRequest.newBuilder().setModelName("identity")
        .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("x").setDatatype("FP32").addShape(1).addShape(4)
            .setContents(InferTensorContents.newBuilder().addFp32Contents(1).addFp32Contents(2).addFp32Contents(3).addFp32Contents(4)))
        .build();
  }

  @TearDown
  public void tearDown() throws Exception {
    channel.shutdownNow();
    server.stop();
    stats.close();
    try (var paths = Files.walk(root)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  @Benchmark
  public ModelInferResponse modelInfer() {
    return stub.modelInfer(request);
  }
}

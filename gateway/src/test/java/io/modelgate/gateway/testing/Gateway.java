package io.modelgate.gateway.testing;

import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.RepositoryAtStart;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceStub;
import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.testing.TestModels;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A running gateway for tests, over the in-process transport or real Netty on loopback, with a
 * repository that holds the demo, small generated models and deliberately broken ones.
 */
public final class Gateway implements AutoCloseable {
  public static final String ADMIN_TOKEN = "test-admin-token-0123456789";

  public final Path root;
  public final ModelRepository repository;
  public final StatsRegistry stats;
  public final GatewayServer server;
  public final ManagedChannel channel;
  public final ManagedChannel adminChannel;

  private Gateway(
      Path root,
      ModelRepository repository,
      StatsRegistry stats,
      GatewayServer server,
      ManagedChannel channel,
      ManagedChannel adminChannel) {
    this.root = root;
    this.repository = repository;
    this.stats = stats;
    this.server = server;
    this.channel = channel;
    this.adminChannel = adminChannel;
  }

  /** The standard test repository under {@code root}. */
  public static Path standardRepository(Path root) {
    DemoRepository.materialize(root);
    write(root, "affine", 1, affine());
    write(root, "strings", 1, stringIdentity());
    write(root, "reshape", 1, reshapeToTwoByTwo());
    write(root, "broken", 1, "not an ONNX model".getBytes());
    write(root, "broken", 2, affine());
    write(root, "zipmap", 1, resource("/org/tribuo/interop/onnx/lr_mnist.onnx"));
    write(root, "tuned", 1, affine());
    config(root, "tuned", "max_batch_size: 8\nmax_queue_delay_us: 250\npreferred_batch_sizes: [4, 8]\ninstances: 2\n");
    write(root, "unbatched", 1, affine());
    config(root, "unbatched", "max_batch_size: 0\n");
    write(root, "fallback", 1, affine());
    config(root, "fallback", "execution_provider: cuda\nallow_cpu_fallback: true\n");
    write(root, "state", 1, io.modelgate.runtime.testing.TestModels.stateWithScale());
    config(root, "state", "max_batch_size: 8\nbatch_axes: {state: 1, scaled: 1, scale: none}\n");
    return root;
  }

  public static Gateway inProcess(Path root) throws IOException {
    return inProcess(root, Duration.ofSeconds(10));
  }

  public static Gateway inProcess(Path root, Duration drainTimeout) throws IOException {
    return inProcess(root, drainTimeout, root.resolve(".state"));
  }

  /** In-process transports; statistics intervals close only when the test calls rotate(). */
  public static Gateway inProcess(Path root, Duration drainTimeout, Path stateDir) throws IOException {
    return inProcess(root, drainTimeout, stateDir, Clock.systemUTC());
  }

  /** As above, on {@code clock}; rollouts are judged only when the test calls tick(). */
  public static Gateway inProcess(Path root, Duration drainTimeout, Path stateDir, Clock clock)
      throws IOException {
    return inProcess(root, drainTimeout, Duration.ZERO, stateDir, clock);
  }

  /** In-process, reporting NOT_SERVING for {@code shutdownDelay} before it stops accepting. */
  public static Gateway inProcess(
      Path root, Duration drainTimeout, Duration shutdownDelay, Path stateDir, Clock clock)
      throws IOException {
    return inProcess(root, drainTimeout, shutdownDelay, adminSettings(stateDir, -1), clock);
  }

  /** In-process, with the control store {@code control} (etcd, for a fleet of replicas in one test). */
  public static Gateway inProcess(Path root, Path stateDir, Clock clock, io.modelgate.gateway.control.ControlSettings control)
      throws IOException {
    AdminSettings plain = adminSettings(stateDir, -1);
    return inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        new AdminSettings(plain.host(), plain.port(), plain.token(), plain.tls(), plain.metricsHost(), plain.metricsPort(), stateDir, control),
        clock);
  }

  public static Gateway inProcess(
      Path root, Duration drainTimeout, Duration shutdownDelay, AdminSettings adminSettings, Clock clock)
      throws IOException {
    return inProcess(root, drainTimeout, shutdownDelay, adminSettings, clock, () -> {});
  }

  /** As above, {@code afterLoad} run once the repository has loaded, before the server starts on it. */
  public static Gateway inProcess(
      Path root, Duration drainTimeout, Duration shutdownDelay, AdminSettings adminSettings, Clock clock,
      Runnable afterLoad) throws IOException {
    return inProcess(root, drainTimeout, shutdownDelay, adminSettings, clock, afterLoad, false);
  }

  /**
   * In-process, with the control store {@code control}, and its background threads running as a
   * served one's do (statistics rotation, the fleet's publish and answers, golden runs, the rollout
   * judge...): the tests above drive those by hand.
   */
  public static Gateway inProcessWithBackground(Path root, Path stateDir, io.modelgate.gateway.control.ControlSettings control)
      throws IOException {
    AdminSettings plain = adminSettings(stateDir, -1);
    return inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        new AdminSettings(plain.host(), plain.port(), plain.token(), plain.tls(), plain.metricsHost(), plain.metricsPort(), stateDir, control),
        Clock.systemUTC(), () -> {}, true);
  }

  private static Gateway inProcess(
      Path root, Duration drainTimeout, Duration shutdownDelay, AdminSettings adminSettings, Clock clock,
      Runnable afterLoad, boolean background) throws IOException {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), clock, background);
    RepositoryAtStart loaded = load(root, adminSettings, stats);
    afterLoad.run();
    ModelRepository repository = loaded.repository();
    String name = InProcessServerBuilder.generateName();
    String adminName = name + "-admin";
    GatewayServer server =
        GatewayServer.start(
            new GatewayServer.Transports(
                InProcessServerBuilder.forName(name), InProcessServerBuilder.forName(adminName), () -> {}),
            drainTimeout,
            shutdownDelay,
            adminSettings,
            loaded,
            stats);
    return new Gateway(
        root,
        repository,
        stats,
        server,
        InProcessChannelBuilder.forName(name).directExecutor().build(),
        InProcessChannelBuilder.forName(adminName).directExecutor().build());
  }

  /** In-process, with more admin tokens, with roles, from {@code tokensFile}. */
  public static Gateway inProcessWithAdminTokens(Path root, Path tokensFile) throws IOException {
    return inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        adminSettings(root.resolve(".state"), -1).withAdminTokens(tokensFile), Clock.systemUTC());
  }

  /** An admin stub that presents {@code token}. */
  public AdminServiceGrpc.AdminServiceBlockingStub adminAs(String token) {
    return AdminServiceGrpc.newBlockingStub(adminChannel).withCallCredentials(bearer(token)).withDeadlineAfter(60, TimeUnit.SECONDS);
  }

  /** In-process, with {@code callersFile} deciding who may call the inference port. */
  public static Gateway inProcessWithCallers(Path root, Path callersFile, Clock clock) throws IOException {
    return inProcess(root, Duration.ofSeconds(10), Duration.ZERO, adminSettings(root.resolve(".state"), -1).withCallers(callersFile),
        clock);
  }

  public static Gateway netty(Path root, int maxInboundMessageBytes) throws IOException {
    return netty(root, maxInboundMessageBytes, null);
  }

  /**
   * On Netty, the admin port with server-only TLS from {@code adminTls} when not null, the
   * repository then polled every minute (its metrics exported; the test makes no look itself) and
   * tracing on (its metrics exported; at rate 0, no call traced unless it comes in a sampled trace).
   */
  public static Gateway netty(Path root, int maxInboundMessageBytes, TestCertificates adminTls) throws IOException {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    AdminSettings admin = adminTls == null
        ? adminSettings(root.resolve(".state"), 0)
        : new AdminSettings("127.0.0.1", 0, ADMIN_TOKEN,
            new io.modelgate.gateway.tls.TlsSettings(adminTls.serverChain, adminTls.serverKey, null),
            "127.0.0.1", 0, root.resolve(".state")).withRepositoryPoll(Duration.ofMinutes(1))
            .withTraces(io.modelgate.gateway.tracing.TraceSettings.to(java.net.URI.create("http://127.0.0.1:9"), 0));
    RepositoryAtStart loaded = load(root, admin, stats);
    ModelRepository repository = loaded.repository();
    GatewayServer server =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, maxInboundMessageBytes, 1, Duration.ofSeconds(10)),
            admin,
            loaded,
            stats);
    ManagedChannel channel =
        io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.port())
            .usePlaintext()
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .build();
    io.grpc.netty.NettyChannelBuilder adminChannel = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.adminPort());
    if (adminTls == null) {
      adminChannel.usePlaintext();
    } else {
      adminChannel.sslContext(io.grpc.netty.GrpcSslContexts.forClient().trustManager(adminTls.caCert.toFile()).build());
    }
    return new Gateway(root, repository, stats, server, channel, adminChannel.build());
  }

  /** A server on Netty with {@code settings} and {@code admin}, serving {@code root}'s models, recording to {@code stats}. */
  public static GatewayServer server(Path root, StatsRegistry stats, ServerSettings settings, AdminSettings admin) throws IOException {
    RepositoryAtStart loaded = load(root, admin, stats);
    return GatewayServer.start(settings, admin, loaded, stats);
  }

  public static AdminSettings adminSettings(Path stateDir, int metricsPort) {
    return new AdminSettings("127.0.0.1", 0, ADMIN_TOKEN, null, "127.0.0.1", metricsPort, stateDir);
  }

  /** The repository at {@code root} and the control store {@code admin} names, as a server that starts loads them. */
  private static RepositoryAtStart load(Path root, AdminSettings admin, StatsRegistry stats) throws IOException {
    return RepositoryAtStart.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS), admin, stats, 1);
  }

  /** An admin stub that presents the token. */
  public AdminServiceGrpc.AdminServiceBlockingStub admin() {
    return AdminServiceGrpc.newBlockingStub(adminChannel)
        .withCallCredentials(bearer(ADMIN_TOKEN))
        .withDeadlineAfter(60, TimeUnit.SECONDS);
  }

  public static io.grpc.CallCredentials bearer(String token) {
    return new io.grpc.CallCredentials() {
      @Override
      public void applyRequestMetadata(RequestInfo info, java.util.concurrent.Executor executor, MetadataApplier applier) {
        io.grpc.Metadata headers = new io.grpc.Metadata();
        headers.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
        applier.apply(headers);
      }
    };
  }

  public GRPCInferenceServiceBlockingStub blocking() {
    return GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  /** A blocking stub that presents {@code apiKey} (a tenant's key, with a callers file). */
  public GRPCInferenceServiceBlockingStub blockingAs(String apiKey) {
    return blocking().withCallCredentials(bearer(apiKey));
  }

  public GRPCInferenceServiceStub async() {
    return GRPCInferenceServiceGrpc.newStub(channel);
  }

  @Override
  public void close() {
    channel.shutdownNow();
    adminChannel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
      adminChannel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    server.stop();
    stats.close();
  }

  public static byte[] affine() {
    return TestModels.affine();
  }

  /** x FP32 [-1,3] → y = x * k + 1 and z = x * k: {@link #affine}'s signature (k = 2) with another factor. */
  public static byte[] affineTimes(float k) {
    return OnnxGraphBuilder.create("affine" + k, 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, 3)
        .output("y", OnnxGraphBuilder.FLOAT, -1, 3)
        .output("z", OnnxGraphBuilder.FLOAT, -1, 3)
        .initializer("k", new float[] {k})
        .initializer("one", new float[] {1f})
        .node("Mul", List.of("x", "k"), List.of("z"))
        .node("Add", List.of("z", "one"), List.of("y"), java.util.Map.of())
        .build();
  }

  public static byte[] reshapeToTwoByTwo() {
    return TestModels.reshapeToTwoByTwo();
  }

  /** x FP32 [-1,3] → y and z, like affine, but y goes through 60 large matrix products (about 1.4 ms a call on 2 cores). */
  public static byte[] slowAffine() {
    return slowAffine(60);
  }

  /** As {@link #slowAffine()}, through {@code layers} products of 512 × 512. */
  public static byte[] slowAffine(int layers) {
    OnnxGraphBuilder graph =
        OnnxGraphBuilder.create("slow", 17)
            .input("x", OnnxGraphBuilder.FLOAT, -1, 3)
            .output("y", OnnxGraphBuilder.FLOAT, -1, 3)
            .output("z", OnnxGraphBuilder.FLOAT, -1, 3)
            .initializer("up", new float[3 * 512], 3, 512)
            .initializer("square", new float[512 * 512], 512, 512)
            .initializer("down", new float[512 * 3], 512, 3)
            .initializer("two", new float[] {2f})
            .node("Mul", List.of("x", "two"), List.of("z"))
            .node("MatMul", List.of("x", "up"), List.of("h0"));
    for (int i = 0; i < layers; i++) {
      graph.node("MatMul", List.of("h" + i, "square"), List.of("h" + (i + 1)));
    }
    return graph.node("MatMul", List.of("h" + layers, "down"), List.of("y")).build();
  }

  /** text BYTES [-1] → same BYTES [-1]. */
  public static byte[] stringIdentity() {
    int type = OnnxGraphBuilder.elementType(DataType.BYTES);
    return OnnxGraphBuilder.create("strings", 17)
        .input("text", type, -1)
        .output("echo", type, -1)
        .node("Identity", List.of("text"), List.of("echo"))
        .build();
  }

  /** x FP32 [-1,-1] → same: for large messages. */
  public static byte[] floatIdentity() {
    return OnnxGraphBuilder.create("big", 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, -1)
        .output("y", OnnxGraphBuilder.FLOAT, -1, -1)
        .node("Identity", List.of("x"), List.of("y"))
        .build();
  }

  public static void write(Path root, String model, int version, byte[] bytes) {
    try {
      Path dir = Files.createDirectories(root.resolve(model).resolve(Integer.toString(version)));
      Files.write(dir.resolve("model.onnx"), bytes);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Deletes a model's folder and everything in it, as an operator retiring the model does. */
  public static void deleteModel(Path root, String model) {
    try (java.util.stream.Stream<Path> paths = Files.walk(root.resolve(model))) {
      for (Path path : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
        Files.delete(path);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static void config(Path root, String model, String yaml) {
    try {
      Files.writeString(root.resolve(model).resolve("model.yaml"), yaml);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static byte[] resource(String path) {
    return TestModels.resource(path);
  }
}

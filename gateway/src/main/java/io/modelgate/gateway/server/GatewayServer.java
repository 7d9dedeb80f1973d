package io.modelgate.gateway.server;

import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionService;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.modelgate.gateway.admin.AdminAuth;
import io.modelgate.gateway.admin.AdminService;
import io.modelgate.gateway.callers.CallerAuth;
import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.control.ControlSettings;
import io.modelgate.gateway.control.ControlStore;
import io.modelgate.gateway.control.StateStore;
import io.modelgate.gateway.inference.InferenceService;
import io.modelgate.gateway.routing.LatestReadyVersionSelector;
import io.modelgate.gateway.routing.Router;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.tls.ReloadingSslContext;
import io.modelgate.gateway.tls.TlsSettings;
import io.modelgate.proto.admin.v1.AdminState;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.runtime.repository.ModelRepository;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The gateway process's servers: the KServe v2 inference service with {@code grpc.health.v1}
 * health (SERVING only while ready) and server reflection on the inference port; the admin
 * service on its own port (never on the inference port); Prometheus metrics over HTTP.
 *
 * <p>Health follows readiness continuously: {@code grpc.health.v1} for the whole server ({@code ""}
 * and {@code inference.GRPCInferenceService}) and for each model by its name, and HTTP {@code
 * /readyz}, change as soon as a version's state changes (through {@link
 * io.modelgate.runtime.repository.VersionEvents}); {@code /livez} stays 200 until the process has
 * stopped.
 *
 * <p>{@link #stop()} follows the shutdown order, each phase recorded in {@link #phases()}: health
 * NOT_SERVING → the shutdown delay, still serving → stop accepting new calls → drain every
 * version's queue → end open streams once each has answered what it received → close the ONNX
 * Runtime sessions → await termination of the transports.
 */
public final class GatewayServer {
  /** The longest a start-up warm-up may take. */
  static final Duration WARMUP_BUDGET = Duration.ofSeconds(10);
  private static final Logger log = LoggerFactory.getLogger(GatewayServer.class);

  /** The steps of {@link #stop()}, in order. */
  public enum Phase {
    NOT_SERVING,
    DELAYED,
    STOPPED_ACCEPTING,
    DRAINED,
    SESSIONS_CLOSED,
    TERMINATED
  }

  /**
   * The transports a gateway runs on; Netty in production, in-process in tests.
   *
   * @param metricsConnections the most connections the metrics and health port holds at once
   * @param metricsConnectionRate the most new connections it takes a second; 0 for any
   * @param connections what the inference and admin ports hold, with the {@code top} client
   *     addresses holding the most (none for in-process transports)
   */
  public record Transports(ServerBuilder<?> inference, ServerBuilder<?> admin, Runnable release, int metricsConnections,
      int metricsConnectionRate, java.util.function.IntFunction<List<io.modelgate.proto.admin.v1.PortConnections>> connections) {
    /** With the default connection limits on the metrics port. */
    public Transports(ServerBuilder<?> inference, ServerBuilder<?> admin, Runnable release) {
      this(inference, admin, release, ConnectionSettings.DEFAULT_MAX_CONNECTIONS, ConnectionSettings.DEFAULT_MAX_CONNECTION_RATE,
          top -> List.of());
    }
  }

  private final Server server;
  private final Server adminServer;
  private final ModelRepository repository;
  private final StatsRegistry stats;
  private final Router router;
  private final ControlPlane control;
  private final io.modelgate.gateway.control.Fleet fleet;
  private final io.modelgate.gateway.control.FleetDrift fleetDrift;
  private final io.modelgate.gateway.health.GoldenSets golden;
  private final io.modelgate.gateway.health.PayloadLog payloadLog;
  private final io.modelgate.gateway.health.Drift drift;
  private final io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.callers.CallerPolicy> callers;
  private final io.modelgate.gateway.usage.Usage usage;
  private final io.modelgate.gateway.tracing.Tracing tracing;
  private final io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.admin.AdminTokens> adminTokens;
  private final io.modelgate.gateway.admin.AccessControl access;
  private final AdminService admin;
  private final HttpEndpoints metrics;
  private final HealthStatusManager health;
  private final InferenceService inference;
  private final GatewayMetrics gatewayMetrics;
  private final io.modelgate.gateway.admin.VersionControl versions;
  /** Null unless the repository folder is polled ({@code --repository-poll}). */
  private final io.modelgate.gateway.admin.RepositoryPoll poll;
  private final io.modelgate.gateway.admin.DeniedAudit deniedAudit;
  private final io.modelgate.gateway.inference.RequestMemory requestMemory;
  private final Duration drainTimeout;
  private final Duration shutdownDelay;
  private final Runnable releaseTransport;
  private final List<Phase> phases = new CopyOnWriteArrayList<>();
  private final CountDownLatch terminated = new CountDownLatch(1);
  private volatile boolean stopping;
  /** Set once by {@link #start}, before the server is published; read by tests. */
  private StartupWarmup.Summary warmup;

  private GatewayServer(Builder b) {
    this.server = b.server;
    this.adminServer = b.adminServer;
    this.repository = b.repository;
    this.stats = b.stats;
    this.router = b.router;
    this.control = b.control;
    this.fleet = b.fleet;
    this.fleetDrift = b.fleetDrift;
    this.golden = b.golden;
    this.payloadLog = b.payloadLog;
    this.drift = b.drift;
    this.callers = b.callers;
    this.usage = b.usage;
    this.tracing = b.tracing;
    this.adminTokens = b.adminTokens;
    this.admin = b.admin;
    this.access = b.access;
    this.metrics = b.metrics;
    this.health = b.health;
    this.inference = b.inference;
    this.gatewayMetrics = b.gatewayMetrics;
    this.versions = b.versions;
    this.poll = b.poll;
    this.deniedAudit = b.deniedAudit;
    this.requestMemory = b.requestMemory;
    this.drainTimeout = b.drainTimeout;
    this.shutdownDelay = b.shutdownDelay;
    this.releaseTransport = b.release;
  }

  private static final class Builder {
    Server server;
    Server adminServer;
    ModelRepository repository;
    StatsRegistry stats;
    Router router;
    ControlPlane control;
    io.modelgate.gateway.control.Fleet fleet;
    io.modelgate.gateway.control.FleetDrift fleetDrift;
    io.modelgate.gateway.health.GoldenSets golden;
    io.modelgate.gateway.health.PayloadLog payloadLog;
    io.modelgate.gateway.health.Drift drift;
    io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.callers.CallerPolicy> callers;
    io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.admin.AdminTokens> adminTokens;
    io.modelgate.gateway.admin.AccessControl access;
    io.modelgate.gateway.usage.Usage usage;
    io.modelgate.gateway.tracing.Tracing tracing;
    AdminService admin;
    HttpEndpoints metrics;
    HealthStatusManager health;
    InferenceService inference;
    io.modelgate.gateway.inference.RequestMemory requestMemory;
    GatewayMetrics gatewayMetrics;
    io.modelgate.gateway.admin.VersionControl versions;
    io.modelgate.gateway.admin.RepositoryPoll poll;
    io.modelgate.gateway.admin.DeniedAudit deniedAudit;
    Duration drainTimeout;
    Duration shutdownDelay = Duration.ZERO;
    Runnable release;
    /** The control store, until the control plane owns it (which closes it). */
    ControlStore store;
    /** The poll's look at the repository folder before it loaded, or null. */
    java.util.Map<String, String> before;

    /**
     * Closes whatever has been made, in the order a stop closes it: the one way out of a start that
     * fails part-way. The transports are released by whoever made them.
     */
    void closeMade() {
      if (server != null) {
        server.shutdownNow();
      }
      if (adminServer != null) {
        adminServer.shutdownNow();
      }
      if (fleetDrift != null) {
        fleetDrift.close();
      }
      if (fleet != null) {
        fleet.close();
      }
      if (control != null) {
        control.close();
      } else if (store != null) {
        store.close();
      }
      Runnable[] rest = {
        golden == null ? null : golden::close,
        payloadLog == null ? null : payloadLog::close,
        drift == null ? null : drift::close,
        usage == null ? null : usage::close,
        tracing == null ? null : tracing::close,
        callers == null ? null : callers::close,
        adminTokens == null ? null : adminTokens::close,
        admin == null ? null : admin::close,
        deniedAudit == null ? null : deniedAudit::close,
        access == null ? null : access::close,
        requestMemory == null ? null : requestMemory::close,
        poll == null ? null : poll::close,
        versions == null ? null : versions::close,
        gatewayMetrics == null ? null : gatewayMetrics::close,
      };
      for (Runnable close : rest) {
        if (close != null) {
          close.run();
        }
      }
    }
  }

  /**
   * Starts the gateway on Netty (native epoll where available): inference on {@code settings},
   * admin and metrics on {@code admin}. The repository must have been loaded with {@code stats} as
   * its recorder factory.
   */
  public static GatewayServer start(
      ServerSettings settings, AdminSettings adminSettings, ModelRepository repository, StatsRegistry stats)
      throws IOException {
    return start(settings, adminSettings, repository, stats, null);
  }

  /**
   * As above, with the repository and the control store of {@code loaded} (the server owns the store
   * from this call on, and closes it when it stops or fails to start), and its look before it loaded.
   */
  public static GatewayServer start(
      ServerSettings settings, AdminSettings adminSettings, RepositoryAtStart loaded, StatsRegistry stats)
      throws IOException {
    return start(settings, adminSettings, loaded.repository(), stats, loaded.store(), loaded.before());
  }

  /**
   * As above, with the control store {@code store} opened already ({@link RepositoryAtStart}; null:
   * opened here): the server owns it from this call on, and closes it when it stops or fails to start.
   */
  public static GatewayServer start(
      ServerSettings settings, AdminSettings adminSettings, ModelRepository repository, StatsRegistry stats,
      ControlStore store) throws IOException {
    return start(settings, adminSettings, repository, stats, store, null);
  }

  private static GatewayServer start(
      ServerSettings settings, AdminSettings adminSettings, ModelRepository repository, StatsRegistry stats,
      ControlStore store, java.util.Map<String, String> before) throws IOException {
    boolean epoll = Epoll.isAvailable();
    List<EventLoopGroup> groups = new ArrayList<>();
    // Named modelgate-io-*, which the kernel keeps as the threads' names too (ThreadScheduling's event_loop).
    EventLoopGroup boss = group(epoll, 1, "modelgate-io-accept", groups);
    EventLoopGroup workers = group(epoll, settings.eventLoopThreads(), "modelgate-io", groups);
    Class<? extends ServerChannel> channel = epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
    ConnectionSettings connections = settings.connections();
    // grpc-java takes any count as a positive one, Integer.MAX_VALUE for none.
    int resets = connections.maxStreamResets() == 0 ? Integer.MAX_VALUE : connections.maxStreamResets();
    // Each port holds at most its connections; one that does not finish its handshake in time ends.
    ConnectionLimit inferenceLimit = grpcPortLimit("inference", connections, settings.tls() != null, stats);
    ConnectionLimit adminLimit = grpcPortLimit("admin", connections, adminSettings.tls() != null, stats);
    NettyServerBuilder inference =
        NettyServerBuilder.forAddress(new InetSocketAddress(settings.host(), settings.port()))
            .channelFactory(inferenceLimit.factory(channel))
            .bossEventLoopGroup(boss)
            .workerEventLoopGroup(workers)
            .handshakeTimeout(connections.handshakeTimeout().toNanos(), TimeUnit.NANOSECONDS)
            .maxInboundMessageSize(settings.maxInboundMessageBytes());
    if (!connections.maxAge().isZero()) {
      inference.maxConnectionAge(connections.maxAge().toNanos(), TimeUnit.NANOSECONDS);
      if (connections.maxAgeGrace() != null) {
        inference.maxConnectionAgeGrace(connections.maxAgeGrace().toNanos(), TimeUnit.NANOSECONDS);
      }
    }
    if (!connections.maxIdle().isZero()) {
      inference.maxConnectionIdle(connections.maxIdle().toNanos(), TimeUnit.NANOSECONDS);
    }
    inference
        .keepAliveTime(connections.keepAliveTime().toNanos(), TimeUnit.NANOSECONDS)
        .keepAliveTimeout(ConnectionSettings.KEEPALIVE_TIMEOUT.toNanos(), TimeUnit.NANOSECONDS)
        .permitKeepAliveTime(connections.permitKeepAliveTime().toNanos(), TimeUnit.NANOSECONDS)
        .permitKeepAliveWithoutCalls(true)
        .maxConcurrentCallsPerConnection(connections.maxConcurrentStreams())
        .maxRstFramesPerWindow(resets, (int) ConnectionSettings.STREAM_RESET_WINDOW.toSeconds())
        .addTransportFilter(new ConnectionCount("inference").bindTo(stats.prometheus()))
        .addTransportFilter(CallerAuth.PEER_CERTIFICATES);
    java.util.concurrent.ExecutorService adminCalls =
        java.util.concurrent.Executors.newCachedThreadPool(new io.netty.util.concurrent.DefaultThreadFactory("modelgate-admin", true));
    NettyServerBuilder admin =
        NettyServerBuilder.forAddress(new InetSocketAddress(adminSettings.host(), adminSettings.port()))
            .channelFactory(adminLimit.factory(channel))
            .bossEventLoopGroup(boss)
            .workerEventLoopGroup(workers)
            .handshakeTimeout(connections.handshakeTimeout().toNanos(), TimeUnit.NANOSECONDS)
            // Admin calls (some block: a write to etcd, loading a model) run on threads of their own,
            // named for the thread metrics' admin group; as many as calls run at once, idle ones end.
            .executor(adminCalls)
            .maxConcurrentCallsPerConnection(connections.maxConcurrentStreams())
            .maxRstFramesPerWindow(resets, (int) ConnectionSettings.STREAM_RESET_WINDOW.toSeconds());
    if (!connections.maxIdle().isZero()) {
      admin.maxConnectionIdle(connections.maxIdle().toNanos(), TimeUnit.NANOSECONDS);
    }
    // Each TLS port follows its certificate, key and client CA files (renewed without a restart).
    List<ReloadingSslContext> tls = new ArrayList<>();
    Runnable release =
        () -> {
          tls.forEach(ReloadingSslContext::close);
          adminCalls.shutdown();
          for (EventLoopGroup group : groups) {
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
          }
        };
    try {
      if (settings.tls() != null) {
        tls.add(ReloadingSslContext.open("inference", settings.tls(), stats.clock()).bindTo(stats.prometheus()));
        inference.sslContext(tls.get(tls.size() - 1));
      }
      if (adminSettings.tls() != null) {
        tls.add(ReloadingSslContext.open("admin", adminSettings.tls(), stats.clock()).bindTo(stats.prometheus()));
        admin.sslContext(tls.get(tls.size() - 1));
      }
    } catch (IOException | RuntimeException e) {
      release.run();
      throw e;
    }
    try {
      GatewayServer gateway =
          start(
              new Transports(inference, admin, release, connections.maxConnections(), connections.maxConnectionRate(),
                  top -> List.of(inferenceLimit.report(top), adminLimit.report(top))),
              settings.drainTimeout(),
              settings.shutdownDelay(),
              adminSettings,
              new RepositoryAtStart(repository, store, before),
              stats);
      log.info(
          "listening on {}:{} ({}{} transport, {} event loop{}; at most {} connections a port, {} new a second, {} from an"
              + " address); admin on {}:{}{}{}; Java {}",
          settings.host(), gateway.port(), epoll ? "epoll" : "nio", settings.tls() == null ? "" : ", TLS",
          settings.eventLoopThreads(), settings.eventLoopThreads() == 1 ? "" : "s", connections.maxConnections(),
          connections.maxConnectionRate() == 0 ? "any" : connections.maxConnectionRate(),
          connections.maxConnectionsPerAddress() == 0 ? "any" : connections.maxConnectionsPerAddress(), adminSettings.host(), gateway.adminPort(),
          adminSettings.tls() == null ? "" : " (TLS)",
          settings.tls() == null && adminSettings.tls() == null ? "" : "; TLS through " + TlsSettings.engine(),
          Runtime.version());
      return gateway;
    } catch (IOException | RuntimeException e) {
      release.run();
      throw e;
    }
  }

  /**
   * The connection limit of a gRPC port named {@code port}: its limits from {@code connections}, a
   * refused client told why unless the port speaks TLS, its connections watched for HTTP/2 errors.
   */
  private static ConnectionLimit grpcPortLimit(String port, ConnectionSettings connections, boolean tls, StatsRegistry stats) {
    return new ConnectionLimit(port, connections.maxConnections(), connections.maxConnectionRate(),
            connections.maxConnectionsPerAddress(), tls ? RefusalReply.NONE : RefusalReply.GRPC)
        .bindTo(stats.prometheus())
        .watchedBy(new ConnectionErrors(port).bindTo(stats.prometheus()));
  }

  private static EventLoopGroup group(boolean epoll, int threads, String name, List<EventLoopGroup> groups) {
    io.netty.util.concurrent.DefaultThreadFactory factory = new io.netty.util.concurrent.DefaultThreadFactory(name);
    EventLoopGroup group = epoll ? new EpollEventLoopGroup(threads, factory) : new NioEventLoopGroup(threads, factory);
    groups.add(group);
    return group;
  }

  /**
   * Starts the services on the given transports (Netty, or in-process in tests). Inference handlers
   * run on the transport's threads and never block; admin calls run on the admin transport's
   * default executor, where they may.
   */
  public static GatewayServer start(
      Transports transports,
      Duration drainTimeout,
      AdminSettings adminSettings,
      ModelRepository repository,
      StatsRegistry stats)
      throws IOException {
    return start(transports, drainTimeout, Duration.ZERO, adminSettings, repository, stats, null);
  }

  /**
   * As above, reporting NOT_SERVING for {@code shutdownDelay} before it stops accepting, with the
   * control store {@code store} opened already ({@link RepositoryAtStart}; null: opened here): the
   * server owns it from this call on, and closes it when it stops or fails to start.
   */
  public static GatewayServer start(
      Transports transports,
      Duration drainTimeout,
      Duration shutdownDelay,
      AdminSettings adminSettings,
      ModelRepository repository,
      StatsRegistry stats,
      ControlStore store)
      throws IOException {
    return start(transports, drainTimeout, shutdownDelay, adminSettings, new RepositoryAtStart(repository, store, null),
        stats);
  }

  /**
   * As above, with the repository and the control store of {@code loaded}, and its look before it
   * loaded: what changed in the repository folder meanwhile is then polled as any change.
   */
  public static GatewayServer start(
      Transports transports,
      Duration drainTimeout,
      Duration shutdownDelay,
      AdminSettings adminSettings,
      RepositoryAtStart loaded,
      StatsRegistry stats)
      throws IOException {
    ModelRepository repository = loaded.repository();
    ControlStore store = loaded.store();
    if (repository.recorders() != stats) {
      if (store != null) {
        store.close();
      }
      throw new IllegalArgumentException("the repository records to " + repository.recorders()
          + ", not to this server's statistics: load it with ModelRepository.load(root, defaults, stats)");
    }
    Builder b = new Builder();
    b.repository = repository;
    b.stats = stats;
    b.drainTimeout = drainTimeout;
    b.shutdownDelay = shutdownDelay;
    b.store = store;
    b.before = loaded.before();
    try {
      return start(b, transports, adminSettings);
    } catch (IOException | RuntimeException e) {
      b.closeMade();
      throw e;
    }
  }

  /** {@link #start(Transports, Duration, Duration, AdminSettings, ModelRepository, StatsRegistry)}'s parts, made into {@code b}. */
  private static GatewayServer start(Builder b, Transports transports, AdminSettings adminSettings) throws IOException {
    ModelRepository repository = b.repository;
    StatsRegistry stats = b.stats;
    Duration drainTimeout = b.drainTimeout;
    if (adminSettings.callersFile() != null) {
      try {
        b.callers = io.modelgate.gateway.config.WatchedFile.open("callers file", adminSettings.callersFile(),
            io.modelgate.gateway.callers.CallerPolicy::read).countFailures(stats.prometheus())
            .alsoWatching(io.modelgate.gateway.callers.CallerPolicy::alsoRead);
      } catch (io.modelgate.gateway.config.WatchedFile.InvalidFileException e) {
        throw new IOException(e.getMessage(), e);
      }
    }
    if (adminSettings.tokensFile() != null) {
      try {
        b.adminTokens = io.modelgate.gateway.config.WatchedFile.open("admin tokens file", adminSettings.tokensFile(),
            file -> io.modelgate.gateway.admin.AdminTokens.read(adminSettings.token(), file)).countFailures(stats.prometheus());
      } catch (io.modelgate.gateway.config.WatchedFile.InvalidFileException e) {
        throw new IOException(e.getMessage(), e);
      }
    }
    b.release = transports.release();
    b.health = new HealthStatusManager();
    // Not serving until started (and warmed up): HealthStatusManager starts "" as SERVING.
    b.health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, ServingStatus.NOT_SERVING);
    b.router = new Router(repository);
    // Routes follow their versions' states from here on: a policy naming a version that stops
    // serving serves in part, and whole again once it is READY.
    Router router = b.router;
    repository.events().subscribe(version -> router.refresh(version.model()));
    ControlSettings controlSettings = adminSettings.control();
    StateStore state = new StateStore(adminSettings.stateDirectory());
    if (b.store == null) {
      b.store = ControlStore.open(controlSettings, state, stats.prometheus(), stats.clock());
    }
    ControlStore store = b.store;
    b.usage = new io.modelgate.gateway.usage.Usage(stats.prometheus(), stats.clock(), controlSettings.replica(),
        adminSettings.stateDirectory().resolve("usage"), new io.modelgate.gateway.usage.AccessLog(adminSettings.accessLogRate()),
        adminSettings.usageRetention());
    b.drift = new io.modelgate.gateway.health.Drift(repository, stats.prometheus(), stats.clock(), controlSettings.replica());
    b.tracing = io.modelgate.gateway.tracing.Tracing.start(adminSettings.traces(), controlSettings.replica(),
        ServerVersion.current(), stats.clock()).bindTo(stats.prometheus());
    b.golden = new io.modelgate.gateway.health.GoldenSets(repository, stats.clock(), stats.background(), b.drift);
    b.payloadLog = new io.modelgate.gateway.health.PayloadLog(adminSettings.payloadLogDirectory(), stats.prometheus(), stats.clock())
        .follow(repository);
    b.control = new ControlPlane(b.router, store, stats, b.golden, stats.clock(), stats.background(), controlSettings.replica());
    repository.onModelAdded(b.control::modelAdded);
    repository.onModelRemoved(b.control::modelRemoved);
    b.control.start();
    b.access = new io.modelgate.gateway.admin.AccessControl(adminSettings.token(), b.adminTokens, b.callers, b.control,
        stats.clock()).start(store.shared());
    if (store.shared()) {
      // A fleet's usage adds up in etcd: each replica shares its hours as it writes its ledger.
      b.usage.shareWith(store::putUsage, store::deleteUsageBefore);
    }
    b.versions = new io.modelgate.gateway.admin.VersionControl(repository, b.control, drainTimeout, stats.clock(),
        b.golden);
    b.gatewayMetrics = new GatewayMetrics(stats.prometheus(), repository, b.router, b.control, state, b.golden, b.versions);
    VersionRetirement retirement = new VersionRetirement(stats, b.usage, b.gatewayMetrics, VersionRetirement.AFTER)
        .start(repository);
    // Before the first request: in a fleet, the versions its operators loaded or unloaded since
    // (a replica that was away, or new); and a rollout that was running with a copied control
    // when the server stopped has it again, as the versions of the repository.
    b.versions.reconcileLoads();
    b.versions.reconcileCopies();
    if (stats.background()) {
      b.versions.start();
    }
    if (!adminSettings.repositoryPoll().isZero()) {
      // The first look, here: what the repository held as it loaded is taken as loaded, and what has
      // changed since the look before it loaded is acted on as any change.
      b.poll = new io.modelgate.gateway.admin.RepositoryPoll(repository, b.versions, b.control,
          adminSettings.repositoryPoll(), b.before).bindTo(stats.prometheus());
      b.poll.poll();
      if (stats.background()) {
        b.poll.start();
      }
    }
    b.fleet = new io.modelgate.gateway.control.Fleet(b.control, stats, b.golden, b.drift, stats.clock(), stats.background());
    b.fleetDrift = new io.modelgate.gateway.control.FleetDrift(b.control, b.fleet, stats.prometheus(),
        controlSettings.fleetDriftEvery(), stats.background());
    ConnectionLimit metricsLimit = adminSettings.metricsPort() < 0 ? null
        : new ConnectionLimit("metrics", transports.metricsConnections(), transports.metricsConnectionRate(), RefusalReply.HTTP)
            .bindTo(stats.prometheus());
    java.util.function.IntFunction<List<io.modelgate.proto.admin.v1.PortConnections>> held = top -> {
      List<io.modelgate.proto.admin.v1.PortConnections> ports = new ArrayList<>(transports.connections().apply(top));
      if (metricsLimit != null) {
        ports.add(metricsLimit.report(top));
      }
      return ports;
    };
    io.modelgate.gateway.diagnostics.Diagnostics diagnostics = new io.modelgate.gateway.diagnostics.Diagnostics(
        b.tracing, stats.clock(), controlSettings.replica(), b.control).bindTo(stats.prometheus());
    b.admin = new AdminService(repository, b.control, b.fleet, b.golden, b.drift, b.usage, b.access, stats, b.versions, held,
        retirement::removalDue, b.poll, diagnostics);
    b.requestMemory = new io.modelgate.gateway.inference.RequestMemory(adminSettings.requestMemoryBytes(),
            adminSettings.receiveTimeout(), System::nanoTime)
        .bindTo(stats.prometheus()).startSweeping();
    GatewayServer[] self = new GatewayServer[1];
    io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.callers.CallerPolicy> callersFile = b.callers;
    InferenceService inference =
        b.inference = new InferenceService(
            repository,
            new LatestReadyVersionSelector(repository),
            b.router,
            stats,
            () -> self[0] != null && self[0].isReady(),
            ServerVersion.current(),
            b.versions,
            AdminAuth::caller,
            b.payloadLog,
            b.drift,
            b.usage,
            new io.modelgate.gateway.callers.Quotas(stats.clock(), b.access::quota, b.access::weight,
                callersFile == null ? () -> null : () -> callersFile.get().tenants()),
            b.requestMemory,
            b.tracing);
    java.util.function.Supplier<io.modelgate.gateway.admin.AdminTokens> tokens = b.access::tokens;
    ControlPlane control = b.control;
    // A call refused for its role is audited, off the transport's thread (the store may be etcd),
    // at a bounded rate.
    io.modelgate.gateway.admin.DeniedAudit denied = b.deniedAudit = new io.modelgate.gateway.admin.DeniedAudit(
        (caller, what) -> control.audit(caller, "PermissionDenied", "", 0, what), stats.clock()).bindTo(stats.prometheus());
    io.grpc.ServerServiceDefinition adminDefinition;
    b.server =
        transports.inference()
            .directExecutor()
            .addStreamTracerFactory(b.requestMemory.arrivals())
            .addService(
                ServerInterceptors.intercept(
                    ServerInterceptors.intercept(
                        traced(b.tracing, b.callers == null
                            ? inference.definition()
                            : ServerInterceptors.intercept(inference.definition(),
                                new io.modelgate.gateway.callers.CallerAuth(b.callers, InferenceService.CALLER_METHODS))),
                        AdminAuth.forMethods(tokens, InferenceService.GUARDED_METHODS, b.payloadLog::active, denied)),
                    grpcMetrics(stats)))
            .addService(b.health.getHealthService())
            .addService(ProtoReflectionServiceV1.newInstance())
            .addService(reflectionV1Alpha())
            .build()
            .start();
    adminDefinition = ServerInterceptors.intercept(b.admin, new AdminAuth(tokens, denied));
    b.adminServer =
        transports.admin()
            .addService(ServerInterceptors.intercept(adminDefinition, grpcMetrics(stats)))
            .build()
            .start();
    if (adminSettings.metricsPort() >= 0) {
      b.metrics =
          HttpEndpoints.start(
              adminSettings.metricsHost(),
              adminSettings.metricsPort(),
              stats::scrape,
              () -> self[0] == null || !self[0].terminated(),
              () -> self[0] == null
                  ? new HttpEndpoints.Readiness(false, "starting")
                  : self[0].readiness(),
              metricsLimit);
    }
    GatewayServer gateway = new GatewayServer(b);
    if (adminSettings.warmupRounds() > 0) {
      gateway.warmup = warmUp(adminSettings, adminDefinition, gateway.adminPort(), gateway.metricsPort(), repository);
    }
    self[0] = gateway;
    // Subscribe first, then publish: no change can fall between the two.
    repository.events().subscribe(version -> gateway.publishHealth());
    gateway.publishHealth();
    return gateway;
  }

  /**
   * Runs {@link StartupWarmup} while the server still reports "starting": over loopback to the
   * admin port (the path an operator's call takes), with TLS trusting only the server's own
   * certificate when the port has server-only TLS; in-process when the port asks clients for a
   * certificate (mutual TLS).
   */
  private static StartupWarmup.Summary warmUp(
      AdminSettings settings, io.grpc.ServerServiceDefinition admin, int adminPort, int metricsPort,
      ModelRepository repository) {
    InetSocketAddress metrics = metricsPort > 0 ? local(settings.metricsHost(), metricsPort) : null;
    List<String> models = new ArrayList<>();
    for (io.modelgate.runtime.repository.Model model : repository.models()) {
      models.add(model.name());
    }
    io.grpc.ManagedChannel channel;
    io.grpc.Server inProcess = null;
    TlsSettings tls = settings.tls();
    InetSocketAddress adminAddress =
        (tls == null || tls.clientCa() == null) && adminPort > 0 ? local(settings.host(), adminPort) : null;
    try {
      if (adminAddress != null) {
        io.grpc.netty.NettyChannelBuilder loopback = io.grpc.netty.NettyChannelBuilder.forAddress(adminAddress);
        channel = (tls == null ? loopback.usePlaintext() : loopback.sslContext(tls.selfClientContext())).build();
      } else {
        String name = "modelgate-warmup-" + System.identityHashCode(admin);
        inProcess = io.grpc.inprocess.InProcessServerBuilder.forName(name).addService(admin).build().start();
        channel = io.grpc.inprocess.InProcessChannelBuilder.forName(name).build();
      }
    } catch (IOException | RuntimeException e) {
      log.warn("start-up warm-up skipped: {}", e.toString());
      return new StartupWarmup.Summary(0, 0, "a failure: " + e);
    }
    try {
      StartupWarmup.Summary summary =
          StartupWarmup.run(settings.warmupRounds(), channel, settings.token(), metrics, models, WARMUP_BUDGET);
      log.info("start-up warm-up: {} of {} rounds of {} admin{} calls in {} ms{}", summary.rounds(), settings.warmupRounds(),
          adminAddress == null ? "in-process" : tls == null ? "loopback" : "loopback TLS", metrics == null ? "" : " and HTTP", summary.millis(),
          summary.stoppedBy().isEmpty() ? "" : ", stopped by " + summary.stoppedBy());
      return summary;
    } finally {
      channel.shutdownNow();
      if (inProcess != null) {
        inProcess.shutdownNow();
      }
    }
  }

  /** {@code host:port}, with a wildcard host replaced by loopback; null when it does not resolve. */
  private static InetSocketAddress local(String host, int port) {
    try {
      java.net.InetAddress address = java.net.InetAddress.getByName(host);
      return new InetSocketAddress(address.isAnyLocalAddress() ? java.net.InetAddress.getLoopbackAddress() : address, port);
    } catch (java.net.UnknownHostException e) {
      log.warn("start-up warm-up: cannot resolve {}, leaving it out", host);
      return null;
    }
  }

  /** What the start-up warm-up did, or null when there was none. */
  StartupWarmup.Summary warmup() {
    return warmup;
  }

  /** {@code service} with calls marked for tracing as they arrive, where calls are traced; else as it is. */
  private static io.grpc.ServerServiceDefinition traced(io.modelgate.gateway.tracing.Tracing tracing,
      io.grpc.ServerServiceDefinition service) {
    return tracing.on() ? ServerInterceptors.intercept(service, tracing.interceptor()) : service;
  }

  /**
   * gRPC server meters per method and status ({@code grpc_server_processing_duration_seconds},
   * {@code grpc_server_requests_received_messages_total}, {@code
   * grpc_server_responses_sent_messages_total}); its cost per call is measured in {@code
   * GrpcMetricsBenchmark}.
   */
  private static io.grpc.ServerInterceptor grpcMetrics(StatsRegistry stats) {
    return new io.micrometer.core.instrument.binder.grpc.MetricCollectingServerInterceptor(stats.prometheus());
  }

  /**
   * Server reflection {@code v1alpha}, which older grpcurl, Postman and evans speak, next to
   * {@code v1}.
   */
  @SuppressWarnings("deprecation")
  private static io.grpc.BindableService reflectionV1Alpha() {
    return ProtoReflectionService.newInstance();
  }

  /** The inference port (-1 for in-process). */
  public int port() {
    return server.getPort();
  }

  /** The admin port (-1 for in-process). */
  public int adminPort() {
    return adminServer.getPort();
  }

  /** The metrics port, or -1 when metrics are off. */
  public int metricsPort() {
    return metrics == null ? -1 : metrics.port();
  }

  public Router router() {
    return router;
  }

  /** The callers file in force, or null when the inference port is open. */
  public io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.callers.CallerPolicy> callers() {
    return callers;
  }

  /** The admin tokens file in force, or null when only the server's own token is. */
  public io.modelgate.gateway.config.WatchedFile<io.modelgate.gateway.admin.AdminTokens> adminTokens() {
    return adminTokens;
  }

  public io.modelgate.gateway.usage.Usage usage() {
    return usage;
  }

  public io.modelgate.gateway.health.Drift drift() {
    return drift;
  }

  public io.modelgate.gateway.health.GoldenSets golden() {
    return golden;
  }

  /** This replica's publication of its statistics to the fleet, and the fleet view. */
  public io.modelgate.gateway.control.Fleet fleet() {
    return fleet;
  }

  /** The fleet's drift merged and exported by the replica that judges rollouts ({@code --fleet-drift-every}). */
  public io.modelgate.gateway.control.FleetDrift fleetDrift() {
    return fleetDrift;
  }

  /** How versions are loaded and unloaded at run time, and rollouts' copied controls reconciled. */
  public io.modelgate.gateway.admin.VersionControl versions() {
    return versions;
  }

  /** The poll of the repository folder for changes, or null where it is not polled. */
  public io.modelgate.gateway.admin.RepositoryPoll repositoryPoll() {
    return poll;
  }

  /** How inference calls are traced (off unless {@code --trace-endpoint}). */
  public io.modelgate.gateway.tracing.Tracing tracing() {
    return tracing;
  }

  /** The owner of routing policies, rollouts and their persistence. */
  public ControlPlane control() {
    return control;
  }

  public StatsRegistry stats() {
    return stats;
  }

  /** Ready: started, not stopping, and at least one model version is READY. */
  public boolean isReady() {
    return !stopping && !server.isShutdown() && repository.anyReady();
  }

  /** Whether it is ready, and why not. */
  HttpEndpoints.Readiness readiness() {
    if (stopping || server.isShutdown()) {
      return new HttpEndpoints.Readiness(false, "the server is stopping");
    }
    if (!repository.anyReady()) {
      return new HttpEndpoints.Readiness(false, "no model version is READY");
    }
    return new HttpEndpoints.Readiness(true, "");
  }

  /** Whether {@link #stop()} has finished. */
  boolean terminated() {
    return terminated.getCount() == 0;
  }

  /**
   * Sets every health status from the current states: the server's, and each model's under its
   * name (SERVING while it has a READY version and the server is not stopping). Called after every
   * version state change, on the changing thread; the statuses are a small map, set without
   * blocking.
   */
  private synchronized void publishHealth() {
    boolean up = !stopping && !server.isShutdown();
    ServingStatus status = up && repository.anyReady() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, status);
    health.setStatus(GRPCInferenceServiceGrpc.SERVICE_NAME, status);
    for (io.modelgate.runtime.repository.Model model : repository.models()) {
      health.setStatus(
          model.name(),
          up && model.latestReady().isPresent() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    }
  }

  /** Stops in the documented order; blocks until done. Idempotent. */
  public void stop() {
    boolean first;
    synchronized (this) {
      first = !stopping;
      stopping = true;
    }
    if (!first) {
      // Another caller is stopping it: wait for that to finish, as the first caller does.
      boolean interrupted = false;
      while (!terminated()) {
        try {
          terminated.await();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
      return;
    }
    log.info(
        "stopping: health NOT_SERVING for {} ms while still serving, then draining for up to {} s",
        shutdownDelay.toMillis(), drainTimeout.toSeconds());
    publishHealth();
    phases.add(Phase.NOT_SERVING);
    // An interrupt cuts the delay short (a second Ctrl-C, say); the stop itself goes on.
    boolean delayInterrupted = false;
    if (!shutdownDelay.isZero()) {
      try {
        Thread.sleep(shutdownDelay.toMillis());
      } catch (InterruptedException e) {
        delayInterrupted = true;
      }
    }
    phases.add(Phase.DELAYED);
    health.enterTerminalState();
    server.shutdown();
    adminServer.shutdown();
    fleetDrift.close();
    fleet.close();
    deniedAudit.close();
    // Another replica judges rollouts from now on, and this one leaves the fleet's views; the
    // store stays open for what the steps below still write (audit records, the last usage).
    control.leave();
    golden.close();
    admin.close();
    if (poll != null) {
      poll.close();
    }
    versions.close();
    phases.add(Phase.STOPPED_ACCEPTING);
    router.stopFollowingVersions();
    repository.drain(drainTimeout);
    // Every queued request is answered: end the streams still open, each once it has answered
    // all it received, instead of resetting them with answers in flight.
    inference.endStreams("the server is stopping");
    phases.add(Phase.DRAINED);
    // Every answer is in: what the payload log has queued is written now.
    payloadLog.close();
    drift.close();
    // Every answer is counted: the ledger is written one last time.
    usage.close();
    // Every answer's span is recorded: what waits is sent.
    tracing.close();
    if (callers != null) {
      callers.close();
    }
    if (adminTokens != null) {
      adminTokens.close();
    }
    access.close();
    // Everything that writes to the control store has written.
    control.close();
    repository.closeSessions();
    phases.add(Phase.SESSIONS_CLOSED);
    try {
      if (!server.awaitTermination(5, TimeUnit.SECONDS)) {
        server.shutdownNow();
        server.awaitTermination(5, TimeUnit.SECONDS);
      }
      if (!adminServer.awaitTermination(2, TimeUnit.SECONDS)) {
        adminServer.shutdownNow();
      }
    } catch (InterruptedException e) {
      server.shutdownNow();
      adminServer.shutdownNow();
      Thread.currentThread().interrupt();
    } finally {
      releaseTransport.run();
      phases.add(Phase.TERMINATED);
      terminated.countDown();
      if (metrics != null) {
        metrics.close();
      }
      gatewayMetrics.close();
      // Messages still arriving went with the transport.
      requestMemory.close();
      log.info("stopped");
      if (delayInterrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Blocks until {@link #stop()} has finished. */
  public void awaitTermination() throws InterruptedException {
    terminated.await();
  }

  /** The phases {@link #stop()} has completed, in order. */
  public List<Phase> phases() {
    return List.copyOf(phases);
  }
}

package io.modelgate.gateway.server;

import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.modelgate.gateway.admin.AdminAuth;
import io.modelgate.gateway.admin.AdminService;
import io.modelgate.gateway.admin.PolicyStore;
import io.modelgate.gateway.admin.StateStore;
import io.modelgate.gateway.inference.InferenceService;
import io.modelgate.gateway.rollout.RolloutController;
import io.modelgate.gateway.routing.LatestReadyVersionSelector;
import io.modelgate.gateway.routing.Router;
import io.modelgate.gateway.stats.MetricsHttpServer;
import io.modelgate.gateway.stats.StatsRegistry;
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
 * <p>{@link #stop()} follows the shutdown order, each phase recorded in {@link #phases()}: health
 * NOT_SERVING → stop accepting new calls → drain every version's queue → close the ONNX Runtime
 * sessions → await termination of the transports.
 */
public final class GatewayServer {
  private static final Logger log = LoggerFactory.getLogger(GatewayServer.class);

  /** The steps of {@link #stop()}, in order. */
  public enum Phase {
    NOT_SERVING,
    STOPPED_ACCEPTING,
    DRAINED,
    SESSIONS_CLOSED,
    TERMINATED
  }

  /** The transports a gateway runs on; Netty in production, in-process in tests. */
  public record Transports(ServerBuilder<?> inference, ServerBuilder<?> admin, Runnable release) {}

  private final Server server;
  private final Server adminServer;
  private final ModelRepository repository;
  private final StatsRegistry stats;
  private final Router router;
  private final PolicyStore policies;
  private final RolloutController rollouts;
  private final AdminService admin;
  private final MetricsHttpServer metrics;
  private final HealthStatusManager health;
  private final Duration drainTimeout;
  private final Runnable releaseTransport;
  private final List<Phase> phases = new CopyOnWriteArrayList<>();
  private final CountDownLatch terminated = new CountDownLatch(1);
  private volatile boolean stopping;

  private GatewayServer(Builder b) {
    this.server = b.server;
    this.adminServer = b.adminServer;
    this.repository = b.repository;
    this.stats = b.stats;
    this.router = b.router;
    this.policies = b.policies;
    this.rollouts = b.rollouts;
    this.admin = b.admin;
    this.metrics = b.metrics;
    this.health = b.health;
    this.drainTimeout = b.drainTimeout;
    this.releaseTransport = b.release;
  }

  private static final class Builder {
    Server server;
    Server adminServer;
    ModelRepository repository;
    StatsRegistry stats;
    Router router;
    PolicyStore policies;
    RolloutController rollouts;
    AdminService admin;
    MetricsHttpServer metrics;
    HealthStatusManager health;
    Duration drainTimeout;
    Runnable release;
  }

  /**
   * Starts the gateway on Netty (native epoll where available): inference on {@code settings},
   * admin and metrics on {@code admin}. The repository must have been loaded with {@code stats} as
   * its recorder factory.
   */
  public static GatewayServer start(
      ServerSettings settings, AdminSettings adminSettings, ModelRepository repository, StatsRegistry stats)
      throws IOException {
    boolean epoll = Epoll.isAvailable();
    List<EventLoopGroup> groups = new ArrayList<>();
    EventLoopGroup boss = group(epoll, 1, groups);
    EventLoopGroup workers = group(epoll, settings.eventLoopThreads(), groups);
    Class<? extends ServerChannel> channel = epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
    NettyServerBuilder inference =
        NettyServerBuilder.forAddress(new InetSocketAddress(settings.host(), settings.port()))
            .channelType(channel)
            .bossEventLoopGroup(boss)
            .workerEventLoopGroup(workers)
            .maxInboundMessageSize(settings.maxInboundMessageBytes());
    if (settings.tls() != null) {
      inference.sslContext(settings.tls().serverContext());
    }
    NettyServerBuilder admin =
        NettyServerBuilder.forAddress(new InetSocketAddress(adminSettings.host(), adminSettings.port()))
            .channelType(channel)
            .bossEventLoopGroup(boss)
            .workerEventLoopGroup(workers);
    if (adminSettings.tls() != null) {
      admin.sslContext(adminSettings.tls().serverContext());
    }
    Runnable release =
        () -> {
          for (EventLoopGroup group : groups) {
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
          }
        };
    try {
      GatewayServer gateway =
          start(new Transports(inference, admin, release), settings.drainTimeout(), adminSettings, repository, stats);
      log.info(
          "listening on {}:{} ({}{} transport, {} event loops); admin on {}:{}{}",
          settings.host(), gateway.port(), epoll ? "epoll" : "nio", settings.tls() == null ? "" : ", TLS",
          settings.eventLoopThreads(), adminSettings.host(), gateway.adminPort(),
          adminSettings.tls() == null ? "" : " (TLS)");
      return gateway;
    } catch (IOException | RuntimeException e) {
      release.run();
      throw e;
    }
  }

  private static EventLoopGroup group(boolean epoll, int threads, List<EventLoopGroup> groups) {
    EventLoopGroup group = epoll ? new EpollEventLoopGroup(threads) : new NioEventLoopGroup(threads);
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
    Builder b = new Builder();
    b.repository = repository;
    b.stats = stats;
    b.drainTimeout = drainTimeout;
    b.release = transports.release();
    b.health = new HealthStatusManager();
    b.router = new Router(repository);
    StateStore state = new StateStore(adminSettings.stateDirectory());
    AdminState saved = state.load();
    b.policies = new PolicyStore(b.router, state, stats.clock());
    b.policies.restore(saved);
    b.rollouts = new RolloutController(b.policies, stats, stats.background());
    b.rollouts.restore(saved);
    b.admin = new AdminService(repository, b.policies, b.rollouts, stats, drainTimeout);
    GatewayServer[] self = new GatewayServer[1];
    InferenceService inference =
        new InferenceService(
            repository,
            new LatestReadyVersionSelector(repository),
            b.router,
            stats.clock(),
            () -> self[0] != null && self[0].isReady(),
            ServerVersion.current());
    boolean started = false;
    try {
      b.server =
          transports.inference()
              .directExecutor()
              .addService(inference.definition())
              .addService(b.health.getHealthService())
              .addService(ProtoReflectionServiceV1.newInstance())
              .build()
              .start();
      b.adminServer =
          transports.admin()
              .addService(ServerInterceptors.intercept(b.admin, new AdminAuth(adminSettings.token())))
              .build()
              .start();
      if (adminSettings.metricsPort() >= 0) {
        b.metrics = MetricsHttpServer.start(adminSettings.metricsHost(), adminSettings.metricsPort(), stats);
      }
      started = true;
    } finally {
      if (!started) {
        if (b.server != null) {
          b.server.shutdownNow();
        }
        if (b.adminServer != null) {
          b.adminServer.shutdownNow();
        }
        b.rollouts.close();
        b.admin.close();
      }
    }
    GatewayServer gateway = new GatewayServer(b);
    self[0] = gateway;
    gateway.publishHealth();
    return gateway;
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

  public PolicyStore policies() {
    return policies;
  }

  public RolloutController rollouts() {
    return rollouts;
  }

  public StatsRegistry stats() {
    return stats;
  }

  /** Ready: started, not stopping, and at least one model version is READY. */
  public boolean isReady() {
    return !stopping && !server.isShutdown() && repository.anyReady();
  }

  private void publishHealth() {
    ServingStatus status = isReady() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, status);
    health.setStatus(GRPCInferenceServiceGrpc.SERVICE_NAME, status);
  }

  /** Stops in the documented order; blocks until done. Idempotent. */
  public synchronized void stop() {
    if (stopping) {
      return;
    }
    stopping = true;
    log.info("stopping: health NOT_SERVING, then draining for up to {} s", drainTimeout.toSeconds());
    health.enterTerminalState();
    phases.add(Phase.NOT_SERVING);
    server.shutdown();
    adminServer.shutdown();
    rollouts.close();
    admin.close();
    phases.add(Phase.STOPPED_ACCEPTING);
    repository.drain(drainTimeout);
    phases.add(Phase.DRAINED);
    repository.closeSessions();
    phases.add(Phase.SESSIONS_CLOSED);
    try {
      // Open streams whose requests are all answered may stay open; give them a moment.
      if (!server.awaitTermination(2, TimeUnit.SECONDS)) {
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
      if (metrics != null) {
        metrics.close();
      }
      releaseTransport.run();
      phases.add(Phase.TERMINATED);
      terminated.countDown();
      log.info("stopped");
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

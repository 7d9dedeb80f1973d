package io.modelgate.gateway.server;

import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.modelgate.gateway.inference.InferenceService;
import io.modelgate.gateway.routing.LatestReadyVersionSelector;
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
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The gateway process's server: the KServe v2 inference service, {@code grpc.health.v1} health
 * (SERVING only while ready) and server reflection, on one port.
 *
 * <p>{@link #stop()} follows the shutdown order, each phase recorded in {@link #phases()}: health
 * NOT_SERVING → stop accepting new calls → drain every version's queue → close the ONNX Runtime
 * sessions → await termination of the transport.
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

  private final Server server;
  private final ModelRepository repository;
  private final HealthStatusManager health;
  private final Duration drainTimeout;
  private final Runnable releaseTransport;
  private final List<Phase> phases = new CopyOnWriteArrayList<>();
  private final CountDownLatch terminated = new CountDownLatch(1);
  private volatile boolean stopping;

  private GatewayServer(
      Server server,
      ModelRepository repository,
      HealthStatusManager health,
      Duration drainTimeout,
      Runnable releaseTransport) {
    this.server = server;
    this.repository = repository;
    this.health = health;
    this.drainTimeout = drainTimeout;
    this.releaseTransport = releaseTransport;
  }

  /** Starts the server on Netty with the native epoll transport where it is available. */
  public static GatewayServer start(ServerSettings settings, ModelRepository repository)
      throws IOException {
    boolean epoll = Epoll.isAvailable();
    EventLoopGroup boss = epoll ? new EpollEventLoopGroup(1) : new NioEventLoopGroup(1);
    EventLoopGroup workers =
        epoll
            ? new EpollEventLoopGroup(settings.eventLoopThreads())
            : new NioEventLoopGroup(settings.eventLoopThreads());
    Class<? extends ServerChannel> channel =
        epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
    NettyServerBuilder builder =
        NettyServerBuilder.forAddress(new InetSocketAddress(settings.host(), settings.port()))
            .channelType(channel)
            .bossEventLoopGroup(boss)
            .workerEventLoopGroup(workers)
            .maxInboundMessageSize(settings.maxInboundMessageBytes());
    Runnable release =
        () -> {
          boss.shutdownGracefully(0, 1, TimeUnit.SECONDS);
          workers.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        };
    try {
      GatewayServer server = start(builder, repository, settings.drainTimeout(), release);
      log.info(
          "listening on {}:{} ({} transport, {} event loops)",
          settings.host(),
          server.port(),
          epoll ? "epoll" : "nio",
          settings.eventLoopThreads());
      return server;
    } catch (IOException | RuntimeException e) {
      release.run();
      throw e;
    }
  }

  /**
   * Starts the services on {@code builder} (Netty, or in-process in tests). Handlers run on the
   * transport's threads: they never block.
   *
   * @param releaseTransport run once the server has terminated, to free what the builder uses
   */
  public static GatewayServer start(
      ServerBuilder<?> builder,
      ModelRepository repository,
      Duration drainTimeout,
      Runnable releaseTransport)
      throws IOException {
    HealthStatusManager health = new HealthStatusManager();
    GatewayServer[] self = new GatewayServer[1];
    InferenceService inference =
        new InferenceService(
            repository,
            new LatestReadyVersionSelector(repository),
            () -> self[0] != null && self[0].isReady(),
            ServerVersion.current());
    Server server =
        builder
            .directExecutor()
            .addService(ServerInterceptors.intercept(inference, InferenceService.interceptors()))
            .addService(health.getHealthService())
            .addService(ProtoReflectionServiceV1.newInstance())
            .build()
            .start();
    GatewayServer gateway =
        new GatewayServer(server, repository, health, drainTimeout, releaseTransport);
    self[0] = gateway;
    gateway.publishHealth();
    return gateway;
  }

  /** The port the server listens on (-1 for in-process). */
  public int port() {
    return server.getPort();
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
    } catch (InterruptedException e) {
      server.shutdownNow();
      Thread.currentThread().interrupt();
    } finally {
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

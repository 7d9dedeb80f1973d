package io.modelgate.bench.load;

import io.grpc.Server;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;

/**
 * The transport ceiling: a bare grpc-java server, set up like modelgate's inference port (Netty,
 * epoll where available, direct executor, one event loop), that parses the same request and
 * answers with a canned response of the same size, computing nothing.
 */
public final class TransportCeiling implements AutoCloseable {
  private final Server server;
  private final EventLoopGroup boss;
  private final EventLoopGroup workers;

  /** On a free loopback port. */
  public TransportCeiling(ModelInferResponse canned, int eventLoops) throws IOException {
    this(canned, 0, eventLoops);
  }

  /** On loopback {@code port} (0: a free one). */
  public TransportCeiling(ModelInferResponse canned, int port, int eventLoops) throws IOException {
    boolean epoll = Epoll.isAvailable();
    boss = epoll ? new EpollEventLoopGroup(1) : new NioEventLoopGroup(1);
    workers = epoll ? new EpollEventLoopGroup(eventLoops) : new NioEventLoopGroup(eventLoops);
    server =
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port))
            .channelType(epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class)
            .bossEventLoopGroup(boss)
            .workerEventLoopGroup(workers)
            .directExecutor()
            .maxInboundMessageSize(64 << 20)
            .addService(
                new GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase() {
                  @Override
                  public void modelInfer(ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
                    observer.onNext(canned.toBuilder().setId(request.getId()).build());
                    observer.onCompleted();
                  }

                  @Override
                  public StreamObserver<ModelInferRequest> modelStreamInfer(
                      StreamObserver<ModelStreamInferResponse> observer) {
                    return new StreamObserver<>() {
                      @Override
                      public void onNext(ModelInferRequest request) {
                        observer.onNext(ModelStreamInferResponse.newBuilder()
                            .setInferResponse(canned.toBuilder().setId(request.getId())).build());
                      }

                      @Override
                      public void onError(Throwable t) {}

                      @Override
                      public void onCompleted() {
                        observer.onCompleted();
                      }
                    };
                  }
                })
            .build()
            .start();
  }

  public int port() {
    return server.getPort();
  }

  @Override
  public void close() {
    server.shutdownNow();
    try {
      server.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    boss.shutdownGracefully(0, 1, TimeUnit.SECONDS);
    workers.shutdownGracefully(0, 1, TimeUnit.SECONDS);
  }
}

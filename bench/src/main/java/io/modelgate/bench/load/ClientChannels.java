package io.modelgate.bench.load;

import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.handler.ssl.SslContext;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.util.ArrayList;
import java.util.List;

/**
 * The load generator's grpc-java channels (streams and other RPCs; {@link Connections} opens
 * them) and its one small event-loop group, which its lean unary connections share: Netty's
 * native epoll transport where available (less CPU per call than NIO), daemon threads, half the
 * cores at least one, plaintext or TLS, responses handled on the event loop (direct executor) and no
 * limit on their size.
 */
final class ClientChannels {
  private static EventLoopGroup group;

  private ClientChannels() {}

  static synchronized EventLoopGroup group() {
    if (group == null) {
      int threads = Math.max(1, Runtime.getRuntime().availableProcessors() / 2);
      DefaultThreadFactory factory = new DefaultThreadFactory("modelgate-bench-client", true);
      group = Epoll.isAvailable() ? new EpollEventLoopGroup(threads, factory) : new NioEventLoopGroup(threads, factory);
    }
    return group;
  }

  /** {@code connections} channels (HTTP/2 connections) to {@code target}, e.g. {@code localhost:8001}. */
  static List<ManagedChannel> open(String target, int connections) {
    return open(target, connections, null, null);
  }

  /**
   * As {@link #open(String, int)}, each call sending {@code apiKey} ({@code authorization: Bearer}),
   * for a server with a callers file (null sends none), over TLS with {@code tls} unless null.
   */
  static List<ManagedChannel> open(String target, int connections, String apiKey, SslContext tls) {
    List<ManagedChannel> channels = new ArrayList<>(connections);
    for (int i = 0; i < connections; i++) {
      NettyChannelBuilder builder =
          NettyChannelBuilder.forTarget(target)
              .directExecutor()
              .maxInboundMessageSize(Integer.MAX_VALUE);
      if (tls == null) {
        builder.usePlaintext();
      } else {
        builder.sslContext(tls);
      }
      builder.channelType(Epoll.isAvailable() ? EpollSocketChannel.class : NioSocketChannel.class).eventLoopGroup(group());
      if (apiKey != null) {
        io.grpc.Metadata headers = new io.grpc.Metadata();
        headers.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER), "Bearer " + apiKey);
        builder.intercept(io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(headers));
      }
      channels.add(builder.build());
    }
    return channels;
  }
}

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
import java.net.InetSocketAddress;
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

  /**
   * One channel (HTTP/2 connection) to each of {@code servers}, each call sending {@code apiKey}
   * ({@code authorization: Bearer}) for a server with a callers file (null sends none), over TLS
   * with {@code tls} unless null (the server's name checked, as the address holds it).
   */
  static List<ManagedChannel> open(List<InetSocketAddress> servers, String apiKey, SslContext tls) {
    List<ManagedChannel> channels = new ArrayList<>(servers.size());
    for (InetSocketAddress server : servers) {
      NettyChannelBuilder builder =
          NettyChannelBuilder.forAddress(server)
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

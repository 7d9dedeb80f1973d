package io.modelgate.bench.load;

import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.util.ArrayList;
import java.util.List;

/**
 * The load generator's connections: the one way every benchmark opens them. Netty's native epoll
 * transport where available (less CPU per call than NIO), one small event-loop group shared by
 * every channel of the process (daemon threads, one per core at most), plaintext, responses
 * handled on the event loop (direct executor) and no limit on their size.
 */
public final class ClientChannels {
  private static EventLoopGroup group;

  private ClientChannels() {}

  private static synchronized EventLoopGroup group() {
    if (group == null) {
      group = new EpollEventLoopGroup(
          Math.max(1, Runtime.getRuntime().availableProcessors() / 2),
          new DefaultThreadFactory("modelgate-bench-client", true));
    }
    return group;
  }

  /** {@code connections} channels (HTTP/2 connections) to {@code target}, e.g. {@code localhost:8001}. */
  public static List<ManagedChannel> open(String target, int connections) {
    return open(target, connections, null);
  }

  /**
   * As {@link #open(String, int)}, each call sending {@code apiKey} ({@code authorization: Bearer}),
   * for a server with a callers file; null sends none.
   */
  public static List<ManagedChannel> open(String target, int connections, String apiKey) {
    List<ManagedChannel> channels = new ArrayList<>(connections);
    for (int i = 0; i < connections; i++) {
      NettyChannelBuilder builder =
          NettyChannelBuilder.forTarget(target)
              .usePlaintext()
              .directExecutor()
              .maxInboundMessageSize(Integer.MAX_VALUE);
      if (Epoll.isAvailable()) {
        builder.channelType(EpollSocketChannel.class).eventLoopGroup(group());
      }
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

package io.modelgate.gateway.server;

import io.modelgate.runtime.threads.DaemonThreads;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.timeout.ReadTimeoutHandler;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The HTTP endpoints a supervisor and a scraper call, on their own port:
 *
 * <ul>
 *   <li>{@code GET /metrics}: Prometheus text format;
 *   <li>{@code GET /livez}: 200 while the process runs and has not finished stopping — a process
 *       with no READY model is alive, not dead;
 *   <li>{@code GET /readyz}: 200 while the gateway can serve inference (started, not stopping, at
 *       least one version READY), else 503 with the reason.
 * </ul>
 *
 * <p>Served by Netty on one event-loop thread of its own, never an inference thread. Connections
 * are non-blocking, so a client that sends half a request holds nothing but its own connection,
 * which is closed after {@link #READ_TIMEOUT_SECONDS} without a byte; other scrapes go on. Request
 * bodies are refused above 8 KiB.
 */
public final class HttpEndpoints implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(HttpEndpoints.class);
  /** A connection that sends nothing for this long is closed. */
  static final int READ_TIMEOUT_SECONDS = 10;

  /** Whether the gateway is ready, and why not. */
  public record Readiness(boolean ready, String reason) {}

  private final EventLoopGroup group;
  private final Channel channel;

  private HttpEndpoints(EventLoopGroup group, Channel channel) {
    this.group = group;
    this.channel = channel;
  }

  /**
   * Listens on {@code host:port} (0: any free port).
   *
   * @param metrics the Prometheus text; called on the endpoints' thread
   * @param live whether the process is alive
   * @param readiness whether it is ready; called on the endpoints' thread, must not block
   */
  public static HttpEndpoints start(
      String host, int port, Supplier<String> metrics, Supplier<Boolean> live, Supplier<Readiness> readiness)
      throws IOException {
    return start(host, port, metrics, live, readiness, new ConnectionLimit("metrics", ConnectionSettings.DEFAULT_MAX_CONNECTIONS,
        ConnectionSettings.DEFAULT_MAX_CONNECTION_RATE, RefusalReply.HTTP));
  }

  /** Listens as above, holding at most the connections {@code limit} allows. */
  static HttpEndpoints start(String host, int port, Supplier<String> metrics, Supplier<Boolean> live,
      Supplier<Readiness> readiness, ConnectionLimit limit) throws IOException {
    EventLoopGroup group =
        new NioEventLoopGroup(
            1,
            DaemonThreads.named("modelgate-http"));
    try {
      Channel channel =
          new ServerBootstrap()
              .group(group)
              .channel(NioServerSocketChannel.class)
              .handler(limit)
              .childHandler(
                  new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                      ch.pipeline()
                          .addLast(new ReadTimeoutHandler(READ_TIMEOUT_SECONDS, TimeUnit.SECONDS))
                          .addLast(new HttpServerCodec(4096, 8192, 8192))
                          .addLast(new HttpObjectAggregator(8192))
                          .addLast(new Handler(metrics, live, readiness));
                    }
                  })
              .bind(new InetSocketAddress(host, port))
              .sync()
              .channel();
      HttpEndpoints endpoints = new HttpEndpoints(group, channel);
      log.info("metrics and health on http://{}:{}/ (metrics, livez, readyz)", host, endpoints.port());
      return endpoints;
    } catch (InterruptedException e) {
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while binding " + host + ":" + port, e);
    } catch (RuntimeException e) {
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
      throw new IOException("cannot listen on " + host + ":" + port + ": " + e.getMessage(), e);
    }
  }

  public int port() {
    return ((InetSocketAddress) channel.localAddress()).getPort();
  }

  @Override
  public void close() {
    channel.close().syncUninterruptibly();
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
  }

  private static final class Handler extends SimpleChannelInboundHandler<FullHttpRequest> {
    private final Supplier<String> metrics;
    private final Supplier<Boolean> live;
    private final Supplier<Readiness> readiness;

    Handler(Supplier<String> metrics, Supplier<Boolean> live, Supplier<Readiness> readiness) {
      this.metrics = metrics;
      this.live = live;
      this.readiness = readiness;
    }

    @Override
    protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest request) {
      if (!request.decoderResult().isSuccess()) {
        respond(ctx, request, HttpResponseStatus.BAD_REQUEST, "text/plain", "malformed request\n", false);
        return;
      }
      String path = request.uri();
      int query = path.indexOf('?');
      if (query >= 0) {
        path = path.substring(0, query);
      }
      boolean get = request.method().equals(HttpMethod.GET) || request.method().equals(HttpMethod.HEAD);
      switch (path) {
        case "/metrics" -> {
          if (!get) {
            respond(ctx, request, HttpResponseStatus.METHOD_NOT_ALLOWED, "text/plain", "GET only\n", true);
            return;
          }
          String body;
          try {
            body = metrics.get();
          } catch (RuntimeException e) {
            log.error("scraping the metrics failed", e);
            respond(ctx, request, HttpResponseStatus.INTERNAL_SERVER_ERROR, "text/plain", "scrape failed: " + e + "\n", true);
            return;
          }
          respond(ctx, request, HttpResponseStatus.OK, "text/plain; version=0.0.4; charset=utf-8", body, true);
        }
        case "/livez" -> {
          boolean alive = live.get();
          respond(ctx, request, alive ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE,
              "text/plain", alive ? "live\n" : "stopped\n", true);
        }
        case "/readyz" -> {
          Readiness r = readiness.get();
          respond(ctx, request, r.ready() ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE,
              "text/plain", r.ready() ? "ready\n" : "not ready: " + r.reason() + "\n", true);
        }
        default -> respond(ctx, request, HttpResponseStatus.NOT_FOUND, "text/plain",
            "not found; try /metrics, /livez or /readyz\n", true);
      }
    }

    private static void respond(
        ChannelHandlerContext ctx,
        FullHttpRequest request,
        HttpResponseStatus status,
        String contentType,
        String body,
        boolean keepAlive) {
      ByteBuf content =
          request.method().equals(HttpMethod.HEAD)
              ? Unpooled.EMPTY_BUFFER
              : Unpooled.copiedBuffer(body, StandardCharsets.UTF_8);
      FullHttpResponse response = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, content);
      response.headers().set(HttpHeaderNames.CONTENT_TYPE, contentType);
      response.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, content.readableBytes());
      boolean keep = keepAlive && HttpUtil.isKeepAlive(request);
      if (keep) {
        response.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.KEEP_ALIVE);
        ctx.writeAndFlush(response);
      } else {
        ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
      }
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      // A read time-out or a reset by the client: nothing to answer.
      ctx.close();
    }
  }
}

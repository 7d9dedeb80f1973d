package io.modelgate.gateway.server;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http2.DefaultHttp2GoAwayFrame;
import io.netty.handler.codec.http2.DefaultHttp2Headers;
import io.netty.handler.codec.http2.DefaultHttp2HeadersFrame;
import io.netty.handler.codec.http2.Http2Error;
import io.netty.handler.codec.http2.Http2FrameCodecBuilder;
import io.netty.handler.codec.http2.Http2Headers;
import io.netty.handler.codec.http2.Http2HeadersFrame;
import io.netty.handler.codec.http2.Http2Settings;
import io.netty.util.ReferenceCountUtil;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

/**
 * What a connection that a port refuses is told before it is closed, in the port's own protocol,
 * so that its client reads why rather than "connection closed":
 *
 * <ul>
 *   <li>{@link #GRPC}, a plaintext gRPC port: each call the client opens ends {@code UNAVAILABLE}
 *       with the reason as its message (an answer of trailers only, as a gRPC server refuses a
 *       call), then a {@code GOAWAY} carrying the reason too, and the connection is closed once the
 *       client has read it. {@code UNAVAILABLE} is the code gRPC clients and their retry policies
 *       retry.
 *   <li>{@link #HTTP}, the metrics and health port: its request gets {@code 503 Service
 *       Unavailable} with the reason and {@code Retry-After: 1}, and the connection is closed.
 *   <li>{@link #NONE}, a TLS port: nothing. A refusal comes before the TLS handshake, whose cost
 *       the limits are there to spare, and nothing can be said to a TLS client without one; the
 *       connection is closed at once.
 * </ul>
 *
 * <p>A connection being told is closed after {@link #TIMEOUT_MILLIS} whatever its client does, and
 * is not counted among the connections the port holds. {@link ConnectionLimit} bounds how many are
 * told a second, and closes the rest at once.
 *
 * <p>Threads: the handlers run on the event loop the refused connection is registered with (the
 * port's acceptor thread); nothing is shared between connections.
 */
enum RefusalReply {
  GRPC {
    @Override
    void install(ChannelPipeline pipeline, String reason) {
      pipeline.addLast(
          new Deadline(),
          Http2FrameCodecBuilder.forServer()
              .initialSettings(Http2Settings.defaultSettings().maxConcurrentStreams(16))
              .gracefulShutdownTimeoutMillis(TIMEOUT_MILLIS / 4)
              .build(),
          new GrpcRefusal(reason));
    }
  },
  HTTP {
    @Override
    void install(ChannelPipeline pipeline, String reason) {
      pipeline.addLast(new Deadline(), new HttpServerCodec(4096, 8192, 8192), new HttpObjectAggregator(8192), new HttpRefusal(reason));
    }
  },
  NONE {
    @Override
    void install(ChannelPipeline pipeline, String reason) {
      throw new UnsupportedOperationException("a TLS port's refusal says nothing");
    }
  };

  /** How long a refused connection is kept for its reply at the most, in milliseconds. */
  static final long TIMEOUT_MILLIS = 1_000;

  /**
   * Adds to a refused connection's (empty, unregistered) pipeline the handlers that tell its client
   * {@code reason} and close it.
   *
   * @param reason printable ASCII without {@code %}, which gRPC would read as an escape
   */
  abstract void install(ChannelPipeline pipeline, String reason);

  /** Checks that {@code reason} can be sent as it is in a gRPC message and an HTTP body; returns it. */
  static String checked(String reason) {
    if (!reason.chars().allMatch(c -> c >= 0x20 && c < 0x7f && c != '%')) {
      throw new IllegalArgumentException("a refusal's reason must be printable ASCII without '%': " + reason);
    }
    return reason;
  }

  /**
   * Closes the connection {@link #TIMEOUT_MILLIS} after it became active, whatever its codec is
   * doing: first in the pipeline, its close goes straight to the socket.
   */
  private static final class Deadline extends ChannelInboundHandlerAdapter {
    @Override
    public void channelActive(ChannelHandlerContext ctx) {
      ctx.executor().schedule(() -> ctx.close(), TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
      ctx.fireChannelActive();
    }
  }

  /** Ends each call {@code UNAVAILABLE} with the reason, then asks the client to go, with the reason too. */
  private static final class GrpcRefusal extends ChannelInboundHandlerAdapter {
    private final String reason;
    private boolean goingAway;

    GrpcRefusal(String reason) {
      this.reason = reason;
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
      // A client that opens no call in half the time is asked to go all the same.
      ctx.executor().schedule(() -> {
        if (!goingAway && ctx.channel().isActive()) {
          goAway(ctx);
        }
      }, TIMEOUT_MILLIS / 2, TimeUnit.MILLISECONDS);
      ctx.fireChannelActive();
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      try {
        if (msg instanceof Http2HeadersFrame call && !goingAway) {
          Http2Headers trailers = new DefaultHttp2Headers()
              .status("200")
              .set("content-type", "application/grpc")
              .set("grpc-status", "14")
              .set("grpc-message", reason);
          ctx.write(new DefaultHttp2HeadersFrame(trailers, true).stream(call.stream()));
          goAway(ctx);
        }
      } finally {
        ReferenceCountUtil.release(msg);
      }
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
      ctx.flush();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      // Not HTTP/2 (the codec has said so to the client where it could): nothing more to tell.
      ctx.close();
    }

    /** GOAWAY with the reason (every call the client opened so far answered), then closed once no call is open. */
    private void goAway(ChannelHandlerContext ctx) {
      goingAway = true;
      ByteBuf debug = Unpooled.copiedBuffer(reason, StandardCharsets.US_ASCII);
      ctx.write(new DefaultHttp2GoAwayFrame(Http2Error.NO_ERROR, debug));
      ctx.flush();
      ctx.close();
    }
  }

  /** Answers the request 503 with the reason, and closes the connection once the answer is written. */
  private static final class HttpRefusal extends ChannelInboundHandlerAdapter {
    private final String reason;

    HttpRefusal(String reason) {
      this.reason = reason;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      try {
        if (msg instanceof HttpRequest) {
          byte[] body = (reason + "\n").getBytes(StandardCharsets.US_ASCII);
          FullHttpResponse response = new DefaultFullHttpResponse(
              HttpVersion.HTTP_1_1, HttpResponseStatus.SERVICE_UNAVAILABLE, Unpooled.wrappedBuffer(body));
          response.headers()
              .set(HttpHeaderNames.CONTENT_TYPE, "text/plain")
              .set(HttpHeaderNames.CONTENT_LENGTH, body.length)
              .set(HttpHeaderNames.RETRY_AFTER, 1)
              .set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
          ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
        }
      } finally {
        ReferenceCountUtil.release(msg);
      }
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      ctx.close();
    }
  }
}

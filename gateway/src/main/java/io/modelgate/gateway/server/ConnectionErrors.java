package io.modelgate.gateway.server;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;
import io.modelgate.runtime.logging.LogThrottle;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.http2.Http2ConnectionAdapter;
import io.netty.handler.codec.http2.Http2ConnectionHandler;
import io.netty.handler.codec.http2.Http2Error;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.LongAdder;

/**
 * Counts, and tells the log of, the connections a port's HTTP/2 layer ends for what their client
 * did: a GOAWAY sent with an error code. {@code ENHANCE_YOUR_CALM} for calls reset faster than
 * {@code --max-stream-resets} allows ("rapid reset"; the server's reason {@code too_many_rststreams})
 * or pings more often than {@code --permit-keepalive-time} ({@code too_many_pings}: a client whose
 * keepalive is set shorter than the server permits), {@code PROTOCOL_ERROR} or {@code
 * FRAME_SIZE_ERROR} for frames HTTP/2 does not allow, and so on. grpc-java ends these connections
 * inside its HTTP/2 handler and tells no one; a listener on each connection's HTTP/2 state (Netty's
 * {@link io.netty.handler.codec.http2.Http2Connection.Listener#onGoAwaySent}) sees each GOAWAY as it
 * is sent. A graceful GOAWAY ({@code NO_ERROR}: the connection's age, its idleness, the server
 * stopping) is not an error and is not counted; nor is {@code INTERNAL_ERROR}, which Netty sends
 * when a connection fails under it (its client gone, "Connection reset by peer"): a client lost,
 * not one misbehaving.
 *
 * <p>{@code modelgate_connection_errors_total{port,code}} counts them, {@code code} being the HTTP/2
 * error's name in lower case for the errors a client can cause ({@link #CODES}), {@code other} for
 * the rest (each series there from the start, so that a rate sees the first); the
 * log names the client's address, the code and the server's reason, the first at once and then at
 * most every {@link #LOG_EVERY}, saying how many it did not tell.
 *
 * <p>Threads: the handler {@link #watcher} makes runs on its connection's event loop: it looks for
 * grpc-java's HTTP/2 handler on each read until it is there (on a TLS port, once the handshake is
 * done), adds the listener, and leaves the pipeline. The listener runs on the same loop; the counts
 * and the log's throttle are thread-safe. Nothing runs per call.
 */
final class ConnectionErrors {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(ConnectionErrors.class);
  static final Duration LOG_EVERY = Duration.ofSeconds(10);
  /** The most characters of the server's reason (the GOAWAY's debug data) the log repeats. */
  private static final int REASON_CHARS = 120;

  /** The errors counted under their own name: those a client's doing makes the server end a connection with. */
  static final List<Http2Error> CODES = List.of(Http2Error.ENHANCE_YOUR_CALM, Http2Error.PROTOCOL_ERROR,
      Http2Error.FLOW_CONTROL_ERROR, Http2Error.FRAME_SIZE_ERROR, Http2Error.COMPRESSION_ERROR);
  private static final String OTHER = "other";

  private final String port;
  private final LogThrottle logged = new LogThrottle(LOG_EVERY);
  /** Connections ended, by the error's place in {@link #CODES}, then {@link #OTHER}. */
  private final LongAdder[] counts = new LongAdder[CODES.size() + 1];

  /** @param port the port's name in metrics and the log */
  ConnectionErrors(String port) {
    this.port = port;
    for (int i = 0; i < counts.length; i++) {
      counts[i] = new LongAdder();
    }
  }

  /** Exports the counts to {@code registry}; returns this. */
  ConnectionErrors bindTo(MeterRegistry registry) {
    for (int i = 0; i < counts.length; i++) {
      FunctionCounter.builder("modelgate.connection.errors", counts[i], LongAdder::sum)
          .description("Connections the server ended with an HTTP/2 error (GOAWAY) for what their client did:"
              + " enhance_your_calm for calls reset past --max-stream-resets or pings more often than"
              + " --permit-keepalive-time, protocol_error for frames HTTP/2 does not allow, ...")
          .tags("port", port, "code", i < CODES.size() ? name(CODES.get(i)) : OTHER)
          .register(registry);
    }
    return this;
  }

  /** A handler for a new connection's pipeline, ahead of grpc-java's, that watches it. */
  ChannelInboundHandlerAdapter watcher() {
    return new Watch();
  }

  private static String name(Http2Error error) {
    return error.name().toLowerCase(Locale.ROOT);
  }

  /** One connection ended with {@code errorCode}. */
  void ended(Channel connection, long errorCode, ByteBuf debugData) {
    Http2Error error = Http2Error.valueOf(errorCode);
    int index = error == null ? -1 : CODES.indexOf(error);
    counts[index < 0 ? CODES.size() : index].increment();
    long heldBack = logged.pass();
    if (heldBack >= 0) {
      log.warn("ended the connection from {} on the {} port with HTTP/2 error {} ({}){}", connection.remoteAddress(), port,
          error == null ? "0x" + Long.toHexString(errorCode) : error.name(), reason(debugData), LogThrottle.since(heldBack));
    }
  }

  /** The GOAWAY's debug data as printable text, shortened. */
  static String reason(ByteBuf debugData) {
    if (debugData == null || !debugData.isReadable()) {
      return "no reason given";
    }
    int length = Math.min(debugData.readableBytes(), REASON_CHARS);
    String text = debugData.toString(debugData.readerIndex(), length, StandardCharsets.US_ASCII);
    StringBuilder printable = new StringBuilder(text.length());
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      printable.append(c >= 0x20 && c < 0x7f ? c : '?');
    }
    return printable.toString();
  }

  /** Finds the connection's HTTP/2 handler, listens to it, and goes. */
  private final class Watch extends ChannelInboundHandlerAdapter {
    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      Http2ConnectionHandler http2 = ctx.pipeline().get(Http2ConnectionHandler.class);
      if (http2 == null) {
        ctx.fireChannelRead(msg);
        return;
      }
      Channel connection = ctx.channel();
      http2.connection().addListener(new Http2ConnectionAdapter() {
        @Override
        public void onGoAwaySent(int lastStreamId, long errorCode, ByteBuf debugData) {
          if (errorCode != Http2Error.NO_ERROR.code() && errorCode != Http2Error.INTERNAL_ERROR.code()) {
            ended(connection, errorCode, debugData);
          }
        }
      });
      ctx.pipeline().remove(this);
      ctx.fireChannelRead(msg);
    }
  }
}

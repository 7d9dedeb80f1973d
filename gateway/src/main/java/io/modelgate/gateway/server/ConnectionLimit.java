package io.modelgate.gateway.server;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFactory;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ServerChannel;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/**
 * Bounds the connections a port holds: a connection accepted while the port already holds {@code
 * limit} is closed at once, before any TLS or HTTP/2 work is spent on it. Its client sees the
 * connection closed ({@code UNAVAILABLE} in gRPC) and reconnects after its back-off, to this
 * replica or another. Every connection is counted from its acceptance to its end, whether or not
 * its handshake finishes, so that connections that never speak (a TCP check, a client stuck before
 * its TLS handshake) count too, until the handshake timeout ends them.
 *
 * <p>{@code modelgate_connections_held{port}} and {@code modelgate_connections_limit{port}} show how
 * near a port is to its limit; {@code modelgate_connections_refused_total{port}} counts the
 * refusals; the log tells of the first at once and of those after it at most every {@value
 * #LOG_EVERY_SECONDS} s.
 *
 * <p>The handler sits in the port's listening channel, ahead of Netty's acceptor: {@link #factory}
 * makes listening channels that carry it.
 *
 * <p>Threads: {@link #channelRead} runs on the port's acceptor thread (the boss event loop) only,
 * once per connection accepted; a connection's end is counted on its own event loop. Nothing runs
 * per call.
 */
@ChannelHandler.Sharable
final class ConnectionLimit extends ChannelInboundHandlerAdapter {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(ConnectionLimit.class);
  static final int LOG_EVERY_SECONDS = 10;
  private static final long LOG_EVERY_NANOS = TimeUnit.SECONDS.toNanos(LOG_EVERY_SECONDS);

  private final String port;
  private final int limit;
  /** Connections accepted and not yet ended. */
  private final AtomicInteger held = new AtomicInteger();
  private final LongAdder refused = new LongAdder();
  /** Refusals not yet logged, the last one's client, when the log last told of any, and whether it will again: the acceptor thread's only. */
  private long unlogged;
  private java.net.SocketAddress lastRefused;
  private long loggedAt = System.nanoTime() - LOG_EVERY_NANOS;
  private boolean logScheduled;

  ConnectionLimit(String port, int limit) {
    if (limit < 1) {
      throw new IllegalArgumentException("max connections: " + limit + " (expected: at least 1)");
    }
    this.port = port;
    this.limit = limit;
  }

  ConnectionLimit bindTo(MeterRegistry registry) {
    FunctionCounter.builder("modelgate.connections.refused", refused, LongAdder::sum)
        .description("Connections closed as they were accepted because the port held its most (--max-connections)")
        .tag("port", port)
        .register(registry);
    Gauge.builder("modelgate.connections.held", held, AtomicInteger::get)
        .description("Connections a port holds, from their acceptance to their end, handshake finished or not")
        .tag("port", port)
        .register(registry);
    Gauge.builder("modelgate.connections.limit", this, limit -> limit.limit)
        .description("The most connections a port holds at once (--max-connections)")
        .tag("port", port)
        .register(registry);
    return this;
  }

  /** Listening channels of {@code type} (its public no-argument constructor) that carry this limit. */
  ChannelFactory<ServerChannel> factory(Class<? extends ServerChannel> type) {
    java.lang.reflect.Constructor<? extends ServerChannel> constructor;
    try {
      constructor = type.getConstructor();
    } catch (NoSuchMethodException e) {
      throw new IllegalArgumentException(type + " has no public no-argument constructor", e);
    }
    return () -> {
      ServerChannel channel;
      try {
        channel = constructor.newInstance();
      } catch (ReflectiveOperationException e) {
        throw new IllegalStateException("cannot make a " + type.getSimpleName(), e);
      }
      // Ahead of the acceptor, which the server's bootstrap adds once the channel is registered.
      channel.pipeline().addLast(this);
      return channel;
    };
  }

  /** Connections the port holds now: accepted and not yet ended. */
  int held() {
    return held.get();
  }

  long refused() {
    return refused.sum();
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    Channel connection = (Channel) msg;
    if (held.incrementAndGet() > limit) {
      held.decrementAndGet();
      refused.increment();
      unlogged++;
      lastRefused = connection.remoteAddress();
      // What Netty's acceptor does with a connection it cannot take: closed before it is registered.
      connection.unsafe().closeForcibly();
      if (!logScheduled) {
        long wait = loggedAt + LOG_EVERY_NANOS - System.nanoTime();
        if (wait <= 0) {
          logRefusals();
        } else {
          // Told of when the interval is up, whether or not more come: on this same thread.
          logScheduled = true;
          ctx.executor().schedule(() -> {
            logScheduled = false;
            logRefusals();
          }, wait, TimeUnit.NANOSECONDS);
        }
      }
      return;
    }
    connection.pipeline().addFirst(new Release());
    ctx.fireChannelRead(msg);
  }

  private void logRefusals() {
    log.warn("{} connection(s) to the {} port refused as it held {}, its most (--max-connections); the last from {}",
        unlogged, port, limit, lastRefused);
    unlogged = 0;
    lastRefused = null;
    loggedAt = System.nanoTime();
  }

  /** Gives a connection's place back when it ends (its pipeline is taken down after it closes). */
  private final class Release extends ChannelInboundHandlerAdapter {
    private boolean released;

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
      if (!released) {
        released = true;
        held.decrementAndGet();
      }
    }
  }
}

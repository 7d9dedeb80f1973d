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
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/**
 * Bounds the connections a port holds, and how fast it takes new ones: a connection accepted while
 * the port already holds {@code limit}, or beyond {@code ratePerSecond} new connections a second
 * (a token bucket holding one second's worth), is closed at once, before any TLS or HTTP/2 work is
 * spent on it. Its client sees the connection closed ({@code UNAVAILABLE} in gRPC) and reconnects
 * after its back-off, to this replica or another. Every connection is counted from its acceptance
 * to its end, whether or not its handshake finishes, so that connections that never speak (a TCP
 * check, a client stuck before its TLS handshake) count too, until the handshake timeout ends
 * them. The rate bounds the work a storm of connections (a client reconnecting in a loop, a
 * checker gone wild) hands the event loops, which set up and take down each connection taken
 * between the calls they serve.
 *
 * <p>{@code modelgate_connections_held{port}} and {@code modelgate_connections_limit{port}} show how
 * near a port is to its limit; {@code modelgate_connections_refused_total{port,reason}} counts the
 * refusals ({@code reason}: {@code limit} or {@code rate}); the log tells of the first at once and
 * of those after it at most every {@value #LOG_EVERY_SECONDS} s.
 *
 * <p>The handler sits in the port's listening channel, ahead of Netty's acceptor: {@link #factory}
 * makes listening channels that carry it.
 *
 * <p>Threads: {@link #channelRead} runs on the port's acceptor thread (the boss event loop) only,
 * once per connection accepted, and owns the token bucket and the log's state; a connection's end
 * is counted on its own event loop. Nothing runs per call.
 */
@ChannelHandler.Sharable
final class ConnectionLimit extends ChannelInboundHandlerAdapter {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(ConnectionLimit.class);
  static final int LOG_EVERY_SECONDS = 10;
  private static final long LOG_EVERY_NANOS = TimeUnit.SECONDS.toNanos(LOG_EVERY_SECONDS);
  private static final long SECOND = TimeUnit.SECONDS.toNanos(1);

  private final String port;
  private final int limit;
  /** New connections a second; 0 for no limit. */
  private final int ratePerSecond;
  /** Connections accepted and not yet ended. */
  private final AtomicInteger held = new AtomicInteger();
  private final LongAdder refusedAtLimit = new LongAdder();
  private final LongAdder refusedForRate = new LongAdder();
  /**
   * The token bucket, in nanoseconds of refill: a connection takes {@code SECOND / ratePerSecond};
   * the bucket holds one second. The acceptor thread's only, as is the log's state below.
   */
  private final java.util.function.LongSupplier nanoTime;
  private long bucketNanos = SECOND;
  private long filledAt;
  /** Refusals not yet logged by reason (limit, rate), the last one's client, when the log last told of any, and whether it will again. */
  private long unloggedAtLimit;
  private long unloggedForRate;
  private java.net.SocketAddress lastRefused;
  private long loggedAt;
  private boolean logScheduled;

  ConnectionLimit(String port, int limit) {
    this(port, limit, 0);
  }

  ConnectionLimit(String port, int limit, int ratePerSecond) {
    this(port, limit, ratePerSecond, System::nanoTime);
  }

  /** With {@code nanoTime} for the clock (tests). */
  ConnectionLimit(String port, int limit, int ratePerSecond, java.util.function.LongSupplier nanoTime) {
    if (limit < 1) {
      throw new IllegalArgumentException("max connections: " + limit + " (expected: at least 1)");
    }
    if (ratePerSecond < 0) {
      throw new IllegalArgumentException("max connection rate: " + ratePerSecond + " (expected: 0 for none, or at least 1)");
    }
    this.port = port;
    this.limit = limit;
    this.ratePerSecond = ratePerSecond;
    this.nanoTime = nanoTime;
    this.filledAt = nanoTime.getAsLong();
    this.loggedAt = filledAt - LOG_EVERY_NANOS;
  }

  ConnectionLimit bindTo(MeterRegistry registry) {
    for (var reason : Map.of("limit", refusedAtLimit, "rate", refusedForRate).entrySet()) {
      FunctionCounter.builder("modelgate.connections.refused", reason.getValue(), LongAdder::sum)
          .description("Connections closed as they were accepted: the port held its most (--max-connections), or took"
              + " new ones faster than --max-connection-rate")
          .tags("port", port, "reason", reason.getKey())
          .register(registry);
    }
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

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    Channel connection = (Channel) msg;
    boolean withinRate = takeToken();
    if (!withinRate || held.incrementAndGet() > limit) {
      if (withinRate) {
        held.decrementAndGet();
        refusedAtLimit.increment();
        unloggedAtLimit++;
      } else {
        refusedForRate.increment();
        unloggedForRate++;
      }
      lastRefused = connection.remoteAddress();
      // What Netty's acceptor does with a connection it cannot take: closed before it is registered.
      connection.unsafe().closeForcibly();
      if (!logScheduled) {
        long wait = loggedAt + LOG_EVERY_NANOS - nanoTime.getAsLong();
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

  /** Whether a new connection is within the rate, taking its token if so; always with no rate. */
  private boolean takeToken() {
    if (ratePerSecond == 0) {
      return true;
    }
    long now = nanoTime.getAsLong();
    bucketNanos = Math.min(SECOND, bucketNanos + (now - filledAt));
    filledAt = now;
    long cost = SECOND / ratePerSecond;
    if (bucketNanos < cost) {
      return false;
    }
    bucketNanos -= cost;
    return true;
  }

  private void logRefusals() {
    if (unloggedAtLimit > 0) {
      log.warn("{} connection(s) to the {} port refused as it held {}, its most (--max-connections); the last from {}",
          unloggedAtLimit, port, limit, lastRefused);
    }
    if (unloggedForRate > 0) {
      log.warn("{} connection(s) to the {} port refused for coming faster than {} a second (--max-connection-rate);"
          + " the last from {}", unloggedForRate, port, ratePerSecond, lastRefused);
    }
    unloggedAtLimit = 0;
    unloggedForRate = 0;
    lastRefused = null;
    loggedAt = nanoTime.getAsLong();
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

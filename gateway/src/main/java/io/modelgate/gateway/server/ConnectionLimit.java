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
 * Bounds the connections a port holds, and how fast it takes new ones: a connection accepted while
 * the port already holds {@code limit}, or beyond {@code ratePerSecond} new connections a second
 * (a token bucket holding one second's worth), or while its client's address (its IP) holds {@code
 * perAddress} on the port already, is refused. On a plaintext port its client is told
 * why in the port's protocol ({@link RefusalReply}: a gRPC client's calls end {@code UNAVAILABLE}
 * naming the limit, an HTTP client gets 503), for up to {@value #REPLIES_PER_SECOND} refused
 * connections a second; the others, and every one on a TLS port, are closed at once, before any TLS
 * or HTTP/2 work is spent on them (their gRPC clients see {@code UNAVAILABLE: Network closed for
 * unknown reason}). Either way the client reconnects after its back-off, to this replica or another.
 * Every connection is counted from its acceptance
 * to its end, whether or not its handshake finishes, so that connections that never speak (a TCP
 * check, a client stuck before its TLS handshake) count too, until the handshake timeout ends
 * them. The rate bounds the work a storm of connections (a client reconnecting in a loop, a
 * checker gone wild) hands the event loops, which set up and take down each connection taken
 * between the calls they serve.
 *
 * <p>It counts the connections each client address (its IP) holds, whether or not {@code
 * perAddress} limits them, so that {@link #report} can say who holds a port's connections (the
 * admin API's {@code GetConnections}). {@code modelgate_connections_held{port}} and {@code
 * modelgate_connections_limit{port}} show how near a port is to its limit; {@code modelgate_connections_refused_total{port,reason}} counts the
 * refusals ({@code reason}: {@code limit}, {@code rate} or {@code address}); the log tells of the first at once and
 * of those after it at most every {@value #LOG_EVERY_SECONDS} s.
 *
 * <p>The handler sits in the port's listening channel, ahead of Netty's acceptor: {@link #factory}
 * makes listening channels that carry it. Being the one place that sees each connection taken, it
 * also puts the port's {@link ConnectionErrors} watcher, if any, on each ({@link #watchedBy}).
 *
 * <p>Threads: {@link #channelRead} runs on the port's acceptor thread (the boss event loop) only,
 * once per connection accepted, and owns the token buckets and the log's state; a connection's end
 * is counted on its own event loop, and a refused connection that is told why is served by the
 * acceptor's event loop too. Nothing runs per call.
 */
@ChannelHandler.Sharable
final class ConnectionLimit extends ChannelInboundHandlerAdapter {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(ConnectionLimit.class);
  static final int LOG_EVERY_SECONDS = 10;
  private static final long LOG_EVERY_NANOS = TimeUnit.SECONDS.toNanos(LOG_EVERY_SECONDS);
  private static final long SECOND = TimeUnit.SECONDS.toNanos(1);
  /** Refused connections told why, at most, a second; the rest are closed without a word. */
  static final int REPLIES_PER_SECOND = 100;

  /** Why a connection is refused; its name in lower case is the counter's {@code reason} label. */
  enum Reason {
    /** The port held its most connections. */
    LIMIT,
    /** Faster than the rate. */
    RATE,
    /** The client's address held its most connections on the port. */
    ADDRESS;

    /** Its name in the counter's {@code reason} label and in {@link #report}. */
    String label() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  private static final Reason[] REASONS = Reason.values();

  private final String port;
  private final int limit;
  /** New connections a second; 0 for no limit. */
  private final int ratePerSecond;
  /** Connections one client address may hold; 0 for no limit. */
  private final int perAddress;
  /** Connections accepted and not yet ended. */
  private final AtomicInteger held = new AtomicInteger();
  /**
   * Connections held by each client address (its IP; any port), while it holds any: incremented on
   * the acceptor thread, decremented on the connections' event loops, each by an atomic step on its
   * key; at most {@code limit} entries. Kept whether or not {@code perAddress} limits them, for
   * {@link #report}.
   */
  private final java.util.concurrent.ConcurrentHashMap<Object, Integer> byAddress;
  /** Refusals by reason, in {@link Reason} order. */
  private final LongAdder[] refused = new LongAdder[REASONS.length];
  private final java.util.function.LongSupplier nanoTime;
  /** New connections' tokens (null with no rate), and refusals' replies'. The acceptor thread's only, as is the log's state below. */
  private final TokenBucket connections;
  private final TokenBucket replies;
  /** What a refused connection is told, and why, by reason. */
  private final RefusalReply reply;
  private final String[] reasons = new String[REASONS.length];
  /** Refusals not yet logged by reason, the last one's client, when the log last told of any, and whether it will again. */
  private final long[] unlogged = new long[REASONS.length];
  private java.net.SocketAddress lastRefused;
  private long loggedAt;
  private boolean logScheduled;
  /** What watches each connection taken for HTTP/2 errors; null for none (the metrics port). Set before the port opens. */
  private ConnectionErrors errors;

  ConnectionLimit(String port, int limit) {
    this(port, limit, 0);
  }

  ConnectionLimit(String port, int limit, int ratePerSecond) {
    this(port, limit, ratePerSecond, RefusalReply.NONE);
  }

  /**
   * @param port the port's name in metrics and messages
   * @param limit the most connections it holds at once
   * @param ratePerSecond the most new connections it takes a second; 0 for no limit
   * @param reply what a refused connection is told: {@link RefusalReply#NONE} on a TLS port
   */
  ConnectionLimit(String port, int limit, int ratePerSecond, RefusalReply reply) {
    this(port, limit, ratePerSecond, 0, reply, System::nanoTime);
  }

  /**
   * As {@link #ConnectionLimit(String, int, int, RefusalReply)}, and at most {@code perAddress}
   * connections from one client address (its IP, whatever its port; 0 for no limit).
   */
  ConnectionLimit(String port, int limit, int ratePerSecond, int perAddress, RefusalReply reply) {
    this(port, limit, ratePerSecond, perAddress, reply, System::nanoTime);
  }

  /** With {@code nanoTime} for the clock (tests). */
  ConnectionLimit(String port, int limit, int ratePerSecond, java.util.function.LongSupplier nanoTime) {
    this(port, limit, ratePerSecond, 0, RefusalReply.NONE, nanoTime);
  }

  /** With {@code nanoTime} for the clock (tests). */
  ConnectionLimit(String port, int limit, int ratePerSecond, int perAddress, RefusalReply reply,
      java.util.function.LongSupplier nanoTime) {
    if (limit < 1) {
      throw new IllegalArgumentException("max connections: " + limit + " (expected: at least 1)");
    }
    if (ratePerSecond < 0) {
      throw new IllegalArgumentException("max connection rate: " + ratePerSecond + " (expected: 0 for none, or at least 1)");
    }
    if (perAddress < 0) {
      throw new IllegalArgumentException("max connections per address: " + perAddress + " (expected: 0 for none, or at least 1)");
    }
    this.port = port;
    this.limit = limit;
    this.ratePerSecond = ratePerSecond;
    this.perAddress = perAddress;
    this.byAddress = new java.util.concurrent.ConcurrentHashMap<>();
    for (int i = 0; i < refused.length; i++) {
      refused[i] = new LongAdder();
    }
    this.nanoTime = nanoTime;
    this.connections = ratePerSecond == 0 ? null : new TokenBucket(ratePerSecond, nanoTime.getAsLong());
    this.replies = new TokenBucket(REPLIES_PER_SECOND, nanoTime.getAsLong());
    this.reply = reply;
    reasons[Reason.LIMIT.ordinal()] = RefusalReply.checked("modelgate: the " + port + " port holds " + limit
        + " connections, its most (--max-connections); try again after a back-off, or another replica");
    reasons[Reason.RATE.ordinal()] = RefusalReply.checked("modelgate: the " + port + " port takes at most " + ratePerSecond
        + " new connections a second (--max-connection-rate); try again after a back-off");
    reasons[Reason.ADDRESS.ordinal()] = RefusalReply.checked("modelgate: the " + port + " port holds " + perAddress
        + " connections from your address, its most for one (--max-connections-per-address); use fewer connections,"
        + " or try again once some have closed");
    this.loggedAt = nanoTime.getAsLong() - LOG_EVERY_NANOS;
  }

  ConnectionLimit bindTo(MeterRegistry registry) {
    for (Reason reason : REASONS) {
      FunctionCounter.builder("modelgate.connections.refused", refused[reason.ordinal()], LongAdder::sum)
          .description("Connections refused as they were accepted: the port held its most (--max-connections), took"
              + " new ones faster than --max-connection-rate, or held the most from the client's address"
              + " (--max-connections-per-address)")
          .tags("port", port, "reason", reason.label())
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

  /** Has {@code errors} watch each connection this port takes from now on; returns this. */
  ConnectionLimit watchedBy(ConnectionErrors errors) {
    this.errors = errors;
    return this;
  }

  /** Connections the port holds now: accepted and not yet ended. */
  int held() {
    return held.get();
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    Channel connection = (Channel) msg;
    Object address = address(connection);
    Reason refusal = null;
    if (connections != null && !connections.take(nanoTime.getAsLong())) {
      refusal = Reason.RATE;
    } else if (held.incrementAndGet() > limit) {
      held.decrementAndGet();
      refusal = Reason.LIMIT;
    } else if (byAddress.merge(address, 1, Integer::sum) > perAddress && perAddress > 0) {
      // Counted whether or not a limit applies to it, for the report.
      releaseAddress(address);
      held.decrementAndGet();
      refusal = Reason.ADDRESS;
    }
    if (refusal != null) {
      refused[refusal.ordinal()].increment();
      unlogged[refusal.ordinal()]++;
      lastRefused = connection.remoteAddress();
      refuse(ctx, connection, reasons[refusal.ordinal()]);
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
    connection.pipeline().addFirst(new Release(address));
    if (errors != null) {
      // Ahead of the server's own handlers, which its acceptor adds next.
      connection.pipeline().addLast(errors.watcher());
    }
    ctx.fireChannelRead(msg);
  }

  /** What a connection's client address counts under: its IP, whatever its port (the address itself where it has none). */
  private static Object address(Channel connection) {
    java.net.SocketAddress remote = connection.remoteAddress();
    if (remote == null) {
      return "unknown";
    }
    return remote instanceof java.net.InetSocketAddress inet && inet.getAddress() != null ? inet.getAddress() : remote;
  }

  /** One connection fewer from {@code address}; the key goes with its last. */
  private void releaseAddress(Object address) {
    byAddress.computeIfPresent(address, (key, count) -> count == 1 ? null : count - 1);
  }

  /** Client addresses holding connections now (tests). */
  int addresses() {
    return byAddress.size();
  }

  /**
   * What the port holds now: its connections and limits, the {@code top} client addresses holding
   * the most (most first), and its refusals so far. Any thread: a moment's reading of counts that
   * move meanwhile (an address counted as it holds, the totals as they are).
   */
  io.modelgate.proto.admin.v1.PortConnections report(int top) {
    io.modelgate.proto.admin.v1.PortConnections.Builder report = io.modelgate.proto.admin.v1.PortConnections.newBuilder()
        .setPort(port)
        .setHeld(held.get())
        .setLimit(limit)
        .setPerAddressLimit(perAddress)
        .setAddresses(byAddress.size());
    java.util.PriorityQueue<java.util.Map.Entry<Object, Integer>> most =
        new java.util.PriorityQueue<>(java.util.Map.Entry.comparingByValue());
    for (java.util.Map.Entry<Object, Integer> entry : byAddress.entrySet()) {
      most.add(java.util.Map.entry(entry.getKey(), entry.getValue()));
      if (most.size() > top) {
        most.poll();
      }
    }
    java.util.List<java.util.Map.Entry<Object, Integer>> listed = new java.util.ArrayList<>(most);
    listed.sort(java.util.Map.Entry.<Object, Integer>comparingByValue().reversed());
    for (java.util.Map.Entry<Object, Integer> entry : listed) {
      Object address = entry.getKey();
      report.addTop(io.modelgate.proto.admin.v1.AddressConnections.newBuilder()
          .setAddress(address instanceof java.net.InetAddress inet ? inet.getHostAddress() : String.valueOf(address))
          .setHeld(entry.getValue()));
    }
    for (Reason reason : REASONS) {
      report.putRefused(reason.label(), refused[reason.ordinal()].sum());
    }
    return report.build();
  }

  /**
   * Tells {@code connection} {@code reason} where the port speaks in plaintext and a reply's token
   * is left, on the acceptor's own event loop (the refused connection is never handed to the
   * loops that serve calls); else closes it at once, unregistered, as Netty's acceptor closes a
   * connection it cannot take.
   */
  private void refuse(ChannelHandlerContext ctx, Channel connection, String reason) {
    if (reply == RefusalReply.NONE || !replies.take(nanoTime.getAsLong())) {
      connection.unsafe().closeForcibly();
      return;
    }
    reply.install(connection.pipeline(), reason);
    ctx.channel().eventLoop().register(connection).addListener(registered -> {
      if (!registered.isSuccess()) {
        connection.unsafe().closeForcibly();
      }
    });
  }

  /**
   * A token bucket holding one second's worth of {@code perSecond} tokens, in nanoseconds of refill.
   * One thread's only.
   */
  private static final class TokenBucket {
    private final long cost;
    private long nanos = SECOND;
    private long filledAt;

    TokenBucket(int perSecond, long now) {
      this.cost = SECOND / perSecond;
      this.filledAt = now;
    }

    /** Whether a token is left at {@code now}, taking it if so. */
    boolean take(long now) {
      nanos = Math.min(SECOND, nanos + (now - filledAt));
      filledAt = now;
      if (nanos < cost) {
        return false;
      }
      nanos -= cost;
      return true;
    }
  }

  private void logRefusals() {
    long atLimit = unlogged[Reason.LIMIT.ordinal()];
    long forRate = unlogged[Reason.RATE.ordinal()];
    long forAddress = unlogged[Reason.ADDRESS.ordinal()];
    if (atLimit > 0) {
      log.warn("{} connection(s) to the {} port refused as it held {}, its most (--max-connections); the last from {}",
          atLimit, port, limit, lastRefused);
    }
    if (forRate > 0) {
      log.warn("{} connection(s) to the {} port refused for coming faster than {} a second (--max-connection-rate);"
          + " the last from {}", forRate, port, ratePerSecond, lastRefused);
    }
    if (forAddress > 0) {
      log.warn("{} connection(s) to the {} port refused as their address held {}, its most for one"
          + " (--max-connections-per-address); the last from {}", forAddress, port, perAddress, lastRefused);
    }
    java.util.Arrays.fill(unlogged, 0);
    lastRefused = null;
    loggedAt = nanoTime.getAsLong();
  }

  /** Gives a connection's place back when it ends (its pipeline is taken down after it closes). */
  private final class Release extends ChannelInboundHandlerAdapter {
    /** The client address it counts under. */
    private final Object address;
    private boolean released;

    Release(Object address) {
      this.address = address;
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
      if (!released) {
        released = true;
        held.decrementAndGet();
        releaseAddress(address);
      }
    }
  }
}

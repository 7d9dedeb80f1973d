package io.modelgate.gateway.inference;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.threads.DaemonThreads;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The bytes of request messages the server holds, from admission until they are answered, across
 * every version, and their limit. A version's queue bounds how many requests wait, not how large
 * they are: a model with a dimension of any length takes messages up to the inbound limit (128 MiB
 * by default), so a full queue of them would hold far more than the heap. Past the limit a request
 * is refused {@code RESOURCE_EXHAUSTED} at once, before it is decoded. As fair admission keeps a
 * quarter of each queue, a quarter of the bytes is kept for a tenant with nothing waiting for the
 * version it calls ({@link io.modelgate.gateway.callers.FairShare#RESERVE}), or for one still within
 * its share of the rest (its weight's part of the weights of the tenants holding requests) ({@link #acquire(long, io.modelgate.runtime.execution.VersionScheduler,
 * boolean, Tenant)}): one tenant's large requests cannot take all of it, nor hold another tenant to
 * one request at a time.
 *
 * <p>The limit also covers a message while it arrives ({@link #arrivals}): grpc-java gathers each
 * request message whole, up to the inbound limit, before the service sees it, so without this a
 * client could make the server hold its calls per connection times 128 MiB before any admission.
 * The bytes of a message being received count from its first body byte to its last, and are then
 * handed to admission, which holds the decoded request's size; a message that would pass the part
 * of the limit not kept for tenants with nothing waiting is refused {@code RESOURCE_EXHAUSTED} as
 * its bytes arrive (the tenant is not known before the request is decoded).
 *
 * <p>A message that arrives too slowly is ended ({@link ReceiveTimeout}): once {@value
 * ReceiveTimeout#WATCHED_FROM} bytes of it are held it is watched, and one that gains fewer than
 * the timeout's bytes in a window is given up. If more of its bytes arrive, the stream ends there
 * with {@code DEADLINE_EXCEEDED} and a message saying why (a client sending slowly learns what
 * happened); if none arrive within another window, the stream is reset (the client sees {@code
 * CANCELLED}; a client that has stalled is not reading either). A slow client's bytes reach the
 * server a whole HTTP/2 frame at a time (16 KiB), so a client sending below the rate may show
 * nothing for seconds: the second window is its chance to learn why. Either way a client stalled
 * part way through a large message holds its bytes for two windows, not for its connection's life. A watched message holds at least 64 KiB of the limit, so at most one watched entry (a few
 * dozen bytes) exists per 64 KiB of it.
 *
 * <p>Unary answers count as well, from when they are written until the transport has sent them
 * ({@link #holdAnswer}): a client that does not read its answers fills the memory, not the heap.
 *
 * <p>Threads: {@link #acquire} on the event loop that admits a request, {@link #release} on the
 * thread that answers it (or, for an answer, the event loop that sent it), the arrivals' counting
 * on the event loop that receives the message; one atomic counter, no lock. The watched messages
 * are a concurrent map: the event loop adds and removes its own, and one sweeping thread ({@link
 * #startSweeping}) moves their checkpoints on, marks the slow ones given up and resets those still
 * there at its next look, each by a conditional replace or remove, so that a message that ended
 * (or a next one on the same stream) meanwhile is left alone; the event loop reads a mark from the
 * map, so no mark outlives its message.
 */
public final class RequestMemory implements AutoCloseable {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(RequestMemory.class);
  /** At most one warning about slow messages in this long, nanoseconds. */
  private static final long LOG_EVERY_NANOS = java.util.concurrent.TimeUnit.SECONDS.toNanos(10);

  /** The default limit: a quarter of the JVM's heap ({@code -Xmx}). */
  public static long defaultLimit() {
    return Runtime.getRuntime().maxMemory() / 4;
  }

  /**
   * The part of {@code limit} not kept for tenants with nothing waiting: what requests with a
   * backlog, and every message while it arrives, may fill.
   */
  public static long unreserved(long limit) {
    return (long) (limit * (1 - io.modelgate.gateway.callers.FairShare.RESERVE));
  }

  private final long limit;
  /** What requests that may not use the reserve can fill: the limit less its reserved share. */
  private final long unreserved;
  private final AtomicLong held = new AtomicLong();
  private final java.util.concurrent.ConcurrentHashMap<String, Tenant> tenants = new java.util.concurrent.ConcurrentHashMap<>();
  /** The weights of the tenants with bytes held, summed: changed only as a tenant's bytes leave or reach 0. */
  private final java.util.concurrent.atomic.AtomicInteger tenantsHolding = new java.util.concurrent.atomic.AtomicInteger();
  private final java.util.concurrent.atomic.LongAdder refusedArriving = new java.util.concurrent.atomic.LongAdder();
  private final io.grpc.ServerStreamTracer.Factory arrivals =
      new io.grpc.ServerStreamTracer.Factory() {
        @Override
        public io.grpc.ServerStreamTracer newServerStreamTracer(String fullMethodName, io.grpc.Metadata headers) {
          return new Arrival(fullMethodName);
        }
      };
  private final ReceiveTimeout receiveTimeout;
  private final java.util.function.LongSupplier nanoTime;
  /** The messages being watched, with where each stood at its window's start; null when none are. */
  private final java.util.concurrent.ConcurrentHashMap<Arrival, Checkpoint> watched;
  private final java.util.concurrent.atomic.LongAdder endedSlow = new java.util.concurrent.atomic.LongAdder();
  private java.util.concurrent.ScheduledExecutorService sweeper;
  // The sweeping thread's own: slow messages given up since its last warning, and when that was.
  private long unlogged;
  private long loggedAt;

  /** @param limit bytes of request messages held at once, at least 1; messages may arrive as slowly as they do */
  public RequestMemory(long limit) {
    this(limit, ReceiveTimeout.OFF, System::nanoTime);
  }

  /**
   * @param limit bytes of request messages held at once, at least 1
   * @param receiveTimeout how slowly a message may arrive; {@link #startSweeping} ends those
   *     slower
   * @param nanoTime the clock the windows are measured by, nanoseconds
   */
  public RequestMemory(long limit, ReceiveTimeout receiveTimeout, java.util.function.LongSupplier nanoTime) {
    if (limit < 1) {
      throw new IllegalArgumentException("request memory: " + limit + " bytes (expected: at least 1)");
    }
    this.limit = limit;
    this.unreserved = unreserved(limit);
    this.receiveTimeout = java.util.Objects.requireNonNull(receiveTimeout, "receive timeout");
    this.nanoTime = nanoTime;
    this.watched = receiveTimeout.enabled() ? new java.util.concurrent.ConcurrentHashMap<>() : null;
    this.loggedAt = nanoTime.getAsLong() - LOG_EVERY_NANOS;
  }

  /**
   * Starts the thread that ends messages arriving too slowly, looking every second (every
   * quarter of the window, if shorter); nothing when the receive timeout is off. Returns this.
   */
  public synchronized RequestMemory startSweeping() {
    if (watched != null && sweeper == null) {
      long every = Math.max(100, Math.min(1000, receiveTimeout.window().toMillis() / 4));
      sweeper = DaemonThreads.scheduled("modelgate-receive-timeouts");
      // What a sweep throws is logged (once a minute) and counted by the thread's executor; it sweeps on.
      sweeper.scheduleWithFixedDelay(this::sweep, every, every, java.util.concurrent.TimeUnit.MILLISECONDS);
    }
    return this;
  }

  /** Stops the sweeping thread. */
  @Override
  public synchronized void close() {
    if (sweeper != null) {
      sweeper.shutdownNow();
      sweeper = null;
    }
  }

  /**
   * Looks at every watched message once: one whose window has passed moves its checkpoint on if
   * it gained the timeout's bytes in it, and is given up if not (its next bytes end the stream with
   * the reason); one given up a window ago or more that is still there has its stream reset. On
   * the sweeping thread (tests: the test's).
   *
   * @return the messages given up
   */
  int sweep() {
    if (watched == null) {
      return 0;
    }
    long now = nanoTime.getAsLong();
    long window = receiveTimeout.window().toNanos();
    long least = receiveTimeout.leastBytesPerWindow();
    int givenUp = 0;
    Arrival last = null;
    for (java.util.Map.Entry<Arrival, Checkpoint> entry : watched.entrySet()) {
      Arrival arrival = entry.getKey();
      Checkpoint since = entry.getValue();
      if (since.ending() != null) {
        // Given up, and no byte came in another window to end it with its reason: reset.
        if (now - since.nanos() >= window && watched.remove(arrival, since)) {
          arrival.reset(since.ending());
        }
        continue;
      }
      if (now - since.nanos() < window) {
        continue;
      }
      long bytes = arrival.arriving();
      if (bytes - since.bytes() >= least) {
        watched.replace(arrival, since, new Checkpoint(now, bytes, null));
      } else if (watched.replace(arrival, since, new Checkpoint(now, bytes, tooSlow(bytes, bytes - since.bytes(), now - since.nanos())))) {
        endedSlow.increment();
        givenUp++;
        last = arrival;
      }
    }
    unlogged += givenUp;
    if (unlogged > 0 && now - loggedAt >= LOG_EVERY_NANOS) {
      log.warn("{} request message(s) ended in the last {} s for arriving too slowly (less than {} bytes a second over"
              + " {} s: --receive-timeout, --receive-min-rate){}", unlogged, java.util.concurrent.TimeUnit.NANOSECONDS.toSeconds(now - loggedAt),
          receiveTimeout.minBytesPerSecond(), receiveTimeout.window().toSeconds(),
          last == null ? "" : "; the last from " + last.remote + " on " + last.method);
      unlogged = 0;
      loggedAt = now;
    }
    return givenUp;
  }

  /** The status a message given up ends with: it gained {@code gained} of its {@code bytes} in {@code nanos}. */
  private Refused tooSlow(long bytes, long gained, long nanos) {
    return new Refused(io.grpc.Status.DEADLINE_EXCEEDED.withDescription("the request message arrived too slowly: "
        + mebibytes(gained) + " in the last " + java.util.concurrent.TimeUnit.NANOSECONDS.toSeconds(nanos)
        + " s, against at least " + receiveTimeout.minBytesPerSecond() + " bytes a second (--receive-timeout,"
        + " --receive-min-rate), with " + mebibytes(bytes) + " of it gathered"));
  }

  /**
   * Where a watched message stood when its window began: then, nanoseconds; bytes gathered by then;
   * and, once it is given up, the status it ends with (null until then; {@code nanos} is then when
   * it was given up).
   */
  private record Checkpoint(long nanos, long bytes, Refused ending) {}

  /**
   * Holds {@code bytes} for a request until {@link #release}, or refuses it when that would pass
   * the limit. A request larger than the whole limit is refused even when nothing else is held.
   * As {@link #acquire(long, io.modelgate.runtime.execution.VersionScheduler, boolean, Tenant)}
   * for a request of no identified tenant.
   */
  void acquire(long bytes, io.modelgate.runtime.execution.VersionScheduler scheduler, boolean mayUseReserve) {
    acquire(bytes, scheduler, mayUseReserve, null);
  }

  /**
   * Holds {@code bytes} for a request of {@code tenant} until {@link #release(long, Tenant)}, or
   * refuses it when that would pass the part of the limit open to it: the whole limit for a tenant
   * with nothing else waiting for the version, or one still within its share of the part not kept
   * in reserve (that part in proportion to the weights of the tenants holding requests, itself
   * counted; equal shares when all weigh 1);
   * that part alone for a tenant past its share. So a tenant whose large requests fill what is not
   * kept cannot keep another tenant, holding little, to one request at a time: the other's backlog
   * uses the reserve.
   *
   * @param scheduler the request's version: a refusal asks for a retry once it has served what
   *     waits
   * @param nothingWaiting whether the tenant has nothing else waiting for the version ({@link
   *     io.modelgate.gateway.callers.FairShare.Place#mayUseReserve}), or callers are not identified
   * @param tenant the request's tenant ({@link #tenant}); null when callers are not identified
   * @throws InferenceException RESOURCE_EXHAUSTED, with that hint
   */
  void acquire(long bytes, io.modelgate.runtime.execution.VersionScheduler scheduler, boolean nothingWaiting, Tenant tenant) {
    boolean mayUseReserve = nothingWaiting;
    long mine = 0;
    int sharing = 0;
    if (tenant != null) {
      mine = tenant.held.addAndGet(bytes);
      if (mine == bytes) {
        tenantsHolding.addAndGet(tenant.weight);
      }
      if (!mayUseReserve) {
        sharing = Math.max(tenant.weight, tenantsHolding.get());
        mayUseReserve = mine <= share(tenant, sharing);
      }
    }
    long open = mayUseReserve ? limit : unreserved;
    long now = held.addAndGet(bytes);
    if (now > open) {
      held.addAndGet(-bytes);
      if (tenant != null) {
        tenant.release(bytes);
      }
      // Concatenated, not String.format: refused under load, many times a second.
      throw InferenceException.overRequestMemory("the server holds " + mebibytes(now - bytes)
          + " of requests not yet answered, and this one's " + mebibytes(bytes) + " would pass "
          + (mayUseReserve ? "its limit of " + mebibytes(limit)
              : mebibytes(unreserved) + ", the part of its limit of " + mebibytes(limit) + " not kept for tenants with nothing waiting"
                  + (tenant == null ? "" : " or within their share (tenant '" + tenant.name + "' would hold " + mebibytes(mine)
                      + ", past its share of " + mebibytes(share(tenant, sharing)) + ": that part divided among the tenants"
                      + " holding requests, its weight " + tenant.weight + " of " + sharing + ")"))
          + " (--request-memory); retry later or send smaller requests", scheduler.retryAfter(scheduler.queuedCount()));
    }
  }

  /** {@code tenant}'s part of what is not kept in reserve, when the tenants holding requests weigh {@code sharing}. */
  private long share(Tenant tenant, int sharing) {
    return (long) ((double) unreserved * tenant.weight / sharing);
  }

  /**
   * A tenant's bytes of requests held, counted at one weight, for its share of the memory. One per
   * tenant named in the callers file, kept for the server's life (a few dozen bytes each); a
   * callers file read again with another weight for the tenant starts a new one, and requests held
   * before release into the one they were counted in, so the weights summed stay exact.
   */
  final class Tenant {
    private final String name;
    private final int weight;
    private final AtomicLong held = new AtomicLong();

    private Tenant(String name, int weight) {
      this.name = name;
      this.weight = weight;
    }

    private void release(long bytes) {
      if (held.addAndGet(-bytes) == 0) {
        tenantsHolding.addAndGet(-weight);
      }
    }
  }

  /** {@code name}'s bytes in this memory, at {@code weight} (at least 1). Any thread. */
  Tenant tenant(String name, int weight) {
    Tenant tenant = tenants.get(name);
    if (tenant != null && tenant.weight == weight) {
      return tenant;
    }
    return tenants.compute(name, (n, t) -> t != null && t.weight == weight ? t : new Tenant(n, weight));
  }

  /** The weights of the tenants holding requests now, summed (each tenant's weight 1: how many). */
  int tenantsHolding() {
    return tenantsHolding.get();
  }

  /** Lets go of {@code bytes} that {@link #acquire(long, io.modelgate.runtime.execution.VersionScheduler, boolean, Tenant)} held for {@code tenant} (null: none). */
  void release(long bytes, Tenant tenant) {
    held.addAndGet(-bytes);
    if (tenant != null) {
      tenant.release(bytes);
    }
  }

  /**
   * Holds an answer's {@code bytes} until the transport has sent them ({@link UnaryAnswer}):
   * never refused, since the work is done, but a client that does not read its answers fills the
   * memory, and new requests are refused until they are read.
   */
  void holdAnswer(long bytes) {
    held.addAndGet(bytes);
  }

  /** Lets go of {@code bytes} that {@link #acquire} or {@link #holdAnswer} held. */
  void release(long bytes) {
    held.addAndGet(-bytes);
  }

  /**
   * Counts each request message's bytes in this memory while it arrives, for a server's {@code
   * addStreamTracerFactory}: every method of the port, since any message may be as large as the
   * inbound limit.
   */
  public io.grpc.ServerStreamTracer.Factory arrivals() {
    return arrivals;
  }

  /**
   * One stream's message while it arrives. grpc-java calls {@link #inboundWireSize} as the body's
   * bytes reach the message being gathered, {@link #inboundMessageRead} when it is whole (before
   * the service decodes it) and {@link #streamClosed} once at the end, whole or not. A refusal is
   * thrown from {@link #inboundWireSize}: grpc-java fails the stream as for a message over the
   * inbound limit, with the status sent to the client in trailers and the stream reset (the
   * gathered bytes freed), which {@code ArrivingMessagesTest} checks against a real server.
   *
   * <p>Threads: grpc-java calls every method on the stream's transport thread (its event loop),
   * the context and the client's address before any message; the sweeping thread reads the
   * bytes gathered, marks a message given up in the watched map (which the event loop reads as
   * the next bytes arrive) and cancels the context, each seen through the watched map, into which the
   * event loop puts the message after those are set. The bytes held move by atomic exchange, so
   * that a close seen from elsewhere would still let go of them once.
   */
  private final class Arrival extends io.grpc.ServerStreamTracer {
    private static final java.lang.invoke.VarHandle ARRIVING;
    private final String method;
    /** The stream's own context, which cancelling resets the stream; null unless messages are watched. */
    private io.grpc.Context.CancellableContext context;
    /** The client's address, for the log; null unless messages are watched. */
    private java.net.SocketAddress remote;

    Arrival(String method) {
      this.method = method;
    }

    static {
      try {
        ARRIVING = java.lang.invoke.MethodHandles.lookup().findVarHandle(Arrival.class, "arriving", long.class);
      } catch (ReflectiveOperationException e) {
        throw new ExceptionInInitializerError(e);
      }
    }

    /** Bytes of the message gathered so far and held in the memory. */
    @SuppressWarnings("unused") // through ARRIVING
    private volatile long arriving;

    /** Set once the message is refused: grpc-java may pass more of its bytes before the reset. */
    private Refused refused;

    @Override
    public void inboundWireSize(long bytes) {
      if (refused != null) {
        throw refused;
      }
      if (bytes <= 0) {
        return;
      }
      if (watched != null && (long) ARRIVING.getVolatile(this) >= ReceiveTimeout.WATCHED_FROM) {
        // Watched: given up for arriving too slowly? It ends here, with its reason.
        Checkpoint at = watched.get(this);
        if (at != null && at.ending() != null) {
          throw refused = at.ending();
        }
      }
      long now = held.addAndGet(bytes);
      if (now > unreserved) {
        held.addAndGet(-bytes);
        refusedArriving.increment();
        long before = (long) ARRIVING.getVolatile(this);
        throw refused = new Refused(io.grpc.Status.RESOURCE_EXHAUSTED.withDescription("the server holds " + mebibytes(now - bytes)
            + " of requests arriving or not yet answered (this message's first " + mebibytes(before) + " among them), and "
            + mebibytes(bytes) + " more would pass " + mebibytes(unreserved) + ", the part of its limit of " + mebibytes(limit)
            + " a message may fill while it arrives (--request-memory); retry later or send smaller requests"));
      }
      long after = (long) ARRIVING.getAndAdd(this, bytes) + bytes;
      if (watched != null && after >= ReceiveTimeout.WATCHED_FROM && after - bytes < ReceiveTimeout.WATCHED_FROM) {
        watched.put(this, new Checkpoint(nanoTime.getAsLong(), after, null));
      }
    }

    /**
     * With messages watched, the stream runs in a context of its own (grpc-java's call context
     * descends from it), so that the sweeping thread can end one given up that sends nothing more:
     * grpc-java resets a stream whose context is cancelled. Without, the context as it is: nothing
     * added to a call.
     */
    @Override
    public io.grpc.Context filterContext(io.grpc.Context context) {
      if (watched == null) {
        return context;
      }
      return this.context = context.withCancellation();
    }

    @Override
    public void serverCallStarted(io.grpc.ServerStreamTracer.ServerCallInfo<?, ?> callInfo) {
      if (watched != null) {
        remote = callInfo.getAttributes().get(io.grpc.Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
      }
    }

    @Override
    public void inboundMessageRead(int seqNo, long optionalWireSize, long optionalUncompressedSize) {
      letGo();
    }

    @Override
    public void streamClosed(io.grpc.Status status) {
      letGo();
    }

    private void letGo() {
      long bytes = (long) ARRIVING.getAndSet(this, 0L);
      if (bytes != 0) {
        held.addAndGet(-bytes);
        if (watched != null && bytes >= ReceiveTimeout.WATCHED_FROM) {
          watched.remove(this);
        }
      }
    }

    long arriving() {
      return (long) ARRIVING.getVolatile(this);
    }

    /** Resets the stream, its message given up with {@code ending} and no byte since. On the sweeping thread. */
    void reset(Refused ending) {
      io.grpc.Context.CancellableContext own = context;
      if (own != null) {
        own.cancel(ending);
      }
    }
  }

  /** A refusal while a message arrives, or a slow one's end: no stack trace (it may come many times a second). */
  private static final class Refused extends io.grpc.StatusRuntimeException {
    private static final long serialVersionUID = 1L;

    Refused(io.grpc.Status status) {
      super(status);
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
      return this;
    }
  }

  /**
   * Exports {@code modelgate_request_memory_held_bytes}, {@code
   * modelgate_request_memory_limit_bytes}, {@code
   * modelgate_request_memory_arriving_refused_total} and {@code
   * modelgate_request_receive_timeouts_total}; returns this.
   */
  public RequestMemory bindTo(io.micrometer.core.instrument.MeterRegistry registry) {
    io.micrometer.core.instrument.Gauge.builder("modelgate.request.memory.held", this, RequestMemory::held)
        .description("Bytes of request messages arriving, or admitted and not yet answered, across versions")
        .baseUnit("bytes")
        .register(registry);
    io.micrometer.core.instrument.Gauge.builder("modelgate.request.memory.limit", this, RequestMemory::limit)
        .description("The most bytes of request messages held at once (--request-memory); past it requests are refused")
        .baseUnit("bytes")
        .register(registry);
    io.micrometer.core.instrument.FunctionCounter.builder("modelgate.request.memory.arriving.refused", refusedArriving,
            java.util.concurrent.atomic.LongAdder::sum)
        .description("Request messages refused while they arrived, for passing the part of the request memory a message may"
            + " fill before it is decoded")
        .register(registry);
    io.micrometer.core.instrument.FunctionCounter.builder("modelgate.request.receive.timeouts", endedSlow,
            java.util.concurrent.atomic.LongAdder::sum)
        .description("Request messages ended for arriving too slowly (--receive-timeout, --receive-min-rate): a client"
            + " stalled part way through a large message, or sending it a few bytes at a time")
        .register(registry);
    return this;
  }

  /** Request messages given up for arriving too slowly. */
  public long receiveTimeouts() {
    return endedSlow.sum();
  }

  /** Request messages refused while they arrived. */
  public long refusedArriving() {
    return refusedArriving.sum();
  }

  /** Bytes held now. */
  public long held() {
    return held.get();
  }

  /** The limit, bytes. */
  public long limit() {
    return limit;
  }

  private static String mebibytes(long bytes) {
    return bytes >= (10L << 20) ? (bytes >> 20) + " MiB" : bytes >= 10_240 ? (bytes >> 10) + " KiB" : bytes + " bytes";
  }
}

package io.modelgate.gateway.server;

import java.time.Duration;
import java.util.Objects;

/**
 * How the gateway's ports treat their connections over their life: the inference port's age and
 * keepalive; how many each port holds, how fast it takes them, and how long one may go without a
 * handshake or a call, or keep resetting calls (the metrics port takes the count and the rate).
 * Immutable and validated.
 *
 * <p>gRPC clients keep one connection per server for as long as it works, so a client that
 * balances over a fleet's addresses (a headless Service's DNS records) learns of a replica added
 * since it connected only when one of its connections ends. A maximum age ends each connection
 * after a while (gRPC adds ±10% jitter so that a fleet's clients do not all reconnect at once): the
 * server sends GOAWAY, the client opens a new connection and looks the addresses up again, and no
 * call is lost: those in flight finish on the old connection, for at most the grace.
 *
 * @param maxAge how long a connection may live before GOAWAY; {@link Duration#ZERO} for no limit
 * @param maxAgeGrace how long the calls in flight on a connection past its age may still take
 *     (streams included); null for as long as they take
 * @param keepAliveTime how long a connection may be idle before the server pings it to learn
 *     whether the client is still there (a connection whose client vanished, behind a NAT or a
 *     load balancer, is closed after 20 s without an answer)
 * @param permitKeepAliveTime the shortest interval at which the server lets a client ping it, with
 *     or without calls in flight; a client pinging more often is told GOAWAY ({@code
 *     too_many_pings})
 * @param maxConcurrentStreams the most calls a connection may have open at once (HTTP/2's {@code
 *     SETTINGS_MAX_CONCURRENT_STREAMS}); a gRPC client holds further calls until one ends. Each open
 *     call holds its answer until the client reads it, so this bounds what a connection whose
 *     client stops reading can make the server keep
 * @param maxConnections the most connections each port (inference, admin, metrics) holds at once, counted
 *     from their acceptance, handshake or not; one more is closed as it is accepted (see {@link
 *     ConnectionLimit})
 * @param maxConnectionRate the most new connections each port takes a second (a token bucket of
 *     one second's worth); more are closed as they are accepted. 0: no limit
 * @param maxStreamResets the most calls a client may reset (HTTP/2 {@code RST_STREAM}) on one
 *     connection in {@link #STREAM_RESET_WINDOW}; past it the server ends the connection (GOAWAY
 *     {@code ENHANCE_YOUR_CALM}, {@code too_many_rststreams}). A reset frees its stream's place
 *     under {@code maxConcurrentStreams} at once, so without this a client could make the server
 *     start calls without bound by resetting each as it opens it (HTTP/2 "rapid reset",
 *     CVE-2023-44487). 0: any
 * @param maxIdle how long a connection may go without a call open before the server asks its client
 *     to go (GOAWAY, graceful: the client reconnects when it next calls), so that connections a
 *     client keeps without using them do not hold places under {@code maxConnections} for good;
 *     {@link Duration#ZERO} for no limit
 * @param handshakeTimeout how long a new connection may take to finish its TLS handshake and send
 *     HTTP/2's preface before it is closed, so that connections that never speak do not hold places
 *     under {@code maxConnections}
 * @param maxConnectionsPerAddress the most connections the inference and admin ports each hold from
 *     one client address (its IP, whatever its port), so that one client leaking connections cannot
 *     take a port's {@code maxConnections} from the others; one more is refused as it is accepted.
 *     0: no limit (the default: behind a proxy, a sidecar or a NAT every client shares one address)
 */
public record ConnectionSettings(
    Duration maxAge,
    Duration maxAgeGrace,
    Duration keepAliveTime,
    Duration permitKeepAliveTime,
    int maxConcurrentStreams,
    int maxConnections,
    int maxConnectionRate,
    int maxStreamResets,
    Duration maxIdle,
    Duration handshakeTimeout,
    int maxConnectionsPerAddress) {
  /** {@value} calls open at once on a connection. */
  public static final int DEFAULT_MAX_CONCURRENT_STREAMS = 1024;

  /** {@value} connections held at once on a port. */
  public static final int DEFAULT_MAX_CONNECTIONS = 10_000;

  /**
   * The default count of connections a port holds for a process that may have {@code maxOpenFiles}
   * files open at once: {@value #DEFAULT_MAX_CONNECTIONS}, or a quarter of the files where that is
   * fewer (three ports then take at most three quarters of them, and models, logs and etcd keep the
   * rest), but at least 16. {@code maxOpenFiles} of 0 or less: not known, the plain default.
   */
  public static int defaultMaxConnections(long maxOpenFiles) {
    if (maxOpenFiles <= 0) {
      return DEFAULT_MAX_CONNECTIONS;
    }
    return (int) Math.max(16, Math.min(DEFAULT_MAX_CONNECTIONS, maxOpenFiles / 4));
  }

  /** The files this process may have open at once (its {@code RLIMIT_NOFILE}), or -1 where the JVM does not say. */
  public static long maxOpenFiles() {
    return java.lang.management.ManagementFactory.getOperatingSystemMXBean()
            instanceof com.sun.management.UnixOperatingSystemMXBean unix
        ? unix.getMaxFileDescriptorCount()
        : -1;
  }

  /** {@value} new connections a second on a port. */
  public static final int DEFAULT_MAX_CONNECTION_RATE = 1000;

  /** The window {@code maxStreamResets} counts in. */
  public static final Duration STREAM_RESET_WINDOW = Duration.ofSeconds(10);

  /** {@value} calls reset on a connection in {@link #STREAM_RESET_WINDOW}. */
  public static final int DEFAULT_MAX_STREAM_RESETS = 1_000;

  /** An hour without a call open ends a connection. */
  public static final Duration DEFAULT_MAX_IDLE = Duration.ofHours(1);

  /** Ten seconds for a connection's handshake: Netty's own for TLS. */
  public static final Duration DEFAULT_HANDSHAKE_TIMEOUT = Duration.ofSeconds(10);

  /**
   * No age limit; the server pings idle connections every minute; clients may ping every 10 s;
   * {@value #DEFAULT_MAX_CONCURRENT_STREAMS} calls open at once on a connection; {@value
   * #DEFAULT_MAX_CONNECTIONS} connections on a port, {@value #DEFAULT_MAX_CONNECTION_RATE} new ones a
   * second, each with 10 s for its handshake.
   */
  public static final ConnectionSettings DEFAULTS =
      new ConnectionSettings(Duration.ZERO, null, Duration.ofMinutes(1), Duration.ofSeconds(10));

  /** How long the server waits for the answer to its ping before it closes the connection. */
  public static final Duration KEEPALIVE_TIMEOUT = Duration.ofSeconds(20);

  public ConnectionSettings {
    Objects.requireNonNull(maxAge, "max connection age");
    Objects.requireNonNull(keepAliveTime, "keepalive time");
    Objects.requireNonNull(permitKeepAliveTime, "permitted keepalive time");
    if (maxAge.isNegative() || (!maxAge.isZero() && maxAge.compareTo(Duration.ofSeconds(1)) < 0)) {
      throw new IllegalArgumentException("max connection age: " + io.modelgate.gateway.config.TimeSpans.format(maxAge) + " (expected: 0 for no limit, or at least 1s)");
    }
    if (maxAgeGrace != null && maxAgeGrace.isNegative()) {
      throw new IllegalArgumentException("max connection age grace: " + io.modelgate.gateway.config.TimeSpans.format(maxAgeGrace) + " (expected: >= 0)");
    }
    if (keepAliveTime.compareTo(Duration.ofSeconds(10)) < 0) {
      throw new IllegalArgumentException("keepalive time: " + io.modelgate.gateway.config.TimeSpans.format(keepAliveTime) + " (expected: at least 10s)");
    }
    if (permitKeepAliveTime.isNegative()) {
      throw new IllegalArgumentException("permitted keepalive time: " + io.modelgate.gateway.config.TimeSpans.format(permitKeepAliveTime) + " (expected: >= 0)");
    }
    if (maxConcurrentStreams < 1) {
      throw new IllegalArgumentException("max concurrent streams: " + maxConcurrentStreams + " (expected: at least 1)");
    }
    if (maxConnections < 1) {
      throw new IllegalArgumentException("max connections: " + maxConnections + " (expected: at least 1)");
    }
    if (maxConnectionRate < 0) {
      throw new IllegalArgumentException("max connection rate: " + maxConnectionRate + " (expected: 0 for none, or at least 1)");
    }
    if (maxStreamResets < 0) {
      throw new IllegalArgumentException("max stream resets: " + maxStreamResets + " (expected: 0 for any, or at least 1)");
    }
    Objects.requireNonNull(maxIdle, "max connection idle");
    if (maxIdle.isNegative() || (!maxIdle.isZero() && maxIdle.compareTo(Duration.ofSeconds(1)) < 0)) {
      throw new IllegalArgumentException("max connection idle: " + io.modelgate.gateway.config.TimeSpans.format(maxIdle) + " (expected: 0 for no limit, or at least 1s)");
    }
    Objects.requireNonNull(handshakeTimeout, "handshake timeout");
    if (handshakeTimeout.compareTo(Duration.ofMillis(100)) < 0) {
      throw new IllegalArgumentException("handshake timeout: " + io.modelgate.gateway.config.TimeSpans.format(handshakeTimeout) + " (expected: at least 100ms)");
    }
    if (maxConnectionsPerAddress < 0) {
      throw new IllegalArgumentException(
          "max connections per address: " + maxConnectionsPerAddress + " (expected: 0 for no limit, or at least 1)");
    }
  }

  /**
   * With {@value #DEFAULT_MAX_CONCURRENT_STREAMS} calls open at once on a connection, {@value
   * #DEFAULT_MAX_CONNECTIONS} connections on a port and {@link #DEFAULT_HANDSHAKE_TIMEOUT}.
   */
  public ConnectionSettings(Duration maxAge, Duration maxAgeGrace, Duration keepAliveTime, Duration permitKeepAliveTime) {
    this(maxAge, maxAgeGrace, keepAliveTime, permitKeepAliveTime, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS,
        DEFAULT_MAX_CONNECTION_RATE, DEFAULT_MAX_STREAM_RESETS, DEFAULT_MAX_IDLE, DEFAULT_HANDSHAKE_TIMEOUT, 0);
  }

  /** These settings with {@code streams} calls open at once on a connection. */
  public ConnectionSettings withMaxConcurrentStreams(int streams) {
    return new ConnectionSettings(maxAge, maxAgeGrace, keepAliveTime, permitKeepAliveTime, streams, maxConnections,
        maxConnectionRate, maxStreamResets, maxIdle, handshakeTimeout, maxConnectionsPerAddress);
  }

  /**
   * These settings with at most {@code connections} on a port, {@code rate} new ones a second (0:
   * any) and {@code handshake} to finish a handshake in.
   */
  public ConnectionSettings withConnectionLimit(int connections, int rate, Duration handshake) {
    return new ConnectionSettings(maxAge, maxAgeGrace, keepAliveTime, permitKeepAliveTime, maxConcurrentStreams,
        connections, rate, maxStreamResets, maxIdle, handshake, maxConnectionsPerAddress);
  }

  /** These settings with at most {@code resets} calls reset on a connection in {@link #STREAM_RESET_WINDOW} (0: any). */
  public ConnectionSettings withMaxStreamResets(int resets) {
    return new ConnectionSettings(maxAge, maxAgeGrace, keepAliveTime, permitKeepAliveTime, maxConcurrentStreams,
        maxConnections, maxConnectionRate, resets, maxIdle, handshakeTimeout, maxConnectionsPerAddress);
  }

  /** These settings with connections ended after {@code idle} without a call open ({@link Duration#ZERO}: never). */
  public ConnectionSettings withMaxIdle(Duration idle) {
    return new ConnectionSettings(maxAge, maxAgeGrace, keepAliveTime, permitKeepAliveTime, maxConcurrentStreams,
        maxConnections, maxConnectionRate, maxStreamResets, idle, handshakeTimeout, maxConnectionsPerAddress);
  }

  /** These settings with at most {@code connections} from one client address on the inference and admin ports (0: any). */
  public ConnectionSettings withMaxConnectionsPerAddress(int connections) {
    return new ConnectionSettings(maxAge, maxAgeGrace, keepAliveTime, permitKeepAliveTime, maxConcurrentStreams,
        maxConnections, maxConnectionRate, maxStreamResets, maxIdle, handshakeTimeout, connections);
  }
}

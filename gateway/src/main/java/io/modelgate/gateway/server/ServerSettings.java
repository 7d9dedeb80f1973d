package io.modelgate.gateway.server;

import io.modelgate.gateway.tls.TlsSettings;
import java.time.Duration;
import java.util.Objects;

/**
 * How the gRPC server listens and stops. Immutable and validated on construction.
 *
 * @param host address to bind, e.g. {@code 0.0.0.0}
 * @param port TCP port; 0 picks a free one
 * @param maxInboundMessageBytes largest request message accepted; larger ones are refused with
 *     RESOURCE_EXHAUSTED by gRPC
 * @param eventLoopThreads Netty worker event loops; they decode, validate and publish, never run a
 *     model
 * @param drainTimeout on shutdown, how long queued requests may still run before they are answered
 *     UNAVAILABLE
 * @param tls null for plaintext
 * @param shutdownDelay on shutdown, how long the gateway reports NOT_SERVING (health, /readyz,
 *     ServerReady) while it still serves everything, so that load balancers move away before any
 *     request is refused; then it stops accepting and drains
 * @param connections the inference port's connections over their life: maximum age, keepalive
 */
public record ServerSettings(
    String host,
    int port,
    int maxInboundMessageBytes,
    int eventLoopThreads,
    Duration drainTimeout,
    TlsSettings tls,
    Duration shutdownDelay,
    ConnectionSettings connections) {
  public static final int DEFAULT_PORT = 8001;
  /** Well above grpc-java's 4 MiB default, for image and embedding batches. */
  public static final int DEFAULT_MAX_INBOUND_MESSAGE_BYTES = 128 << 20;

  public static final Duration DEFAULT_DRAIN_TIMEOUT = Duration.ofSeconds(30);

  public ServerSettings {
    Objects.requireNonNull(host, "host");
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("grpc port: " + port + " (expected: 0 to 65535)");
    }
    if (maxInboundMessageBytes < 1024) {
      throw new IllegalArgumentException(
          "max inbound message size: " + maxInboundMessageBytes + " bytes (expected: >= 1024)");
    }
    if (eventLoopThreads < 1 || eventLoopThreads > 256) {
      throw new IllegalArgumentException(
          "event loop threads: " + eventLoopThreads + " (expected: 1 to 256)");
    }
    if (drainTimeout.isNegative()) {
      throw new IllegalArgumentException("drain timeout: " + io.modelgate.gateway.config.TimeSpans.format(drainTimeout) + " (expected: >= 0)");
    }
    if (shutdownDelay.isNegative() || shutdownDelay.compareTo(Duration.ofMinutes(10)) > 0) {
      throw new IllegalArgumentException(
          "shutdown delay: " + shutdownDelay + " (expected: 0 to 10 minutes)");
    }
    Objects.requireNonNull(connections, "connections");
  }

  /** The default connection settings. */
  public ServerSettings(
      String host,
      int port,
      int maxInboundMessageBytes,
      int eventLoopThreads,
      Duration drainTimeout,
      TlsSettings tls,
      Duration shutdownDelay) {
    this(host, port, maxInboundMessageBytes, eventLoopThreads, drainTimeout, tls, shutdownDelay, ConnectionSettings.DEFAULTS);
  }

  /** These settings with {@code connections}. */
  public ServerSettings withConnections(ConnectionSettings connections) {
    return new ServerSettings(host, port, maxInboundMessageBytes, eventLoopThreads, drainTimeout, tls, shutdownDelay, connections);
  }

  /** No shutdown delay. */
  public ServerSettings(
      String host,
      int port,
      int maxInboundMessageBytes,
      int eventLoopThreads,
      Duration drainTimeout,
      TlsSettings tls) {
    this(host, port, maxInboundMessageBytes, eventLoopThreads, drainTimeout, tls, Duration.ZERO);
  }

  /** One event loop per two cores, at least one: the other cores run batchers and models. */
  public static int defaultEventLoopThreads() {
    return Math.max(1, Runtime.getRuntime().availableProcessors() / 2);
  }

  /** Plaintext. */
  public ServerSettings(
      String host, int port, int maxInboundMessageBytes, int eventLoopThreads, Duration drainTimeout) {
    this(host, port, maxInboundMessageBytes, eventLoopThreads, drainTimeout, null);
  }
}

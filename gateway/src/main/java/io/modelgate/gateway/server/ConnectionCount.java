package io.modelgate.gateway.server;

import io.grpc.Attributes;
import io.grpc.ServerTransportFilter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.concurrent.atomic.LongAdder;

/**
 * Counts a port's client connections: {@code modelgate_connections_opened_total{port}} (each one
 * that finished its handshake) and {@code modelgate_connections_open{port}}. Across a fleet, the
 * open connections per replica show whether clients spread over it (a replica added later gets
 * none until connections end: see {@link ConnectionSettings#maxAge}).
 *
 * <p>Threads: called by event loops once when a connection is ready and once when it ends; never
 * per call.
 */
final class ConnectionCount extends ServerTransportFilter {
  /** Marks a connection counted as open, so that one that ends before its handshake is not uncounted. */
  private static final Attributes.Key<Boolean> COUNTED = Attributes.Key.create("modelgate.connection.counted");

  private final String port;
  private final LongAdder opened = new LongAdder();
  private final LongAdder closed = new LongAdder();

  ConnectionCount(String port) {
    this.port = port;
  }

  ConnectionCount bindTo(MeterRegistry registry) {
    FunctionCounter.builder("modelgate.connections.opened", opened, LongAdder::sum)
        .description("Client connections that finished their handshake on a port")
        .tag("port", port)
        .register(registry);
    Gauge.builder("modelgate.connections.open", this, ConnectionCount::open)
        .description("Client connections open on a port")
        .tag("port", port)
        .register(registry);
    return this;
  }

  long opened() {
    return opened.sum();
  }

  long open() {
    return opened.sum() - closed.sum();
  }

  @Override
  public Attributes transportReady(Attributes attributes) {
    opened.increment();
    return attributes.toBuilder().set(COUNTED, Boolean.TRUE).build();
  }

  /**
   * {@code attributes} is null for a connection that ended before its handshake was done (a TCP
   * health check on a TLS port, a client whose certificate or protocol was refused): grpc-java
   * then calls no {@code transportReady}. Throwing here would stop grpc-java before it lets go of
   * the connection's transport, which it would then keep for the server's life and wait for when
   * stopping.
   */
  @Override
  public void transportTerminated(Attributes attributes) {
    if (attributes != null && Boolean.TRUE.equals(attributes.get(COUNTED))) {
      closed.increment();
    }
  }
}

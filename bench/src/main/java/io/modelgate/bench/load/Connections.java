package io.modelgate.bench.load;

import io.grpc.ManagedChannel;
import io.netty.channel.EventLoop;
import io.netty.handler.ssl.SslContext;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The load generator's connections to one server: {@code count} lean HTTP/2 connections for unary
 * ModelInfer ({@link WireConnection}, opened at once), and as many grpc-java channels, opened on
 * first use, for streams and other RPCs (metadata). All run on the client's one small event-loop
 * group ({@link ClientChannels}); a lean connection's calls are paced, sent and answered on its
 * loop. Plaintext, or TLS with a client context ({@code ClientTls}). Thread-safe; close once.
 */
public final class Connections implements AutoCloseable {
  /** The unary method every lean connection calls. */
  static final String MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer";

  private final String target;
  private final String apiKey;
  private final SslContext tls;
  private final List<WireConnection> unary;
  private List<ManagedChannel> channels;

  private Connections(String target, String apiKey, SslContext tls, List<WireConnection> unary) {
    this.target = target;
    this.apiKey = apiKey;
    this.tls = tls;
    this.unary = unary;
  }

  /** {@code count} connections to {@code target} ({@code host:port}). */
  public static Connections open(String target, int count) {
    return open(target, count, null);
  }

  /**
   * As {@link #open(String, int)}, every call sending {@code apiKey} ({@code authorization:
   * Bearer}) for a server with a callers file; null sends none. A server that cannot be reached
   * is not an error here: its calls fail UNAVAILABLE, and the connections keep trying.
   */
  public static Connections open(String target, int count, String apiKey) {
    return open(target, count, apiKey, null);
  }

  /**
   * As {@link #open(String, int, String)}, over TLS with {@code tls} (a gRPC client context:
   * ALPN h2, the server's CA, a client certificate for mutual TLS) unless null.
   */
  public static Connections open(String target, int count, String apiKey, SslContext tls) {
    if (count < 1) {
      throw new IllegalArgumentException("connections: " + count + " (expected: >= 1)");
    }
    int colon = target.lastIndexOf(':');
    if (colon <= 0) {
      throw new IllegalArgumentException("target '" + target + "' (expected: host:port)");
    }
    String host = target.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    }
    InetSocketAddress address = new InetSocketAddress(host, Integer.parseInt(target.substring(colon + 1)));
    List<WireConnection> unary = new ArrayList<>(count);
    try {
      for (int k = 0; k < count; k++) {
        unary.add(WireConnection.open(ClientChannels.group().next(), address, MODEL_INFER, apiKey, tls));
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      unary.forEach(WireConnection::close);
      throw new IllegalStateException("interrupted while connecting to " + target, e);
    }
    return new Connections(target, apiKey, tls, List.copyOf(unary));
  }

  /** How many connections (of each kind). */
  public int count() {
    return unary.size();
  }

  /** Lean unary connection {@code k}. */
  WireConnection unary(int k) {
    return unary.get(k);
  }

  /** The event loop of connection {@code k}: where its calls are paced and answered. */
  EventLoop loop(int k) {
    return unary.get(k).eventLoop();
  }

  /** grpc-java channels to the same server, one per connection, opened on first use. */
  public synchronized List<ManagedChannel> channels() {
    if (channels == null) {
      channels = ClientChannels.open(target, unary.size(), apiKey, tls);
    }
    return channels;
  }

  @Override
  public void close() {
    unary.forEach(WireConnection::close);
    List<ManagedChannel> opened;
    synchronized (this) {
      opened = channels;
    }
    if (opened != null) {
      for (ManagedChannel channel : opened) {
        try {
          channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    }
  }
}

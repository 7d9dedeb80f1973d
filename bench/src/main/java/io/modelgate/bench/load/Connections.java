package io.modelgate.bench.load;

import io.grpc.ManagedChannel;
import io.netty.channel.EventLoop;
import io.netty.handler.ssl.SslContext;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The load generator's connections to a server, or to a fleet: {@code count} lean HTTP/2
 * connections for unary ModelInfer ({@link WireConnection}, opened at once), and as many grpc-java
 * channels, opened on first use, for streams and other RPCs (metadata). A target names one or more
 * servers ({@code host:port[,host:port...]}); every address each host name resolves to is a server
 * of its own (a headless Kubernetes Service resolves to its pods), and connection {@code k} goes to
 * address {@code k mod n}, so that {@code count >= n} connections reach every one. A lean
 * connection made again (after a server's GOAWAY, as {@code --max-connection-age} sends, or a
 * failure) looks the target up again and goes to address {@code k mod n} of what it finds: as gRPC
 * clients do, it finds servers added by a scale-out when its connection ends. All run on the
 * client's one small event-loop group ({@link ClientChannels}); a lean connection's calls are paced,
 * sent and answered on its loop. Plaintext, or TLS with a client context ({@code ClientTls}).
 * Thread-safe; close once.
 */
public final class Connections implements AutoCloseable {
  /** The unary method every lean connection calls. */
  static final String MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer";

  private final List<InetSocketAddress> addresses;
  private final String apiKey;
  private final SslContext tls;
  private final List<WireConnection> unary;
  private List<ManagedChannel> channels;

  private Connections(List<InetSocketAddress> addresses, String apiKey, SslContext tls, List<WireConnection> unary) {
    this.addresses = addresses;
    this.apiKey = apiKey;
    this.tls = tls;
    this.unary = unary;
  }

  /** {@code count} connections to {@code target} ({@code host:port[,host:port...]}). */
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
   *
   * @throws IllegalArgumentException a target that is not {@code host:port[,host:port...]}, or a
   *     host name that does not resolve
   */
  public static Connections open(String target, int count, String apiKey, SslContext tls) {
    return open(target, count, apiKey, tls, Connections::resolve);
  }

  /** As {@link #open(String, int, String, SslContext)}, looking the target up with {@code resolver}. */
  static Connections open(String target, int count, String apiKey, SslContext tls,
      java.util.function.Function<String, List<InetSocketAddress>> resolver) {
    if (count < 1) {
      throw new IllegalArgumentException("connections: " + count + " (expected: >= 1)");
    }
    List<InetSocketAddress> addresses = resolver.apply(target);
    if (addresses.isEmpty()) {
      throw new IllegalArgumentException("target '" + target + "': no address");
    }
    List<WireConnection> unary = new ArrayList<>(count);
    try {
      for (int k = 0; k < count; k++) {
        int index = k;
        WireConnection.Destination again = () -> {
          List<InetSocketAddress> now = resolver.apply(target);
          return now.isEmpty() ? null : now.get(index % now.size());
        };
        unary.add(WireConnection.open(ClientChannels.group().next(), addresses.get(k % addresses.size()), again, MODEL_INFER,
            apiKey, tls));
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      unary.forEach(WireConnection::close);
      throw new IllegalStateException("interrupted while connecting to " + target, e);
    }
    return new Connections(List.copyOf(addresses), apiKey, tls, List.copyOf(unary));
  }

  /**
   * Every address of {@code target}'s servers, in order: each {@code host:port} of the list, each
   * host name by every address it resolves to (the name kept, for TLS to check).
   */
  static List<InetSocketAddress> resolve(String target) {
    List<InetSocketAddress> addresses = new ArrayList<>();
    for (String server : target.split(",")) {
      String trimmed = server.trim();
      int colon = trimmed.lastIndexOf(':');
      int port = -1;
      if (colon > 0) {
        try {
          port = Integer.parseInt(trimmed.substring(colon + 1));
        } catch (NumberFormatException e) {
          port = -1;
        }
      }
      if (port < 0 || port > 65_535) {
        throw new IllegalArgumentException("target '" + trimmed + "' (expected: host:port, or several separated by commas)");
      }
      String host = trimmed.substring(0, colon);
      if (host.startsWith("[") && host.endsWith("]")) {
        host = host.substring(1, host.length() - 1);
      }
      try {
        for (InetAddress address : InetAddress.getAllByName(host)) {
          addresses.add(new InetSocketAddress(address, port));
        }
      } catch (UnknownHostException e) {
        throw new IllegalArgumentException("target '" + trimmed + "': the host name does not resolve (" + e.getMessage() + ")", e);
      }
    }
    return addresses;
  }

  /**
   * The servers' addresses the connections went to when opened, connection {@code k} to address
   * {@code k mod n} (a connection made again since may have gone elsewhere: {@link #current}).
   */
  public List<InetSocketAddress> addresses() {
    return addresses;
  }

  /** The address each lean connection goes to now, in order. Any thread; waits for each connection's loop. */
  public List<InetSocketAddress> current() {
    List<InetSocketAddress> now = new ArrayList<>(unary.size());
    for (WireConnection connection : unary) {
      now.add(connection.eventLoop().submit(connection::address).syncUninterruptibly().getNow());
    }
    return now;
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

  /** grpc-java channels to the same servers, one per connection (channel {@code k} to address {@code k mod n}), opened on first use. */
  public synchronized List<ManagedChannel> channels() {
    if (channels == null) {
      List<InetSocketAddress> each = new ArrayList<>(unary.size());
      for (int k = 0; k < unary.size(); k++) {
        each.add(addresses.get(k % addresses.size()));
      }
      channels = ClientChannels.open(each, apiKey, tls);
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

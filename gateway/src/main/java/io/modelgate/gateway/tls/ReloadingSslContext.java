package io.modelgate.gateway.tls;

import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.modelgate.gateway.config.WatchedFile;
import io.netty.buffer.ByteBufAllocator;
import io.netty.handler.ssl.SslContext;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSessionContext;

/**
 * A TLS context that follows its files: a renewed certificate, key or CA file is read within
 * seconds ({@link WatchedFile}), checked ({@link TlsCredentials}) and, when usable, serves every
 * connection opened after it; connections already open keep the certificate they began with.
 * Renewal files that cannot be used (half written, a key of another certificate, an expired
 * certificate) are logged and counted, and the material in force stays. The server side is a
 * port's ({@link #open}); the client side is the etcd client's ({@link #openClient}), whose
 * channel makes a new connection, with the material then in force, whenever the one it had ends.
 *
 * <p>Threads: event loops call {@link #newEngine} for each new connection and read one volatile
 * field; the {@code modelgate-watch-<name>-TLS} thread reads the files and builds the next context.
 */
public final class ReloadingSslContext extends SslContext implements AutoCloseable {
  /** The material in force and the context built from it. */
  private record Current(TlsCredentials credentials, SslContext context) {
    @Override
    public String toString() {
      return credentials.toString();
    }
  }

  private final String port;
  private final boolean client;
  private final WatchedFile<Current> files;

  private ReloadingSslContext(String port, boolean client, WatchedFile<Current> files) {
    this.port = port;
    this.client = client;
    this.files = files;
  }

  /**
   * Reads {@code settings}' files now (the port does not start without valid ones) and follows them.
   *
   * @param port names the port in logs, the watching thread and metrics: {@code inference} or {@code admin}
   * @throws IOException saying which file is wrong and how
   */
  public static ReloadingSslContext open(String port, TlsSettings settings, Clock clock) throws IOException {
    List<Path> paths = new ArrayList<>(List.of(settings.certificateChain(), settings.privateKey()));
    if (settings.clientCa() != null) {
      paths.add(settings.clientCa());
    }
    return open(port, false, paths, () -> TlsCredentials.read(settings, clock.instant()));
  }

  /**
   * A client's context: reads the files now (the client does not start without valid ones) and
   * follows them.
   *
   * @param name names the client in logs, the watching thread and metrics (its {@code port} label): {@code etcd}
   * @param trustedCa the CAs that sign the server's certificate; null: the JVM's trust store
   * @param certificateChain the client's certificate chain for mutual TLS; null: none
   * @param privateKey its PKCS#8 key, with {@code certificateChain}
   * @throws IOException saying which file is wrong and how
   */
  public static ReloadingSslContext openClient(String name, Path trustedCa, Path certificateChain, Path privateKey, Clock clock)
      throws IOException {
    List<Path> paths = new ArrayList<>();
    for (Path file : new Path[] {trustedCa, certificateChain, privateKey}) {
      if (file != null) {
        paths.add(file);
      }
    }
    if (paths.isEmpty()) {
      throw new IllegalArgumentException("a client's TLS context without files: use the JVM's default context");
    }
    return open(name, true, paths, () -> TlsCredentials.readClient(trustedCa, certificateChain, privateKey, clock.instant()));
  }

  private interface Reader {
    TlsCredentials read() throws IOException, WatchedFile.InvalidFileException;
  }

  private static ReloadingSslContext open(String name, boolean client, List<Path> paths, Reader reader) throws IOException {
    try {
      return new ReloadingSslContext(name, client, WatchedFile.open(name + " TLS", paths, () -> {
        TlsCredentials credentials = reader.read();
        try {
          return new Current(credentials, client ? credentials.clientContext() : credentials.serverContext());
        } catch (SSLException e) {
          throw new WatchedFile.InvalidFileException("cannot make a TLS context of " + credentials + ": " + e.getMessage(), e);
        }
      }));
    } catch (WatchedFile.InvalidFileException e) {
      throw new IOException(e.getMessage(), e);
    }
  }

  /**
   * Exports {@code modelgate_tls_certificate_expiry_timestamp_seconds{port}} (when the certificate
   * in force expires, as Unix seconds; not for a client without a certificate) and this context's
   * {@code modelgate_config_reload_failures_total}.
   */
  public ReloadingSslContext bindTo(MeterRegistry registry) {
    if (notAfter() != null) {
      Gauge.builder("modelgate.tls.certificate.expiry.timestamp", this, c -> c.notAfter().getEpochSecond())
          .baseUnit("seconds")
          .description("When the certificate a TLS port serves, or the etcd client presents, expires (Unix time)")
          .tag("port", port)
          .register(registry);
    }
    files.countFailures(registry);
    return this;
  }

  /** When the certificate in force expires; null for a client without one. */
  public Instant notAfter() {
    return files.get().credentials().notAfter();
  }

  /** Reads the files again if they changed (the watching thread does this every 2 s); true when new material is in force. */
  public boolean reload() {
    return files.reload();
  }

  private SslContext current() {
    return files.get().context();
  }

  @Override
  public boolean isClient() {
    return client;
  }

  @Override
  public List<String> cipherSuites() {
    return current().cipherSuites();
  }

  /** The ALPN protocols (h2) gRPC checks a context for; deprecated in Netty, abstract still. */
  @Override
  @SuppressWarnings("deprecation")
  public io.netty.handler.ssl.ApplicationProtocolNegotiator applicationProtocolNegotiator() {
    return current().applicationProtocolNegotiator();
  }

  @Override
  public SSLEngine newEngine(ByteBufAllocator alloc) {
    return current().newEngine(alloc);
  }

  @Override
  public SSLEngine newEngine(ByteBufAllocator alloc, String peerHost, int peerPort) {
    return current().newEngine(alloc, peerHost, peerPort);
  }

  @Override
  public SSLSessionContext sessionContext() {
    return current().sessionContext();
  }

  @Override
  public void close() {
    files.close();
  }
}

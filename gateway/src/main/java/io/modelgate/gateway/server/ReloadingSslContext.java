package io.modelgate.gateway.server;

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
 * A port's TLS context that follows its files: a renewed certificate, key or client CA file is read
 * within seconds ({@link WatchedFile}), checked ({@link TlsCredentials#read}) and, when usable,
 * answers every connection opened after it; connections already open keep the certificate they
 * began with. Renewal files that cannot be used (half written, a key of another certificate, an
 * expired certificate) are logged and counted, and the material in force stays.
 *
 * <p>Threads: event loops call {@link #newEngine} for each new connection and read one volatile
 * field; the {@code modelgate-watch-<port>-TLS} thread reads the files and builds the next context.
 */
final class ReloadingSslContext extends SslContext implements AutoCloseable {
  /** The material in force and the context built from it. */
  private record Current(TlsCredentials credentials, SslContext context) {
    @Override
    public String toString() {
      return credentials.toString();
    }
  }

  private final String port;
  private final WatchedFile<Current> files;

  private ReloadingSslContext(String port, WatchedFile<Current> files) {
    this.port = port;
    this.files = files;
  }

  /**
   * Reads {@code settings}' files now (the port does not start without valid ones) and follows them.
   *
   * @param port names the port in logs, the watching thread and metrics: {@code inference} or {@code admin}
   * @throws IOException saying which file is wrong and how
   */
  static ReloadingSslContext open(String port, TlsSettings settings, Clock clock) throws IOException {
    List<Path> paths = new ArrayList<>(List.of(settings.certificateChain(), settings.privateKey()));
    if (settings.clientCa() != null) {
      paths.add(settings.clientCa());
    }
    try {
      return new ReloadingSslContext(port, WatchedFile.open(port + " TLS", paths, () -> {
        TlsCredentials credentials = TlsCredentials.read(settings, clock.instant());
        try {
          return new Current(credentials, credentials.serverContext());
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
   * in force expires, as Unix seconds) and this port's {@code
   * modelgate_config_reload_failures_total}.
   */
  ReloadingSslContext bindTo(MeterRegistry registry) {
    Gauge.builder("modelgate.tls.certificate.expiry.timestamp", this, c -> c.notAfter().getEpochSecond())
        .baseUnit("seconds")
        .description("When the certificate a TLS port serves expires (Unix time)")
        .tag("port", port)
        .register(registry);
    files.countFailures(registry);
    return this;
  }

  /** When the certificate in force expires. */
  Instant notAfter() {
    return files.get().credentials().notAfter();
  }

  /** Reads the files again if they changed (the watching thread does this every 2 s); true when new material is in force. */
  boolean reload() {
    return files.reload();
  }

  private SslContext current() {
    return files.get().context();
  }

  @Override
  public boolean isClient() {
    return false;
  }

  @Override
  public List<String> cipherSuites() {
    return current().cipherSuites();
  }

  /** The ALPN protocols (h2) gRPC checks a server context for; deprecated in Netty, abstract still. */
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

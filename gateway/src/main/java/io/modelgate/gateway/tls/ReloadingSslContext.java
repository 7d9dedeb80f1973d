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
 * channel makes a new connection, with the material then in force, whenever the one it had ends,
 * and the trace exporter's, over the JDK's own TLS ({@link #jdkContext}), whose connections do too.
 *
 * <p>Threads: event loops call {@link #newEngine} for each new connection and read one volatile
 * field; the {@code modelgate-watch-<name>-TLS} thread reads the files and builds the next context.
 */
public final class ReloadingSslContext extends SslContext implements AutoCloseable {
  /** The material in force and the context built from it. */
  private record Current(TlsCredentials credentials, SslContext context, TlsCredentials.JdkManagers jdk) {
    @Override
    public String toString() {
      return credentials.toString();
    }
  }

  private final String port;
  private final boolean client;
  private final WatchedFile<Current> files;
  /** {@link #jdkContext}'s managers: made once, each reading the material in force at each call. */
  private final Keys keys = new Keys();
  private final Trust trust = new Trust();

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
          return client
              ? new Current(credentials, credentials.clientContext(), credentials.jdkManagers())
              : new Current(credentials, credentials.serverContext(), null);
        } catch (java.security.GeneralSecurityException | SSLException e) {
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

  /**
   * What is in force now, as a token: another object each time new files are put in force, so a
   * client that keeps its connections (a gRPC channel) can tell when to make new ones. Any thread.
   */
  public Object inForce() {
    return files.get();
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

  /**
   * A client's context for the JDK's own TLS ({@code java.net.http}), following these files as
   * this context does: each handshake takes the key and CAs in force then. A new context each call
   * (its own session cache: a client made again after a renewal resumes no session of the old files).
   *
   * @throws IllegalStateException for a server's context
   */
  public javax.net.ssl.SSLContext jdkContext() throws java.security.GeneralSecurityException {
    if (!client) {
      throw new IllegalStateException("a JDK context is a client's");
    }
    javax.net.ssl.SSLContext context = javax.net.ssl.SSLContext.getInstance("TLS");
    context.init(new javax.net.ssl.KeyManager[] {keys}, new javax.net.ssl.TrustManager[] {trust}, null);
    return context;
  }

  /** The key manager of {@link #jdkContext}: the certificate in force at each handshake (none without one). Tests. */
  javax.net.ssl.X509ExtendedKeyManager jdkKeyManager() {
    return keys;
  }

  /** The trust manager of {@link #jdkContext}: the CAs in force at each handshake (the JVM's store's without any). */
  public javax.net.ssl.X509TrustManager jdkTrustManager() {
    return trust;
  }

  /** The key manager in force; a client without a certificate offers none. */
  private final class Keys extends javax.net.ssl.X509ExtendedKeyManager {
    private javax.net.ssl.X509ExtendedKeyManager current() {
      return files.get().jdk().keys();
    }

    @Override
    public String[] getClientAliases(String keyType, java.security.Principal[] issuers) {
      var keys = current();
      return keys == null ? null : keys.getClientAliases(keyType, issuers);
    }

    @Override
    public String chooseClientAlias(String[] keyType, java.security.Principal[] issuers, java.net.Socket socket) {
      var keys = current();
      return keys == null ? null : keys.chooseClientAlias(keyType, issuers, socket);
    }

    @Override
    public String chooseEngineClientAlias(String[] keyType, java.security.Principal[] issuers, SSLEngine engine) {
      var keys = current();
      return keys == null ? null : keys.chooseEngineClientAlias(keyType, issuers, engine);
    }

    @Override
    public String[] getServerAliases(String keyType, java.security.Principal[] issuers) {
      return null;
    }

    @Override
    public String chooseServerAlias(String keyType, java.security.Principal[] issuers, java.net.Socket socket) {
      return null;
    }

    @Override
    public java.security.cert.X509Certificate[] getCertificateChain(String alias) {
      var keys = current();
      return keys == null ? null : keys.getCertificateChain(alias);
    }

    @Override
    public java.security.PrivateKey getPrivateKey(String alias) {
      var keys = current();
      return keys == null ? null : keys.getPrivateKey(alias);
    }
  }

  /** The trust manager in force. */
  private final class Trust extends javax.net.ssl.X509ExtendedTrustManager {
    private javax.net.ssl.X509ExtendedTrustManager current() {
      return files.get().jdk().trust();
    }

    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType, java.net.Socket socket)
        throws java.security.cert.CertificateException {
      current().checkClientTrusted(chain, authType, socket);
    }

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType, java.net.Socket socket)
        throws java.security.cert.CertificateException {
      current().checkServerTrusted(chain, authType, socket);
    }

    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType, SSLEngine engine)
        throws java.security.cert.CertificateException {
      current().checkClientTrusted(chain, authType, engine);
    }

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType, SSLEngine engine)
        throws java.security.cert.CertificateException {
      current().checkServerTrusted(chain, authType, engine);
    }

    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType)
        throws java.security.cert.CertificateException {
      current().checkClientTrusted(chain, authType);
    }

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType)
        throws java.security.cert.CertificateException {
      current().checkServerTrusted(chain, authType);
    }

    @Override
    public java.security.cert.X509Certificate[] getAcceptedIssuers() {
      return current().getAcceptedIssuers();
    }
  }

  @Override
  public void close() {
    files.close();
  }
}

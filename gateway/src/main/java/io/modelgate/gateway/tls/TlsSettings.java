package io.modelgate.gateway.tls;

import io.grpc.netty.GrpcSslContexts;
import io.netty.handler.ssl.SslContext;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * TLS for one port: a PEM certificate chain and its PKCS#8 PEM key; with a client CA, mutual TLS
 * (clients must present a certificate that CA signed, or, where client certificates are optional,
 * may present none). The port reads these files again when they change ({@link
 * ReloadingSslContext}).
 *
 * @param clientCa null for server-only TLS
 * @param clientCertificateOptional with a client CA: a client may connect without a certificate (one
 *     it presents must still be signed by the CA); the callers file then identifies it otherwise
 */
public record TlsSettings(Path certificateChain, Path privateKey, Path clientCa, boolean clientCertificateOptional) {
  /** Server-only TLS, or mutual TLS with client certificates required. */
  public TlsSettings(Path certificateChain, Path privateKey, Path clientCa) {
    this(certificateChain, privateKey, clientCa, false);
  }

  public TlsSettings {
    Objects.requireNonNull(certificateChain, "certificate chain");
    Objects.requireNonNull(privateKey, "private key");
    if (clientCertificateOptional && clientCa == null) {
      throw new IllegalArgumentException("optional client certificates need a client CA to check those presented");
    }
    for (Path file : new Path[] {certificateChain, privateKey, clientCa}) {
      if (file != null && !Files.isReadable(file)) {
        throw new IllegalArgumentException("TLS file " + file + " is not readable");
      }
    }
  }

  /**
   * Which TLS implementation the ports' contexts use, for the start-up log: BoringSSL through
   * Netty's OpenSSL engine when its native library loads on this platform (chosen by gRPC's
   * {@link GrpcSslContexts}), else the JDK's own, with the reason. The JVM option {@code
   * -Dio.netty.handler.ssl.noOpenSsl=true} asks for the JDK's.
   */
  public static String engine() {
    if (io.netty.handler.ssl.OpenSsl.isAvailable()) {
      return io.netty.handler.ssl.OpenSsl.versionString();
    }
    Throwable why = io.netty.handler.ssl.OpenSsl.unavailabilityCause();
    return "the JDK's TLS" + (why == null ? "" : " (no OpenSSL engine: " + why.getMessage() + ")");
  }

  /**
   * A client context for the server's calls to itself over loopback (the start-up warm-up): it
   * trusts exactly this server's own certificate, the first of its chain, and no other; so it
   * needs no CA and checks no host name. Server-only TLS: with a client CA the server would ask
   * for a client certificate this context does not have.
   */
  public SslContext selfClientContext() throws IOException {
    java.security.cert.X509Certificate own;
    try (java.io.InputStream in = Files.newInputStream(certificateChain)) {
      java.util.Iterator<? extends java.security.cert.Certificate> chain =
          java.security.cert.CertificateFactory.getInstance("X.509").generateCertificates(in).iterator();
      if (!chain.hasNext()) {
        throw new IOException("no certificate in " + certificateChain);
      }
      own = (java.security.cert.X509Certificate) chain.next();
    } catch (java.security.cert.CertificateException e) {
      throw new IOException("cannot read the certificate chain " + certificateChain + ": " + e.getMessage(), e);
    }
    return GrpcSslContexts.forClient().trustManager(new OwnCertificate(own)).build();
  }

  /** Trusts a server only when it presents {@code own} itself; never a client. */
  private static final class OwnCertificate extends javax.net.ssl.X509ExtendedTrustManager {
    private final java.security.cert.X509Certificate own;

    OwnCertificate(java.security.cert.X509Certificate own) {
      this.own = own;
    }

    private void check(java.security.cert.X509Certificate[] chain) throws java.security.cert.CertificateException {
      if (chain == null || chain.length == 0 || !own.equals(chain[0])) {
        throw new java.security.cert.CertificateException("the peer is not this server (its certificate differs)");
      }
    }

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType)
        throws java.security.cert.CertificateException {
      check(chain);
    }

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType, java.net.Socket socket)
        throws java.security.cert.CertificateException {
      check(chain);
    }

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType, javax.net.ssl.SSLEngine engine)
        throws java.security.cert.CertificateException {
      check(chain);
    }

    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType)
        throws java.security.cert.CertificateException {
      throw new java.security.cert.CertificateException("trusts no client");
    }

    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType, java.net.Socket socket)
        throws java.security.cert.CertificateException {
      throw new java.security.cert.CertificateException("trusts no client");
    }

    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType, javax.net.ssl.SSLEngine engine)
        throws java.security.cert.CertificateException {
      throw new java.security.cert.CertificateException("trusts no client");
    }

    @Override
    public java.security.cert.X509Certificate[] getAcceptedIssuers() {
      return new java.security.cert.X509Certificate[0];
    }
  }
}

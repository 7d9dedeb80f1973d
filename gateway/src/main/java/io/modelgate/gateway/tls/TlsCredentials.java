package io.modelgate.gateway.tls;

import io.grpc.netty.GrpcSslContexts;
import io.grpc.util.CertificateUtils;
import io.modelgate.gateway.config.WatchedFile.InvalidFileException;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.security.KeyStore;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLException;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.X509ExtendedTrustManager;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One end's TLS material as its files held it when read: the certificate chain, the private key
 * of its first certificate, and the CAs it trusts to sign the other end's certificate. A server
 * (a port) always has a chain, and CAs only for mutual TLS (they sign clients' certificates); a
 * client (the etcd client) has a chain only for mutual TLS, and CAs unless it trusts the JVM's
 * store. Read and checked together, so that a renewal written file by file is only taken once the
 * key belongs to the certificate. Immutable.
 */
final class TlsCredentials {
  private static final Logger log = LoggerFactory.getLogger(TlsCredentials.class);
  private static final byte[] PROBE = "modelgate: does this key belong to this certificate?".getBytes(StandardCharsets.US_ASCII);

  /** Null (with the key) for a client without a certificate. */
  private final X509Certificate[] chain;
  private final PrivateKey key;
  /** Null for a server that asks for no client certificate, or a client that trusts the JVM's store. */
  private final X509Certificate[] trusted;
  /** A server's: with {@code trusted}, a client may also connect without a certificate. */
  private final boolean clientOptional;

  private TlsCredentials(X509Certificate[] chain, PrivateKey key, X509Certificate[] trusted, boolean clientOptional) {
    this.chain = chain;
    this.key = key;
    this.trusted = trusted;
    this.clientOptional = clientOptional;
  }

  /**
   * Reads a server's files ({@code settings}) and checks them: a chain of at least one
   * certificate, the first not expired at {@code now} (one not yet valid is taken, with a warning:
   * a replica's clock may lag its issuer's), a PKCS#8 key that belongs to it, and at least one
   * client CA when asked for.
   *
   * @throws InvalidFileException saying which file is wrong and how; never a key's contents
   */
  static TlsCredentials read(TlsSettings settings, Instant now) throws IOException, InvalidFileException {
    X509Certificate[] chain = certificates(settings.certificateChain(), "certificate chain");
    PrivateKey key = key(settings.privateKey(), settings.certificateChain(), chain[0], now);
    X509Certificate[] cas = settings.clientCa() == null ? null : certificates(settings.clientCa(), "client CA file");
    return new TlsCredentials(chain, key, cas, settings.clientCertificateOptional());
  }

  /**
   * Reads a client's files and checks them as {@link #read} does a server's.
   *
   * @param trustedCa the CAs that sign the server's certificate; null: the JVM's trust store
   * @param certificateChain the client's certificate chain, for mutual TLS; null: none
   * @param privateKey its key, with {@code certificateChain}
   * @throws InvalidFileException saying which file is wrong and how; never a key's contents
   */
  static TlsCredentials readClient(Path trustedCa, Path certificateChain, Path privateKey, Instant now)
      throws IOException, InvalidFileException {
    X509Certificate[] cas = trustedCa == null ? null : certificates(trustedCa, "CA file");
    if (certificateChain == null) {
      return new TlsCredentials(null, null, cas, false);
    }
    X509Certificate[] chain = certificates(certificateChain, "client certificate chain");
    return new TlsCredentials(chain, key(privateKey, certificateChain, chain[0], now), cas, false);
  }

  /** Reads the key of {@code leaf} and checks that it belongs to it and that {@code leaf} is in date. */
  private static PrivateKey key(Path file, Path chainFile, X509Certificate leaf, Instant now)
      throws IOException, InvalidFileException {
    PrivateKey key;
    try (InputStream in = Files.newInputStream(file)) {
      key = CertificateUtils.getPrivateKey(in);
    } catch (GeneralSecurityException | IllegalArgumentException e) {
      throw new InvalidFileException("the private key " + file
          + " is not a PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----) of RSA or EC: " + e.getClass().getSimpleName());
    }
    if (key == null) {
      throw new InvalidFileException("no PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----) in " + file);
    }
    if (!belongs(key, leaf.getPublicKey())) {
      throw new InvalidFileException("the private key " + file + " does not belong to the certificate '"
          + leaf.getSubjectX500Principal().getName() + "' in " + chainFile);
    }
    if (now.isAfter(leaf.getNotAfter().toInstant())) {
      throw new InvalidFileException("the certificate '" + leaf.getSubjectX500Principal().getName() + "' in "
          + chainFile + " expired at " + leaf.getNotAfter().toInstant());
    }
    if (now.isBefore(leaf.getNotBefore().toInstant())) {
      log.warn("the certificate '{}' in {} is not valid before {} (this clock says {}); using it anyway",
          leaf.getSubjectX500Principal().getName(), chainFile, leaf.getNotBefore().toInstant(), now);
    }
    return key;
  }

  private static X509Certificate[] certificates(Path file, String what) throws IOException, InvalidFileException {
    X509Certificate[] certificates;
    try (InputStream in = Files.newInputStream(file)) {
      certificates = CertificateUtils.getX509Certificates(in);
    } catch (GeneralSecurityException e) {
      throw new InvalidFileException("the " + what + " " + file + " is not PEM X.509: " + e.getMessage());
    }
    if (certificates == null || certificates.length == 0) {
      throw new InvalidFileException("no certificate in the " + what + " " + file);
    }
    return certificates;
  }

  /** Whether {@code key} signs what {@code certified} verifies (RSA, EC, Ed25519; others are not checked). */
  private static boolean belongs(PrivateKey key, PublicKey certified) {
    String algorithm;
    switch (key.getAlgorithm()) {
      case "RSA":
        algorithm = "SHA256withRSA";
        break;
      case "EC":
        algorithm = "SHA256withECDSA";
        break;
      case "Ed25519":
      case "EdDSA":
        algorithm = "Ed25519";
        break;
      default:
        return true;
    }
    try {
      Signature sign = Signature.getInstance(algorithm);
      sign.initSign(key);
      sign.update(PROBE);
      byte[] signature = sign.sign();
      Signature verify = Signature.getInstance(algorithm);
      verify.initVerify(certified);
      verify.update(PROBE);
      return verify.verify(signature);
    } catch (GeneralSecurityException e) {
      // A key of one algorithm against a certificate of another.
      return false;
    }
  }

  /** When this end's certificate expires; null for a client without one. */
  Instant notAfter() {
    return chain == null ? null : chain[0].getNotAfter().toInstant();
  }

  /** A server context for this material, on the engine gRPC picks (BoringSSL where it loads). */
  SslContext serverContext() throws SSLException {
    SslContextBuilder builder = GrpcSslContexts.configure(SslContextBuilder.forServer(key, chain));
    if (trusted != null) {
      builder.trustManager(trusted).clientAuth(clientOptional ? ClientAuth.OPTIONAL : ClientAuth.REQUIRE);
    }
    return builder.build();
  }

  /** A gRPC client context for this material, on the engine gRPC picks. */
  SslContext clientContext() throws SSLException {
    SslContextBuilder builder = GrpcSslContexts.forClient();
    if (trusted != null) {
      builder.trustManager(trusted);
    }
    if (chain != null) {
      builder.keyManager(key, chain);
    }
    return builder.build();
  }

  /**
   * The JDK's key and trust managers for this material, for a client over the JDK's own TLS
   * ({@code java.net.http}): {@code keys} null without a certificate; {@code trust} the JVM's
   * store's where no CA was given.
   */
  record JdkManagers(X509ExtendedKeyManager keys, X509ExtendedTrustManager trust) {}

  /** A password for key stores that live in memory only, never written. */
  private static final char[] IN_MEMORY = "modelgate".toCharArray();

  /** This material's {@link JdkManagers}, made now. */
  JdkManagers jdkManagers() throws GeneralSecurityException, IOException {
    X509ExtendedKeyManager keys = null;
    if (chain != null) {
      KeyStore store = KeyStore.getInstance("PKCS12");
      store.load(null, null);
      store.setKeyEntry("modelgate", key, IN_MEMORY, chain);
      KeyManagerFactory factory = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
      factory.init(store, IN_MEMORY);
      keys = only(factory.getKeyManagers(), X509ExtendedKeyManager.class);
    }
    KeyStore cas = null;
    if (trusted != null) {
      cas = KeyStore.getInstance("PKCS12");
      cas.load(null, null);
      for (int i = 0; i < trusted.length; i++) {
        cas.setCertificateEntry("ca-" + i, trusted[i]);
      }
    }
    TrustManagerFactory factory = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    factory.init(cas);
    return new JdkManagers(keys, only(factory.getTrustManagers(), X509ExtendedTrustManager.class));
  }

  private static <T> T only(Object[] managers, Class<T> type) throws GeneralSecurityException {
    for (Object manager : managers) {
      if (type.isInstance(manager)) {
        return type.cast(manager);
      }
    }
    throw new GeneralSecurityException("the JDK made no " + type.getSimpleName());
  }

  /** What a log line says of it: the certificate, its serial and expiry, the trusted CAs; no key. */
  @Override
  public String toString() {
    String own = "no certificate";
    if (chain != null) {
      X509Certificate leaf = chain[0];
      own = "certificate '" + leaf.getSubjectX500Principal().getName() + "' (serial " + leaf.getSerialNumber().toString(16)
          + ", valid until " + notAfter() + ")";
    }
    return own + (trusted == null ? "" : ", " + trusted.length + " trusted CA" + (trusted.length == 1 ? "" : "s"));
  }
}

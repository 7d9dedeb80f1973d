package io.modelgate.gateway.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/**
 * A throw-away PKI for TLS tests, made with the JDK's keytool: a CA, a server certificate for
 * localhost and 127.0.0.1, and a client certificate, each as PEM files Netty reads.
 */
public final class TestCertificates {
  public final Path caCert;
  public final Path serverChain;
  public final Path serverKey;
  public final Path clientChain;
  public final Path clientKey;

  private TestCertificates(Path dir) {
    this.caCert = dir.resolve("ca.pem");
    this.serverChain = dir.resolve("server.pem");
    this.serverKey = dir.resolve("server.key");
    this.clientChain = dir.resolve("client.pem");
    this.clientKey = dir.resolve("client.key");
  }

  public static TestCertificates create(Path dir) throws Exception {
    TestCertificates c = new TestCertificates(dir);
    keytool(dir, "-genkeypair", "-alias", "ca", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", "CN=modelgate-test-ca", "-ext", "bc:c", "-validity", "2",
        "-keystore", "ca.p12", "-storetype", "PKCS12", "-storepass", "secret");
    keytool(dir, "-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", "secret", "-file", "ca.pem");
    c.issue(dir, "server", "CN=localhost", "SAN=dns:localhost,ip:127.0.0.1");
    c.issue(dir, "client", "CN=operator-alice", null);
    return c;
  }

  /**
   * A server certificate for localhost from this CA that expired a week ago ({@code name}.pem, its
   * key {@code name}.key, in the CA's directory).
   */
  public Path[] expiredServer(String name) throws Exception {
    issue(caCert.getParent(), name, "CN=localhost", "SAN=dns:localhost,ip:127.0.0.1", "-9d");
    return new Path[] {caCert.resolveSibling(name + ".pem"), caCert.resolveSibling(name + ".key")};
  }

  /**
   * Another client certificate from this CA, with the subject {@code subject} and, unless null,
   * keytool's extension {@code san} (for example {@code SAN=uri:spiffe://example.org/ns/a/sa/b}):
   * its PEM chain and its key ({@code name}.pem and {@code name}.key in the CA's directory).
   */
  public Path[] client(String name, String subject, String san) throws Exception {
    issue(caCert.getParent(), name, subject, san);
    return new Path[] {caCert.resolveSibling(name + ".pem"), caCert.resolveSibling(name + ".key")};
  }

  /**
   * A certificate that signs itself, no CA's, with the subject {@code subject}: its PEM certificate
   * and key ({@code name}.pem and {@code name}.key in the CA's directory). A server trusting this
   * CA must turn it away.
   */
  public Path[] selfSigned(String name, String subject) throws Exception {
    Path dir = caCert.getParent();
    keytool(dir, "-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", subject, "-validity", "2", "-keystore", name + ".p12", "-storetype", "PKCS12", "-storepass", "secret");
    keytool(dir, "-exportcert", "-rfc", "-alias", name, "-keystore", name + ".p12", "-storepass", "secret",
        "-file", name + ".pem");
    writeKey(dir, name);
    return new Path[] {dir.resolve(name + ".pem"), dir.resolve(name + ".key")};
  }

  private void issue(Path dir, String name, String subject, String san) throws Exception {
    issue(dir, name, subject, san, null);
  }

  private void issue(Path dir, String name, String subject, String san, String start) throws Exception {
    keytool(dir, "-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", subject, "-validity", "2", "-keystore", name + ".p12", "-storetype", "PKCS12",
        "-storepass", "secret");
    keytool(dir, "-certreq", "-alias", name, "-keystore", name + ".p12", "-storepass", "secret", "-file", name + ".csr");
    List<String> gencert = new ArrayList<>(List.of("-gencert", "-rfc", "-alias", "ca", "-keystore", "ca.p12",
        "-storepass", "secret", "-infile", name + ".csr", "-outfile", name + ".crt", "-validity", "2"));
    if (san != null) {
      gencert.addAll(List.of("-ext", san));
    }
    if (start != null) {
      gencert.addAll(List.of("-startdate", start));
    }
    keytool(dir, gencert.toArray(new String[0]));
    Files.writeString(
        dir.resolve(name + ".pem"),
        Files.readString(dir.resolve(name + ".crt")) + Files.readString(dir.resolve("ca.pem")));
    writeKey(dir, name);
  }

  /** Writes the key of {@code name}.p12 as {@code name}.key, PKCS#8 PEM. */
  private static void writeKey(Path dir, String name) throws Exception {
    KeyStore store = KeyStore.getInstance("PKCS12");
    try (var in = Files.newInputStream(dir.resolve(name + ".p12"))) {
      store.load(in, "secret".toCharArray());
    }
    PrivateKey key = (PrivateKey) store.getKey(name, "secret".toCharArray());
    Files.writeString(
        dir.resolve(name + ".key"),
        "-----BEGIN PRIVATE KEY-----\n"
            + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(key.getEncoded())
            + "\n-----END PRIVATE KEY-----\n");
  }

  /**
   * Replaces {@code target} with a copy of {@code source} at once, as a renewal tool that writes
   * beside the file and renames over it does (a watcher never reads half a file).
   */
  public static void renew(Path source, Path target) throws IOException {
    Path next = target.resolveSibling(target.getFileName() + ".next");
    Files.copy(source, next, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    Files.move(next, target, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
  }

  /** A client's TLS files as a renewal tool keeps them in one folder. */
  public record ClientFiles(Path ca, Path chain, Path key) {}

  /**
   * This PKI's CA, client certificate chain and key written into {@code dir} as {@code ca.crt},
   * {@code tls.crt} and {@code tls.key}, each replaced at once ({@link #renew}); called again with
   * another PKI, a renewal of all three.
   */
  public ClientFiles installClient(Path dir) throws IOException {
    ClientFiles files = new ClientFiles(dir.resolve("ca.crt"), dir.resolve("tls.crt"), dir.resolve("tls.key"));
    renew(caCert, files.ca());
    renew(clientChain, files.chain());
    renew(clientKey, files.key());
    return files;
  }

  /** When the first certificate of the PEM chain {@code chain} expires, as Unix seconds. */
  public static double notAfter(Path chain) throws Exception {
    try (var in = Files.newInputStream(chain)) {
      return io.grpc.util.CertificateUtils.getX509Certificates(in)[0].getNotAfter().toInstant().getEpochSecond();
    }
  }

  private static void keytool(Path dir, String... args) throws IOException, InterruptedException {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "keytool").toString());
    // keytool is a JVM of its own; these flags halve its start-up.
    command.addAll(List.of("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Xshare:auto"));
    command.addAll(List.of(args));
    Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (process.waitFor() != 0) {
      throw new IOException("keytool " + String.join(" ", args) + " failed: " + output);
    }
  }
}

package io.modelgate.bench;

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
 * Certificates for the benchmarks that need TLS, made with the JDK's keytool (no other tool and
 * nothing from the network): a key pair whose certificate signs itself, in a PKCS#12 store and as
 * the PEM files {@code modelgate serve --tls-cert/--tls-key} and a client's {@code --tls-ca} read.
 */
public final class Keytool {
  /** The store's password: the files are made for one run, in a folder of its own. */
  public static final String PASSWORD = "modelgate-bench";

  private Keytool() {}

  /**
   * Makes {@code name}.p12 in {@code dir}: an EC P-256 key and a certificate for {@code subject},
   * signed by itself, valid two days, with keytool's extension {@code san} unless null (for
   * example {@code SAN=dns:localhost,ip:127.0.0.1}).
   *
   * @return the store
   */
  public static Path selfSigned(Path dir, String name, String subject, String san) throws IOException, InterruptedException {
    List<String> args = new ArrayList<>(List.of("-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", subject, "-validity", "2", "-keystore", name + ".p12", "-storetype", "PKCS12", "-storepass", PASSWORD));
    if (san != null) {
      args.addAll(List.of("-ext", san));
    }
    run(dir, args);
    return dir.resolve(name + ".p12");
  }

  /**
   * Writes {@code name}.pem (the certificate) and {@code name}.key (its key, PKCS#8) in {@code dir}
   * from the store {@link #selfSigned} made.
   *
   * @return the certificate and the key
   */
  public static Path[] pem(Path dir, String name) throws Exception {
    run(dir, List.of("-exportcert", "-rfc", "-alias", name, "-keystore", name + ".p12", "-storepass", PASSWORD,
        "-file", name + ".pem"));
    PrivateKey key = (PrivateKey) store(dir.resolve(name + ".p12")).getKey(name, PASSWORD.toCharArray());
    Files.writeString(dir.resolve(name + ".key"), "-----BEGIN PRIVATE KEY-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(key.getEncoded())
        + "\n-----END PRIVATE KEY-----\n");
    return new Path[] {dir.resolve(name + ".pem"), dir.resolve(name + ".key")};
  }

  /** The PKCS#12 store at {@code file}, opened with {@link #PASSWORD}. */
  public static KeyStore store(Path file) throws Exception {
    KeyStore store = KeyStore.getInstance("PKCS12");
    try (var in = Files.newInputStream(file)) {
      store.load(in, PASSWORD.toCharArray());
    }
    return store;
  }

  private static void run(Path dir, List<String> args) throws IOException, InterruptedException {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "keytool").toString());
    command.addAll(args);
    Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (process.waitFor() != 0) {
      throw new IOException("keytool " + String.join(" ", args) + " failed: " + output);
    }
  }
}

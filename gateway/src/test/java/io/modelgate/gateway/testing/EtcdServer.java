package io.modelgate.gateway.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;

/**
 * A real etcd member (Debian's {@code etcd-server}, or {@code $ETCD_BIN}) on loopback, with its
 * data in a test directory; stopped and started again on the same data, as an outage would. When
 * no etcd is installed the test is skipped, except under CI ({@code CI=true}), where {@code
 * .ci/run} installs it and a missing one fails.
 */
public final class EtcdServer implements AutoCloseable {
  private final Path dataDir;
  private final Path log;
  private final int clientPort;
  private final int peerPort;
  /** Null for plaintext; else etcd serves clients over TLS and requires their certificates. */
  private TestCertificates tls;
  private Process process;
  /** Etcd's database quota in bytes (0: its default, 2 GB). */
  private long quotaBytes;

  private EtcdServer(Path dataDir, int clientPort, int peerPort, TestCertificates tls) {
    this.tls = tls;
    this.dataDir = dataDir;
    this.log = dataDir.resolveSibling(dataDir.getFileName() + ".log");
    this.clientPort = clientPort;
    this.peerPort = peerPort;
  }

  /** The etcd binary, or skips the test (fails it under CI) when there is none. */
  public static String binary() {
    String configured = System.getenv("ETCD_BIN");
    if (configured != null && Files.isExecutable(Path.of(configured))) {
      return configured;
    }
    for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
      Path candidate = Path.of(dir, "etcd");
      if (Files.isExecutable(candidate)) {
        return candidate.toString();
      }
    }
    if ("true".equals(System.getenv("CI"))) {
      throw new AssertionError("etcd is not installed (Debian: apt-get install etcd-server); CI requires it");
    }
    Assumptions.abort("etcd is not installed (Debian: apt-get install etcd-server)");
    return null;
  }

  public static EtcdServer start(Path directory) throws IOException {
    EtcdServer etcd = new EtcdServer(Files.createDirectories(directory).resolve("etcd-data"), freePort(), freePort(), null);
    etcd.start();
    return etcd;
  }

  /** An etcd whose database quota is {@code bytes} (its NOSPACE alarm raised past it). */
  public static EtcdServer startWithQuota(Path directory, long bytes) throws IOException {
    EtcdServer etcd = new EtcdServer(Files.createDirectories(directory).resolve("etcd-data"), freePort(), freePort(), null);
    etcd.quotaBytes = bytes;
    etcd.start();
    return etcd;
  }

  /** An etcd serving clients over TLS with {@code certs}' server certificate, requiring client certificates from its CA. */
  public static EtcdServer startTls(Path directory, TestCertificates certs) throws IOException {
    EtcdServer etcd = new EtcdServer(Files.createDirectories(directory).resolve("etcd-data"), freePort(), freePort(), certs);
    etcd.start();
    return etcd;
  }

  private static int freePort() throws IOException {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }

  public int clientPort() {
    return clientPort;
  }

  /** {@code etcd://127.0.0.1:PORT}, as {@code --control-store} takes it. */
  public String store() {
    return "etcd://127.0.0.1:" + clientPort;
  }

  public List<URI> endpoints() {
    return List.of(URI.create((tls == null ? "http" : "https") + "://127.0.0.1:" + clientPort));
  }

  /** Starts (again, on the same data) and waits until it answers its health check. */
  public void start() throws IOException {
    String client = (tls == null ? "http" : "https") + "://127.0.0.1:" + clientPort;
    String peer = "http://127.0.0.1:" + peerPort;
    List<String> command = new java.util.ArrayList<>(List.of(
        binary(),
        "--name", "test",
        "--data-dir", dataDir.toString(),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", "test=" + peer,
        "--log-level", "warn"));
    if (quotaBytes > 0) {
      command.add("--quota-backend-bytes=" + quotaBytes);
    }
    if (tls != null) {
      command.addAll(List.of(
          "--cert-file", tls.serverChain.toString(),
          "--key-file", tls.serverKey.toString(),
          "--client-cert-auth",
          "--trusted-ca-file", tls.caCert.toString()));
    }
    process =
        new ProcessBuilder(command)
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
            .start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new IOException("etcd exited with " + process.exitValue() + ": " + Files.readString(log));
      }
      if (tls == null ? HttpProbe.ok(client + "/health") : listening()) {
        return;
      }
      try {
        Thread.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted", e);
      }
    }
    throw new IOException("etcd did not become healthy within 30 s: " + Files.readString(log));
  }

  /**
   * Starts again on the same data and port with other certificates (a rotated CA): serves {@code
   * certs}' server certificate and takes only client certificates its CA signed. TLS only.
   */
  public void startWith(TestCertificates certs) throws IOException {
    if (tls == null) {
      throw new IllegalStateException("a plaintext etcd stays plaintext");
    }
    tls = certs;
    start();
  }

  private boolean listening() {
    try (java.net.Socket socket = new java.net.Socket()) {
      socket.connect(new java.net.InetSocketAddress("127.0.0.1", clientPort), 300);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /** Stops it as an outage would (SIGKILL); its data stays for {@link #start}. */
  public void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor(10, TimeUnit.SECONDS);
  }

  @Override
  public void close() {
    if (process != null) {
      process.destroy();
      try {
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
          process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
      } catch (InterruptedException e) {
        process.destroyForcibly();
        Thread.currentThread().interrupt();
      }
    }
  }
}

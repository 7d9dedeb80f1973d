package io.modelgate.gateway.control;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.modelgate.gateway.testing.EtcdServer;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestCertificates;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A replica against an etcd that authenticates: with a password (the right one works, a wrong one
 * stops it starting, clearly) and with mutual TLS (the CA and a client certificate work; without
 * the certificate it does not start; renewed files are used without a restart).
 */
class EtcdAuthTest {
  @TempDir Path root;

  private static void etcdctl(EtcdServer etcd, String... args) throws Exception {
    String etcdctl = Path.of(EtcdServer.binary()).resolveSibling("etcdctl").toString();
    List<String> command = new java.util.ArrayList<>(List.of(etcdctl, "--endpoints", "127.0.0.1:" + etcd.clientPort()));
    command.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
    pb.environment().put("ETCDCTL_API", "3");
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as("%s: %s", command, out).isZero();
  }

  private ControlSettings settings(EtcdServer etcd, String name, String password) {
    return settings(etcd, name, "root", password);
  }

  private ControlSettings settings(EtcdServer etcd, String name, String user, String password) {
    return new ControlSettings(etcd.endpoints(), "/auth/", name, user, password, null, null, null, null,
        Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(200));
  }

  /** Model m, version 1, unbatched, in the repository every test serves. */
  private void writeModel() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
  }

  @Test
  void withTheRightPassword_changesGoThrough_withAWrongOne_theReplicaDoesNotStart() throws Exception {
    writeModel();
    try (EtcdServer etcd = EtcdServer.start(root.resolve("etcd"))) {
      etcdctl(etcd, "user", "add", "root:s3cret-pass");
      etcdctl(etcd, "auth", "enable");
      try (Gateway a = Gateway.inProcess(root, root.resolve("state-a"), Clock.systemUTC(), settings(etcd, "a", "s3cret-pass"))) {
        RoutingPolicy set = a.admin().setRouting(SetRoutingRequest.newBuilder()
            .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(0).build());
        assertThat(set.getRevision()).isEqualTo(1);
        assertThat(a.server.control().status().getUp()).isTrue();
      }
      assertThatThrownBy(() -> Gateway.inProcess(root, root.resolve("state-b"), Clock.systemUTC(), settings(etcd, "b", "wrong")))
          .isInstanceOf(IOException.class)
          .hasMessageContaining("cannot be read")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("wrong"));
    }
  }

  @Test
  void aUserWithARoleOnlyOnThePrefix_changesRouting_andCompactsEtcdsHistory() throws Exception {
    writeModel();
    try (EtcdServer etcd = EtcdServer.start(root.resolve("etcd-roles"))) {
      etcdctl(etcd, "user", "add", "root:s3cret-pass");
      etcdctl(etcd, "role", "add", "gateway");
      etcdctl(etcd, "role", "grant-permission", "gateway", "--prefix=true", "readwrite", "/auth/");
      etcdctl(etcd, "user", "add", "gw:gw-s3cret-pass");
      etcdctl(etcd, "user", "grant-role", "gw", "gateway");
      etcdctl(etcd, "auth", "enable");
      try (Gateway a = Gateway.inProcess(root, root.resolve("state-roles"), Clock.systemUTC(),
          settings(etcd, "a", "gw", "gw-s3cret-pass"))) {
        RoutingPolicy set = a.admin().setRouting(SetRoutingRequest.newBuilder()
            .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(0).build());
        assertThat(set.getRevision()).isEqualTo(1);
        eventually("a judges", () -> a.server.control().store().judges());
        EtcdControlStore store = (EtcdControlStore) a.server.control().store();
        assertThat(store.compactHistory()).as("the first call marks the revision").isZero();
        // Etcd 3.4 lets any authenticated user compact (the root role is not needed).
        assertThat(store.compactHistory()).isPositive();
        assertThat(a.server.control().status().getUp()).isTrue();
      }
    }
  }

  @Test
  void overMutualTls_withTheCaAndAClientCertificate_changesGoThrough_withoutTheCertificate_theReplicaDoesNotStart() throws Exception {
    writeModel();
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(Files.createDirectories(root.resolve("certs")));
    try (EtcdServer etcd = EtcdServer.startTls(root.resolve("etcd"), certs)) {
      assertThat(etcd.endpoints().get(0).getScheme()).isEqualTo("https");
      ControlSettings withCertificate = new ControlSettings(etcd.endpoints(), "/tls/", "a", null, null, null,
          certs.caCert, certs.clientChain, certs.clientKey, Duration.ofSeconds(2), Duration.ofSeconds(5), Duration.ofMillis(200));
      try (Gateway a = Gateway.inProcess(root, root.resolve("state-tls-a"), Clock.systemUTC(), withCertificate)) {
        RoutingPolicy set = a.admin().setRouting(SetRoutingRequest.newBuilder()
            .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(0).build());
        assertThat(set.getRevision()).isEqualTo(1);
        assertThat(a.server.control().status().getTarget()).startsWith("https://127.0.0.1:");
      }
      ControlSettings withoutCertificate = new ControlSettings(etcd.endpoints(), "/tls/", "b", null, null, null,
          certs.caCert, null, null, Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(200));
      assertThatThrownBy(() -> Gateway.inProcess(root, root.resolve("state-tls-b"), Clock.systemUTC(), withoutCertificate))
          .isInstanceOf(IOException.class)
          .hasMessageContaining("cannot be read");
    }
  }

  /**
   * etcd's CA is rotated: the replica's CA, client certificate and key files are renewed in place
   * (half first: refused and counted), etcd restarts with the new CA's certificates, and the replica
   * reconnects with the renewed material and takes changes again, without a restart.
   */
  @Test
  void overMutualTls_renewedCaAndClientCertificate_areUsedWhenEtcdComesBackWithThem_withoutARestart() throws Exception {
    writeModel();
    TestCertificates a = TestCertificates.create(Files.createDirectories(root.resolve("certs-a")));
    TestCertificates b = TestCertificates.create(Files.createDirectories(root.resolve("certs-b")));
    TestCertificates.ClientFiles files = a.installClient(Files.createDirectories(root.resolve("etcd-client")));
    Path ca = files.ca();
    Path chain = files.chain();
    Path key = files.key();
    try (EtcdServer etcd = EtcdServer.startTls(root.resolve("etcd"), a)) {
      ControlSettings settings = new ControlSettings(etcd.endpoints(), "/rotate/", "a", null, null, null,
          ca, chain, key, Duration.ofSeconds(2), Duration.ofSeconds(5), Duration.ofMillis(200));
      try (Gateway gateway = Gateway.inProcess(root, root.resolve("state-rotate"), Clock.systemUTC(), settings)) {
        assertThat(setWeights(gateway, 0).getRevision()).isEqualTo(1);
        assertThat(expiry(gateway)).isEqualTo(TestCertificates.notAfter(a.clientChain));

        // Half a renewal: B's certificate with A's key. Refused and counted; A's material stays.
        TestCertificates.renew(b.clientChain, chain);
        eventually("the mismatched key was not noticed", () -> failures(gateway) >= 1);
        // The rest: B's key and B's CA. Then etcd comes back with B's CA only.
        TestCertificates.renew(b.clientKey, key);
        TestCertificates.renew(b.caCert, ca);
        double expiryB = TestCertificates.notAfter(b.clientChain);
        eventually("B's client certificate was not taken", () -> expiry(gateway) == expiryB && failures(gateway) == 1);
        etcd.kill();
        eventually("the outage was not noticed", () -> !gateway.server.control().status().getUp());
        etcd.startWith(b);
        eventually("the replica did not reconnect with B's material", () -> gateway.server.control().status().getUp());
        assertThat(setWeights(gateway, 1).getRevision()).isEqualTo(2);
        assertThat(gateway.stats.prometheus().scrape())
            .contains("modelgate_tls_certificate_expiry_timestamp_seconds{port=\"etcd\"}")
            .contains("modelgate_config_reload_failures_total{file=\"etcd TLS\"} 1.0");
      }
    }
  }

  /**
   * The password rotated both ways round, without a restart: the file first (the replica keeps the
   * password in use, says a new one is pending, and switches when etcd changes it), then etcd first
   * (the replica loses etcd until the file has the new password).
   */
  @Test
  void aRotatedPassword_isUsedWithoutARestart_whetherTheFileOrEtcdChangesFirst() throws Exception {
    writeModel();
    Path passwordFile = root.resolve("etcd-password");
    Files.writeString(passwordFile, "first-pass\n");
    try (EtcdServer etcd = EtcdServer.start(root.resolve("etcd"))) {
      etcdctl(etcd, "user", "add", "root:first-pass");
      etcdctl(etcd, "auth", "enable");
      ControlSettings settings = new ControlSettings(etcd.endpoints(), "/passwd/", "a", "root", null, passwordFile,
          null, null, null, Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(200));
      try (Gateway gateway = Gateway.inProcess(root, root.resolve("state-passwd"), Clock.systemUTC(), settings)) {
        assertThat(setWeights(gateway, 0).getRevision()).isEqualTo(1);
        assertThat(pending(gateway)).isZero();

        // The file first: etcd refuses the new password for now, the one in use goes on working.
        Files.writeString(passwordFile, "second-pass\n");
        eventually("the new password was not read", () -> pending(gateway) == 1);
        assertThat(setWeights(gateway, 1).getRevision()).isEqualTo(2);
        assertThat(gateway.server.control().status().getUp()).isTrue();
        // etcd's password changed: its tokens for the old one end, and the new one is taken.
        changePassword(etcd, "first-pass", "second-pass");
        eventually("the new password was not taken", () -> pending(gateway) == 0);
        eventually("changes did not go through with the new password", () -> trySetWeights(gateway, 2));

        // etcd first: the replica loses etcd until the file holds the password etcd has.
        changePassword(etcd, "second-pass", "third-pass");
        eventually("the refused password was not noticed", () -> !trySetWeights(gateway, 3)
            && !gateway.server.control().status().getUp());
        assertThat(gateway.server.control().status().getError())
            .contains("etcd refuses user 'root' with this password (from " + passwordFile + ")")
            .doesNotContain("second-pass").doesNotContain("third-pass");
        Files.writeString(passwordFile, "third-pass\n");
        eventually("the replica did not come back with the new password", () -> trySetWeights(gateway, 3));
        eventually("the store was not found up", () -> gateway.server.control().status().getUp());
        assertThat(pending(gateway)).isZero();

        // A file that cannot be used is counted, and the password in use stays.
        Files.writeString(passwordFile, "\n");
        eventually("the empty file was not counted", () -> gateway.stats.prometheus()
            .get("modelgate.config.reload.failures").tag("file", "etcd password").functionCounter().count() == 1);
        assertThat(setWeights(gateway, 4).getRevision()).isEqualTo(5);
      }
    }
  }

  /** Changes root's password in etcd, as {@code etcdctl user passwd} does. */
  private static void changePassword(EtcdServer etcd, String from, String to) throws Exception {
    ByteSequence root = ByteSequence.from("root", StandardCharsets.UTF_8);
    try (Client admin = Client.builder().endpoints(etcd.endpoints().toArray(URI[]::new))
        .user(root).password(ByteSequence.from(from, StandardCharsets.UTF_8)).build()) {
      admin.getAuthClient().userChangePassword(root, ByteSequence.from(to, StandardCharsets.UTF_8)).get(10, TimeUnit.SECONDS);
    }
  }

  private static double pending(Gateway gateway) {
    return gateway.stats.prometheus().get("modelgate.control.store.password.pending").gauge().value();
  }

  /** Sets the weights expecting {@code expectedRevision}; false when the change is refused. */
  private static boolean trySetWeights(Gateway gateway, long expectedRevision) {
    try {
      setWeights(gateway, expectedRevision);
      return true;
    } catch (io.grpc.StatusRuntimeException e) {
      return false;
    }
  }

  private static RoutingPolicy setWeights(Gateway gateway, long expectedRevision) {
    return gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(expectedRevision).build());
  }

  private static double expiry(Gateway gateway) {
    return gateway.stats.prometheus().get("modelgate.tls.certificate.expiry.timestamp").tag("port", "etcd").gauge().value();
  }

  private static double failures(Gateway gateway) {
    return gateway.stats.prometheus().get("modelgate.config.reload.failures").tag("file", "etcd TLS").functionCounter().count();
  }
}

package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.gateway.testing.EtcdServer;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A replica against an etcd that authenticates: with a password (the right one works, a wrong one
 * stops it starting, clearly) and with mutual TLS (the CA and a client certificate work; without
 * the certificate it does not start).
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
    return new ControlSettings(etcd.endpoints(), "/auth/", name, "root", password, null, null, null,
        Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(200));
  }

  @Test
  void withTheRightPassword_changesGoThrough_withAWrongOne_theReplicaDoesNotStart() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
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
  void overMutualTls_withTheCaAndAClientCertificate_changesGoThrough_withoutTheCertificate_theReplicaDoesNotStart() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(Files.createDirectories(root.resolve("certs")));
    try (EtcdServer etcd = EtcdServer.startTls(root.resolve("etcd"), certs)) {
      assertThat(etcd.endpoints().get(0).getScheme()).isEqualTo("https");
      ControlSettings withCertificate = new ControlSettings(etcd.endpoints(), "/tls/", "a", null, null,
          certs.caCert, certs.clientChain, certs.clientKey, Duration.ofSeconds(2), Duration.ofSeconds(5), Duration.ofMillis(200));
      try (Gateway a = Gateway.inProcess(root, root.resolve("state-tls-a"), Clock.systemUTC(), withCertificate)) {
        RoutingPolicy set = a.admin().setRouting(SetRoutingRequest.newBuilder()
            .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 1)).setExpectedRevision(0).build());
        assertThat(set.getRevision()).isEqualTo(1);
        assertThat(a.server.control().status().getTarget()).startsWith("https://127.0.0.1:");
      }
      ControlSettings withoutCertificate = new ControlSettings(etcd.endpoints(), "/tls/", "b", null, null,
          certs.caCert, null, null, Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(200));
      assertThatThrownBy(() -> Gateway.inProcess(root, root.resolve("state-tls-b"), Clock.systemUTC(), withoutCertificate))
          .isInstanceOf(IOException.class)
          .hasMessageContaining("cannot be read");
    }
  }
}

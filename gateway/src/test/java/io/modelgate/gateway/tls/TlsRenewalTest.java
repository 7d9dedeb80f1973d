package io.modelgate.gateway.tls;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.micrometer.core.instrument.FunctionCounter;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.HttpProbe;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.gateway.testing.TestCertificates;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A TLS port's certificate, key and client CAs are renewed by writing their files, as cert-manager
 * or an operator does, without a restart: new connections get the new material within seconds,
 * open ones keep theirs, and a renewal that cannot be used (half written, expired) is refused,
 * counted, and leaves the material in force serving.
 */
class TlsRenewalTest {
  @TempDir Path root;
  @TempDir Path pki;

  private final List<ManagedChannel> channels = new ArrayList<>();

  @Test
  void renewedFiles_reachNewConnections_openOnesKeepTheirs_andUnusableOnesAreRefused() throws Exception {
    TestCertificates a = TestCertificates.create(Files.createDirectories(pki.resolve("a")));
    TestCertificates b = TestCertificates.create(Files.createDirectories(pki.resolve("b")));
    Path live = Files.createDirectories(pki.resolve("live"));
    Path chain = live.resolve("tls.crt");
    Path key = live.resolve("tls.key");
    Path clientCa = live.resolve("ca.crt");
    TestCertificates.renew(a.serverChain, chain);
    TestCertificates.renew(a.serverKey, key);
    TestCertificates.renew(a.caCert, clientCa);

    Gateway.write(root, "m", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = Gateway.server(root, stats,
        new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5), new TlsSettings(chain, key, clientCa)),
        Gateway.adminSettings(root.resolve(".state"), 0));
    try {
      // Before: A's server certificate, and clients of A's CA.
      ManagedChannel open = channel(server, a, a);
      assertThat(answers(open)).isTrue();
      assertThat(answers(channel(server, b, a))).as("a client that trusts only B's CA").isFalse();
      double expiryA = expiry(stats);
      assertThat(expiryA).isEqualTo(TestCertificates.notAfter(a.serverChain));

      // Half a renewal: B's certificate with A's key. Refused and counted; A's material serves on.
      TestCertificates.renew(b.serverChain, chain);
      eventually("the mismatched key was not noticed", () -> failures(stats) >= 1);
      assertThat(answers(channel(server, a, a))).isTrue();
      assertThat(expiry(stats)).isEqualTo(expiryA);

      // The rest of it: B's key, then B's client CA. New connections get B's material.
      TestCertificates.renew(b.serverKey, key);
      TestCertificates.renew(b.caCert, clientCa);
      eventually("B's certificate and client CA were not taken", () -> answers(channel(server, b, b)));
      assertThat(answers(channel(server, a, a))).as("A's server certificate and client certificate").isFalse();
      assertThat(answers(channel(server, b, a))).as("a client certificate A's CA signed").isFalse();
      // The connection opened before the renewal keeps the certificate it began with.
      assertThat(answers(open)).isTrue();
      assertThat(expiry(stats)).isEqualTo(TestCertificates.notAfter(b.serverChain));
      assertThat(HttpProbe.get(server.metricsPort(), "/metrics"))
          .contains("modelgate_tls_certificate_expiry_timestamp_seconds{port=\"inference\"}")
          .contains("modelgate_config_reload_failures_total{file=\"inference TLS\"} 1.0");

      // An expired certificate (with its own key) is refused too.
      Path[] expired = b.expiredServer("expired");
      TestCertificates.renew(expired[0], chain);
      TestCertificates.renew(expired[1], key);
      eventually("the expired certificate was not refused", () -> failures(stats) >= 2);
      assertThat(answers(channel(server, b, b))).isTrue();
      assertThat(expiry(stats)).isEqualTo(TestCertificates.notAfter(b.serverChain));
    } finally {
      channels.forEach(ManagedChannel::shutdownNow);
      server.stop();
      stats.close();
    }
  }

  @Test
  void aPortDoesNotStart_onAKeyOfAnotherCertificate_orAnExpiredCertificate_andSaysWhich() throws Exception {
    TestCertificates a = TestCertificates.create(Files.createDirectories(pki.resolve("a")));
    // The client's key is another certificate's.
    assertThatThrownBy(() -> ReloadingSslContext.open("inference", new TlsSettings(a.serverChain, a.clientKey, null), Clock.systemUTC()))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("inference TLS: the private key " + a.clientKey + " does not belong to the certificate 'CN=localhost'");
    Path[] expired = a.expiredServer("expired");
    assertThatThrownBy(() -> ReloadingSslContext.open("admin", new TlsSettings(expired[0], expired[1], null), Clock.systemUTC()))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("admin TLS: the certificate 'CN=localhost' in " + expired[0] + " expired at");
    Path notAKey = Files.writeString(pki.resolve("not-a-key.pem"), Files.readString(a.serverChain));
    assertThatThrownBy(() -> ReloadingSslContext.open("inference", new TlsSettings(a.serverChain, notAKey, null), Clock.systemUTC()))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("inference TLS:")
        .hasMessageContaining(notAKey.toString());
  }

  @Test
  void aClientsJdkContext_followsItsRenewedFiles_asItsNettyContextDoes() throws Exception {
    TestCertificates a = TestCertificates.create(Files.createDirectories(pki.resolve("a")));
    TestCertificates b = TestCertificates.create(Files.createDirectories(pki.resolve("b")));
    Path live = Files.createDirectories(pki.resolve("live"));
    TestCertificates.ClientFiles files = a.installClient(live);
    try (ReloadingSslContext tls = ReloadingSslContext.openClient("trace", files.ca(), files.chain(), files.key(),
        Clock.systemUTC())) {
      assertThat(tls.jdkContext().getProtocol()).isEqualTo("TLS");
      javax.net.ssl.X509ExtendedKeyManager keys = tls.jdkKeyManager();
      String alias = keys.chooseEngineClientAlias(new String[] {"EC"}, null, null);
      assertThat(keys.getCertificateChain(alias)[0].getSerialNumber()).isEqualTo(serial(a.clientChain));
      assertThat(tls.jdkTrustManager().getAcceptedIssuers()).singleElement()
          .satisfies(issuer -> assertThat(issuer.getSerialNumber()).isEqualTo(serial(a.caCert)));

      b.installClient(live);
      java.math.BigInteger renewed = serial(b.clientChain);
      eventually("the renewed files in force", () -> {
        tls.reload(); // or its watching thread did
        return keys.getCertificateChain(keys.chooseEngineClientAlias(new String[] {"EC"}, null, null))[0]
            .getSerialNumber().equals(renewed);
      });
      alias = keys.chooseEngineClientAlias(new String[] {"EC"}, null, null);
      assertThat(keys.getPrivateKey(alias)).isNotNull();
      assertThat(tls.jdkTrustManager().getAcceptedIssuers()).singleElement()
          .satisfies(issuer -> assertThat(issuer.getSerialNumber()).isEqualTo(serial(b.caCert)));
    }
    // Without a CA the JVM's store is trusted; without a certificate none is offered.
    try (ReloadingSslContext tls = ReloadingSslContext.openClient("trace", null, a.clientChain, a.clientKey,
        Clock.systemUTC())) {
      assertThat(tls.jdkTrustManager().getAcceptedIssuers()).hasSizeGreaterThan(10);
    }
    try (ReloadingSslContext tls = ReloadingSslContext.openClient("trace", a.caCert, null, null, Clock.systemUTC())) {
      assertThat(tls.jdkKeyManager().chooseEngineClientAlias(new String[] {"EC"}, null, null)).isNull();
    }
  }

  private static java.math.BigInteger serial(Path pem) throws IOException, java.security.GeneralSecurityException {
    try (var in = Files.newInputStream(pem)) {
      return io.grpc.util.CertificateUtils.getX509Certificates(in)[0].getSerialNumber();
    }
  }

  /** A new connection that trusts {@code trusted}'s CA and presents {@code client}'s client certificate. */
  private ManagedChannel channel(GatewayServer server, TestCertificates trusted, TestCertificates client) {
    ManagedChannel channel;
    try {
      channel = NettyChannelBuilder.forAddress("localhost", server.port())
          .sslContext(GrpcSslContexts.forClient()
              .trustManager(trusted.caCert.toFile())
              .keyManager(client.clientChain.toFile(), client.clientKey.toFile())
              .build())
          .build();
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
    channels.add(channel);
    return channel;
  }

  /** Whether an inference call on {@code channel} is answered; false when TLS turns it away. */
  private static boolean answers(ManagedChannel channel) {
    try {
      GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
          .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
      return true;
    } catch (StatusRuntimeException e) {
      assertThat(e.getStatus().getCode()).as("%s", e.getStatus()).isEqualTo(Status.Code.UNAVAILABLE);
      return false;
    }
  }

  private static double failures(StatsRegistry stats) {
    FunctionCounter counter = stats.prometheus().find("modelgate.config.reload.failures").tag("file", "inference TLS").functionCounter();
    return counter == null ? 0 : counter.count();
  }

  private static double expiry(StatsRegistry stats) {
    return stats.prometheus().get("modelgate.tls.certificate.expiry.timestamp").tag("port", "inference").gauge().value();
  }
}

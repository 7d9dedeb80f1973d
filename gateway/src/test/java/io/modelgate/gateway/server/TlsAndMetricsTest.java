package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.gateway.testing.TestCertificates;
import io.modelgate.gateway.tls.ReloadingSslContext;
import io.modelgate.gateway.tls.TlsSettings;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.netty.handler.ssl.SslContext;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Both ports over TLS, the admin port with mutual TLS, and the Prometheus endpoint, on Netty. */
class TlsAndMetricsTest {
  @TempDir Path root;
  @TempDir Path pki;

  @Test
  void tlsOnBothPorts_mutualTlsOnAdmin_andMetricsOverHttp() throws Exception {
    TestCertificates certs = TestCertificates.create(pki);
    Gateway.write(root, "m", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server =
        Gateway.server(root, stats,
            new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5),
                new TlsSettings(certs.serverChain, certs.serverKey, null)),
            new AdminSettings("127.0.0.1", 0, Gateway.ADMIN_TOKEN,
                new TlsSettings(certs.serverChain, certs.serverKey, certs.caCert),
                "127.0.0.1", 0, Files.createDirectories(root.resolve(".state"))).withWarmup(3));
    // With mutual TLS on the admin port the start-up warm-up goes in-process, and completes.
    assertThat(server.warmup().rounds()).isEqualTo(3);
    assertThat(server.warmup().stoppedBy()).isEmpty();
    SslContext trusting = GrpcSslContexts.forClient().trustManager(certs.caCert.toFile()).build();
    SslContext withCertificate =
        GrpcSslContexts.forClient()
            .trustManager(certs.caCert.toFile())
            .keyManager(certs.clientChain.toFile(), certs.clientKey.toFile())
            .build();
    ManagedChannel inference = NettyChannelBuilder.forAddress("localhost", server.port()).sslContext(trusting).build();
    ManagedChannel adminWithoutCert =
        NettyChannelBuilder.forAddress("localhost", server.adminPort()).sslContext(trusting).build();
    ManagedChannel admin =
        NettyChannelBuilder.forAddress("localhost", server.adminPort()).sslContext(withCertificate).build();
    ManagedChannel plaintext = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      assertThat(
              GRPCInferenceServiceGrpc.newBlockingStub(inference).withDeadlineAfter(30, TimeUnit.SECONDS)
                  .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build())
                  .getModelVersion())
          .isEqualTo("1");
      assertThatThrownBy(
              () -> GRPCInferenceServiceGrpc.newBlockingStub(plaintext).withDeadlineAfter(3, TimeUnit.SECONDS)
                  .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
          .isInstanceOf(StatusRuntimeException.class);

      assertThat(
              AdminServiceGrpc.newBlockingStub(admin).withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
                  .withDeadlineAfter(30, TimeUnit.SECONDS)
                  .listModels(ListModelsRequest.getDefaultInstance())
                  .getModelsCount())
          .isEqualTo(1);
      // Mutual TLS: no client certificate, no admin, whatever the token.
      assertThatThrownBy(
              () -> AdminServiceGrpc.newBlockingStub(adminWithoutCert).withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
                  .withDeadlineAfter(3, TimeUnit.SECONDS)
                  .listModels(ListModelsRequest.getDefaultInstance()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));

      HttpResponse<String> metrics =
          HttpClient.newHttpClient()
              .send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.metricsPort() + "/metrics")).build(),
                  HttpResponse.BodyHandlers.ofString());
      assertThat(metrics.statusCode()).isEqualTo(200);
      assertThat(metrics.headers().firstValue("Content-Type")).hasValueSatisfying(v -> assertThat(v).startsWith("text/plain"));
      assertThat(metrics.body())
          .contains("modelgate_requests_total{code=\"OK\",model=\"m\",version=\"1\"} 1.0")
          .contains("modelgate_request_duration_seconds_bucket{model=\"m\",stage=\"end_to_end\",version=\"1\"");
    } finally {
      for (ManagedChannel channel : new ManagedChannel[] {inference, adminWithoutCert, admin, plaintext}) {
        channel.shutdownNow();
      }
      server.stop();
      stats.close();
    }
  }

  /**
   * The ports' TLS runs on BoringSSL where its native library is packaged (Linux and macOS on
   * x86-64 and ARM, Windows on x86-64), and clients of either engine, the JDK's or OpenSSL's, with
   * or without a client certificate, reach it.
   */
  @Test
  void tlsRunsOnBoringSsl_andClientsOfEitherEngineConnect() throws Exception {
    String os = System.getProperty("os.name").toLowerCase(java.util.Locale.ROOT);
    String arch = System.getProperty("os.arch");
    boolean packaged = (os.startsWith("linux") || os.startsWith("mac")) && java.util.Set.of("amd64", "x86_64", "aarch64").contains(arch)
        || os.startsWith("windows") && java.util.Set.of("amd64", "x86_64").contains(arch);
    org.junit.jupiter.api.Assumptions.assumeTrue(packaged, "BoringSSL is packaged for this platform");
    assertThat(io.netty.handler.ssl.OpenSsl.isAvailable())
        .as("BoringSSL loads: %s", io.netty.handler.ssl.OpenSsl.unavailabilityCause()).isTrue();
    assertThat(TlsSettings.engine()).startsWith("BoringSSL");

    TestCertificates certs = TestCertificates.create(pki);
    TlsSettings mutual = new TlsSettings(certs.serverChain, certs.serverKey, certs.caCert);
    try (ReloadingSslContext context = ReloadingSslContext.open("inference", mutual, Clock.systemUTC())) {
      javax.net.ssl.SSLEngine engine = context.newEngine(io.netty.buffer.ByteBufAllocator.DEFAULT);
      try {
        assertThat(engine).isInstanceOf(io.netty.handler.ssl.ReferenceCountedOpenSslEngine.class);
      } finally {
        io.netty.util.ReferenceCountUtil.release(engine);
      }
    }
    Gateway.write(root, "m", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = Gateway.server(root, stats,
        new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5), mutual), Gateway.adminSettings(root.resolve(".state"), 0));
    java.util.List<ManagedChannel> channels = new java.util.ArrayList<>();
    try {
      for (io.netty.handler.ssl.SslProvider engine : new io.netty.handler.ssl.SslProvider[] {
          io.netty.handler.ssl.SslProvider.JDK, io.netty.handler.ssl.SslProvider.OPENSSL}) {
        SslContext client = GrpcSslContexts.configure(io.netty.handler.ssl.SslContextBuilder.forClient(), engine)
            .trustManager(certs.caCert.toFile())
            .keyManager(certs.clientChain.toFile(), certs.clientKey.toFile())
            .build();
        ManagedChannel channel = NettyChannelBuilder.forAddress("localhost", server.port()).sslContext(client).build();
        channels.add(channel);
        assertThat(GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
                .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion())
            .as("a client on %s", engine).isEqualTo("1");
        // Without a certificate, mutual TLS turns it away at the handshake, on either engine.
        SslContext anonymous = GrpcSslContexts.configure(io.netty.handler.ssl.SslContextBuilder.forClient(), engine)
            .trustManager(certs.caCert.toFile()).build();
        ManagedChannel refused = NettyChannelBuilder.forAddress("localhost", server.port()).sslContext(anonymous).build();
        channels.add(refused);
        assertThatThrownBy(() -> GRPCInferenceServiceGrpc.newBlockingStub(refused).withDeadlineAfter(10, TimeUnit.SECONDS)
                .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
            .isInstanceOfSatisfying(StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
      }
    } finally {
      channels.forEach(ManagedChannel::shutdownNow);
      server.stop();
      stats.close();
    }
  }
}

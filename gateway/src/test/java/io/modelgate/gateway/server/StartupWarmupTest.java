package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.tls.TlsSettings;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.GetStatsRequest;
import io.modelgate.proto.admin.v1.GetUsageRequest;
import io.modelgate.proto.admin.v1.StatsResponse;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The start-up warm-up: it runs its rounds before the server is ready, reads only, and never fails a start. */
class StartupWarmupTest {
  @TempDir Path root;

  @Test
  void runsItsRoundsBeforeTheServerIsPublishedAndChangesNothing() throws Exception {
    Gateway.write(root, "a", 1, Gateway.affine());
    Gateway.write(root, "b", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    ModelRepository repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS), stats);
    GatewayServer server =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(10)),
            Gateway.adminSettings(root.resolve(".state"), 0).withWarmup(7),
            repository,
            stats);
    io.grpc.ManagedChannel admin =
        io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.adminPort()).usePlaintext().build();
    try {
      assertThat(server.warmup().rounds()).isEqualTo(7);
      assertThat(server.warmup().stoppedBy()).isEmpty();
      assertThat(server.isReady()).isTrue();
      AdminServiceGrpc.AdminServiceBlockingStub stub =
          AdminServiceGrpc.newBlockingStub(admin).withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN));
      StatsResponse statistics = stub.getStats(GetStatsRequest.getDefaultInstance());
      assertThat(statistics.getVersionsList()).hasSize(2);
      statistics.getVersionsList().forEach(v -> assertThat(v.getWindowsList()).allSatisfy(w -> assertThat(w.getRequests()).isZero()));
      assertThat(stub.getUsage(GetUsageRequest.getDefaultInstance()).getRecordsList()).isEmpty();
      // A plaintext admin port is warmed over loopback: its gRPC meters counted the calls.
      String scrape = io.modelgate.gateway.testing.HttpProbe.get(server.metricsPort(), "/metrics");
      assertThat(scrape).containsPattern("grpc_server_processing_duration_seconds_count\\{[^}]*method=\"ListModels\"[^}]*} 7");
      // Nothing audited.
      Path audit = root.resolve(".state").resolve("audit.log");
      assertThat(!Files.exists(audit) || Files.size(audit) == 0).isTrue();
    } finally {
      admin.shutdownNow();
      server.stop();
      repository.close(Duration.ZERO);
      stats.close();
    }
  }

  /** An in-process channel to an admin service that implements nothing. */
  private static <T> T withUnimplementedAdmin(java.util.function.Function<io.grpc.Channel, T> body) throws java.io.IOException {
    String name = "warmup-test-" + System.nanoTime();
    io.grpc.Server server =
        io.grpc.inprocess.InProcessServerBuilder.forName(name)
            .addService(new AdminServiceGrpc.AdminServiceImplBase() {})
            .build()
            .start();
    io.grpc.ManagedChannel channel = io.grpc.inprocess.InProcessChannelBuilder.forName(name).build();
    try {
      return body.apply(channel);
    } finally {
      channel.shutdownNow();
      server.shutdownNow();
    }
  }

  @Test
  void anAdminPortWithServerOnlyTls_isWarmedOverLoopbackTls_trustingOnlyTheServersOwnCertificate() throws Exception {
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(Files.createDirectories(root.resolve("pki")));
    Gateway.write(root, "a", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    ModelRepository repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS), stats);
    TlsSettings tls = new TlsSettings(certs.serverChain, certs.serverKey, null);
    GatewayServer server =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(10)),
            new AdminSettings("127.0.0.1", 0, Gateway.ADMIN_TOKEN, tls, "127.0.0.1", 0,
                Files.createDirectories(root.resolve(".state"))).withWarmup(5),
            repository,
            stats);
    try {
      assertThat(server.warmup().rounds()).isEqualTo(5);
      assertThat(server.warmup().stoppedBy()).isEmpty();
      // Over the TLS port itself, not in-process: its gRPC meters counted the calls.
      String scrape = io.modelgate.gateway.testing.HttpProbe.get(server.metricsPort(), "/metrics");
      assertThat(scrape).containsPattern("grpc_server_processing_duration_seconds_count\\{[^}]*method=\"ListModels\"[^}]*} 5");
      // The warm-up's client context trusts this certificate alone: a server presenting another
      // (here the client's) is refused at the handshake.
      io.grpc.Server impostor = io.grpc.netty.NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
          .sslContext(io.grpc.netty.GrpcSslContexts.forServer(certs.clientChain.toFile(), certs.clientKey.toFile()).build())
          .addService(new AdminServiceGrpc.AdminServiceImplBase() {})
          .build().start();
      io.grpc.ManagedChannel toImpostor = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", impostor.getPort())
          .sslContext(tls.selfClientContext()).build();
      io.grpc.ManagedChannel toItself = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.adminPort())
          .sslContext(tls.selfClientContext()).build();
      try {
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> AdminServiceGrpc.newBlockingStub(toImpostor)
                .withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN)).getStats(GetStatsRequest.getDefaultInstance()))
            .isInstanceOfSatisfying(io.grpc.StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isEqualTo(io.grpc.Status.Code.UNAVAILABLE));
        assertThat(AdminServiceGrpc.newBlockingStub(toItself).withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN))
            .getStats(GetStatsRequest.getDefaultInstance()).getVersionsList()).hasSize(1);
      } finally {
        toImpostor.shutdownNow();
        toItself.shutdownNow();
        impostor.shutdownNow();
      }
    } finally {
      server.stop();
      repository.close(Duration.ZERO);
      stats.close();
    }
  }

  @Test
  void aFailingCallEndsTheWarmupNotTheCaller() throws Exception {
    StartupWarmup.Summary summary =
        withUnimplementedAdmin(c -> StartupWarmup.run(50, c, "any-token-of-16-chars", null, List.of("a"), Duration.ofSeconds(10)));
    assertThat(summary.rounds()).isZero();
    assertThat(summary.stoppedBy()).contains("UNIMPLEMENTED");
  }

  @Test
  void aMetricsPortThatDoesNotAnswerEndsTheWarmup() throws Exception {
    int closed;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      closed = s.getLocalPort();
    }
    StartupWarmup.Summary summary =
        withUnimplementedAdmin(c -> StartupWarmup.run(50, c, "any-token-of-16-chars",
            new InetSocketAddress("127.0.0.1", closed), List.of(), Duration.ofSeconds(10)));
    assertThat(summary.rounds()).isZero();
    assertThat(summary.stoppedBy()).contains("Connection refused");
  }

  @Test
  void stopsAfterTheRoundThatPassesItsBudget() throws Exception {
    Gateway.write(root, "a", 1, Gateway.affine());
    try (Gateway gateway = Gateway.netty(root, 1 << 20)) {
      // A zero budget has passed by the end of the first round, whatever the machine.
      StartupWarmup.Summary summary =
          StartupWarmup.run(1000, gateway.adminChannel, Gateway.ADMIN_TOKEN,
              new InetSocketAddress("127.0.0.1", gateway.server.metricsPort()), List.of("a"), Duration.ZERO);
      assertThat(summary.rounds()).isEqualTo(1);
      assertThat(summary.stoppedBy()).contains("time budget");
    }
  }

  @Test
  void aWrongTokenEndsTheWarmup() throws Exception {
    Gateway.write(root, "a", 1, Gateway.affine());
    try (Gateway gateway = Gateway.netty(root, 1 << 20)) {
      StartupWarmup.Summary summary =
          StartupWarmup.run(10, gateway.adminChannel, "not-the-token-0123456789", null, List.of("a"), Duration.ofSeconds(10));
      assertThat(summary.rounds()).isZero();
      assertThat(summary.stoppedBy()).contains("UNAUTHENTICATED");
    }
  }

  @Test
  void readsKeepAliveAnswersOfAnySizeAndStatus() throws Exception {
    String big = "x".repeat(300_000) + "\n";
    boolean[] ready = {false};
    try (HttpEndpoints endpoints =
            HttpEndpoints.start("127.0.0.1", 0, () -> big, () -> true,
                () -> new HttpEndpoints.Readiness(ready[0], "starting"));
        StartupWarmup.Http http = new StartupWarmup.Http(new InetSocketAddress("127.0.0.1", endpoints.port()), Duration.ofSeconds(10))) {
      assertThat(http.get("/metrics")).isEqualTo(200);
      assertThat(http.get("/readyz")).isEqualTo(503);
      ready[0] = true;
      assertThat(http.get("/readyz")).isEqualTo(200);
      assertThat(http.get("/nothing-here")).isEqualTo(404);
      assertThat(http.get("/metrics")).isEqualTo(200);
    }
  }
}

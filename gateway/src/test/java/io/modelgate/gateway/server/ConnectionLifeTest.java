package io.modelgate.gateway.server;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.FleetResolver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.StreamCollector;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.AddressConnections;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.ConnectionsReport;
import io.modelgate.proto.admin.v1.GetConnectionsRequest;
import io.modelgate.proto.admin.v1.PortConnections;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The inference port's connections over their life: past their maximum age clients are asked to
 * reconnect and lose no call, a stream keeps its connection for the grace, a replica that joins
 * the fleet gets calls from clients already connected, and the port counts its connections.
 */
class ConnectionLifeTest {
  @TempDir Path root;

  private GatewayServer start(StatsRegistry stats, ConnectionSettings connections) throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    return Gateway.server(root, stats,
        new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5)).withConnections(connections),
        Gateway.adminSettings(root.resolve(".state"), 0));
  }

  /** A stream on {@code channel}, its first request ({@code id}) answered. */
  private static StreamObserver<ModelInferRequest> openStream(ManagedChannel channel, StreamCollector collector, String id)
      throws InterruptedException {
    StreamObserver<ModelInferRequest> stream = GRPCInferenceServiceGrpc.newStub(channel).modelStreamInfer(collector);
    stream.onNext(Tensors.affine(1, 2, 3).setModelName("m").setId(id).build());
    assertThat(collector.next().getInferResponse().getId()).isEqualTo(id);
    return stream;
  }

  @Test
  void bothPorts_advertiseTheStreamLimit_inTheirFirstSettings() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withMaxConcurrentStreams(7));
    try {
      assertThat(advertisedStreams(server.port())).isEqualTo(7);
      assertThat(advertisedStreams(server.adminPort())).isEqualTo(7);
    } finally {
      server.stop();
    }
  }

  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS in the server's preface on a new connection to {@code port}
   * (-1 when it sets none).
   */
  private static long advertisedStreams(int port) throws java.io.IOException {
    try (java.net.Socket socket = speak(port)) {
      socket.setSoTimeout(10_000);
      java.io.DataInputStream in = new java.io.DataInputStream(socket.getInputStream());
      while (true) {
        Frame frame = Frame.read(in);
        if (frame.type() == 4 && (frame.flags() & 1) == 0) {
          java.nio.ByteBuffer settings = java.nio.ByteBuffer.wrap(frame.payload());
          while (settings.remaining() >= 6) {
            int id = settings.getShort() & 0xffff;
            long value = settings.getInt() & 0xffffffffL;
            if (id == 3) {
              return value;
            }
          }
          return -1;
        }
      }
    }
  }

  @Test
  void aConnectionHoldsAtMostItsStreams_andACallBeyondWaitsForOneToEnd() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withMaxConcurrentStreams(2));
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      StreamCollector first = new StreamCollector();
      StreamObserver<ModelInferRequest> firstStream = openStream(channel, first, "a");
      StreamCollector second = new StreamCollector();
      openStream(channel, second, "b");
      // A third call on the connection: the client holds it, as the server allows two.
      StreamCollector third = new StreamCollector();
      StreamObserver<ModelInferRequest> thirdStream = GRPCInferenceServiceGrpc.newStub(channel).modelStreamInfer(third);
      thirdStream.onNext(Tensors.affine(1, 2, 3).setModelName("m").setId("c").build());
      assertThat(third.responses.poll(500, TimeUnit.MILLISECONDS)).as("answered while two streams were open").isNull();
      // The first ends: the third goes through.
      firstStream.onCompleted();
      assertThat(first.end.get(10, TimeUnit.SECONDS).isOk()).isTrue();
      assertThat(third.next().getInferResponse().getId()).isEqualTo("c");
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      server.stop();
    }
  }

  @Test
  void pastItsAge_aConnectionIsReplaced_noCallIsLost_andAStreamKeepsItsConnection() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, new ConnectionSettings(Duration.ofSeconds(1), null, Duration.ofMinutes(1), Duration.ofSeconds(10)));
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
      StreamCollector collector = new StreamCollector();
      BlockingQueue<ModelStreamInferResponse> answers = collector.responses;
      CompletableFuture<Status> streamEnd = collector.end;
      StreamObserver<ModelInferRequest> stream = openStream(channel, collector, "before");

      // Calls one after another on one channel, until the server has had three connections.
      int calls = 0;
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (opened(stats) < 3) {
        assertThat(System.nanoTime()).as("no new connection after %d calls", calls).isLessThan(deadline);
        // Every call is answered: GOAWAY lets the calls in flight finish and sends the next ones to a new connection.
        assertThat(stub.withDeadlineAfter(30, TimeUnit.SECONDS).modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build())
            .getModelVersion()).isEqualTo("1");
        calls++;
        Thread.sleep(20);
      }
      // The stream outlived its connection's age: without a grace, it keeps the connection it began on.
      stream.onNext(Tensors.affine(1, 2, 3).setModelName("m").setId("after").build());
      assertThat(answers.poll(30, TimeUnit.SECONDS).getInferResponse().getId()).isEqualTo("after");
      assertThat(streamEnd).isNotDone();
      stream.onCompleted();
      assertThat(streamEnd.get(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);
      assertThat(open(stats)).isBetween(1.0, 3.0);
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
    eventually("connections still counted open after the client closed them", () -> open(stats) == 0);
    eventually("connections ended by age or by the client still hold places", () -> held(stats, "inference") == 0);
    server.stop();
    stats.close();
  }

  @Test
  void withAGrace_aStreamPastItsConnectionsAgeIsEnded() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, new ConnectionSettings(Duration.ofSeconds(1), Duration.ofSeconds(1), Duration.ofMinutes(1), Duration.ofSeconds(10)));
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      StreamCollector collector = new StreamCollector();
      openStream(channel, collector, "first");
      // Age and grace pass (about 2 s): the connection, and the stream on it, end.
      assertThat(collector.end.get(60, TimeUnit.SECONDS).getCode()).isNotEqualTo(Status.Code.OK);
      // The channel reconnects for the next call.
      assertThat(GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
          .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion()).isEqualTo("1");
      assertThat(opened(stats)).isGreaterThanOrEqualTo(2);
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      server.stop();
      stats.close();
    }
  }

  /**
   * A scale-out reaches clients already connected. A round_robin channel, whose resolver ({@link
   * FleetResolver}, like grpc-java's DNS resolver) looks the fleet up again only when a connection ends, calls two
   * replicas; a third joins the fleet. With a maximum connection age the replicas' GOAWAYs make the
   * channel look again, and the third replica gets calls; no call fails meanwhile.
   */
  @Test
  void afterAScaleOut_theNewReplicaGetsCallsFromClientsAlreadyConnected_noCallFails() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    ConnectionSettings aged = new ConnectionSettings(Duration.ofSeconds(1), null, Duration.ofMinutes(1), Duration.ofSeconds(10));
    List<StatsRegistry> stats = new ArrayList<>();
    List<GatewayServer> replicas = new ArrayList<>();
    FleetResolver fleet = FleetResolver.register(List.of());
    ManagedChannel channel = null;
    try {
      for (String name : List.of("a", "b", "c")) {
        StatsRegistry registry = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
        stats.add(registry);
        replicas.add(Gateway.server(root, registry,
            new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5)).withConnections(aged),
            Gateway.adminSettings(root.resolve(".state-" + name), 0)));
      }
      fleet.set(replicas.get(0).port(), replicas.get(1).port());
      channel = NettyChannelBuilder.forTarget(fleet.target()).usePlaintext()
          .defaultLoadBalancingPolicy("round_robin").build();
      GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
      ModelInferRequest request = Tensors.affine(1, 2, 3).setModelName("m").build();
      Runnable call = () -> assertThat(stub.withDeadlineAfter(30, TimeUnit.SECONDS).modelInfer(request).getModelVersion()).isEqualTo("1");
      while (served(stats.get(0)) == 0 || served(stats.get(1)) == 0) {
        call.run();
      }
      // The third replica joins: the next lookup finds it, but nothing looks until a connection ends.
      fleet.set(replicas.get(0).port(), replicas.get(1).port(), replicas.get(2).port());
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (served(stats.get(2)) < 10) {
        assertThat(System.nanoTime()).as("the new replica got no calls").isLessThan(deadline);
        call.run();
        Thread.sleep(5);
      }
    } finally {
      if (channel != null) {
        channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      }
      fleet.close();
      replicas.forEach(GatewayServer::stop);
      stats.forEach(StatsRegistry::close);
    }
  }

  /** Requests model m's version 1 answered OK on the replica of {@code stats}. */
  private static double served(StatsRegistry stats) {
    var counter = stats.prometheus().find("modelgate.requests").tag("model", "m").tag("code", "OK").counter();
    return counter == null ? 0 : counter.count();
  }

  /**
   * Connections that end before their handshake — a load balancer's TCP health check on a TLS
   * port, a client speaking plaintext to it — leave nothing behind: the server lets go of each
   * one's transport (grpc-java's channelz lists none once they are closed) and counts none of them,
   * and a TLS client is served after them. The port's connection counter once threw for them, and
   * grpc-java then kept every such transport for the server's life.
   */
  @Test
  void connectionsEndingBeforeTheirHandshake_leaveNoTransportBehind() throws Exception {
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(java.nio.file.Files.createDirectories(root.resolve("pki")));
    Gateway.write(root, "m", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = Gateway.server(root, stats,
        new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5),
            new io.modelgate.gateway.tls.TlsSettings(certs.serverChain, certs.serverKey, null)),
        Gateway.adminSettings(root.resolve(".state"), 0));
    List<ManagedChannel> channels = new ArrayList<>();
    try {
      for (int i = 0; i < 5; i++) {
        try (java.net.Socket probe = new java.net.Socket(java.net.InetAddress.getLoopbackAddress(), server.port())) {
          probe.getOutputStream().flush();
        }
      }
      for (int i = 0; i < 3; i++) {
        ManagedChannel plaintext = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
        channels.add(plaintext);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> GRPCInferenceServiceGrpc.newBlockingStub(plaintext)
                .withDeadlineAfter(10, TimeUnit.SECONDS).modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
            .isInstanceOfSatisfying(io.grpc.StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isIn(Status.Code.UNAVAILABLE, Status.Code.INTERNAL));
        plaintext.shutdownNow();
      }
      eventually("the transports of connections that ended before their handshake let go",
          () -> transports(server.port()) == 0);
      ManagedChannel tls = NettyChannelBuilder.forAddress("localhost", server.port())
          .sslContext(io.grpc.netty.GrpcSslContexts.forClient().trustManager(certs.caCert.toFile()).build()).build();
      channels.add(tls);
      assertThat(GRPCInferenceServiceGrpc.newBlockingStub(tls).withDeadlineAfter(30, TimeUnit.SECONDS)
          .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelName()).isEqualTo("m");
      assertThat(transports(server.port())).isEqualTo(1);
      eventually("connections ended before their handshake still hold places", () -> held(stats, "inference") == 1);
      assertThat(opened(stats)).isEqualTo(1.0);
      assertThat(open(stats)).isEqualTo(1.0);
    } finally {
      channels.forEach(ManagedChannel::shutdownNow);
      server.stop();
      stats.close();
    }
  }

  /**
   * A port holds at most its connections, counted from their acceptance: one more is refused and
   * counted, its client told why (a gRPC call {@code UNAVAILABLE} naming the limit, an HTTP request
   * 503); the other port keeps its own count; a place comes back when a connection ends; and the
   * connections held are served.
   */
  @Test
  void aPortHoldsAtMostItsConnections_oneMoreIsClosedAtOnce_andAPlaceComesBackWhenOneEnds() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withConnectionLimit(2, 0, Duration.ofMinutes(1)));
    List<java.net.Socket> sockets = new ArrayList<>();
    ManagedChannel channel = null;
    try {
      for (int i = 0; i < 2; i++) {
        sockets.add(speak(server.port()));
        assertThat(answersPreface(sockets.get(i))).as("connection %d, within the limit", i + 1).isTrue();
      }
      assertCallRefused(server.port(), "modelgate: the inference port holds 2 connections, its most"
          + " (--max-connections); try again after a back-off, or another replica");
      assertThat(refused(stats, "inference")).isEqualTo(1.0);
      assertThat(held(stats, "inference")).isEqualTo(2.0);
      assertThat(stats.prometheus().get("modelgate.connections.limit").tag("port", "inference").gauge().value()).isEqualTo(2.0);
      // The admin port counts its own connections.
      java.net.Socket admin = speak(server.adminPort());
      sockets.add(admin);
      assertThat(answersPreface(admin)).as("a connection to the admin port").isTrue();
      assertThat(refused(stats, "admin")).isZero();
      // So does the metrics and health port.
      for (int i = 0; i < 2; i++) {
        java.net.Socket probe = new java.net.Socket(java.net.InetAddress.getLoopbackAddress(), server.metricsPort());
        sockets.add(probe);
        assertThat(answersLivez(probe)).as("HTTP connection %d, within the limit", i + 1).isTrue();
      }
      try (java.net.Socket thirdProbe = new java.net.Socket(java.net.InetAddress.getLoopbackAddress(), server.metricsPort())) {
        thirdProbe.setSoTimeout(30_000);
        thirdProbe.getOutputStream().write("GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        assertThat(new String(thirdProbe.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII))
            .as("a third HTTP connection, read to its end")
            .startsWith("HTTP/1.1 503 Service Unavailable\r\n")
            .endsWith("modelgate: the metrics port holds 2 connections, its most (--max-connections);"
                + " try again after a back-off, or another replica\n");
      }
      assertThat(refused(stats, "metrics")).isEqualTo(1.0);
      // One ends: its place comes back, and a gRPC client is served on it.
      sockets.get(0).close();
      channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
      eventuallyServed(channel, "a connection served once one of the two ended");
      assertThat(refused(stats, "inference")).isGreaterThanOrEqualTo(1.0);
      // Every place comes back once the clients have gone.
      for (java.net.Socket socket : sockets) {
        socket.close();
      }
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      for (String port : List.of("inference", "admin", "metrics")) {
        eventually("the " + port + " port holds no connection once its clients have gone", () -> held(stats, port) == 0);
      }
    } finally {
      for (java.net.Socket socket : sockets) {
        socket.close();
      }
      if (channel != null) {
        channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      }
      server.stop();
      stats.close();
    }
  }

  /**
   * With at most two connections from one address, a third from it is refused (its client told why)
   * while another address is served; and a place comes back when one of the first address's ends.
   */
  @Test
  void perAddress_aThirdFromOneAddressIsRefused_anotherAddressIsServed() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withMaxConnectionsPerAddress(2));
    List<java.net.Socket> sockets = new ArrayList<>();
    try {
      for (int i = 0; i < 2; i++) {
        sockets.add(speak(server.port()));
        assertThat(answersPreface(sockets.get(i))).as("connection %d from 127.0.0.1", i + 1).isTrue();
      }
      assertCallRefused(server.port(), "modelgate: the inference port holds 2 connections from your address, its most"
          + " for one (--max-connections-per-address); use fewer connections, or try again once some have closed");
      assertThat(stats.prometheus().get("modelgate.connections.refused").tags("port", "inference", "reason", "address")
          .functionCounter().count()).isEqualTo(1.0);
      // Another address (loopback's 127.0.0.2) is served.
      java.net.Socket other = speak(server.port(), java.net.InetAddress.getByName("127.0.0.2"));
      sockets.add(other);
      assertThat(answersPreface(other)).as("a connection from 127.0.0.2").isTrue();
      // One of the first address's ends: a gRPC client from it is served.
      sockets.get(0).close();
      ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
      try {
        eventuallyServed(channel, "a client from 127.0.0.1 once one of its two connections ended");
      } finally {
        channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      }
    } finally {
      for (java.net.Socket socket : sockets) {
        socket.close();
      }
      server.stop();
      stats.close();
    }
  }

  /**
   * A connection that sends nothing is closed once the handshake timeout has passed, and gives its
   * place back: with a limit of one, the port serves again after it.
   */
  @Test
  void aConnectionThatNeverSpeaks_isClosedAfterTheHandshakeTimeout_andGivesItsPlaceBack() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withConnectionLimit(1, 0, Duration.ofMillis(500)));
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try (java.net.Socket silent = new java.net.Socket(java.net.InetAddress.getLoopbackAddress(), server.port())) {
      silent.setSoTimeout(30_000);
      java.io.InputStream in = silent.getInputStream();
      try {
        while (in.read() >= 0) {
          // the server's own preface, then the end of the connection
        }
      } catch (java.net.SocketException reset) {
        // closed by the server: as good as an end
      }
      eventuallyServed(channel, "a connection served once the silent one was closed");
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      server.stop();
      stats.close();
    }
  }

  /**
   * A client that opens calls and resets each at once ("rapid reset") has its connection ended
   * past the limit, with GOAWAY {@code ENHANCE_YOUR_CALM}; one that stays within it keeps its
   * connection (its PING is answered after its resets).
   */
  @Test
  void aClientResettingCallsPastTheLimit_hasItsConnectionEnded_andOneWithinItKeepsIt() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withMaxStreamResets(20));
    try {
      assertThat(resetCalls(server.port(), 20)).as("20 calls reset, the limit").isEqualTo(-1);
      assertThat(connectionErrors(stats, "inference", "enhance_your_calm")).as("not counted within the limit").isZero();
      assertThat(resetCalls(server.port(), 100)).as("100 calls reset").isEqualTo(0xb);
      assertThat(resetCalls(server.adminPort(), 100)).as("100 admin calls reset").isEqualTo(0xb);
      // Each counted on its port as it is ended (the GOAWAY is read once it has been sent).
      assertThat(connectionErrors(stats, "inference", "enhance_your_calm")).isEqualTo(1);
      assertThat(connectionErrors(stats, "admin", "enhance_your_calm")).isEqualTo(1);
    } finally {
      server.stop();
      stats.close();
    }
  }

  /**
   * {@code GetConnections} (role viewer) says what each port holds and which client addresses hold
   * the most, most first, as many as asked, with the port's refusals; a place given back shows.
   */
  @Test
  void getConnections_listsThePortsAndTheAddressesHoldingTheMost() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withMaxConnectionsPerAddress(3));
    List<java.net.Socket> sockets = new ArrayList<>();
    ManagedChannel admin = NettyChannelBuilder.forAddress("127.0.0.1", server.adminPort()).usePlaintext().build();
    try {
      for (int i = 0; i < 3; i++) {
        sockets.add(speak(server.port()));
      }
      sockets.add(speak(server.port(), java.net.InetAddress.getByName("127.0.0.3")));
      for (java.net.Socket socket : sockets) {
        assertThat(answersPreface(socket)).isTrue();
      }
      assertCallRefused(server.port(), "modelgate: the inference port holds 3 connections from your address, its most"
          + " for one (--max-connections-per-address); use fewer connections, or try again once some have closed");
      AdminServiceGrpc.AdminServiceBlockingStub stub =
          AdminServiceGrpc.newBlockingStub(admin).withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN));
      ConnectionsReport report = stub.getConnections(GetConnectionsRequest.newBuilder().setTop(1).build());
      assertThat(report.getPortsList()).extracting(PortConnections::getPort).containsExactly("inference", "admin", "metrics");
      PortConnections inference = report.getPorts(0);
      assertThat(inference.getHeld()).isEqualTo(4);
      assertThat(inference.getLimit()).isEqualTo(ConnectionSettings.DEFAULTS.maxConnections());
      assertThat(inference.getPerAddressLimit()).isEqualTo(3);
      assertThat(inference.getAddresses()).isEqualTo(2);
      assertThat(inference.getTopList()).as("one asked, the most first")
          .containsExactly(AddressConnections.newBuilder().setAddress("127.0.0.1").setHeld(3).build());
      assertThat(inference.getRefusedMap()).containsEntry("address", 1L).containsEntry("limit", 0L).containsEntry("rate", 0L);
      assertThat(report.getPorts(1).getHeld()).as("the admin port: this call's connection at least").isPositive();

      sockets.remove(0).close();
      sockets.remove(0).close();
      eventually("two places given back", () -> {
        PortConnections now = stub.getConnections(GetConnectionsRequest.getDefaultInstance()).getPorts(0);
        return now.getHeld() == 2 && now.getTopCount() == 2 && now.getTop(0).getHeld() == 1 && now.getTop(1).getHeld() == 1;
      });
      assertThat(stub.getConnections(GetConnectionsRequest.getDefaultInstance()).getPorts(0).getTopList())
          .extracting(AddressConnections::getAddress).containsExactlyInAnyOrder("127.0.0.1", "127.0.0.3");
      assertThatThrownBy(() -> stub.getConnections(GetConnectionsRequest.newBuilder().setTop(-1).build()))
          .hasMessageContaining("INVALID_ARGUMENT: top: -1 (expected: 1 to 1000, or 0 for 10)");
    } finally {
      for (java.net.Socket socket : sockets) {
        socket.close();
      }
      admin.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      server.stop();
      stats.close();
    }
  }

  /**
   * A client pinging more often than {@code --permit-keepalive-time} permits has its connection
   * ended ({@code ENHANCE_YOUR_CALM}, "too_many_pings"), counted on its port: what an operator
   * looks for when a client's keepalive is set shorter than the server allows.
   */
  @Test
  void aClientPingingTooOften_hasItsConnectionEnded_andItIsCounted() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS);
    try (java.net.Socket socket = speak(server.port())) {
      java.io.ByteArrayOutputStream frames = new java.io.ByteArrayOutputStream();
      for (int i = 0; i < 4; i++) {
        writeFrame(frames, 6, 0, 0, new byte[8]); // PING, well within the 10 s permitted
      }
      socket.getOutputStream().write(frames.toByteArray());
      socket.getOutputStream().flush();
      java.io.DataInputStream in = new java.io.DataInputStream(socket.getInputStream());
      Frame frame;
      do {
        frame = Frame.read(in);
      } while (frame.type() != 7);
      java.nio.ByteBuffer goAway = java.nio.ByteBuffer.wrap(frame.payload());
      assertThat(goAway.getInt(4)).as("GOAWAY's error code").isEqualTo(0xb);
      assertThat(new String(frame.payload(), 8, frame.payload().length - 8, java.nio.charset.StandardCharsets.US_ASCII))
          .isEqualTo("too_many_pings");
      assertThat(connectionErrors(stats, "inference", "enhance_your_calm")).isEqualTo(1);
      assertThat(connectionErrors(stats, "admin", "enhance_your_calm")).isZero();
    } finally {
      server.stop();
      stats.close();
    }
  }

  /** {@code modelgate_connection_errors_total{port}}, whatever the code. */
  private static double connectionErrors(StatsRegistry stats, String port) {
    return stats.prometheus().find("modelgate.connection.errors").tag("port", port).functionCounters().stream()
        .mapToDouble(io.micrometer.core.instrument.FunctionCounter::count).sum();
  }

  /** {@code modelgate_connection_errors_total{port,code}} (0 for a code without a series of its own). */
  private static double connectionErrors(StatsRegistry stats, String port, String code) {
    io.micrometer.core.instrument.FunctionCounter counter =
        stats.prometheus().find("modelgate.connection.errors").tags("port", port, "code", code).functionCounter();
    return counter == null ? 0 : counter.count();
  }

  /**
   * Opens {@code calls} calls on a new connection to {@code port}, resetting each as it opens it,
   * then pings: the GOAWAY error code the server ends the connection with, or -1 when it answers
   * the ping instead.
   */
  private static int resetCalls(int port, int calls) throws java.io.IOException {
    try (java.net.Socket socket = speak(port)) {
      java.io.ByteArrayOutputStream frames = new java.io.ByteArrayOutputStream();
      byte[] path = "/inference.GRPCInferenceService/ModelInfer".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
      java.io.ByteArrayOutputStream block = new java.io.ByteArrayOutputStream();
      block.write(new byte[] {(byte) 0x83, (byte) 0x86, 0x04, (byte) path.length}); // POST, http, :path
      block.write(path);
      block.write(literal("content-type", "application/grpc"));
      block.write(literal("te", "trailers"));
      for (int i = 0; i < calls; i++) {
        int stream = 1 + 2 * i;
        writeFrame(frames, 1, 4, stream, block.toByteArray()); // HEADERS, END_HEADERS
        writeFrame(frames, 3, 0, stream, new byte[] {0, 0, 0, 8}); // RST_STREAM, CANCEL
      }
      writeFrame(frames, 6, 0, 0, new byte[8]); // PING
      socket.getOutputStream().write(frames.toByteArray());
      socket.getOutputStream().flush();
      return goAwayCode(socket);
    }
  }

  /** An HPACK literal header field without indexing, with a new name and no Huffman coding. */
  private static byte[] literal(String name, String value) {
    byte[] n = name.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    byte[] v = value.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    java.nio.ByteBuffer field = java.nio.ByteBuffer.allocate(3 + n.length + v.length);
    field.put((byte) 0).put((byte) n.length).put(n).put((byte) v.length).put(v);
    return field.array();
  }

  private static void writeFrame(java.io.ByteArrayOutputStream out, int type, int flags, int stream, byte[] payload) {
    out.write(payload.length >>> 16);
    out.write(payload.length >>> 8);
    out.write(payload.length);
    out.write(type);
    out.write(flags);
    out.writeBytes(java.nio.ByteBuffer.allocate(4).putInt(stream).array());
    out.writeBytes(payload);
  }

  /**
   * A connection without a call open for longer than the idle limit is asked to go (GOAWAY,
   * NO_ERROR); one with a call open the whole time keeps serving it.
   */
  @Test
  void aConnectionIdlePastTheLimit_isAskedToGo_andOneWithACallOpenIsKept() throws Exception {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = start(stats, ConnectionSettings.DEFAULTS.withMaxIdle(Duration.ofSeconds(1)));
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      StreamCollector collector = new StreamCollector();
      StreamObserver<ModelInferRequest> stream = openStream(channel, collector, "before");
      try (java.net.Socket idle = speak(server.port())) {
        assertThat(goAwayCode(idle)).as("the GOAWAY error code on the idle connection").isZero();
      }
      assertThat(connectionErrors(stats, "inference")).as("a graceful GOAWAY is no error").isZero();
      // The stream's connection had its call open all that time: still served.
      stream.onNext(Tensors.affine(1, 2, 3).setModelName("m").setId("after").build());
      assertThat(collector.next().getInferResponse().getId()).isEqualTo("after");
      assertThat(collector.end).isNotDone();
      stream.onCompleted();
      assertThat(collector.end.get(30, TimeUnit.SECONDS).isOk()).isTrue();
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      server.stop();
      stats.close();
    }
  }

  /** Reads {@code socket}'s frames until GOAWAY, its error code, or a PING's answer, -1. */
  private static int goAwayCode(java.net.Socket socket) throws java.io.IOException {
    java.io.DataInputStream in = new java.io.DataInputStream(socket.getInputStream());
    while (true) {
      Frame frame = Frame.read(in);
      if (frame.type() == 7) { // GOAWAY: last stream id, error code
        return java.nio.ByteBuffer.wrap(frame.payload()).getInt(4);
      }
      if (frame.type() == 6 && (frame.flags() & 1) != 0) {
        return -1;
      }
    }
  }

  /** One HTTP/2 frame as the server wrote it: its type, flags and payload (its stream id read and dropped). */
  private record Frame(int type, int flags, byte[] payload) {
    static Frame read(java.io.DataInputStream in) throws java.io.IOException {
      int length = (in.readUnsignedByte() << 16) | in.readUnsignedShort();
      int type = in.readUnsignedByte();
      int flags = in.readUnsignedByte();
      in.readInt();
      byte[] payload = new byte[length];
      in.readFully(payload);
      return new Frame(type, flags, payload);
    }
  }

  /** Waits until a call on {@code channel} is served, its connections refused ({@code UNAVAILABLE}) meanwhile. */
  private static void eventuallyServed(ManagedChannel channel, String what) throws InterruptedException {
    eventually(what, () -> {
      try {
        return GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
            .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelName().equals("m");
      } catch (io.grpc.StatusRuntimeException e) {
        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
        return false;
      }
    });
  }

  /** A call on a new gRPC client to {@code port} fails {@code UNAVAILABLE} with {@code description}: its connection refused. */
  private static void assertCallRefused(int port, String description) throws InterruptedException {
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
    try {
      assertThatThrownBy(() -> GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
              .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()))
          .isInstanceOfSatisfying(io.grpc.StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
            assertThat(e.getStatus().getDescription()).isEqualTo(description);
          });
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  /** A connection to {@code port} that has sent HTTP/2's preface and an empty SETTINGS frame. */
  private static java.net.Socket speak(int port) throws java.io.IOException {
    return speak(port, null);
  }

  /** As {@link #speak(int)}, from {@code local} (null: any loopback address). */
  private static java.net.Socket speak(int port, java.net.InetAddress local) throws java.io.IOException {
    java.net.Socket socket = new java.net.Socket(java.net.InetAddress.getLoopbackAddress(), port, local, 0);
    socket.setSoTimeout(30_000);
    java.io.OutputStream out = socket.getOutputStream();
    try {
      out.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
      out.write(new byte[] {0, 0, 0, 4, 0, 0, 0, 0, 0});
      out.flush();
    } catch (java.net.SocketException closed) {
      // A connection the server refused as it accepted it may be closed before the preface is
      // written ("Broken pipe"): reading from it then says so.
    }
    return socket;
  }

  /** Whether the server answered {@code socket}'s preface with its SETTINGS; false when it closed the connection. */
  private static boolean answersPreface(java.net.Socket socket) throws java.io.IOException {
    byte[] header = new byte[9];
    try {
      new java.io.DataInputStream(socket.getInputStream()).readFully(header);
    } catch (java.io.EOFException | java.net.SocketException closed) {
      return false;
    }
    return header[3] == 4;
  }

  /** Whether the server answered {@code socket}'s {@code GET /livez}, the connection kept; false when it closed it. */
  private static boolean answersLivez(java.net.Socket socket) throws java.io.IOException {
    socket.setSoTimeout(30_000);
    socket.getOutputStream().write("GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    byte[] status = new byte[12];
    try {
      new java.io.DataInputStream(socket.getInputStream()).readFully(status);
    } catch (java.io.EOFException | java.net.SocketException closed) {
      return false;
    }
    return new String(status, java.nio.charset.StandardCharsets.US_ASCII).equals("HTTP/1.1 200");
  }

  private static double held(StatsRegistry stats, String port) {
    return stats.prometheus().get("modelgate.connections.held").tag("port", port).gauge().value();
  }

  private static double refused(StatsRegistry stats, String port) {
    return stats.prometheus().get("modelgate.connections.refused").tags("port", port, "reason", "limit").functionCounter().count();
  }

  /** The transports grpc-java holds for the server listening on {@code port}, from its channelz. */
  private static int transports(int port) {
    io.grpc.InternalChannelz channelz = io.grpc.InternalChannelz.instance();
    try {
      for (io.grpc.InternalInstrumented<io.grpc.InternalChannelz.ServerStats> listed : channelz.getServers(0, 1000).servers) {
        for (io.grpc.InternalInstrumented<io.grpc.InternalChannelz.SocketStats> listen
            : listed.getStats().get(10, TimeUnit.SECONDS).listenSockets) {
          if (listen.getStats().get(10, TimeUnit.SECONDS).local instanceof java.net.InetSocketAddress local
              && local.getPort() == port) {
            return channelz.getServerSockets(io.grpc.InternalChannelz.id(listed), 0, 1000).sockets.size();
          }
        }
      }
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
    throw new AssertionError("no server in channelz listens on " + port);
  }

  private static double opened(StatsRegistry stats) {
    return stats.prometheus().get("modelgate.connections.opened").tag("port", "inference").functionCounter().count();
  }

  private static double open(StatsRegistry stats) {
    return stats.prometheus().get("modelgate.connections.open").tag("port", "inference").gauge().value();
  }
}

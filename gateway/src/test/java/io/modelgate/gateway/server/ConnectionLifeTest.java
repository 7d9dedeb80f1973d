package io.modelgate.gateway.server;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.StreamCollector;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The inference port's connections over their life: past their maximum age clients are asked to
 * reconnect and lose no call, a stream keeps its connection for the grace, and the port counts its
 * connections.
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

  private static double opened(StatsRegistry stats) {
    return stats.prometheus().get("modelgate.connections.opened").tag("port", "inference").functionCounter().count();
  }

  private static double open(StatsRegistry stats) {
    return stats.prometheus().get("modelgate.connections.open").tag("port", "inference").gauge().value();
  }
}

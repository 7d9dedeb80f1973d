package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.server.GatewayServer.Phase;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The shutdown order, and that every accepted request gets its one answer across it. */
class ShutdownTest {
  @TempDir Path root;

  private static List<CompletableFuture<Status>> fire(Gateway gateway, int n) {
    List<CompletableFuture<Status>> calls = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      io.modelgate.gateway.testing.Outcome<ModelInferResponse> call = new io.modelgate.gateway.testing.Outcome<>();
      calls.add(call.status);
      gateway.async().modelInfer(Tensors.digit(MnistDigits.get(i % 62)).build(), call);
    }
    return calls;
  }

  private static List<Status.Code> outcomes(List<CompletableFuture<Status>> calls) throws Exception {
    List<Status.Code> codes = new ArrayList<>();
    for (CompletableFuture<Status> call : calls) {
      codes.add(call.get(30, TimeUnit.SECONDS).getCode());
    }
    return codes;
  }

  @Test
  void stop_followsTheOrder_andDrainsEveryQueuedRequest() throws Exception {
    Gateway gateway = Gateway.inProcess(Gateway.standardRepository(root), Duration.ofSeconds(30));
    List<ModelVersion> versions = gateway.repository.model("cnn_mnist").orElseThrow().versions();
    // In-process with a direct executor, each call is queued before fire() returns.
    List<CompletableFuture<Status>> calls = fire(gateway, 400);

    gateway.server.stop();

    assertThat(gateway.server.phases())
        .containsExactly(
            Phase.NOT_SERVING,
            Phase.DELAYED,
            Phase.STOPPED_ACCEPTING,
            Phase.DRAINED,
            Phase.SESSIONS_CLOSED,
            Phase.TERMINATED);
    assertThat(outcomes(calls)).containsOnly(Status.Code.OK);
    assertThat(gateway.server.isReady()).isFalse();
    assertThat(versions).extracting(ModelVersion::state).containsOnly(VersionState.UNAVAILABLE);
    gateway.close();
  }

  @Test
  void drainTimeout_answersWhatCouldNotRunUnavailable_andLosesNothing() throws Exception {
    Gateway gateway = Gateway.inProcess(Gateway.standardRepository(root), Duration.ZERO);
    List<CompletableFuture<Status>> calls = fire(gateway, 400);

    gateway.server.stop();

    // How many ran before the timeout depends on the machine; that each got one answer does not.
    // (RingSchedulerTest holds an executor to show the UNAVAILABLE answers deterministically.)
    List<Status.Code> codes = outcomes(calls);
    assertThat(codes).hasSize(400).isSubsetOf(Status.Code.OK, Status.Code.UNAVAILABLE);
    gateway.close();
  }

  @Test
  void afterStop_newCallsAreRefused() throws Exception {
    Gateway gateway = Gateway.inProcess(Gateway.standardRepository(root));
    gateway.server.stop();
    List<Status.Code> codes = outcomes(fire(gateway, 1));
    assertThat(codes).containsExactly(Status.Code.UNAVAILABLE);
    gateway.close();
  }

  @Test
  void shutdownDelay_reportsNotServingFirst_whileStillAnswering() throws Exception {
    Gateway gateway =
        Gateway.inProcess(
            Gateway.standardRepository(root), Duration.ofSeconds(10), Duration.ofSeconds(30),
            root.resolve(".state"), java.time.Clock.systemUTC());
    io.grpc.health.v1.HealthGrpc.HealthBlockingStub health = io.grpc.health.v1.HealthGrpc.newBlockingStub(gateway.channel);
    Thread stopper = new Thread(gateway.server::stop);
    stopper.start();
    // Wait for the stop to begin (no timing assumption beyond the 30 s delay itself).
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    while (!gateway.server.phases().contains(Phase.NOT_SERVING) && System.nanoTime() < until) {
      Thread.sleep(5);
    }
    assertThat(gateway.server.phases()).containsExactly(Phase.NOT_SERVING);
    assertThat(health.check(io.grpc.health.v1.HealthCheckRequest.getDefaultInstance()).getStatus())
        .isEqualTo(io.grpc.health.v1.HealthCheckResponse.ServingStatus.NOT_SERVING);
    assertThat(gateway.blocking().serverReady(io.modelgate.proto.inference.ServerReadyRequest.getDefaultInstance()).getReady())
        .isFalse();
    // Still serving inference during the delay.
    assertThat(outcomes(fire(gateway, 20))).containsOnly(Status.Code.OK);
    stopper.interrupt();
    stopper.join(30_000);
    assertThat(gateway.server.phases()).endsWith(Phase.TERMINATED);
    gateway.close();
  }

  @Test
  void openStreams_areEndedOnceEveryRequestTheySentIsAnswered_notReset() throws Exception {
    Gateway gateway = Gateway.inProcess(Gateway.standardRepository(root), Duration.ofSeconds(30));
    io.modelgate.gateway.testing.StreamCollector collector = new io.modelgate.gateway.testing.StreamCollector();
    java.util.Collection<io.modelgate.proto.inference.ModelStreamInferResponse> answers = collector.responses;
    CompletableFuture<Status> end = collector.end;
    StreamObserver<io.modelgate.proto.inference.ModelInferRequest> requests = gateway.async().modelStreamInfer(collector);
    int sent = 300;
    for (int i = 0; i < sent; i++) {
      requests.onNext(Tensors.digit(MnistDigits.get(i % 62)).setId("r" + i).build());
    }
    // The client never half-closes: the server must end the stream itself, after answering all.
    gateway.server.stop();
    Status status = end.get(30, TimeUnit.SECONDS);
    assertThat(status.getCode()).isEqualTo(Status.Code.UNAVAILABLE);
    assertThat(status.getDescription()).contains("the server is stopping").contains("every request received");
    // Every request sent has its one answer: a result, or (if it reached the server once the
    // versions were unloading) an in-band UNAVAILABLE.
    assertThat(answers).hasSize(sent);
    assertThat(answers.stream().map(a -> a.getInferResponse().getId()).distinct().count()).isEqualTo(sent);
    assertThat(answers)
        .allSatisfy(
            a -> {
              if (!a.getErrorMessage().isEmpty()) {
                assertThat(a.getInferResponse().getParametersMap().get("error_code").getStringParam())
                    .isEqualTo("UNAVAILABLE");
              }
            });
    gateway.close();
  }
}

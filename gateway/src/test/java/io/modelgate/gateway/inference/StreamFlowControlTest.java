package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** ModelStreamInfer over Netty with a client that sends without reading its answers. */
class StreamFlowControlTest {
  @TempDir Path root;

  @Test
  void aClientThatSendsWithoutReading_stopsBeingRead_insteadOfAnswersPilingUp_andThenGetsEveryAnswer()
      throws Exception {
    int sent = 20_000;
    try (Gateway gateway = Gateway.netty(Gateway.standardRepository(root), 4 << 20)) {
      // A small HTTP/2 window, as a client that reads slowly grants: a few hundred answers fit.
      ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", gateway.server.port())
          .usePlaintext().flowControlWindow(64 * 1024).build();
      try {
        AtomicReference<ClientCallStreamObserver<ModelInferRequest>> requestStream = new AtomicReference<>();
        AtomicInteger answered = new AtomicInteger();
        AtomicInteger errors = new AtomicInteger();
        CompletableFuture<Void> done = new CompletableFuture<>();
        StreamObserver<ModelInferRequest> requests = GRPCInferenceServiceGrpc.newStub(channel).modelStreamInfer(
            new ClientResponseObserver<ModelInferRequest, ModelStreamInferResponse>() {
              @Override
              public void beforeStart(ClientCallStreamObserver<ModelInferRequest> stream) {
                // Reads no answer until told to.
                stream.disableAutoRequestWithInitial(0);
                requestStream.set(stream);
              }

              @Override
              public void onNext(ModelStreamInferResponse response) {
                answered.incrementAndGet();
                if (!response.getErrorMessage().isEmpty()) {
                  errors.incrementAndGet();
                }
              }

              @Override
              public void onError(Throwable t) {
                done.completeExceptionally(t);
              }

              @Override
              public void onCompleted() {
                done.complete(null);
              }
            });
        ModelInferRequest request = Tensors.affine(1, 2, 3).setId("r").build();
        for (int i = 0; i < sent; i++) {
          requests.onNext(request);
        }
        // The server runs what it reads: wait until it has run half of them, or has stopped for a
        // second (it stops once the transport holds answers the client has not read).
        long executed = executed(gateway);
        for (int still = 0; executed < sent / 2 && still < 20; ) {
          Thread.sleep(50);
          long now = executed(gateway);
          still = now == executed ? still + 1 : 0;
          executed = now;
        }
        assertThat(executed).as("requests executed while the client read no answer").isLessThan(sent / 2);

        // The client reads: every request is read and answered, once (run, or refused in-band
        // where the client's pipelined requests overflow the version's queue).
        requestStream.get().request(Integer.MAX_VALUE);
        requests.onCompleted();
        done.get(60, TimeUnit.SECONDS);
        assertThat(answered.get()).isEqualTo(sent);
        assertThat(executed(gateway) + errors.get()).isEqualTo(sent);
      } finally {
        channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      }
    }
  }

  /** Requests of the affine model answered successfully so far. */
  private static long executed(Gateway gateway) {
    return gateway.stats.find("affine", 1).statistics().getInferenceStats().getSuccess().getCount();
  }
}

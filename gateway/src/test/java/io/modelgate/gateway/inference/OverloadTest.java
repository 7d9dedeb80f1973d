package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Overload is refused at once, on the request's own thread, and never queued beyond capacity. */
class OverloadTest {
  @TempDir Path root;

  record Outcome(Status status, boolean answeredDuringTheCall, Thread thread) {}

  @Test
  void aFullQueue_refusesOnTheRequestThread_beforeTheCallReturns() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Gateway.config(root, "slow", "max_batch_size: 0\nqueue_capacity: 2\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      ModelInferRequest request =
          ModelInferRequest.newBuilder()
              .setModelName("slow")
              .addInputs(Tensors.input("x", "FP32", 1, 3))
              .addRawInputContents(Tensors.rawFloats(1, 2, 3))
              .build();
      List<CompletableFuture<Outcome>> outcomes = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        CompletableFuture<Outcome> outcome = new CompletableFuture<>();
        boolean[] inCall = {true};
        // In-process with direct executors, the service runs inside this call on this thread.
        gateway.async().modelInfer(
            request,
            new StreamObserver<ModelInferResponse>() {
              @Override
              public void onNext(ModelInferResponse value) {}

              @Override
              public void onError(Throwable t) {
                outcome.complete(new Outcome(Status.fromThrowable(t), inCall[0], Thread.currentThread()));
              }

              @Override
              public void onCompleted() {
                outcome.complete(new Outcome(Status.OK, inCall[0], Thread.currentThread()));
              }
            });
        inCall[0] = false;
        outcomes.add(outcome);
      }
      int refused = 0;
      int ok = 0;
      for (CompletableFuture<Outcome> outcome : outcomes) {
        Outcome o = outcome.get(60, TimeUnit.SECONDS);
        if (o.status().getCode() == Status.Code.RESOURCE_EXHAUSTED) {
          refused++;
          assertThat(o.answeredDuringTheCall()).as("refused before the call returned").isTrue();
          assertThat(o.thread()).isSameAs(Thread.currentThread());
          assertThat(o.status().getDescription()).contains("queue of 2 requests is full");
        } else {
          assertThat(o.status().getCode()).isEqualTo(Status.Code.OK);
          ok++;
        }
      }
      // One runs while two wait; sent faster than the model runs, most are refused (how many
      // depends on the machine; that each refusal is immediate does not).
      assertThat(refused).isPositive();
      assertThat(ok).isGreaterThanOrEqualTo(3);
      assertThat(refused + ok).isEqualTo(200);
    }
  }
}

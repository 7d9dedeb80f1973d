package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
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

/** Requests whose deadline passes are counted as DEADLINE_EXCEEDED, never as CANCELLED. */
class DeadlineAccountingTest {
  @TempDir Path root;

  private static long count(String scrape, String code) {
    String prefix = "modelgate_requests_total{code=\"" + code + "\",model=\"slow\",version=\"1\"} ";
    return scrape.lines()
        .filter(l -> l.startsWith(prefix))
        .mapToLong(l -> (long) Double.parseDouble(l.substring(prefix.length())))
        .sum();
  }

  @Test
  void expiredRequests_queuedOrRunning_areCountedAsDeadlineExceeded() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Gateway.config(root, "slow", "max_batch_size: 0\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      int calls = 24;
      List<CompletableFuture<Status>> answers = new ArrayList<>();
      for (int i = 0; i < calls; i++) {
        CompletableFuture<Status> answer = new CompletableFuture<>();
        answers.add(answer);
        ModelInferRequest request =
            ModelInferRequest.newBuilder()
                .setModelName("slow")
                .addInputs(Tensors.input("x", "FP32", 1, 3))
                .addRawInputContents(Tensors.rawFloats(1, 2, 3))
                .build();
        gateway
            .async()
            .withDeadlineAfter(2, TimeUnit.MILLISECONDS)
            .modelInfer(
                request,
                new StreamObserver<ModelInferResponse>() {
                  @Override
                  public void onNext(ModelInferResponse value) {}

                  @Override
                  public void onError(Throwable t) {
                    answer.complete(((StatusRuntimeException) t).getStatus());
                  }

                  @Override
                  public void onCompleted() {
                    answer.complete(Status.OK);
                  }
                });
      }
      for (CompletableFuture<Status> answer : answers) {
        answer.get(30, TimeUnit.SECONDS);
      }
      // One FIFO executor: once a request sent after them is answered, every earlier one that
      // reached the version has been answered and recorded too.
      assertThat(
              gateway.blocking()
                  .modelInfer(
                      ModelInferRequest.newBuilder()
                          .setModelName("slow")
                          .addInputs(Tensors.input("x", "FP32", 1, 3))
                          .addRawInputContents(Tensors.rawFloats(1, 2, 3))
                          .build())
                  .getModelName())
          .isEqualTo("slow");
      String scrape = gateway.stats.scrape();
      assertThat(count(scrape, "CANCELLED")).isZero();
      assertThat(count(scrape, "DEADLINE_EXCEEDED")).isGreaterThan(0);
      long clientDeadlines = answers.stream().filter(a -> a.join().getCode() == Status.Code.DEADLINE_EXCEEDED).count();
      // Calls that expired before reaching the service are never counted on a version.
      assertThat(count(scrape, "DEADLINE_EXCEEDED")).isLessThanOrEqualTo(clientDeadlines);
    }
  }
}

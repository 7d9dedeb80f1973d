package io.modelgate.gateway.testing;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** Collects a ModelStreamInfer call's responses, in arrival order, and how it ended. */
public final class StreamCollector implements StreamObserver<ModelStreamInferResponse> {
  public final BlockingQueue<ModelStreamInferResponse> responses = new LinkedBlockingQueue<>();
  /** OK when the server completed the stream; its status when it ended with an error. */
  public final CompletableFuture<Status> end = new CompletableFuture<>();

  @Override
  public void onNext(ModelStreamInferResponse value) {
    responses.add(value);
  }

  @Override
  public void onError(Throwable t) {
    end.complete(Status.fromThrowable(t));
  }

  @Override
  public void onCompleted() {
    end.complete(Status.OK);
  }

  /** The next response; fails the test when none comes within 30 s. */
  public ModelStreamInferResponse next() throws InterruptedException {
    ModelStreamInferResponse response = responses.poll(30, TimeUnit.SECONDS);
    assertThat(response).as("a response within 30 s").isNotNull();
    return response;
  }
}

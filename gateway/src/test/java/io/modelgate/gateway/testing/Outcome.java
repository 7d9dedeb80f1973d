package io.modelgate.gateway.testing;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;

/**
 * How a unary call ended: {@link #status}, OK or the error's; and {@link #answer}, the answer, or
 * the error it failed with.
 */
public final class Outcome<T> implements StreamObserver<T> {
  public final CompletableFuture<Status> status = new CompletableFuture<>();
  public final CompletableFuture<T> answer = new CompletableFuture<>();

  @Override
  public void onNext(T value) {
    answer.complete(value);
  }

  @Override
  public void onError(Throwable t) {
    answer.completeExceptionally(t);
    status.complete(Status.fromThrowable(t));
  }

  @Override
  public void onCompleted() {
    status.complete(Status.OK);
  }
}

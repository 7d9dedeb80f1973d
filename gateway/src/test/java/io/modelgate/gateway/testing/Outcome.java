package io.modelgate.gateway.testing;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;

/** How a unary call ended, for a test that does not need its answer: OK, or the error's status. */
public final class Outcome<T> implements StreamObserver<T> {
  public final CompletableFuture<Status> status = new CompletableFuture<>();

  @Override
  public void onNext(T value) {}

  @Override
  public void onError(Throwable t) {
    status.complete(Status.fromThrowable(t));
  }

  @Override
  public void onCompleted() {
    status.complete(Status.OK);
  }
}

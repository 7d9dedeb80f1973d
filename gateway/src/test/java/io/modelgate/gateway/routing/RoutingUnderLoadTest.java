package io.modelgate.gateway.routing;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Policy swaps are atomic: requests in flight while weights change never fail because of it. */
class RoutingUnderLoadTest {
  @TempDir Path root;

  @Test
  void aHundredWeightChangesUnderConcurrentLoad_failNoRequest() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Gateway.write(root, "m", 3, Gateway.affine());
    try (Gateway gateway = Gateway.inProcess(root)) {
      AtomicBoolean running = new AtomicBoolean(true);
      AtomicLong ok = new AtomicLong();
      Map<Status.Code, AtomicLong> failures = new ConcurrentHashMap<>();
      Map<String, AtomicLong> versions = new ConcurrentHashMap<>();
      int callers = 16;
      CountDownLatch stopped = new CountDownLatch(callers);
      for (int c = 0; c < callers; c++) {
        new Caller(gateway, running, ok, failures, versions, stopped).next();
      }
      long revision = 0;
      for (int change = 0; change < 100; change++) {
        RoutingPolicy.Builder policy = RoutingPolicy.newBuilder().setModel("m");
        policy.putWeights(1 + change % 3, 1 + change % 7);
        policy.putWeights(1 + (change + 1) % 3, 1 + (change * 5) % 11);
        revision =
            gateway.admin()
                .setRouting(SetRoutingRequest.newBuilder().setPolicy(policy).setExpectedRevision(revision).build())
                .getRevision();
        Thread.sleep(2);
      }
      running.set(false);
      assertThat(stopped.await(30, TimeUnit.SECONDS)).isTrue();
      assertThat(revision).isEqualTo(100);
      assertThat(failures).isEmpty();
      assertThat(ok.get()).isPositive();
      assertThat(versions.keySet()).containsExactlyInAnyOrder("1", "2", "3");
    }
  }

  private static final class Caller implements StreamObserver<ModelInferResponse> {
    private final Gateway gateway;
    private final AtomicBoolean running;
    private final AtomicLong ok;
    private final Map<Status.Code, AtomicLong> failures;
    private final Map<String, AtomicLong> versions;
    private final CountDownLatch stopped;

    Caller(
        Gateway gateway,
        AtomicBoolean running,
        AtomicLong ok,
        Map<Status.Code, AtomicLong> failures,
        Map<String, AtomicLong> versions,
        CountDownLatch stopped) {
      this.gateway = gateway;
      this.running = running;
      this.ok = ok;
      this.failures = failures;
      this.versions = versions;
      this.stopped = stopped;
    }

    void next() {
      if (!running.get()) {
        stopped.countDown();
        return;
      }
      gateway.async().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build(), this);
    }

    @Override
    public void onNext(ModelInferResponse response) {
      versions.computeIfAbsent(response.getModelVersion(), v -> new AtomicLong()).incrementAndGet();
    }

    @Override
    public void onError(Throwable t) {
      failures.computeIfAbsent(Status.fromThrowable(t).getCode(), c -> new AtomicLong()).incrementAndGet();
      java.util.concurrent.ForkJoinPool.commonPool().execute(this::next);
    }

    @Override
    public void onCompleted() {
      ok.incrementAndGet();
      // The in-process transport answers on the executor thread; send the next call from another.
      java.util.concurrent.ForkJoinPool.commonPool().execute(this::next);
    }
  }
}

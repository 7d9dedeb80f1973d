package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Operators' changes raced against rollout starts, steps and aborts from several threads. The
 * earlier pair of components (a policy store and a rollout controller, each with its own lock,
 * calling each other) could deadlock here; one owner cannot. Fails on a deadlock (nothing ends
 * within a bounded wait: the threads are dumped), on a lost update, or on a stale revision
 * accepted.
 */
class ControlPlaneRaceTest {
  @TempDir Path root;

  @Test
  void thousandOperatorChanges_racingRolloutStepsAndAborts_neitherDeadlockNorLoseUpdates() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
    TestClock clock = new TestClock();
    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(5), root.resolve(".state"), clock)) {
      ControlPlane control = gateway.server.control();
      Set<Long> revisions = ConcurrentHashMap.newKeySet();
      AtomicInteger applied = new AtomicInteger();
      AtomicInteger aborted = new AtomicInteger();
      int operators = 4;
      int changesEach = 250;
      CountDownLatch operatorsDone = new CountDownLatch(operators);
      ExecutorService threads = Executors.newFixedThreadPool(operators + 1);
      List<Future<?>> work = new ArrayList<>();
      for (int t = 0; t < operators; t++) {
        work.add(threads.submit(() -> {
          try {
            for (int i = 0; i < changesEach; i++) {
              long expected = control.router().route("m").policy().getRevision();
              RoutingPolicy.Builder policy = RoutingPolicy.newBuilder().setModel("m").putWeights(1, 100);
              if (ThreadLocalRandom.current().nextBoolean()) {
                policy.putWeights(1, 90).putWeights(2, 10);
              }
              try {
                RoutingPolicy set = control.set(policy.build(), expected, "operator", "SetRouting", "race");
                // The change was based on the revision it names: never a stale one.
                assertThat(set.getRevision()).isEqualTo(expected + 1);
                assertThat(revisions.add(set.getRevision())).as("revision %d given twice", set.getRevision()).isTrue();
                applied.incrementAndGet();
              } catch (InferenceException e) {
                assertThat(e.code()).isEqualTo(ErrorCode.ABORTED);
                aborted.incrementAndGet();
              }
            }
          } finally {
            operatorsDone.countDown();
          }
          return null;
        }));
      }
      AtomicInteger rolloutActions = new AtomicInteger();
      work.add(threads.submit(() -> {
        RolloutSpec spec =
            RolloutSpec.newBuilder()
                .setModel("m").setBaseline(1).setCandidate(2).addSteps(50).addSteps(100).setIntervalS(1)
                .setThresholds(Thresholds.newBuilder().setMinSamples(1))
                .build();
        while (operatorsDone.getCount() > 0) {
          try {
            control.startRollout(spec, "racer");
            rolloutActions.incrementAndGet();
          } catch (InferenceException e) {
            assertThat(e.code()).isIn(ErrorCode.FAILED_PRECONDITION, ErrorCode.ABORTED);
          }
          clock.millis += 1_500;
          control.tick();
          try {
            control.abortRollout("m", "racer");
            rolloutActions.incrementAndGet();
          } catch (InferenceException e) {
            assertThat(e.code()).isIn(ErrorCode.FAILED_PRECONDITION, ErrorCode.ABORTED, ErrorCode.NOT_FOUND);
          }
        }
        return null;
      }));
      threads.shutdown();
      if (!threads.awaitTermination(120, TimeUnit.SECONDS)) {
        StringBuilder dump = new StringBuilder();
        for (ThreadInfo info : ManagementFactory.getThreadMXBean().dumpAllThreads(true, true)) {
          dump.append(info);
        }
        throw new AssertionError("no progress within 120 s: a deadlock?\n" + dump);
      }
      for (Future<?> f : work) {
        f.get();
      }
      assertThat(applied.get() + aborted.get()).isEqualTo(operators * changesEach);
      assertThat(applied.get()).isPositive();
      // No update lost: the final revision counts every change, the operators' and the rollouts'.
      long finalRevision = control.router().route("m").policy().getRevision();
      assertThat(finalRevision).isGreaterThanOrEqualTo(applied.get() + rolloutActions.get());
      assertThat(revisions).hasSize(applied.get());
      // And the state directory holds the final policy.
      assertThat(new StateStore(root.resolve(".state")).load().getPoliciesList())
          .anySatisfy(p -> assertThat(p.getRevision()).isEqualTo(finalRevision));
    }
  }
}

package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class ServerThreadsTest {
  @Test
  void twoReadings_sayHowMuchOfTheServersBusyTimeWentToWaitingForACore() {
    SimpleMeterRegistry registry = new SimpleMeterRegistry();
    assertThat(ServerThreads.read(registry)).as("a server that exports none").isNull();
    assertThat(ServerThreads.between(null, null)).startsWith("not counted");

    // Milliseconds, as the counters' state; the server exports seconds.
    AtomicLong loopCpu = new AtomicLong(1_000);
    AtomicLong loopWait = new AtomicLong(500);
    AtomicLong modelCpu = new AtomicLong(2_000);
    AtomicLong modelWait = new AtomicLong(0);
    counter(registry, "modelgate.threads.cpu", "event_loop", loopCpu);
    counter(registry, "modelgate.threads.run.queue.wait", "event_loop", loopWait);
    counter(registry, "modelgate.threads.cpu", "model", modelCpu);
    counter(registry, "modelgate.threads.run.queue.wait", "model", modelWait);
    AtomicLong gcCpu = new AtomicLong(9_000);
    for (String group : java.util.List.of("drift", "admin", "gc", "jit", "other")) {
      counter(registry, "modelgate.threads.cpu", group, group.equals("gc") ? gcCpu : new AtomicLong());
      counter(registry, "modelgate.threads.run.queue.wait", group, new AtomicLong());
    }

    ServerThreads before = ServerThreads.read(registry);
    loopCpu.addAndGet(3_000);
    loopWait.addAndGet(1_000);
    modelCpu.addAndGet(4_000);
    gcCpu.addAndGet(100);
    ServerThreads after = ServerThreads.read(registry);

    assertThat(ServerThreads.between(before, after)).isEqualTo(
        "event loop 3.00 s on a core, 1.00 s waiting for one (25% of its busy time); "
            + "model threads 4.00 s on a core, 0.00 s waiting for one (0% of its busy time)");
    // 100,000 calls over that span: 30 µs of the event loop's a call. Groups that did not run are left out.
    assertThat(ServerThreads.perCall(after.since(before), 100_000, 0)).isEqualTo(
        "event loop 30.0 µs (25% waiting), model 40.0 µs (0% waiting), gc 1.0 µs (0% waiting)");
    assertThat(ServerThreads.perCall(after.since(null), 100_000, 0)).startsWith("not counted");
    // Two runs' spans added: twice the time for twice the calls.
    assertThat(ServerThreads.perCall(after.since(before).plus(after.since(before)), 200_000, 0)).isEqualTo(
        "event loop 30.0 µs (25% waiting), model 40.0 µs (0% waiting), gc 1.0 µs (0% waiting)");
  }

  @Test
  void aLoadGeneratorInTheServersProcess_isTakenOutOfOther_andNamedApart() throws Exception {
    SimpleMeterRegistry registry = new SimpleMeterRegistry();
    AtomicLong otherCpu = new AtomicLong(0);
    for (String group : ServerThreads.GROUPS) {
      counter(registry, "modelgate.threads.cpu", group, group.equals("other") ? otherCpu : new AtomicLong());
      counter(registry, "modelgate.threads.run.queue.wait", group, new AtomicLong());
    }
    ServerThreads before = ServerThreads.read(registry);
    otherCpu.addAndGet(5_000); // 5 s, of which 4 s the load generator's
    ServerThreads spent = ServerThreads.read(registry).since(before);
    assertThat(ServerThreads.perCall(spent, 1_000_000, 4.0))
        .isEqualTo("other 1.0 µs (0% waiting); and the load generator in the same process 4.0 µs");
    // This very JVM: the test's threads are not the load generator's.
    assertThat(ServerThreads.loadGeneratorCpuSeconds()).isNotNegative();
    // A thread named as the load generator's: it works 5 ms of its own CPU, then waits, alive, to be counted.
    java.util.concurrent.CountDownLatch worked = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch counted = new java.util.concurrent.CountDownLatch(1);
    Thread client = new Thread(() -> {
      java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
      long until = mx.getCurrentThreadCpuTime() + 5_000_000L;
      while (mx.getCurrentThreadCpuTime() < until) {
        Thread.onSpinWait();
      }
      worked.countDown();
      try {
        counted.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }, "modelgate-bench-client-test");
    double beforeClient = ServerThreads.loadGeneratorCpuSeconds();
    client.start();
    worked.await();
    double afterClient = ServerThreads.loadGeneratorCpuSeconds();
    counted.countDown();
    client.join();
    assertThat(afterClient - beforeClient).isGreaterThanOrEqualTo(0.005);
  }

  @Test
  void aServerThatExportsOnlySomeGroups_isNotCounted() {
    SimpleMeterRegistry registry = new SimpleMeterRegistry();
    counter(registry, "modelgate.threads.cpu", "event_loop", new AtomicLong());
    counter(registry, "modelgate.threads.run.queue.wait", "event_loop", new AtomicLong());
    assertThat(ServerThreads.read(registry)).isNull();
  }

  private static void counter(SimpleMeterRegistry registry, String name, String threads, AtomicLong millis) {
    FunctionCounter.builder(name, millis, m -> m.get() / 1000.0).tag("threads", threads).register(registry);
  }
}

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
    counter(registry, "modelgate.threads.cpu", "gc", new AtomicLong(9_000));

    ServerThreads before = ServerThreads.read(registry);
    loopCpu.addAndGet(3_000);
    loopWait.addAndGet(1_000);
    modelCpu.addAndGet(4_000);
    ServerThreads after = ServerThreads.read(registry);

    assertThat(ServerThreads.between(before, after)).isEqualTo(
        "event loop 3.00 s on a core, 1.00 s waiting for one (25% of its busy time); "
            + "model threads 4.00 s on a core, 0.00 s waiting for one (0% of its busy time)");
  }

  private static void counter(SimpleMeterRegistry registry, String name, String threads, AtomicLong millis) {
    FunctionCounter.builder(name, millis, m -> m.get() / 1000.0).tag("threads", threads).register(registry);
  }
}

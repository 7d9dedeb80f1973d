package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class JitSettlingTest {
  /** A clock that a slice advances: each slice takes 1 s of wall time and compiles as told. */
  private static final class Clocks {
    final AtomicLong nanos = new AtomicLong();
    final AtomicLong compiling = new AtomicLong();
  }

  @Test
  void stopsAtTheFirstQuietSlice() throws InterruptedException {
    Clocks clocks = new Clocks();
    long[] compileMillisPerSlice = {900, 400, 100, 20, 0};
    AtomicInteger slices = new AtomicInteger();
    JitSettling.Outcome outcome = JitSettling.settle(() -> {
      clocks.compiling.addAndGet(compileMillisPerSlice[slices.getAndIncrement()]);
      clocks.nanos.addAndGet(1_000_000_000L);
    }, Duration.ofSeconds(60), 0.03, clocks.compiling::get, clocks.nanos::get);

    assertThat(outcome.settled()).isTrue();
    assertThat(outcome.slices()).isEqualTo(4);
    assertThat(outcome.lastBusy()).isEqualTo(0.02);
    assertThat(outcome.spent()).isEqualTo(Duration.ofSeconds(4));
    assertThat(outcome.describe(0.03)).contains("settled after 4 s", "busy 2.0%");
  }

  @Test
  void givesUpAtTheLimitAndSaysSo() throws InterruptedException {
    Clocks clocks = new Clocks();
    AtomicInteger slices = new AtomicInteger();
    JitSettling.Outcome outcome = JitSettling.settle(() -> {
      slices.incrementAndGet();
      clocks.compiling.addAndGet(500);
      clocks.nanos.addAndGet(2_000_000_000L);
    }, Duration.ofSeconds(5), 0.03, clocks.compiling::get, clocks.nanos::get);

    assertThat(outcome.settled()).isFalse();
    assertThat(slices.get()).isEqualTo(3);
    assertThat(outcome.lastBusy()).isEqualTo(0.25);
    assertThat(outcome.describe(0.03)).contains("NOT settled after 6 s");
  }

  @Test
  void aLimitOfZeroRunsNothing() throws InterruptedException {
    AtomicInteger slices = new AtomicInteger();
    JitSettling.Outcome outcome = JitSettling.settle(slices::incrementAndGet, Duration.ZERO, 0.03);

    assertThat(slices.get()).isZero();
    assertThat(outcome.settled()).isFalse();
  }
}

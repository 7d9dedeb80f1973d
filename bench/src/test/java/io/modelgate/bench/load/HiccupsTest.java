package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

class HiccupsTest {
  @Test
  void aSleepThatLastsLongerThanAsked_isRecordedAsHowLateItWoke() throws Exception {
    // The third sleep is held 30 ms instead of 1: the thread wakes at least 29 ms late once.
    AtomicInteger sleeps = new AtomicInteger();
    Histogram seen = new Histogram(3);
    long longestLooked = 0;
    try (Hiccups hiccups = new Hiccups(nanos -> {
      long hold = sleeps.incrementAndGet() == 3 ? TimeUnit.MILLISECONDS.toNanos(30) : nanos;
      long until = System.nanoTime() + hold;
      while (System.nanoTime() < until) {
        Thread.onSpinWait();
      }
    }, () -> null)) {
      while (seen.getTotalCount() < 5) {
        seen.add(hiccups.interval().late());
        longestLooked = Math.max(longestLooked, hiccups.takeLongest());
        Thread.sleep(10);
      }
      longestLooked = Math.max(longestLooked, hiccups.takeLongest());
    }
    assertThat(seen.getMaxValue()).isGreaterThanOrEqualTo(29_000);
    // The progress line's figure saw the same stall.
    assertThat(longestLooked).isGreaterThanOrEqualTo(29_000);
    // Lateness is a wake's own, not carried over: the wakes not held are recorded as less late.
    // (Not how little: on a busy machine a 1 ms busy wait is itself late by a millisecond or more
    // — a CI run's median was 1,054 µs — and a unit test does not time the machine.)
    assertThat(seen.getMinValue()).isLessThan(29_000);
  }

  @Test
  void aStall_recordsHowMuchOfItTheThreadWaitedForACore_andOnlyAStall() throws Exception {
    // The kernel's counter, faked: the third sleep is held 30 ms, of which it says 20 ms were spent
    // waiting for a core; the other sleeps add 1 ms of waiting each, which being no stall is not recorded.
    AtomicInteger sleeps = new AtomicInteger();
    java.util.concurrent.atomic.AtomicLong waitedNanos = new java.util.concurrent.atomic.AtomicLong(5_000_000);
    Histogram late = new Histogram(3);
    Histogram waiting = new Histogram(3);
    Hiccups measured;
    try (Hiccups hiccups = measured = new Hiccups(nanos -> {
      boolean stall = sleeps.incrementAndGet() == 3;
      long until = System.nanoTime() + (stall ? TimeUnit.MILLISECONDS.toNanos(30) : nanos);
      while (System.nanoTime() < until) {
        Thread.onSpinWait();
      }
      waitedNanos.addAndGet(stall ? 20_000_000 : 1_000_000);
    }, () -> waitedNanos::get)) {
      while (late.getTotalCount() < 5) {
        Hiccups.Interval interval = hiccups.interval();
        late.add(interval.late());
        waiting.add(interval.waitingForCore());
        Thread.sleep(10);
      }
    }
    // Closed, it records nothing more: the last interval completes both (a wake's lateness and its
    // waiting can fall on either side of an interval's end).
    Hiccups.Interval last = measured.interval();
    late.add(last.late());
    waiting.add(last.waitingForCore());
    assertThat(late.getMaxValue()).isGreaterThanOrEqualTo(29_000);
    // One waiting figure for each stall and none for the wakes on time. The faked stall is one; a busy
    // machine may preempt a 1 ms sleep past the stall line too, and that wake is a stall as well
    // (whose faked 1 ms of waiting is what it records).
    long stalls = late.getCountBetweenValues(Hiccups.STALL_MICROS, late.getMaxValue());
    assertThat(stalls).isPositive();
    assertThat(waiting.getTotalCount()).isEqualTo(stalls);
    assertThat(waiting.getMaxValue()).isBetween(19_900L, 20_100L);
    assertThat(waiting.getCountBetweenValues(0, 1_001)).isEqualTo(stalls - 1);
  }

  @Test
  void theKernelsCount_ofTheThreadsWaitsForACore_isReadFromSchedstat() {
    java.nio.ByteBuffer text = java.nio.ByteBuffer.wrap("4286757 1315069 16\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    assertThat(Hiccups.RunQueueWait.secondField(text, text.limit())).isEqualTo(1_315_069);
    assertThat(Hiccups.RunQueueWait.secondField(text, 8)).isEqualTo(-1);

    // On Linux with scheduler statistics (the CI machines), the real counter: read, and never going back.
    java.util.function.LongSupplier counter = Hiccups.RunQueueWait.open();
    org.junit.jupiter.api.Assumptions.assumeTrue(counter != null, "no /proc/thread-self/schedstat here");
    long first = counter.getAsLong();
    long second = counter.getAsLong();
    assertThat(first).isNotNegative();
    assertThat(second).isGreaterThanOrEqualTo(first);
  }
}

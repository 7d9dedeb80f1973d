package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.modelgate.gateway.server.ThreadScheduling.Group;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ThreadSchedulingTest {
  @TempDir Path tasks;
  private final AtomicLong clock = new AtomicLong();

  /** A thread in the fake task directory: its name as the kernel keeps it, ns on a core and waiting. */
  private void thread(long tid, String comm, long cpuNanos, long waitNanos) throws IOException {
    Path dir = Files.createDirectories(tasks.resolve(Long.toString(tid)));
    Files.writeString(dir.resolve("comm"), comm + "\n");
    Files.writeString(dir.resolve("schedstat"), cpuNanos + " " + waitNanos + " 42\n");
  }

  private void ended(long tid) throws IOException {
    Path dir = tasks.resolve(Long.toString(tid));
    Files.delete(dir.resolve("comm"));
    Files.delete(dir.resolve("schedstat"));
    Files.delete(dir);
  }

  private void later() {
    clock.addAndGet(ThreadScheduling.REFRESH_NANOS);
  }

  @Test
  void threadsAreSummedByWhatTheyDo_fromTheirNames() throws Exception {
    thread(101, "modelgate-io-2-", 3_000_000_000L, 1_000_000_000L);
    thread(102, "modelgate-io-2-", 1_000_000_000L, 500_000_000L);
    thread(103, "modelgate-model", 7_000_000_000L, 2_000_000_000L);
    thread(104, "GC Thread#0", 250_000_000L, 0);
    thread(105, "C2 CompilerThre", 4_000_000_000L, 1_000_000L);
    thread(106, "java", 10_000_000L, 0);
    ThreadScheduling threads = new ThreadScheduling(tasks, clock::get);

    assertThat(threads.cpuSeconds(Group.EVENT_LOOP)).isCloseTo(4.0, within(1e-9));
    assertThat(threads.waitSeconds(Group.EVENT_LOOP)).isCloseTo(1.5, within(1e-9));
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(7.0, within(1e-9));
    assertThat(threads.waitSeconds(Group.MODEL)).isCloseTo(2.0, within(1e-9));
    assertThat(threads.cpuSeconds(Group.GC)).isCloseTo(0.25, within(1e-9));
    assertThat(threads.cpuSeconds(Group.JIT)).isCloseTo(4.0, within(1e-9));
    assertThat(threads.cpuSeconds(Group.OTHER)).isCloseTo(0.01, within(1e-9));
    assertThat(threads.cpuSeconds(Group.DRIFT)).isZero();
  }

  @Test
  void theProcesssCpuThatNoThreadReadingSaw_isCountedInOther_andNeverGoesBack() throws Exception {
    thread(301, "modelgate-model", 2_000_000_000L, 0);
    thread(302, "java", 1_000_000_000L, 0);
    // The process ran 3.5 s: 0.5 s in threads no reading saw (one that opened a session and ended).
    AtomicLong process = new AtomicLong(3_500_000_000L);
    ThreadScheduling threads = new ThreadScheduling(tasks, clock::get, process::get);
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(2.0, within(1e-9));
    assertThat(threads.cpuSeconds(Group.OTHER)).isCloseTo(1.5, within(1e-9));

    // A reading whose process figure ran ahead of the threads' (read after them) and one that did
    // not: what was counted stays counted.
    later();
    thread(301, "modelgate-model", 2_600_000_000L, 0);
    process.set(4_200_000_000L);
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(2.6, within(1e-9));
    assertThat(threads.cpuSeconds(Group.OTHER)).isCloseTo(1.6, within(1e-9));
    later();
    thread(301, "modelgate-model", 2_700_000_000L, 0);
    process.set(4_200_000_000L);
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(2.7, within(1e-9));
    assertThat(threads.cpuSeconds(Group.OTHER)).isCloseTo(1.6, within(1e-9));
    // Waits are the threads' own: nothing is added to them.
    assertThat(threads.waitSeconds(Group.OTHER)).isZero();
  }

  @Test
  void aThreadThatEnds_keepsItsFiguresInItsGroup_soTheCountersNeverGoBack() throws Exception {
    thread(201, "modelgate-model", 2_000_000_000L, 1_000_000_000L);
    thread(202, "modelgate-model", 1_000_000_000L, 0);
    ThreadScheduling threads = new ThreadScheduling(tasks, clock::get);
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(3.0, within(1e-9));

    // A version unloaded: its executor's thread ends after a last second on a core; another starts.
    thread(202, "modelgate-model", 2_000_000_000L, 0);
    later();
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(4.0, within(1e-9));
    ended(202);
    thread(203, "modelgate-model", 500_000_000L, 250_000_000L);
    later();
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(4.5, within(1e-9));
    assertThat(threads.waitSeconds(Group.MODEL)).isCloseTo(1.25, within(1e-9));
  }

  @Test
  void aThreadIdGivenAgain_toAThreadThatDoesOtherWork_isANewThread() throws Exception {
    thread(301, "modelgate-drift", 5_000_000_000L, 1_000_000_000L);
    ThreadScheduling threads = new ThreadScheduling(tasks, clock::get);
    assertThat(threads.cpuSeconds(Group.DRIFT)).isCloseTo(5.0, within(1e-9));

    // The same id, now an event loop's thread, and a model thread's id with figures that went back.
    thread(301, "modelgate-io-3-", 100_000_000L, 0);
    thread(302, "modelgate-model", 9_000_000_000L, 0);
    later();
    threads.cpuSeconds(Group.MODEL);
    thread(302, "modelgate-model", 1_000_000_000L, 0);
    later();
    assertThat(threads.cpuSeconds(Group.DRIFT)).isCloseTo(5.0, within(1e-9));
    assertThat(threads.cpuSeconds(Group.EVENT_LOOP)).isCloseTo(0.1, within(1e-9));
    assertThat(threads.cpuSeconds(Group.MODEL)).isCloseTo(10.0, within(1e-9));
  }

  @Test
  void aThreadThatRenamesItself_staysInItsGroup_andIsNotCountedTwice() throws Exception {
    thread(501, "java", 2_000_000_000L, 100_000_000L);
    ThreadScheduling threads = new ThreadScheduling(tasks, clock::get);
    assertThat(threads.cpuSeconds(Group.OTHER)).isCloseTo(2.0, within(1e-9));

    thread(501, "modelgate-model", 3_000_000_000L, 100_000_000L);
    later();
    assertThat(threads.cpuSeconds(Group.OTHER)).isCloseTo(3.0, within(1e-9));
    assertThat(threads.cpuSeconds(Group.MODEL)).isZero();
  }

  @Test
  void oneReadingServesEveryCounter_untilItIsOld() throws Exception {
    thread(401, "modelgate-io-2-", 1_000_000_000L, 0);
    ThreadScheduling threads = new ThreadScheduling(tasks, clock::get);
    assertThat(threads.cpuSeconds(Group.EVENT_LOOP)).isCloseTo(1.0, within(1e-9));

    thread(401, "modelgate-io-2-", 2_000_000_000L, 0);
    clock.addAndGet(ThreadScheduling.REFRESH_NANOS - 1);
    assertThat(threads.cpuSeconds(Group.EVENT_LOOP)).as("the same scrape").isCloseTo(1.0, within(1e-9));
    clock.addAndGet(1);
    assertThat(threads.cpuSeconds(Group.EVENT_LOOP)).isCloseTo(2.0, within(1e-9));
  }

  @Test
  void threadNames_asTheKernelKeepsThem_nameTheirGroups() {
    assertThat(Group.of("modelgate-io-accept".substring(0, 15))).isEqualTo(Group.EVENT_LOOP);
    assertThat(Group.of("modelgate-model-cnn_mnist-1-batcher".substring(0, 15))).isEqualTo(Group.MODEL);
    assertThat(Group.of("modelgate-drift")).isEqualTo(Group.DRIFT);
    assertThat(Group.of("modelgate-admin-7-1")).isEqualTo(Group.ADMIN);
    assertThat(Group.of("G1 Conc#0")).isEqualTo(Group.GC);
    assertThat(Group.of("ZWorker#1")).isEqualTo(Group.GC);
    assertThat(Group.of("C1 CompilerThre")).isEqualTo(Group.JIT);
    assertThat(Group.of("modelgate-http")).isEqualTo(Group.OTHER);
    assertThat(Group.of("java")).isEqualTo(Group.OTHER);
  }

  @Test
  void thisProcess_onLinux_countsItsOwnThreads() {
    ThreadScheduling threads = ThreadScheduling.ofThisProcess();
    org.junit.jupiter.api.Assumptions.assumeTrue(threads != null, "no scheduler statistics here");
    // A thread that starts, works and ends before the reading: no reading sees it, yet its CPU
    // time is counted (in other), so the groups add up to at least the process's CPU time before.
    Thread shortLived = new Thread(() -> {
      long until = System.nanoTime() + 300_000_000L;
      while (System.nanoTime() < until) {
        Thread.onSpinWait();
      }
    }, "short-lived");
    shortLived.start();
    try {
      shortLived.join();
    } catch (InterruptedException e) {
      throw new AssertionError(e);
    }
    long processBefore = ((com.sun.management.OperatingSystemMXBean)
        java.lang.management.ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    double cpu = 0;
    for (Group group : Group.values()) {
      cpu += threads.cpuSeconds(group);
    }
    assertThat(cpu).isPositive();
    // Within a microsecond: the groups' seconds are a sum of doubles (a CI run's was
    // 9.329999999999998e9 ns against 9.33e9).
    assertThat(cpu * 1e9).isGreaterThanOrEqualTo(processBefore - 1_000.0);
  }
}

package io.modelgate.runtime.threads;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class DaemonThreadsTest {

  @Test
  void aPeriodicTaskThatThrows_runsAgainAtItsNextTurn_bothKindsOfSchedule() throws Exception {
    ScheduledExecutorService scheduler = DaemonThreads.scheduled("modelgate-test-periodic");
    try {
      for (boolean fixedRate : new boolean[] {true, false}) {
        AtomicInteger runs = new AtomicInteger();
        CountDownLatch thirdRun = new CountDownLatch(1);
        Runnable throwingTwice = () -> {
          int run = runs.incrementAndGet();
          if (run == 1) {
            throw new IllegalStateException("first run fails");
          }
          if (run == 2) {
            throw new AssertionError("an Error other than the JVM's own is kept through too");
          }
          thirdRun.countDown();
        };
        ScheduledFuture<?> task = fixedRate
            ? scheduler.scheduleAtFixedRate(throwingTwice, 0, 1, TimeUnit.MILLISECONDS)
            : scheduler.scheduleWithFixedDelay(throwingTwice, 0, 1, TimeUnit.MILLISECONDS);
        assertThat(thirdRun.await(30, TimeUnit.SECONDS)).as("ran a third time (fixed rate: %s)", fixedRate).isTrue();
        assertThat(task.isDone()).isFalse();
        task.cancel(false);
      }
    } finally {
      scheduler.shutdownNow();
    }
  }

  @Test
  void aTaskRunOnceThatThrows_isCounted_butASubmittedOnesFutureStillTells() throws Exception {
    ScheduledExecutorService scheduler = DaemonThreads.scheduled("modelgate-test-once");
    try {
      long before = DaemonThreads.failures("modelgate-test-once");
      scheduler.execute(() -> {
        throw new IllegalStateException("executed, and nothing reads a future");
      });
      Runnable once = () -> {
        throw new IllegalStateException("scheduled once");
      };
      ScheduledFuture<?> scheduled = scheduler.schedule(once, 1, TimeUnit.MILLISECONDS);
      scheduled.get(30, TimeUnit.SECONDS); // logged and counted, not kept in the future
      Runnable submittedTask = () -> {
        throw new IllegalStateException("submitted: the caller's future tells");
      };
      java.util.concurrent.Future<?> submitted = scheduler.submit(submittedTask);
      assertThatThrownBy(() -> submitted.get(30, TimeUnit.SECONDS)).hasCauseInstanceOf(IllegalStateException.class);
      assertThatThrownBy(() -> scheduler.submit(submittedTask, "result").get(30, TimeUnit.SECONDS))
          .hasCauseInstanceOf(IllegalStateException.class);
      assertThat(scheduler.submit(() -> {}, "result").get(30, TimeUnit.SECONDS)).isEqualTo("result");
      // One thread, in order: the executed task ran before the last submitted one.
      assertThat(DaemonThreads.failures("modelgate-test-once") - before).isEqualTo(2);
    } finally {
      scheduler.shutdownNow();
    }
  }

  @Test
  void aPlainScheduler_wouldHaveEndedThatTaskForGood() throws Exception {
    // What the wrapper guards against, shown on the JDK's own executor: the test above fails
    // without it in the same way.
    ScheduledThreadPoolExecutor plain = new ScheduledThreadPoolExecutor(1, DaemonThreads.named("modelgate-test-plain"));
    try {
      ScheduledFuture<?> task = plain.scheduleWithFixedDelay(() -> {
        throw new IllegalStateException("first run fails");
      }, 0, 1, TimeUnit.MILLISECONDS);
      assertThatThrownBy(() -> task.get(30, TimeUnit.SECONDS)).hasCauseInstanceOf(IllegalStateException.class);
      assertThat(task.isDone()).isTrue();
    } finally {
      plain.shutdownNow();
    }
  }

  @Test
  void theJvmsOwnErrors_stillEndATask_othersAreCountedEachTime() {
    DaemonThreads.Job failures = new DaemonThreads.Job();
    Runnable kept = DaemonThreads.kept(() -> {
      throw new OutOfMemoryError("test");
    }, failures);
    assertThatThrownBy(kept::run).isInstanceOf(OutOfMemoryError.class);
    Runnable logged = DaemonThreads.kept(() -> {
      throw new IllegalArgumentException("logged (the first), not thrown");
    }, failures);
    for (int i = 0; i < 5; i++) {
      logged.run();
    }
    assertThat(failures.failures.sum()).isEqualTo(5);
  }

  @Test
  void failures_areCountedPerJob_aPeriodicTasksAndAThreadsEnd_fromZero() throws Exception {
    List<String> told = new java.util.concurrent.CopyOnWriteArrayList<>();
    DaemonThreads.Watching watching = DaemonThreads.onJobs(told::add);
    try {
      ScheduledExecutorService scheduler = DaemonThreads.scheduled("modelgate-test-counted");
      assertThat(told).contains("modelgate-test-counted");
      assertThat(DaemonThreads.failures("modelgate-test-counted")).isZero();
      try {
        CountDownLatch thirdRun = new CountDownLatch(3);
        scheduler.scheduleWithFixedDelay(() -> {
          thirdRun.countDown();
          throw new IllegalStateException("fails every time");
        }, 0, 1, TimeUnit.MILLISECONDS);
        assertThat(thirdRun.await(30, TimeUnit.SECONDS)).isTrue();
      } finally {
        scheduler.shutdownNow();
        scheduler.awaitTermination(30, TimeUnit.SECONDS);
      }
      assertThat(DaemonThreads.failures("modelgate-test-counted")).isGreaterThanOrEqualTo(2);

      Thread ended = DaemonThreads.thread("modelgate-test-ended-7", () -> {
        throw new IllegalStateException("nothing catches this");
      });
      assertThat(told).contains("modelgate-test-ended");
      ended.start();
      ended.join();
      assertThat(DaemonThreads.failures("modelgate-test-ended")).isEqualTo(1);
    } finally {
      watching.close();
    }
    // Closed: not told any more.
    DaemonThreads.thread("modelgate-test-after-close", () -> {});
    assertThat(told).doesNotContain("modelgate-test-after-close");
    // Known before: told at once to a new watcher, each once.
    List<String> late = new ArrayList<>();
    DaemonThreads.onJobs(late::add).close();
    assertThat(late).contains("modelgate-test-counted", "modelgate-test-after-close").doesNotHaveDuplicates();
  }

  @Test
  void jobs_foldAVersionsThreadsAndNumbers() {
    assertThat(DaemonThreads.job("modelgate-model-cnn_mnist-version-2-batcher")).isEqualTo("modelgate-model");
    assertThat(DaemonThreads.job("modelgate-model-m-1-version-3-exec-2")).isEqualTo("modelgate-model");
    assertThat(DaemonThreads.job("modelgate-load-12")).isEqualTo("modelgate-load");
    assertThat(DaemonThreads.job("modelgate-stats-rotator")).isEqualTo("modelgate-stats-rotator");
    assertThat(DaemonThreads.job("modelgate-watch-tls-certificate")).isEqualTo("modelgate-watch-tls-certificate");
    assertThat(DaemonThreads.job("worker2")).isEqualTo("worker2");
    assertThat(DaemonThreads.job("-1")).isEqualTo("-1");
  }

  @Test
  void cancelledTasks_leaveTheQueueAtOnce() {
    ScheduledExecutorService scheduler = DaemonThreads.scheduled("modelgate-test-cancel");
    try {
      List<ScheduledFuture<?>> tasks = new ArrayList<>();
      for (int i = 0; i < 100; i++) {
        tasks.add(scheduler.scheduleAtFixedRate(() -> {}, 1, 1, TimeUnit.HOURS));
      }
      assertThat(((ScheduledThreadPoolExecutor) scheduler).getQueue()).hasSize(100);
      tasks.forEach(task -> task.cancel(false));
      assertThat(((ScheduledThreadPoolExecutor) scheduler).getQueue()).isEmpty();
    } finally {
      scheduler.shutdownNow();
    }
  }

  @Test
  void threads_areDaemonsNamedAsAsked_andLogWhatEndsThem() throws Exception {
    Thread thread = DaemonThreads.thread("modelgate-test-one", () -> {});
    assertThat(thread.isDaemon()).isTrue();
    assertThat(thread.getName()).isEqualTo("modelgate-test-one");
    assertThat(thread.getUncaughtExceptionHandler()).isNotSameAs(thread.getThreadGroup());

    ThreadFactory numbered = DaemonThreads.numbered("modelgate-test-load");
    assertThat(numbered.newThread(() -> {}).getName()).isEqualTo("modelgate-test-load-1");
    assertThat(numbered.newThread(() -> {}).getName()).isEqualTo("modelgate-test-load-2");
    assertThat(DaemonThreads.named("modelgate-test-same").newThread(() -> {}).getName()).isEqualTo("modelgate-test-same");

    AtomicReference<String> ranOn = new AtomicReference<>();
    ExecutorService single = DaemonThreads.single("modelgate-test-single");
    try {
      single.submit(() -> ranOn.set(Thread.currentThread().getName() + " daemon=" + Thread.currentThread().isDaemon()))
          .get(30, TimeUnit.SECONDS);
    } finally {
      single.shutdownNow();
    }
    assertThat(ranOn.get()).isEqualTo("modelgate-test-single daemon=true");
  }

  @Test
  void aBoundedSingle_refusesATaskBeyondItsQueue() throws Exception {
    ExecutorService single = DaemonThreads.single("modelgate-test-bounded", 1);
    CountDownLatch release = new CountDownLatch(1);
    CountDownLatch running = new CountDownLatch(1);
    try {
      single.execute(() -> {
        running.countDown();
        try {
          release.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      });
      assertThat(running.await(30, TimeUnit.SECONDS)).isTrue();
      single.execute(() -> {});
      assertThatThrownBy(() -> single.execute(() -> {})).isInstanceOf(RejectedExecutionException.class);
    } finally {
      release.countDown();
      single.shutdownNow();
    }
  }
}

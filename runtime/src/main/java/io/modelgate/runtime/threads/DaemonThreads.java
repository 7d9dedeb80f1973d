package io.modelgate.runtime.threads;

import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one way the server makes its background threads: daemon threads (they never keep a stopping
 * JVM alive; each owner stops its own on close), named {@code modelgate-<job>} so that a thread
 * dump says what each does, and never dying in silence.
 *
 * <ul>
 *   <li>A thread ended by a throwable nothing caught logs it at error with the thread's name.
 *   <li>A periodic task of a {@link #scheduled} executor that throws is logged and runs again at its
 *       next turn: a plain {@link ScheduledExecutorService} cancels it for good at the first
 *       throw, so that one unexpected exception would silently end a poll, a probe or a rotation
 *       for the life of the server. Only a {@link VirtualMachineError} (out of memory, say) ends
 *       it, as it ends everything else.
 *   <li>Cancelled tasks leave the scheduled executor's queue at once rather than at their time, so
 *       a task scheduled and cancelled per call (a watch) holds nothing after it.
 * </ul>
 *
 * <p>Threads: every method may be called from any thread; what they return is the caller's to
 * start (threads) or shut down (executors).
 */
public final class DaemonThreads {
  private static final Logger log = LoggerFactory.getLogger(DaemonThreads.class);

  private static final Thread.UncaughtExceptionHandler LOG_UNCAUGHT =
      (thread, t) -> log.error("thread {} ended by {}", thread.getName(), t.toString(), t);

  private DaemonThreads() {}

  /** Makes daemon threads all named {@code name}: for an executor of one thread. */
  public static ThreadFactory named(String name) {
    Objects.requireNonNull(name, "name");
    return body -> thread(name, body);
  }

  /** Makes daemon threads named {@code prefix-1}, {@code prefix-2}, ... in the order made. */
  public static ThreadFactory numbered(String prefix) {
    Objects.requireNonNull(prefix, "prefix");
    AtomicInteger made = new AtomicInteger();
    return body -> thread(prefix + "-" + made.incrementAndGet(), body);
  }

  /** A daemon thread, not yet started, that runs {@code body} and logs what it throws. */
  public static Thread thread(String name, Runnable body) {
    Thread thread = new Thread(body, name);
    thread.setDaemon(true);
    thread.setUncaughtExceptionHandler(LOG_UNCAUGHT);
    return thread;
  }

  /**
   * An executor of one daemon thread named {@code name}, its periodic tasks kept through what they
   * throw (above). Tasks run one at a time in the order of their times.
   */
  public static ScheduledExecutorService scheduled(String name) {
    return new KeepingScheduler(named(name));
  }

  /** An executor of one daemon thread named {@code name}, tasks queued without bound in order. */
  public static ExecutorService single(String name) {
    return new ThreadPoolExecutor(1, 1, 0, TimeUnit.MILLISECONDS, new LinkedBlockingQueue<>(), named(name));
  }

  /**
   * An executor of one daemon thread named {@code name} that holds at most {@code queued} tasks
   * waiting; one more is refused with {@link java.util.concurrent.RejectedExecutionException}.
   */
  public static ExecutorService single(String name, int queued) {
    return new ThreadPoolExecutor(1, 1, 0, TimeUnit.MILLISECONDS, new java.util.concurrent.ArrayBlockingQueue<>(queued),
        named(name));
  }

  /** Runs {@code task}; logs what it throws, unless the JVM itself is failing. */
  static Runnable kept(Runnable task) {
    Objects.requireNonNull(task, "task");
    return () -> {
      try {
        task.run();
      } catch (VirtualMachineError e) {
        throw e;
      } catch (Throwable t) {
        log.error("a periodic task on {} failed; it runs again at its next turn", Thread.currentThread().getName(), t);
      }
    };
  }

  /** One thread; periodic tasks wrapped by {@link #kept}; cancelled tasks removed at once. */
  private static final class KeepingScheduler extends ScheduledThreadPoolExecutor {
    KeepingScheduler(ThreadFactory threads) {
      super(1, threads);
      setRemoveOnCancelPolicy(true);
    }

    @Override
    public ScheduledFuture<?> scheduleAtFixedRate(Runnable task, long initialDelay, long period, TimeUnit unit) {
      return super.scheduleAtFixedRate(kept(task), initialDelay, period, unit);
    }

    @Override
    public ScheduledFuture<?> scheduleWithFixedDelay(Runnable task, long initialDelay, long delay, TimeUnit unit) {
      return super.scheduleWithFixedDelay(kept(task), initialDelay, delay, unit);
    }
  }
}

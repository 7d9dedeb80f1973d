package io.modelgate.runtime.threads;

import io.modelgate.runtime.logging.LogThrottle;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;
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
 *   <li>A task handed to such an executor's {@code execute} or {@code schedule(Runnable, ...)}
 *       that throws is logged too: Java's scheduler keeps the throwable in a future no one reads
 *       (a watch's delivery, a timer that sets a log level back). {@code submit} leaves it to the
 *       future the caller holds, as ever.
 *   <li>Cancelled tasks leave the scheduled executor's queue at once rather than at their time, so
 *       a task scheduled and cancelled per call (a watch) holds nothing after it.
 * </ul>
 *
 * <p>Failures are counted per <em>job</em>, a thread's name folded so that there are few: every
 * {@code modelgate-model-...} thread (a version's batcher, executors and opener) is {@code
 * modelgate-model}, and a trailing {@code -N} goes ({@code modelgate-load-2} is {@code
 * modelgate-load}); past {@link #MOST_JOBS} names, {@code other}. A job is known, with none counted,
 * from when its first thread or executor is made, so that a counter exported for it starts at 0 and
 * its first failure shows as an increase ({@link #onJobs}). A job's tasks' failures are logged at
 * most once a minute, saying how many were held back (a task that schedules itself again, as the
 * repository poll does, is a new task each time).
 *
 * <p>Threads: every method may be called from any thread; what they return is the caller's to
 * start (threads) or shut down (executors). The counts are the process's, as the JVM's own meters.
 */
public final class DaemonThreads {
  private static final Logger log = LoggerFactory.getLogger(DaemonThreads.class);

  /** The most jobs counted apart; later ones count as {@code other}. */
  static final int MOST_JOBS = 64;
  static final String OTHER = "other";
  private static final java.time.Duration LOG_EVERY = java.time.Duration.ofMinutes(1);

  /** Failures per job; written by any thread, bounded by {@link #MOST_JOBS} + 1. */
  private static final ConcurrentHashMap<String, Job> FAILURES = new ConcurrentHashMap<>();
  private static final CopyOnWriteArrayList<Consumer<String>> WATCHERS = new CopyOnWriteArrayList<>();

  private static final Thread.UncaughtExceptionHandler LOG_UNCAUGHT = (thread, t) -> {
    jobOf(job(thread.getName())).failures.increment();
    log.error("thread {} ended by {}", thread.getName(), t.toString(), t);
  };

  private DaemonThreads() {}

  /** The job a thread named {@code threadName} counts under (see the class). */
  public static String job(String threadName) {
    if (threadName.startsWith("modelgate-model-")) {
      return "modelgate-model";
    }
    int end = threadName.length();
    while (end > 0 && Character.isDigit(threadName.charAt(end - 1))) {
      end--;
    }
    return end < threadName.length() && end > 1 && threadName.charAt(end - 1) == '-'
        ? threadName.substring(0, end - 1) : threadName;
  }

  /** Failures counted for {@code job} so far in this process: periodic tasks that threw, threads ended by a throwable. */
  public static long failures(String job) {
    Job known = FAILURES.get(job);
    return known == null ? 0 : known.failures.sum();
  }

  /**
   * Tells {@code each} every job known now and, until the returned handle is closed, every job
   * made later, once each, on the thread that makes it: for a registry to export a counter per job
   * ({@link #failures}).
   */
  public static Watching onJobs(Consumer<String> each) {
    Objects.requireNonNull(each, "each");
    WATCHERS.add(each);
    FAILURES.keySet().forEach(each);
    return () -> WATCHERS.remove(each);
  }

  /** A watcher of jobs made, until closed. */
  public interface Watching extends AutoCloseable {
    @Override
    void close();
  }

  /** The count of {@code job}, made (and told to the watchers) the first time. */
  private static Job jobOf(String job) {
    Job known = FAILURES.get(job);
    if (known != null) {
      return known;
    }
    String kept = FAILURES.size() < MOST_JOBS ? job : OTHER;
    Job made = new Job();
    Job was = FAILURES.putIfAbsent(kept, made);
    if (was != null) {
      return was;
    }
    for (Consumer<String> watcher : WATCHERS) {
      watcher.accept(kept);
    }
    return made;
  }

  /** Makes daemon threads all named {@code name}: for an executor of one thread. */
  public static ThreadFactory named(String name) {
    jobOf(job(Objects.requireNonNull(name, "name")));
    return body -> thread(name, body);
  }

  /** Makes daemon threads named {@code prefix-1}, {@code prefix-2}, ... in the order made. */
  public static ThreadFactory numbered(String prefix) {
    jobOf(job(Objects.requireNonNull(prefix, "prefix")));
    AtomicInteger made = new AtomicInteger();
    return body -> thread(prefix + "-" + made.incrementAndGet(), body);
  }

  /** A daemon thread, not yet started, that runs {@code body} and logs what it throws. */
  public static Thread thread(String name, Runnable body) {
    jobOf(job(name));
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
    return new KeepingScheduler(named(name), jobOf(job(name)));
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

  /**
   * Runs {@code task}; counts what it throws in {@code job} and logs it (the job's first at once,
   * then at most once a minute, whichever of its tasks threw: a task that schedules itself again
   * is a new task each time), unless the JVM itself is failing. A periodic task runs again at its
   * next turn; one run once ends either way.
   */
  static Runnable kept(Runnable task, Job job) {
    Objects.requireNonNull(task, "task");
    return () -> {
      try {
        task.run();
      } catch (VirtualMachineError e) {
        throw e;
      } catch (Throwable t) {
        long held = job.failed();
        if (held >= 0) {
          log.error("a task on {} failed{}; a periodic one runs again at its next turn (said once a minute)",
              Thread.currentThread().getName(), LogThrottle.since(held), t);
        }
      }
    };
  }

  /** One job's failures: counted, and told at most once a minute. Any thread; lock-free. */
  static final class Job {
    final LongAdder failures = new LongAdder();
    private final LogThrottle told = new LogThrottle(LOG_EVERY);

    /** Counts one; how many were held back since the last told when this one is to be told, else -1. */
    long failed() {
      failures.increment();
      return told.pass();
    }
  }

  /**
   * One thread; periodic tasks wrapped by {@link #kept}, and so are tasks handed to {@code execute}
   * or {@code schedule(Runnable, ...)}, whose throwable Java's scheduler would keep in a future no
   * one reads (a task given to {@code submit}, or a {@code Callable}, leaves its throwable to the
   * future the caller holds); cancelled tasks removed at once.
   */
  private static final class KeepingScheduler extends ScheduledThreadPoolExecutor {
    private final Job job;

    KeepingScheduler(ThreadFactory threads, Job job) {
      super(1, threads);
      this.job = job;
      setRemoveOnCancelPolicy(true);
    }

    @Override
    public ScheduledFuture<?> scheduleAtFixedRate(Runnable task, long initialDelay, long period, TimeUnit unit) {
      return super.scheduleAtFixedRate(kept(task, job), initialDelay, period, unit);
    }

    @Override
    public ScheduledFuture<?> scheduleWithFixedDelay(Runnable task, long initialDelay, long delay, TimeUnit unit) {
      return super.scheduleWithFixedDelay(kept(task, job), initialDelay, delay, unit);
    }

    @Override
    public ScheduledFuture<?> schedule(Runnable task, long delay, TimeUnit unit) {
      return super.schedule(kept(task, job), delay, unit);
    }

    @Override
    public void execute(Runnable task) {
      super.schedule(kept(task, job), 0, TimeUnit.NANOSECONDS);
    }

    // The JDK's submit(Runnable) is schedule(Runnable): kept unwrapped, its future tells.
    @Override
    public java.util.concurrent.Future<?> submit(Runnable task) {
      return super.schedule(java.util.concurrent.Executors.callable(task), 0, TimeUnit.NANOSECONDS);
    }

    @Override
    public <T> java.util.concurrent.Future<T> submit(Runnable task, T result) {
      return super.schedule(java.util.concurrent.Executors.callable(task, result), 0, TimeUnit.NANOSECONDS);
    }
  }
}

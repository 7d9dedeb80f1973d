package io.modelgate.runtime.execution;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.threads.DaemonThreads;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A version's executors: {@code instances} {@link BatchExecutor}s, each with one reusable {@link
 * Batch}, and what running a batch means — execute it, answer whatever the executor left
 * unanswered, record its queue and compute times.
 *
 * <p>Threads: with several instances, each executor has its own thread; the batcher takes an idle
 * one ({@link #awaitIdle}), fills its batch and hands it over ({@link #hand}); the executor returns
 * itself to the idle queue when the batch is done. The blocking-queue transfers order the batch's
 * writes before its reads. With a single instance there is no executor thread: the batcher runs
 * each batch itself ({@link #runInline}), which saves a hand-off and a wake-up per batch; with
 * several, the batcher may run a batch on an idle executor itself ({@link #runHere}).
 */
final class ExecutorPool {
  private static final Logger log = LoggerFactory.getLogger(ExecutorPool.class);

  private final String name;
  private final StageRecorder recorder;
  private final BlockingQueue<Worker> idle;
  private final List<Worker> workers;
  private final boolean inline;
  private final Runnable onIdle;
  /** Executors running a batch handed without the reservation's restriction. */
  private final AtomicInteger unrestricted = new AtomicInteger();

  /**
   * @param name the version, for messages
   * @param threadPrefix names the executor threads
   * @param executors called {@code instances} times, once per executor
   * @param onIdle called on an executor's thread each time it has become idle after a batch handed
   *     unrestricted ({@link #hand})
   */
  ExecutorPool(
      String name,
      String threadPrefix,
      int instances,
      int batchCapacity,
      Supplier<? extends BatchExecutor> executors,
      StageRecorder recorder,
      Runnable onIdle) {
    this.name = Objects.requireNonNull(name, "name");
    this.recorder = Objects.requireNonNull(recorder, "recorder");
    this.onIdle = Objects.requireNonNull(onIdle, "onIdle");
    this.idle = new ArrayBlockingQueue<>(instances);
    this.workers = new ArrayList<>(instances);
    for (int i = 0; i < instances; i++) {
      Worker worker =
          new Worker(executors.get(), new Batch(batchCapacity), threadPrefix + "-exec-" + i);
      workers.add(worker);
      idle.add(worker);
    }
    this.inline = instances == 1;
  }

  /** Whether the batcher runs the batches itself (one instance, no executor thread). */
  boolean inline() {
    return inline;
  }

  /**
   * The executors' recent service time per request, all of them working: each executor's smoothed
   * time per request ({@link Worker#nanosPerRequest}), or the time per request its running batch
   * has taken so far when that is longer, taken as a rate, the rates added; 0 before any batch has
   * run. Any thread: a few volatile reads per executor, no allocation.
   */
  long nanosPerRequest() {
    double perNano = 0;
    long now = 0;
    for (int i = 0; i < workers.size(); i++) {
      Worker worker = workers.get(i);
      long since = worker.runningSince;
      now = since != 0 && now == 0 ? System.nanoTime() : now;
      perNano += rate(worker.nanosPerRequest, since, worker.runningRequests, now);
    }
    return perNano == 0 ? 0 : Math.max(1, (long) (1 / perNano));
  }

  /**
   * The recent service time per request of a lane with a backlog: what {@code backlogExecutors}
   * executors take, each at the mean rate of the batches that could hold a backlog (handed
   * unrestricted, {@link Worker#backlogNanosPerRequest}; a running one counted as in {@link
   * #nanosPerRequest}). With executors reserved, a backlog is served by the others only, so the
   * whole pool's pace would promise it too much. {@link #nanosPerRequest} before any such batch.
   * Any thread: a few volatile reads per executor, no allocation.
   *
   * @param backlogExecutors the executors that may run a backlog's batches at once
   */
  long backlogNanosPerRequest(int backlogExecutors) {
    double perNano = 0;
    int measured = 0;
    long now = 0;
    for (int i = 0; i < workers.size(); i++) {
      Worker worker = workers.get(i);
      long since = worker.runningBacklog ? worker.runningSince : 0;
      now = since != 0 && now == 0 ? System.nanoTime() : now;
      double rate = rate(worker.backlogNanosPerRequest, since, worker.runningRequests, now);
      if (rate > 0) {
        perNano += rate;
        measured++;
      }
    }
    return measured == 0 ? nanosPerRequest() : Math.max(1, (long) (measured / (perNano * backlogExecutors)));
  }

  /**
   * One executor's rate, requests per ns: from its smoothed {@code pace}, or from the batch running
   * since {@code since} (0: none) when that has taken longer per request; 0 when neither is known.
   */
  private static double rate(long pace, long since, int runningRequests, long now) {
    long t = pace;
    if (since != 0) {
      // A batch running longer than the pace says (a slow or stuck model) slows the pace now.
      t = Math.max(t, (now - since) / Math.max(1, runningRequests));
    }
    return t > 0 ? 1.0 / t : 0;
  }

  /**
   * The next smoothed time per request after a batch that took {@code sample} ns a request: an
   * exponentially weighted mean, each batch weighing {@code 1 / }{@value #SMOOTHING}; the first
   * sample is taken whole.
   */
  static long smoothed(long previous, long sample) {
    return previous <= 0 ? Math.max(1, sample) : Math.max(1, previous + (sample - previous) / SMOOTHING);
  }

  /** Batches over which {@link #smoothed} averages, roughly. */
  static final int SMOOTHING = 8;

  /** Starts the executor threads (none when inline). */
  void start() {
    if (!inline) {
      for (Worker worker : workers) {
        worker.thread.start();
      }
    }
  }

  /** Waits for an idle executor; the batcher fills its {@link Worker#batch} and calls {@link #hand}. */
  Worker awaitIdle() throws InterruptedException {
    return idle.take();
  }

  /**
   * Executors running a batch that was handed unrestricted: one that may hold requests of a lane
   * with a backlog. Any thread.
   */
  int runningUnrestricted() {
    return unrestricted.get();
  }

  /** Gives back an executor taken by {@link #awaitIdle} without running anything. */
  void putBack(Worker worker) {
    idle.add(worker);
  }

  /**
   * Hands the executor its filled batch; it runs on the executor's thread.
   *
   * @param restricted whether the batch was formed for a reserved executor (lanes without a
   *     backlog only); unrestricted batches are counted ({@link #runningUnrestricted}) until done
   */
  void hand(Worker worker, boolean restricted) {
    worker.restricted = restricted;
    if (!restricted) {
      unrestricted.incrementAndGet();
    }
    worker.handoff.add(worker.batch);
  }

  /**
   * Runs the filled batch of {@code worker} (taken by {@link #awaitIdle}) on the calling batcher
   * thread instead of the executor's own, then makes the executor idle again: for a batch formed
   * for a reserved executor. It is not counted as unrestricted and wakes nothing when done.
   */
  void runHere(Worker worker) {
    worker.execute(worker.batch, false);
    idle.add(worker);
  }

  /** The single executor's batch, for the inline batcher to fill. */
  Batch inlineBatch() {
    return workers.get(0).batch;
  }

  /** Runs the single executor's batch on the calling (batcher) thread. */
  void runInline() {
    workers.get(0).execute(workers.get(0).batch, true);
  }

  /** Closes the single executor; the inline batcher calls it as it ends. */
  void closeInline() {
    workers.get(0).executor.close();
  }

  /** Answers {@code error} to whatever the inline batch holds (a batcher that failed mid-batch). */
  void failInlineBatch(InferenceException error) {
    Batch batch = workers.get(0).batch;
    for (int i = 0; i < batch.size(); i++) {
      batch.get(i).fail(error);
    }
  }

  /** Tells every executor thread to stop once its current batch ends; never blocks. */
  void stop() {
    if (!inline) {
      for (Worker worker : workers) {
        worker.handoff.offer(Worker.STOP);
      }
    }
  }

  /** Waits for the executor threads to end (an ONNX Runtime call cannot be abandoned half way). */
  void join() throws InterruptedException {
    if (!inline) {
      for (Worker worker : workers) {
        worker.thread.join();
      }
    }
  }

  final class Worker implements Runnable {
    static final Batch STOP = new Batch(1);

    final BatchExecutor executor;
    final Batch batch;
    /** Holds at most a batch and STOP. */
    final BlockingQueue<Batch> handoff = new ArrayBlockingQueue<>(2);
    final Thread thread;
    /** Set by the batcher before each hand-off; read after it on the executor's thread. */
    boolean restricted;
    /**
     * Smoothed wall time of this executor's batches per request they held, ns ({@link #smoothed});
     * 0 before its first. Written only by the thread running this executor's batch (one at a time:
     * the idle and hand-off queues order them), read by any ({@link ExecutorPool#nanosPerRequest}).
     */
    volatile long nanosPerRequest;
    /**
     * As {@link #nanosPerRequest}, over only the batches that could hold a lane's backlog (handed
     * unrestricted, or run inline); same writer.
     */
    volatile long backlogNanosPerRequest;
    /** When the running batch started ({@link System#nanoTime}), 0 while idle; same writer. */
    volatile long runningSince;
    /** Requests in the running batch, written before {@link #runningSince}. */
    volatile int runningRequests;
    /** Whether the running batch could hold a backlog, written before {@link #runningSince}. */
    volatile boolean runningBacklog;

    Worker(BatchExecutor executor, Batch batch, String threadName) {
      this.executor = Objects.requireNonNull(executor, "executor");
      this.batch = batch;
      this.thread = DaemonThreads.thread(threadName, this);
    }

    @Override
    public void run() {
      try {
        while (true) {
          Batch work = handoff.take();
          if (work == STOP) {
            return;
          }
          // Read before going idle: the batcher sets it again for the next batch.
          boolean wake = !restricted;
          execute(work, wake);
          if (wake) {
            unrestricted.decrementAndGet();
          }
          idle.add(this);
          if (wake) {
            onIdle.run();
          }
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } finally {
        executor.close();
      }
    }

    /**
     * Runs {@code work} on the calling thread.
     *
     * @param mayHoldBacklog whether the batch was formed without the reservation's restriction, so
     *     that its pace counts for a backlog too ({@link #backlogNanosPerRequest})
     */
    void execute(Batch work, boolean mayHoldBacklog) {
      long start = System.nanoTime();
      runningRequests = work.size();
      runningBacklog = mayHoldBacklog;
      runningSince = start == 0 ? 1 : start;
      try {
        executor.execute(work);
      } catch (Throwable t) {
        log.error("{}: execution of a batch of {} failed", name, work.size(), t);
        InferenceException error =
            InferenceException.internal("execution failed in " + name + ": " + t, t);
        for (int i = 0; i < work.size(); i++) {
          work.get(i).fail(error);
        }
      }
      long end = System.nanoTime();
      long execution = end - start;
      if (work.size() > 0) {
        nanosPerRequest = smoothed(nanosPerRequest, execution / work.size());
        if (mayHoldBacklog) {
          backlogNanosPerRequest = smoothed(backlogNanosPerRequest, execution / work.size());
        }
      }
      runningSince = 0;
      // The model's own run when the executor measured it; else the whole execution.
      boolean timed = work.hasComputeTimes();
      long compute = timed ? work.computeNanos() : execution;
      long input = timed ? work.computeStartNanos() - start : 0;
      long output = timed ? end - work.computeEndNanos() : 0;
      boolean callers = false;
      for (int i = 0; i < work.size(); i++) {
        InferenceRequest request = work.get(i);
        if (!request.isAnswered()) {
          request.fail(
              InferenceException.internal(
                  name + ": the executor left this request unanswered", null));
        }
        if (request.recorded()) {
          callers = true;
          recorder.recordRequest(start - request.arrivalNanos(), compute);
        }
      }
      if (!callers) {
        return; // the gateway's own requests alone (a golden run): not the callers' statistics
      }
      recorder.recordExecution(work.size(), work.rows(), input, compute, output);
      if (work.runs() > 1) {
        recorder.recordReruns(work.runs() - 1);
      }
    }
  }
}

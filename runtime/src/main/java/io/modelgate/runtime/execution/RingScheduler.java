package io.modelgate.runtime.execution;

import com.lmax.disruptor.AlertException;
import com.lmax.disruptor.BlockingWaitStrategy;
import com.lmax.disruptor.EventTranslatorOneArg;
import com.lmax.disruptor.RingBuffer;
import com.lmax.disruptor.Sequence;
import com.lmax.disruptor.SequenceBarrier;
import com.lmax.disruptor.TimeoutException;
import io.modelgate.runtime.error.InferenceException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A version's scheduler: an LMAX Disruptor ring that request threads publish into without
 * blocking, one batcher thread that takes requests off the ring, and {@code instances} executor
 * threads that run them.
 *
 * <p>Threads and ownership:
 *
 * <ul>
 *   <li>Request threads (gRPC event loops) call {@link #submit}: {@code tryPublishEvent} on a
 *       multi-producer ring; a full ring is refused at once with {@code RESOURCE_EXHAUSTED}.
 *   <li>The batcher thread is the only consumer of the ring and the single writer of its
 *       sequence. It waits for an idle executor, forms a batch, drops expired or cancelled
 *       requests with their status, and hands the batch over.
 *   <li>Each executor thread owns one {@link BatchExecutor} and one reusable {@link Batch}.
 * </ul>
 *
 * <p>Memory is bounded: at most {@code ringSize} requests wait in the ring, plus one batch per
 * executor.
 */
public final class RingScheduler implements VersionScheduler {
  private static final Logger log = LoggerFactory.getLogger(RingScheduler.class);

  private static final EventTranslatorOneArg<Slot, InferenceRequest> PUBLISH =
      (slot, sequence, request) -> slot.request = request;

  /** A ring entry; the batcher clears it when it takes the request. */
  private static final class Slot {
    InferenceRequest request;
  }

  private final String name;
  private final RingBuffer<Slot> ring;
  private final SequenceBarrier barrier;
  private final Sequence consumed = new Sequence(-1);
  private final BlockingQueue<Worker> idle;
  private final List<Worker> workers;
  private final Thread batcher;
  private final AtomicInteger publishing = new AtomicInteger();
  private final String refusedFull;
  private final String refusedDraining;

  private volatile boolean accepting = true;
  /** The last sequence to process once draining; Long.MAX_VALUE while running. */
  private volatile long stopAt = Long.MAX_VALUE;
  /** Set when the drain timeout passed: the rest is answered UNAVAILABLE. */
  private volatile boolean abandoned;
  private volatile boolean drained;

  /**
   * Starts the batcher and executor threads.
   *
   * @param name names the threads and appears in refusal messages, e.g. {@code "model 'm' version
   *     1"}
   * @param executors creates one executor per executor thread; called {@code instances} times
   */
  public RingScheduler(
      String name, SchedulerSettings settings, Supplier<? extends BatchExecutor> executors) {
    this.name = Objects.requireNonNull(name, "name");
    this.ring =
        RingBuffer.createMultiProducer(Slot::new, settings.ringSize(), new BlockingWaitStrategy());
    this.barrier = ring.newBarrier();
    ring.addGatingSequences(consumed);
    this.refusedFull =
        name
            + " is overloaded: its queue of "
            + settings.ringSize()
            + " requests is full; retry later or with less concurrency";
    this.refusedDraining = name + " is unloading and accepts no new requests";
    this.idle = new ArrayBlockingQueue<>(settings.instances());
    this.workers = new ArrayList<>(settings.instances());
    String threadPrefix = "modelgate-" + name.replaceAll("[^A-Za-z0-9_.-]+", "-");
    for (int i = 0; i < settings.instances(); i++) {
      Worker worker = new Worker(executors.get(), new Batch(1), threadPrefix + "-exec-" + i);
      workers.add(worker);
      idle.add(worker);
    }
    this.batcher = new Thread(this::runBatcher, threadPrefix + "-batcher");
    batcher.setDaemon(true);
    for (Worker worker : workers) {
      worker.thread.start();
    }
    batcher.start();
  }

  @Override
  public void submit(InferenceRequest request) {
    publishing.incrementAndGet();
    try {
      if (!accepting) {
        throw InferenceException.unavailable(refusedDraining);
      }
      if (!ring.tryPublishEvent(PUBLISH, request)) {
        throw InferenceException.resourceExhausted(refusedFull);
      }
    } finally {
      publishing.decrementAndGet();
    }
  }

  @Override
  public long queuedCount() {
    return Math.max(0, ring.getCursor() - consumed.get());
  }

  // ---- batcher thread ----

  private long next;
  private long available = -1;

  private void runBatcher() {
    next = consumed.get() + 1;
    try {
      while (true) {
        Worker worker = idle.take();
        InferenceRequest first = take();
        if (first == null) {
          idle.add(worker);
          return;
        }
        if (!admit(first, System.nanoTime())) {
          idle.add(worker);
          continue;
        }
        Batch batch = worker.batch;
        batch.clear();
        batch.add(first);
        worker.handoff.add(batch);
      }
    } catch (InterruptedException e) {
      // The drain timeout passed while every executor was busy: answer what is left.
      failRemaining();
    } catch (Throwable t) {
      log.error("{}: batcher failed; answering queued requests UNAVAILABLE", name, t);
      failRemaining();
    }
  }

  /**
   * The next request off the ring, waiting for one; null once draining has consumed everything
   * published. The slot is cleared and released to producers at once.
   */
  private InferenceRequest take() throws InterruptedException {
    while (true) {
      while (next > available) {
        try {
          available = barrier.waitFor(next);
        } catch (AlertException e) {
          long last = stopAt;
          if (next > last) {
            return null;
          }
          available = last;
        } catch (TimeoutException e) {
          // The blocking wait strategy does not time out; keep waiting.
        }
      }
      Slot slot = ring.get(next);
      InferenceRequest request = slot.request;
      slot.request = null;
      consumed.set(next);
      next++;
      if (!abandoned) {
        return request;
      }
      request.fail(InferenceException.unavailable(abandonMessage()));
    }
  }

  /** Answers expired and cancelled requests; returns whether the request should run. */
  private boolean admit(InferenceRequest request, long nowNanos) {
    if (request.isCancelled()) {
      request.fail(InferenceException.cancelled("request cancelled by the caller"));
      return false;
    }
    if (request.isExpired(nowNanos)) {
      request.fail(
          InferenceException.deadlineExceeded(
              "deadline passed after "
                  + TimeUnit.NANOSECONDS.toMicros(nowNanos - request.arrivalNanos())
                  + " us in the queue of "
                  + name
                  + "; the request was not executed"));
      return false;
    }
    return true;
  }

  private void failRemaining() {
    long last = Math.min(stopAt, ring.getCursor());
    InferenceException error = InferenceException.unavailable(abandonMessage());
    for (long seq = next; seq <= last; seq++) {
      Slot slot = ring.get(seq);
      InferenceRequest request = slot.request;
      slot.request = null;
      if (request != null) {
        request.fail(error);
      }
      consumed.set(seq);
    }
    next = last + 1;
  }

  private String abandonMessage() {
    return name + " stopped before this request could run";
  }

  // ---- drain ----

  @Override
  public synchronized void drain(Duration timeout) {
    if (drained) {
      return;
    }
    long deadline = System.nanoTime() + timeout.toNanos();
    accepting = false;
    while (publishing.get() != 0) {
      Thread.onSpinWait();
    }
    // Every claimed sequence is now published: the batcher may run up to the cursor and stop.
    stopAt = ring.getCursor();
    barrier.alert();
    boolean interrupted = false;
    try {
      if (!joinUntil(batcher, deadline)) {
        abandoned = true;
        batcher.interrupt();
        batcher.join();
        log.warn(
            "{}: drain timeout of {} ms passed; queued requests were answered UNAVAILABLE",
            name,
            timeout.toMillis());
      }
      for (Worker worker : workers) {
        worker.handoff.add(Worker.STOP);
      }
      for (Worker worker : workers) {
        // An ONNX Runtime call cannot be abandoned half way; wait for it to end.
        worker.thread.join();
      }
    } catch (InterruptedException e) {
      interrupted = true;
    } finally {
      drained = true;
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private static boolean joinUntil(Thread thread, long deadlineNanos) throws InterruptedException {
    long remaining = deadlineNanos - System.nanoTime();
    if (remaining > 0) {
      TimeUnit.NANOSECONDS.timedJoin(thread, remaining);
    }
    return !thread.isAlive();
  }

  // ---- executors ----

  private final class Worker implements Runnable {
    static final Batch STOP = new Batch(1);

    final BatchExecutor executor;
    final Batch batch;
    final BlockingQueue<Batch> handoff = new ArrayBlockingQueue<>(2);
    final Thread thread;

    Worker(BatchExecutor executor, Batch batch, String threadName) {
      this.executor = Objects.requireNonNull(executor, "executor");
      this.batch = batch;
      this.thread = new Thread(this, threadName);
      thread.setDaemon(true);
    }

    @Override
    public void run() {
      try {
        while (true) {
          Batch work = handoff.take();
          if (work == STOP) {
            return;
          }
          execute(work);
          idle.add(this);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } finally {
        executor.close();
      }
    }

    private void execute(Batch work) {
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
      for (int i = 0; i < work.size(); i++) {
        InferenceRequest request = work.get(i);
        if (!request.isAnswered()) {
          request.fail(
              InferenceException.internal(name + ": the executor left this request unanswered", null));
        }
      }
    }
  }
}

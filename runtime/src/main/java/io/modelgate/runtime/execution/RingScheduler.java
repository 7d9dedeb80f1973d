package io.modelgate.runtime.execution;

import com.lmax.disruptor.AlertException;
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
 * A version's scheduler and dynamic batcher: an LMAX Disruptor ring that request threads publish
 * into without blocking, one batcher thread that forms batches, and {@code instances} executor
 * threads that run them.
 *
 * <p>Threads and ownership:
 *
 * <ul>
 *   <li>Request threads (gRPC event loops) call {@link #submit}: {@code tryPublishEvent} on a
 *       multi-producer ring; a full ring is refused at once with {@code RESOURCE_EXHAUSTED}.
 *   <li>The batcher thread is the ring's only consumer and the single writer of its sequence and
 *       of the pending list. It waits for an idle executor, then forms a batch: the oldest request
 *       and the requests after it that may share its execution ({@link
 *       io.modelgate.runtime.tensor.DecodedRequest#canShareBatchWith}), up to {@code
 *       maxBatchSize} rows. It runs the batch when it is full, when a preferred size can be
 *       formed, when {@code maxQueueDelay} has passed since the oldest request arrived, or at once
 *       when the delay is 0 (the ring's natural batching: whatever queued while the executors were
 *       busy). Expired and cancelled requests are answered and never run.
 *   <li>Each executor thread owns one {@link BatchExecutor} and one reusable {@link Batch}. With a
 *       single instance there is no executor thread: the batcher runs each batch itself, which
 *       saves a thread hand-off (and its wake-up) per batch; requests queue in the ring meanwhile.
 * </ul>
 *
 * <p>Admission is one counter: at most {@code queueCapacity} requests wait, counted from their
 * acceptance until they enter a batch (or are answered without running), whether they are still
 * in the ring or in the batcher's pending list. A request beyond it is refused at once, on the
 * request thread. Memory is bounded by that capacity plus one batch per executor.
 *
 * <p>A batcher that fails (a defect, or an {@link Error}) does not leave requests waiting for
 * nothing: the version stops accepting, everything queued is answered {@code UNAVAILABLE} with the
 * reason, the executors stop, and the {@code onFailure} listener is told (the repository marks the
 * version FAILED).
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
  private final BatchPolicy policy;
  private final StageRecorder recorder;
  private final RingBuffer<Slot> ring;
  private final BatcherWaitStrategy wait = new BatcherWaitStrategy();
  private final SequenceBarrier barrier;
  private final Sequence consumed = new Sequence(-1);
  private final BlockingQueue<Worker> idle;
  private final List<Worker> workers;
  private final Thread batcher;
  private final boolean inline;
  private final AtomicInteger publishing = new AtomicInteger();
  /** Requests accepted and not yet in a batch nor answered: the one admission count. */
  private final AtomicInteger waiting = new AtomicInteger();
  private final int capacity;
  private final java.util.function.Consumer<Throwable> onFailure;
  /** Why the scheduler stopped serving after its batcher failed; null while it serves. */
  private volatile String failure;
  private final String refusedFull;
  private final String refusedDraining;

  private volatile boolean accepting = true;
  /** The last sequence to process once draining; Long.MAX_VALUE while running. */
  private volatile long stopAt = Long.MAX_VALUE;
  /** Set when the drain timeout passed: the rest is answered UNAVAILABLE. */
  private volatile boolean abandoned;
  private volatile boolean drained;

  // Batcher thread only.
  private final InferenceRequest[] pending;
  private int pendingCount;
  private final boolean[] chosen;
  private final boolean[] preferred;
  private long next;
  private long available = -1;
  private boolean stopped;

  /**
   * Starts the batcher and executor threads.
   *
   * @param name names the threads and appears in messages, e.g. {@code "model 'm' version 1"}
   * @param policy how batches form; {@link BatchPolicy#UNBATCHED} runs every request alone
   * @param executors creates one executor per executor thread; called {@code instances} times
   * @param recorder receives queue and compute times; called on executor threads
   */
  public RingScheduler(
      String name,
      SchedulerSettings settings,
      BatchPolicy policy,
      Supplier<? extends BatchExecutor> executors,
      StageRecorder recorder) {
    this(name, settings, policy, executors, recorder, error -> {});
  }

  /**
   * As {@link #RingScheduler(String, SchedulerSettings, BatchPolicy, Supplier, StageRecorder)},
   * telling {@code onFailure} (on the batcher thread, once every queued request is answered) when
   * the batcher fails and the scheduler stops serving.
   */
  public RingScheduler(
      String name,
      SchedulerSettings settings,
      BatchPolicy policy,
      Supplier<? extends BatchExecutor> executors,
      StageRecorder recorder,
      java.util.function.Consumer<Throwable> onFailure) {
    this.name = Objects.requireNonNull(name, "name");
    this.onFailure = Objects.requireNonNull(onFailure, "onFailure");
    this.capacity = settings.queueCapacity();
    this.policy = Objects.requireNonNull(policy, "policy");
    this.recorder = Objects.requireNonNull(recorder, "recorder");
    this.ring = RingBuffer.createMultiProducer(Slot::new, settings.ringSize(), wait);
    this.barrier = ring.newBarrier();
    ring.addGatingSequences(consumed);
    this.refusedFull =
        name
            + " is overloaded: its queue of "
            + settings.queueCapacity()
            + " requests is full; retry later or with less concurrency";
    this.refusedDraining = name + " is unloading and accepts no new requests";
    int batchCapacity = Math.max(1, policy.maxBatchSize());
    this.pending = new InferenceRequest[2 * batchCapacity];
    this.chosen = new boolean[pending.length];
    this.preferred = new boolean[policy.maxBatchSize() + 1];
    for (int size : policy.preferredBatchSizes()) {
      preferred[size] = true;
    }
    this.idle = new ArrayBlockingQueue<>(settings.instances());
    this.workers = new ArrayList<>(settings.instances());
    String threadPrefix = "modelgate-" + name.replaceAll("[^A-Za-z0-9_.-]+", "-");
    for (int i = 0; i < settings.instances(); i++) {
      Worker worker =
          new Worker(executors.get(), new Batch(batchCapacity), threadPrefix + "-exec-" + i);
      workers.add(worker);
      idle.add(worker);
    }
    this.inline = workers.size() == 1;
    this.batcher = new Thread(this::runBatcher, threadPrefix + (inline ? "-batcher-exec" : "-batcher"));
    batcher.setDaemon(true);
    if (!inline) {
      for (Worker worker : workers) {
        worker.thread.start();
      }
    }
    batcher.start();
  }

  /** A scheduler that runs every request alone and records nothing. */
  public RingScheduler(
      String name, SchedulerSettings settings, Supplier<? extends BatchExecutor> executors) {
    this(name, settings, BatchPolicy.UNBATCHED, executors, StageRecorder.NONE);
  }

  @Override
  public void submit(InferenceRequest request) {
    publishing.incrementAndGet();
    try {
      if (!accepting) {
        String failed = failure;
        throw InferenceException.unavailable(failed != null ? failed : refusedDraining);
      }
      if (waiting.getAndIncrement() >= capacity) {
        waiting.decrementAndGet();
        throw InferenceException.resourceExhausted(refusedFull);
      }
      // The ring holds at least the capacity, so with the count admitted it has room.
      if (!ring.tryPublishEvent(PUBLISH, request)) {
        waiting.decrementAndGet();
        throw InferenceException.resourceExhausted(refusedFull);
      }
    } finally {
      publishing.decrementAndGet();
    }
  }

  @Override
  public void refuseIfFull() {
    if (!accepting) {
      String failed = failure;
      throw InferenceException.unavailable(failed != null ? failed : refusedDraining);
    }
    if (waiting.get() >= capacity) {
      throw InferenceException.resourceExhausted(refusedFull);
    }
  }

  /** Requests waiting: accepted, not yet in a batch nor answered. At most the queue capacity. */
  @Override
  public long queuedCount() {
    return waiting.get();
  }

  // ---- batcher thread ----

  private void runBatcher() {
    next = consumed.get() + 1;
    try {
      if (inline) {
        runInline(workers.get(0));
        return;
      }
      while (true) {
        Worker worker = idle.take();
        if (!form(worker.batch)) {
          idle.add(worker);
          return;
        }
        worker.handoff.add(worker.batch);
      }
    } catch (InterruptedException e) {
      // The drain timeout passed while every executor was busy: answer what is left.
      failRemaining();
    } catch (Throwable t) {
      failed(t);
    }
  }

  /**
   * The batcher failed: stop accepting, answer everything accepted, stop the executors, and tell
   * the listener. Runs on the dying batcher thread.
   */
  private void failed(Throwable t) {
    failure = name + " stopped serving: its batcher failed (" + t + ")";
    accepting = false;
    log.error("{}: batcher failed; the version stops serving and its queue is answered UNAVAILABLE", name, t);
    while (publishing.get() != 0) {
      Thread.onSpinWait();
    }
    stopAt = ring.getCursor();
    failRemaining();
    stopped = true;
    if (inline) {
      // A batch it was forming or running when it failed.
      Batch batch = workers.get(0).batch;
      InferenceException error = InferenceException.unavailable(failure);
      for (int i = 0; i < batch.size(); i++) {
        batch.get(i).fail(error);
      }
    } else {
      for (Worker worker : workers) {
        worker.handoff.offer(Worker.STOP);
      }
    }
    try {
      onFailure.accept(t);
    } catch (RuntimeException e) {
      log.error("{}: failure listener failed", name, e);
    }
  }

  /** Why the scheduler stopped serving after its batcher failed, or null while it serves. */
  public String failure() {
    return failure;
  }

  /** One instance: form a batch, run it here, repeat. */
  private void runInline(Worker worker) throws InterruptedException {
    try {
      while (form(worker.batch)) {
        worker.execute(worker.batch);
      }
    } finally {
      worker.executor.close();
    }
  }

  /**
   * Fills {@code batch} with the next batch to run, waiting as the policy says. Returns false once
   * draining has consumed everything published.
   */
  private boolean form(Batch batch) throws InterruptedException {
    batch.clear();
    while (true) {
      if (abandoned) {
        failRemaining();
        stopped = true;
        return false;
      }
      if (pendingCount == 0 && !refresh(BatcherWaitStrategy.FOREVER)) {
        if (stopped) {
          return false;
        }
        continue;
      }
      refresh(BatcherWaitStrategy.NOW);
      movePublishedToPending();
      long now = System.nanoTime();
      dropAbandoned(now);
      if (pendingCount == 0) {
        continue;
      }
      if (abandoned) {
        failPending();
        continue;
      }
      if (!policy.merges()) {
        batch.add(removePending(0));
        waiting.decrementAndGet();
        return true;
      }
      InferenceRequest oldest = pending[0];
      int count = choose(batch);
      long due = oldest.arrivalNanos() + policy.maxQueueDelayNanos();
      boolean ready =
          batch.rows() >= policy.maxBatchSize()
              || policy.maxQueueDelayNanos() == 0
              || now - due >= 0
              || pendingCount == pending.length
              || stopAt != Long.MAX_VALUE;
      int preferredCount = preferredPrefix(batch);
      if (batch.rows() < policy.maxBatchSize() && preferredCount > 0) {
        batch.truncate(preferredCount);
        ready = true;
      }
      if (ready) {
        removeChosen(batch.size(), count);
        waiting.addAndGet(-batch.size());
        return true;
      }
      batch.clear();
      // Wait for more requests, no longer than the oldest one's delay allows, and wake for the
      // first deadline among the waiting so that it is answered when it passes.
      long wakeAt = due;
      for (int i = 0; i < pendingCount; i++) {
        InferenceRequest request = pending[i];
        if (request.hasDeadline() && request.deadlineNanos() - wakeAt < 0) {
          wakeAt = request.deadlineNanos();
        }
      }
      refresh(wakeAt);
    }
  }

  /**
   * Adds to {@code batch} the oldest pending request and, in arrival order, every later one that
   * may share its execution while the rows fit. Marks them in {@code chosen}; returns how many
   * pending requests were examined.
   */
  private int choose(Batch batch) {
    InferenceRequest oldest = pending[0];
    int limit = policy.maxBatchSize();
    int examined = 0;
    java.util.Arrays.fill(chosen, 0, pendingCount, false);
    for (int i = 0; i < pendingCount && !batch.isFull(); i++) {
      examined = i + 1;
      InferenceRequest candidate = pending[i];
      boolean take =
          i == 0
              || (batch.rows() + candidate.decoded().rows() <= limit
                  && oldest.decoded().canShareBatchWith(candidate.decoded()));
      chosen[i] = take;
      if (take) {
        batch.add(candidate);
        if (batch.rows() >= limit) {
          break;
        }
      }
    }
    return examined;
  }

  /** The longest prefix of {@code batch} whose rows are a preferred size, or 0. */
  private int preferredPrefix(Batch batch) {
    int best = 0;
    int rows = 0;
    for (int i = 0; i < batch.size(); i++) {
      rows += batch.get(i).decoded().rows();
      if (rows < preferred.length && preferred[rows]) {
        best = i + 1;
      }
    }
    return best;
  }

  /** Removes the first {@code taken} chosen requests among the first {@code examined}. */
  private void removeChosen(int taken, int examined) {
    int kept = 0;
    int removed = 0;
    for (int i = 0; i < pendingCount; i++) {
      boolean remove = i < examined && chosen[i] && removed < taken;
      if (remove) {
        removed++;
      } else {
        pending[kept++] = pending[i];
      }
      if (i < chosen.length) {
        chosen[i] = false;
      }
    }
    for (int i = kept; i < pendingCount; i++) {
      pending[i] = null;
    }
    pendingCount = kept;
  }

  private InferenceRequest removePending(int index) {
    InferenceRequest request = pending[index];
    System.arraycopy(pending, index + 1, pending, index, pendingCount - index - 1);
    pending[--pendingCount] = null;
    return request;
  }

  /**
   * Learns what is published, waiting until {@code deadlineNanos} ({@link BatcherWaitStrategy}
   * constants allowed) for a sequence not yet taken. Returns whether one is available.
   */
  private boolean refresh(long deadlineNanos) throws InterruptedException {
    if (next <= available) {
      return true;
    }
    if (stopped) {
      return false;
    }
    wait.deadline(deadlineNanos);
    try {
      available = barrier.waitFor(next);
    } catch (TimeoutException e) {
      return false;
    } catch (AlertException e) {
      long last = stopAt;
      if (next > last) {
        stopped = true;
        return false;
      }
      available = last;
    }
    return next <= available;
  }

  /** Takes published requests off the ring into the pending list while it has room. */
  private void movePublishedToPending() {
    while (next <= available && pendingCount < pending.length) {
      Slot slot = ring.get(next);
      pending[pendingCount++] = slot.request;
      slot.request = null;
      consumed.set(next);
      next++;
    }
  }

  /** Answers cancelled and expired pending requests; they never run. */
  private void dropAbandoned(long nowNanos) {
    int kept = 0;
    for (int i = 0; i < pendingCount; i++) {
      InferenceRequest request = pending[i];
      // Expiry first: a call whose deadline passed is also cancelled by the transport, and it
      // must be counted as DEADLINE_EXCEEDED, not as the caller's cancellation.
      if (request.isExpired(nowNanos)) {
        request.fail(
            InferenceException.deadlineExceeded(
                "deadline passed after "
                    + TimeUnit.NANOSECONDS.toMicros(nowNanos - request.arrivalNanos())
                    + " us in the queue of "
                    + name
                    + "; the request was not executed"));
      } else if (request.isCancelled()) {
        request.fail(InferenceException.cancelled("request cancelled by the caller"));
      } else {
        pending[kept++] = request;
      }
    }
    for (int i = kept; i < pendingCount; i++) {
      pending[i] = null;
    }
    waiting.addAndGet(kept - pendingCount);
    pendingCount = kept;
  }

  private void failPending() {
    InferenceException error = InferenceException.unavailable(abandonMessage());
    for (int i = 0; i < pendingCount; i++) {
      pending[i].fail(error);
      pending[i] = null;
    }
    waiting.addAndGet(-pendingCount);
    pendingCount = 0;
  }

  private void failRemaining() {
    failPending();
    long last = Math.min(stopAt, ring.getCursor());
    InferenceException error = InferenceException.unavailable(abandonMessage());
    for (long seq = next; seq <= last; seq++) {
      Slot slot = ring.get(seq);
      InferenceRequest request = slot.request;
      slot.request = null;
      if (request != null) {
        request.fail(error);
        waiting.decrementAndGet();
      }
      consumed.set(seq);
    }
    next = last + 1;
  }

  private String abandonMessage() {
    String failed = failure;
    return failed != null ? failed : name + " stopped before this request could run";
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
        if (!inline) {
          // It may wait for a busy executor; an inline batcher is running one batch and will see
          // the flag when it ends (an ONNX Runtime call cannot be abandoned half way).
          batcher.interrupt();
        }
        batcher.join();
        log.warn(
            "{}: drain timeout of {} ms passed; queued requests were answered UNAVAILABLE",
            name,
            timeout.toMillis());
      }
      if (!inline) {
        for (Worker worker : workers) {
          worker.handoff.add(Worker.STOP);
        }
        for (Worker worker : workers) {
          // An ONNX Runtime call cannot be abandoned half way; wait for it to end.
          worker.thread.join();
        }
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
      long start = System.nanoTime();
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
      // The model's own run when the executor measured it; else the whole execution.
      boolean timed = work.hasComputeTimes();
      long compute = timed ? work.computeEndNanos() - work.computeStartNanos() : execution;
      long input = timed ? work.computeStartNanos() - start : 0;
      long output = timed ? end - work.computeEndNanos() : 0;
      for (int i = 0; i < work.size(); i++) {
        InferenceRequest request = work.get(i);
        if (!request.isAnswered()) {
          request.fail(
              InferenceException.internal(
                  name + ": the executor left this request unanswered", null));
        }
        recorder.recordRequest(start - request.arrivalNanos(), compute);
      }
      recorder.recordExecution(work.size(), work.rows(), input, compute, output);
    }
  }
}

package io.modelgate.runtime.execution;

import com.lmax.disruptor.AlertException;
import com.lmax.disruptor.EventTranslatorOneArg;
import com.lmax.disruptor.RingBuffer;
import com.lmax.disruptor.Sequence;
import com.lmax.disruptor.SequenceBarrier;
import com.lmax.disruptor.TimeoutException;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A version's scheduler: an LMAX Disruptor ring that request threads publish into without
 * blocking, and one batcher thread that takes requests off it, forms batches ({@link
 * PendingRequests}) and runs them on the version's executors ({@link ExecutorPool}).
 *
 * <p>Threads and ownership:
 *
 * <ul>
 *   <li>Request threads (gRPC event loops) call {@link #submit}: {@code tryPublishEvent} on a
 *       multi-producer ring; a full queue is refused at once with {@code RESOURCE_EXHAUSTED}.
 *   <li>The batcher thread is the ring's only consumer and the single writer of its sequence and
 *       of the pending list. It waits for an idle executor, then forms a batch: the oldest request
 *       and the requests that may share its execution, up to {@code maxBatchSize} rows, shared
 *       fairly among lanes (tenants) when several wait; with executors reserved ({@link
 *       SchedulerSettings#reservedInstances}), only the others run batches that may hold a lane's
 *       backlog, and a reserved one takes lanes without one. It runs the batch when it is full, when a
 *       preferred size can be formed, when {@code maxQueueDelay} has passed since the oldest
 *       request arrived, or at once when the delay is 0 (the ring's natural batching: whatever
 *       queued while the executors were busy). Expired and cancelled requests are answered and
 *       never run.
 *   <li>Executors run the batches: on their own threads, or on the batcher's with one instance;
 *       with one executor reserved, its batches (lanes without a backlog) run on the batcher's
 *       thread too, and the batcher forms nothing meanwhile.
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
  private final RingBuffer<Slot> ring;
  private final BatcherWaitStrategy wait = new BatcherWaitStrategy();
  private final SequenceBarrier barrier;
  private final Sequence consumed = new Sequence(-1);
  private final ExecutorPool executors;
  private final Thread batcher;
  private final AtomicInteger publishing = new AtomicInteger();
  /** Requests accepted and not yet in a batch nor answered: the one admission count. */
  private final AtomicInteger waiting = new AtomicInteger();
  private final int capacity;
  /** Executors kept for lanes without a backlog ({@link SchedulerSettings#reservedInstances}). */
  private final int reserved;
  /** Executors that may run batches holding a backlog: instances minus reserved. */
  private final int unreservedInstances;
  /**
   * Whether the batcher runs the reserved executor's batches itself: with exactly one reserved, at
   * most one such batch runs at a time anyway, so running it on the batcher's thread (which its
   * request has just woken) loses no parallelism and saves waking a second thread. With more
   * reserved they go to executor threads, to run side by side.
   */
  private final boolean runsReservedBatchesItself;
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
  /** Requests answered UNAVAILABLE because a drain's time ran out; batcher thread, read after it ends. */
  private long abandonedRequests;
  private volatile boolean drained;

  // Batcher thread only.
  private final PendingRequests pending;
  private long next;
  private long available = -1;
  private boolean stopped;
  /** Whether the batch {@link #form} returned last was formed for a reserved executor. */
  private boolean formedRestricted;

  /**
   * The start of the names of the threads that serve {@code name} (its batcher and executors, and
   * the thread that opens its sessions): {@code "modelgate-"} and the name, each run of characters
   * other than letters, digits, {@code _ . -} made one {@code -}; e.g. {@code
   * "modelgate-model-m-version-1"}.
   */
  public static String threadPrefix(String name) {
    return "modelgate-" + name.replaceAll("[^A-Za-z0-9_.-]+", "-");
  }

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
    this.pending = new PendingRequests(policy, batchCapacity, capacity);
    String threadPrefix = threadPrefix(name);
    this.reserved = settings.reservedInstances();
    this.unreservedInstances = settings.instances() - reserved;
    this.runsReservedBatchesItself = reserved == 1;
    this.executors =
        new ExecutorPool(name, threadPrefix, settings.instances(), batchCapacity, executors, recorder,
            reserved > 0 ? wait::wake : () -> {});
    this.batcher =
        DaemonThreads.thread(threadPrefix + (this.executors.inline() ? "-batcher-exec" : "-batcher"), this::runBatcher);
    this.executors.start();
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
        throw InferenceException.resourceExhausted(refusedFull, retryAfter(capacity));
      }
      // The ring holds at least the capacity, so with the count admitted it has room.
      if (!ring.tryPublishEvent(PUBLISH, request)) {
        waiting.decrementAndGet();
        throw InferenceException.resourceExhausted(refusedFull, retryAfter(capacity));
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
      throw InferenceException.resourceExhausted(refusedFull, retryAfter(capacity));
    }
  }

  /**
   * Whether the batcher is blocked waiting for the ring (a request, a deadline, or a reserved
   * executor's wake), rather than running, forming or waiting for an idle executor. For tests.
   */
  boolean batcherWaitsForRequests() {
    return wait.isWaiting();
  }

  /** Requests waiting: accepted, not yet in a batch nor answered. At most the queue capacity. */
  @Override
  public long queuedCount() {
    return waiting.get();
  }

  @Override
  public long nanosPerRequest() {
    return executors.nanosPerRequest();
  }

  @Override
  public long backlogNanosPerRequest() {
    return executors.backlogNanosPerRequest(unreservedInstances);
  }

  // ---- batcher thread ----

  private void runBatcher() {
    next = consumed.get() + 1;
    try {
      if (executors.inline()) {
        runInline();
        return;
      }
      while (true) {
        ExecutorPool.Worker worker = executors.awaitIdle();
        if (!form(worker.batch)) {
          executors.putBack(worker);
          return;
        }
        if (formedRestricted && runsReservedBatchesItself) {
          // An executor's thread would wait for a core on busy cores (a quiet tenant's p99 under a
          // flood fell by about 40% on 2 cores with this). The backlog's next batch waits for this
          // one to end; the executor it would run on is busy meanwhile anyway.
          executors.runHere(worker);
        } else {
          executors.hand(worker, formedRestricted);
        }
      }
    } catch (InterruptedException e) {
      // The drain timeout passed while every executor was busy: answer what is left.
      failRemaining();
    } catch (Throwable t) {
      failed(t);
    }
  }

  /** One instance: form a batch, run it here, repeat. */
  private void runInline() throws InterruptedException {
    try {
      Batch batch = executors.inlineBatch();
      while (form(batch)) {
        executors.runInline();
      }
    } finally {
      executors.closeInline();
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
    if (executors.inline()) {
      // A batch it was forming or running when it failed.
      executors.failInlineBatch(InferenceException.unavailable(failure));
    } else {
      executors.stop();
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
      if (pending.isEmpty() && !refresh(BatcherWaitStrategy.FOREVER)) {
        if (stopped) {
          return false;
        }
        continue;
      }
      refresh(BatcherWaitStrategy.NOW);
      movePublishedToPending();
      long now = System.nanoTime();
      waiting.addAndGet(-pending.dropAbandoned(now, name));
      if (pending.isEmpty()) {
        continue;
      }
      if (abandoned) {
        int failed = pending.failAll(InferenceException.unavailable(abandonMessage()));
        abandonedRequests += failed;
        waiting.addAndGet(-failed);
        continue;
      }
      long due = pending.oldest().arrivalNanos() + policy.maxQueueDelayNanos();
      formedRestricted = reserving();
      if (formedRestricted) {
        pending.chooseWithoutBacklog(batch);
        if (batch.size() == 0) {
          // Only lanes with a backlog wait: keep this executor for the others until a request
          // arrives, a deadline passes or an unrestricted batch ends (its executor wakes the wait).
          refresh(pending.wakeAt(BatcherWaitStrategy.FOREVER));
          continue;
        }
        due = batch.get(0).arrivalNanos() + policy.maxQueueDelayNanos();
      } else {
        pending.choose(batch);
      }
      boolean ready =
          !policy.merges()
              || batch.rows() >= policy.maxBatchSize()
              || policy.maxQueueDelayNanos() == 0
              || now - due >= 0
              || pending.isFull()
              || stopAt != Long.MAX_VALUE;
      if (pending.keepPreferredPrefix(batch)) {
        ready = true;
      }
      if (ready) {
        pending.take(batch);
        waiting.addAndGet(-batch.size());
        return true;
      }
      pending.release(batch);
      // Wait for more requests, no longer than the oldest one's delay allows, and wake for the
      // first deadline among the waiting so that it is answered when it passes.
      refresh(pending.wakeAt(due));
    }
  }

  /**
   * Whether the executor being filled is one of those reserved for lanes without a backlog: as many
   * executors as may run a backlog's batches already run unrestricted ones. Never while draining.
   */
  private boolean reserving() {
    return reserved > 0
        && stopAt == Long.MAX_VALUE
        && executors.runningUnrestricted() >= unreservedInstances;
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
    while (next <= available && pending.hasRoom()) {
      Slot slot = ring.get(next);
      pending.add(slot.request);
      slot.request = null;
      consumed.set(next);
      next++;
    }
  }

  private void failRemaining() {
    InferenceException error = InferenceException.unavailable(abandonMessage());
    int failed = pending.failAll(error);
    abandonedRequests += failed;
    waiting.addAndGet(-failed);
    long last = Math.min(stopAt, ring.getCursor());
    for (long seq = next; seq <= last; seq++) {
      Slot slot = ring.get(seq);
      InferenceRequest request = slot.request;
      slot.request = null;
      if (request != null) {
        request.fail(error);
        abandonedRequests++;
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
        if (!executors.inline()) {
          // It may wait for a busy executor; an inline batcher is running one batch and will see
          // the flag when it ends (an ONNX Runtime call cannot be abandoned half way).
          batcher.interrupt();
        }
        batcher.join();
        // Said only where it failed a request: a load closed unserved (a reload refused) drains
        // with no time and nothing queued.
        if (abandonedRequests > 0) {
          log.warn("{}: drain timeout of {} ms passed; {} queued requests were answered UNAVAILABLE",
              name, timeout.toMillis(), abandonedRequests);
        }
      }
      executors.stop();
      executors.join();
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
}

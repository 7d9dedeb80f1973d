package io.modelgate.runtime.execution;

import com.lmax.disruptor.AlertException;
import com.lmax.disruptor.Sequence;
import com.lmax.disruptor.SequenceBarrier;
import com.lmax.disruptor.TimeoutException;
import com.lmax.disruptor.WaitStrategy;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A blocking wait with a deadline the batcher sets before each wait: it blocks until a request is
 * published, the deadline passes ({@link TimeoutException}) or the barrier is alerted. Publishers
 * take the lock to signal only while the batcher is waiting, so an idle-free ring costs them one
 * volatile read per publish.
 *
 * <p>Only the batcher thread waits, and only it sets the deadline; any thread may publish, and any
 * thread may {@link #wake} the batcher (an executor going idle, when executors are reserved).
 */
final class BatcherWaitStrategy implements WaitStrategy {
  /** Wait until something is published. */
  static final long FOREVER = Long.MAX_VALUE;

  /** Do not wait: report what is published now. */
  static final long NOW = Long.MIN_VALUE;

  private final ReentrantLock lock = new ReentrantLock();
  private final Condition published = lock.newCondition();
  private volatile boolean waiting;
  /** Set by {@link #wake}; the batcher's next or current wait ends at once. */
  private volatile boolean woken;
  /** Batcher thread only. */
  private long deadlineNanos = FOREVER;

  void deadline(long deadlineNanos) {
    this.deadlineNanos = deadlineNanos;
  }

  /** Whether the batcher is blocked waiting for a request (or its deadline, or a wake). */
  boolean isWaiting() {
    return waiting;
  }

  /**
   * Ends the batcher's current wait, or its next one, as if its deadline had passed: something
   * other than a request changed what it may run. Any thread.
   */
  void wake() {
    woken = true;
    signalAllWhenBlocking();
  }

  @Override
  public long waitFor(long sequence, Sequence cursor, Sequence dependent, SequenceBarrier barrier)
      throws AlertException, InterruptedException, TimeoutException {
    if (cursor.get() < sequence) {
      if (deadlineNanos == NOW) {
        throw TimeoutException.INSTANCE;
      }
      lock.lock();
      try {
        waiting = true;
        while (cursor.get() < sequence) {
          barrier.checkAlert();
          // After `waiting` is set: a wake() that saw it unset wrote `woken` first.
          if (woken) {
            woken = false;
            throw TimeoutException.INSTANCE;
          }
          if (deadlineNanos == FOREVER) {
            published.await();
          } else {
            long remaining = deadlineNanos - System.nanoTime();
            if (remaining <= 0) {
              throw TimeoutException.INSTANCE;
            }
            published.awaitNanos(remaining);
          }
        }
      } finally {
        waiting = false;
        lock.unlock();
      }
    }
    long available;
    while ((available = dependent.get()) < sequence) {
      barrier.checkAlert();
      Thread.onSpinWait();
    }
    return available;
  }

  @Override
  public void signalAllWhenBlocking() {
    if (waiting) {
      lock.lock();
      try {
        published.signalAll();
      } finally {
        lock.unlock();
      }
    }
  }

  @Override
  public String toString() {
    return "BatcherWaitStrategy(deadline in "
        + (deadlineNanos == FOREVER || deadlineNanos == NOW
            ? "-"
            : TimeUnit.NANOSECONDS.toMicros(deadlineNanos - System.nanoTime()) + " us")
        + ")";
  }
}

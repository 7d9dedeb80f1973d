package io.modelgate.runtime.logging;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.LongSupplier;

/**
 * Lets one log line through at most once an interval, for an event that may come on every call
 * (an internal error answered to each client while a model fails): the first at once, then the next
 * one after the interval, which says how many were held back meanwhile. The counters in
 * Prometheus count every one; the log tells that it happens and what it says.
 *
 * <p>Threads: any; {@link #pass} is lock-free. Held-back counts are exact while passes do not race
 * with the one that lets a line through; one that does is told with the next line instead.
 */
public final class LogThrottle {
  private final long everyNanos;
  private final LongSupplier nanoTime;
  /** When the next line may pass (nanoTime). */
  private final AtomicLong nextAt;
  private final LongAdder heldBack = new LongAdder();

  public LogThrottle(Duration every) {
    this(every, System::nanoTime);
  }

  /** With {@code nanoTime} for the clock (tests). */
  public LogThrottle(Duration every, LongSupplier nanoTime) {
    if (every.isNegative() || every.isZero()) {
      throw new IllegalArgumentException("interval: " + every + " (expected: positive)");
    }
    this.everyNanos = every.toNanos();
    this.nanoTime = nanoTime;
    this.nextAt = new AtomicLong(nanoTime.getAsLong());
  }

  /**
   * Whether this occurrence is logged: -1 if it is held back; else how many were held back since the
   * last one logged (0 for none), for the line to say.
   */
  public long pass() {
    long now = nanoTime.getAsLong();
    long next = nextAt.get();
    if (now - next >= 0 && nextAt.compareAndSet(next, now + everyNanos)) {
      return heldBack.sumThenReset();
    }
    heldBack.increment();
    return -1;
  }

  /** {@code " (N more since the last told)"}, or nothing for none: for a line that {@link #pass} let through. */
  public static String since(long heldBack) {
    return heldBack <= 0 ? "" : " (" + heldBack + " more since the last told)";
  }
}

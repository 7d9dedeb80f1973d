package io.modelgate.bench.load;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * The platform's stalls while a load runs, measured as jHiccup does: a thread of the load
 * generator's JVM asks to sleep {@value #INTERVAL_MICROS} µs at a time and records how much later
 * than that it woke. A thread that does no work can only wake late because something kept it off
 * a core: the JVM's pauses (the client's collections, safepoints), the scheduler giving the core to
 * other runnable threads, or the host not running the machine at all. Every latency the load
 * generator measures meanwhile includes the same stalls, so a tail no longer than these is the
 * platform's, not the server's.
 *
 * <p>Threading: one daemon thread of its own records; {@link #interval} may be called from any
 * thread (HdrHistogram's {@link Recorder} swaps its histograms without stopping the writer). The
 * thread wakes 1,000 times a second and allocates nothing as it records; on a machine whose cores
 * are all busy those wakes are not free (about 1 µs of the client's CPU per call at 38,000 closed-
 * loop calls a second on two cores), so the load generator runs it in open loops only, where the
 * tail is what is measured and the machine has room.
 */
public final class Hiccups implements AutoCloseable {
  /** How long the thread asks to sleep each time, µs. */
  public static final long INTERVAL_MICROS = 1_000;

  private final Recorder late = new Recorder(3);
  /** The most late the thread woke since {@link #takeLongest} last looked, µs. */
  private final AtomicLong longest = new AtomicLong();
  private final LongConsumer sleep;
  private final Thread thread;
  private volatile boolean running = true;

  /** Starts the measuring thread. */
  public Hiccups() {
    this(LockSupport::parkNanos);
  }

  /** With {@code sleep} (nanoseconds) in place of parking: for tests. */
  Hiccups(LongConsumer sleep) {
    this.sleep = sleep;
    thread = new Thread(this::measure, "modelgate-bench-hiccups");
    thread.setDaemon(true);
    thread.start();
  }

  private void measure() {
    long interval = TimeUnit.MICROSECONDS.toNanos(INTERVAL_MICROS);
    while (running) {
      long start = System.nanoTime();
      sleep.accept(interval);
      long woke = System.nanoTime();
      long micros = Math.max(0, (woke - start - interval) / 1000);
      late.recordValue(micros);
      if (micros > longest.get()) {
        longest.accumulateAndGet(micros, Math::max);
      }
    }
  }

  /**
   * The most late the thread woke since the previous call (µs), for a once-a-second progress
   * line; the next look starts from 0. Independent of {@link #interval}.
   */
  public long takeLongest() {
    return longest.getAndSet(0);
  }

  /**
   * How late the thread woke, each time, since the previous call (or since it started), µs; the
   * next interval starts now.
   */
  public Histogram interval() {
    return late.getIntervalHistogram();
  }

  /** Stops the thread. */
  @Override
  public void close() {
    running = false;
    LockSupport.unpark(thread);
  }
}

package io.modelgate.bench.load;

import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;
import java.util.function.LongSupplier;
import java.util.function.Supplier;
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
 * <p>Where the kernel keeps scheduler statistics (Linux's {@code /proc/thread-self/schedstat}), it
 * also records, for each wake at least {@value #STALL_MICROS} µs late (a stall), how much of that
 * lateness the thread spent runnable and waiting for a core ({@link #interval}'s {@code
 * waitingForCore}): the share of a stall the machine's other threads made, by holding the cores,
 * against the rest — the JVM's pauses (a thread woken during a collection's safepoint waits for it
 * off the run queue), or the host.
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
  /** A wake at least this late (µs) is a stall, whose time waiting for a core is recorded. */
  public static final long STALL_MICROS = 1_000;

  /**
   * What the thread measured over an interval, µs.
   *
   * @param late how late it woke, each time
   * @param waitingForCore for each stall (a wake at least {@value #STALL_MICROS} µs late), how long
   *     of it the thread was runnable and waiting for a core, by the kernel's count; empty where the
   *     kernel does not say
   */
  public record Interval(Histogram late, Histogram waitingForCore) {}

  private final Recorder late = new Recorder(3);
  private final Recorder waitingForCore = new Recorder(3);
  /** The most late the thread woke since {@link #takeLongest} last looked, µs. */
  private final AtomicLong longest = new AtomicLong();
  private final LongConsumer sleep;
  /** Opens, on the measuring thread, its run-queue wait counter (ns); yields null where there is none. */
  private final Supplier<LongSupplier> runQueueWait;
  private final Thread thread;
  private volatile boolean running = true;

  /** Starts the measuring thread. */
  public Hiccups() {
    this(LockSupport::parkNanos, RunQueueWait::open);
  }

  /**
   * With {@code sleep} (nanoseconds) in place of parking and {@code runQueueWait} in place of the
   * kernel's counter: for tests.
   */
  Hiccups(LongConsumer sleep, Supplier<LongSupplier> runQueueWait) {
    this.sleep = sleep;
    this.runQueueWait = runQueueWait;
    thread = DaemonThreads.thread("modelgate-bench-hiccups", this::measure);
    thread.start();
  }

  private void measure() {
    long interval = TimeUnit.MICROSECONDS.toNanos(INTERVAL_MICROS);
    LongSupplier waited = runQueueWait.get();
    long waitedBefore = waited == null ? -1 : waited.getAsLong();
    while (running) {
      long start = System.nanoTime();
      sleep.accept(interval);
      long woke = System.nanoTime();
      long micros = Math.max(0, (woke - start - interval) / 1000);
      late.recordValue(micros);
      if (micros > longest.get()) {
        longest.accumulateAndGet(micros, Math::max);
      }
      if (waitedBefore >= 0) {
        long waitedNow = waited.getAsLong();
        if (micros >= STALL_MICROS && waitedNow >= waitedBefore) {
          waitingForCore.recordValue(Math.min(micros, (waitedNow - waitedBefore) / 1000));
        }
        waitedBefore = waitedNow;
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
   * What the thread measured since the previous call (or since it started); the next interval
   * starts now.
   */
  public Interval interval() {
    return new Interval(late.getIntervalHistogram(), waitingForCore.getIntervalHistogram());
  }

  /** Stops the thread. */
  @Override
  public void close() {
    running = false;
    LockSupport.unpark(thread);
    // Once closed, nothing more is recorded: a last interval() holds the rest, late and waiting alike.
    try {
      thread.join(TimeUnit.SECONDS.toMillis(5));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * The kernel's count of the time the thread that opened it has spent runnable and waiting for a
   * core, ns: the second field of {@code /proc/thread-self/schedstat} (Linux with scheduler
   * statistics), read again from the start of the file each time, one system call, nothing
   * allocated (about 2 µs on a 2-core VM: 0.2% of a core at 1,000 wakes a second). -1 once it
   * cannot be read.
   */
  static final class RunQueueWait implements LongSupplier {
    private final FileChannel file;
    private final ByteBuffer bytes = ByteBuffer.allocateDirect(128);

    private RunQueueWait(FileChannel file) {
      this.file = file;
    }

    /** The calling thread's counter, or null where the kernel keeps none. */
    static LongSupplier open() {
      try {
        RunQueueWait wait = new RunQueueWait(FileChannel.open(Path.of("/proc/thread-self/schedstat")));
        return wait.getAsLong() >= 0 ? wait : null;
      } catch (IOException | RuntimeException e) {
        return null;
      }
    }

    @Override
    public long getAsLong() {
      bytes.clear();
      try {
        if (file.read(bytes, 0) <= 0) {
          return -1;
        }
      } catch (IOException e) {
        return -1;
      }
      return secondField(bytes, bytes.position());
    }

    /** The second of the space-separated decimal fields in {@code text}'s first {@code length} bytes; -1 if none. */
    static long secondField(ByteBuffer text, int length) {
      int i = 0;
      while (i < length && text.get(i) != ' ') {
        i++;
      }
      long value = -1;
      for (i++; i < length; i++) {
        int digit = text.get(i) - '0';
        if (digit < 0 || digit > 9) {
          break;
        }
        value = (value < 0 ? 0 : value * 10) + digit;
      }
      return value;
    }
  }
}

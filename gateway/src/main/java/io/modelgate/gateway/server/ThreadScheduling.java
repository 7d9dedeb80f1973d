package io.modelgate.gateway.server;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * How much CPU the server's threads used and how long they waited for a core, by what they do —
 * the kernel's scheduler statistics of each thread ({@code /proc/self/task/TID/schedstat}: time on
 * a core, time runnable and waiting for one), read when scraped. A thread that waits for a core
 * while it has work delays everything it serves: an event loop waiting a quarter of the time makes
 * every call's read and answer wait as well, whatever the model does. The JVM's own meters give the
 * process's CPU, not the waits; these tell an operator whether a tail comes from the server's work
 * or from a replica starved of CPU (a CPU limit too low for the traffic, neighbours on the node).
 *
 * <p>Threads are grouped by their name as the kernel keeps it (its first 15 characters): {@code
 * event_loop} the gateway's Netty threads (reading requests, writing answers, accepting
 * connections; named {@code modelgate-io}), {@code model} every version's batcher and executors
 * (ONNX Runtime's calls run on them; {@code modelgate-model-...}, from the version's label, which
 * {@code DeployArtifactsTest} checks against a real scrape) and ONNX Runtime's own pool threads
 * where a session has more than one intra-op thread (named so by the kernel after the thread that
 * opened the session, which the loader names for the version), {@code drift} the drift profiler,
 * {@code admin} the admin API's calls ({@code modelgate-admin}), {@code gc} the collector's threads,
 * {@code jit} the JIT compilers, {@code other} the rest (metrics and health endpoints, logging,
 * timers, the JVM's own) and, for CPU, the process's time that no reading of a thread saw. A fixed
 * set of label values, whatever the models.
 *
 * <p>The counters only grow: a thread that ends keeps its last figures in its group, a thread that
 * renames itself stays in the group it was first read in, and a thread id the kernel gives again to
 * a new thread is told apart by its figures going back. A thread that starts and ends between two
 * reads is not seen: its CPU time (and an ended thread's after its last reading) is counted in
 * {@code other}, from the process's CPU time beyond the threads' sum; its waits are not counted.
 * Linux only (nothing is
 * exported where {@code /proc/self/task} has no scheduler statistics).
 *
 * <p>Threads: read on the scraping thread, at most once every {@link #REFRESH_NANOS} ns whatever
 * the number of counters read (one directory listing and two small files a thread: about 30 µs a
 * thread on a 2-core VM, a little over a millisecond for the demo's forty); guarded by this object's
 * lock, which nothing else takes.
 * Nothing on the request path.
 */
final class ThreadScheduling {
  /** How long one reading of every thread serves the counters, ns. */
  static final long REFRESH_NANOS = TimeUnit.MILLISECONDS.toNanos(500);

  /** What a thread does, by its name. */
  enum Group {
    EVENT_LOOP("event_loop"),
    MODEL("model"),
    DRIFT("drift"),
    ADMIN("admin"),
    GC("gc"),
    JIT("jit"),
    OTHER("other");

    final String label;

    Group(String label) {
      this.label = label;
    }

    /** The group of a thread whose name, as the kernel keeps it, is {@code comm}. */
    static Group of(String comm) {
      if (comm.startsWith("modelgate-io")) {
        return EVENT_LOOP;
      }
      if (comm.startsWith("modelgate-model")) {
        return MODEL;
      }
      if (comm.startsWith("modelgate-drift")) {
        return DRIFT;
      }
      if (comm.startsWith("modelgate-admin")) {
        return ADMIN;
      }
      if (comm.startsWith("GC Thread") || comm.startsWith("G1 ") || comm.startsWith("ZWorker")
          || comm.startsWith("ZDriver") || comm.startsWith("ZDirector") || comm.startsWith("Shenandoah")) {
        return GC;
      }
      if (comm.startsWith("C1 Compiler") || comm.startsWith("C2 Compiler")) {
        return JIT;
      }
      return OTHER;
    }
  }

  /** One thread as last read: its group, and its nanoseconds on a core and waiting for one. */
  private record Seen(Group group, long cpuNanos, long waitNanos) {}

  private final Path tasks;
  private final LongSupplier nanoTime;
  // Guarded by this.
  private final Map<Long, Seen> seen = new HashMap<>();
  private final long[] endedCpu = new long[Group.values().length];
  private final long[] endedWait = new long[Group.values().length];
  private final long[] cpu = new long[Group.values().length];
  private final long[] waited = new long[Group.values().length];
  private final LongSupplier processCpuNanos;
  /** The process's CPU time that no reading of a thread saw (threads that ended unseen), ns; only grows. */
  private long unseenCpu;
  private long readAt;
  private boolean everRead;

  /**
   * @param tasks the directory of the process's threads ({@code /proc/self/task})
   * @param nanoTime the clock the readings are spaced by
   */
  ThreadScheduling(Path tasks, LongSupplier nanoTime) {
    this(tasks, nanoTime, null);
  }

  /**
   * @param processCpuNanos the whole process's CPU time, ended threads included (ns), read after
   *     the threads: what exceeds their sum is counted in {@code other}; null: none
   */
  ThreadScheduling(Path tasks, LongSupplier nanoTime, LongSupplier processCpuNanos) {
    this.tasks = tasks;
    this.nanoTime = nanoTime;
    this.processCpuNanos = processCpuNanos;
  }

  /** The process's threads, or null where the kernel keeps no scheduler statistics for them. */
  static ThreadScheduling ofThisProcess() {
    Path self = Path.of("/proc/thread-self/schedstat");
    if (!Files.isReadable(self) || readTwo(self) == null) {
      return null;
    }
    java.lang.management.OperatingSystemMXBean os = java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    LongSupplier processCpu = os instanceof com.sun.management.OperatingSystemMXBean process && process.getProcessCpuTime() >= 0
        ? process::getProcessCpuTime
        : null;
    return new ThreadScheduling(Path.of("/proc/self/task"), System::nanoTime, processCpu);
  }

  /**
   * Exports {@code modelgate_threads_cpu_seconds_total{threads}} and {@code
   * modelgate_threads_run_queue_wait_seconds_total{threads}}, one series for each group; returns
   * this. Micrometer's function counters hold this object weakly: the caller keeps it.
   */
  ThreadScheduling bindTo(MeterRegistry registry) {
    for (Group group : Group.values()) {
      FunctionCounter.builder("modelgate.threads.cpu", this, t -> t.cpuSeconds(group))
          .description("CPU time of the server's threads, by what they do (the kernel's count; Linux)")
          .baseUnit("seconds")
          .tag("threads", group.label)
          .register(registry);
      FunctionCounter.builder("modelgate.threads.run.queue.wait", this, t -> t.waitSeconds(group))
          .description("Time the server's threads spent runnable and waiting for a core, by what they do (the kernel's"
              + " count; Linux): a rate near a thread's CPU rate says the replica is short of CPU")
          .baseUnit("seconds")
          .tag("threads", group.label)
          .register(registry);
    }
    return this;
  }

  /** Seconds on a core of {@code group}'s threads, ended ones included, as of the latest reading. */
  synchronized double cpuSeconds(Group group) {
    refresh();
    return cpu[group.ordinal()] / 1e9;
  }

  /** Seconds {@code group}'s threads spent waiting for a core, ended ones included, as of the latest reading. */
  synchronized double waitSeconds(Group group) {
    refresh();
    return waited[group.ordinal()] / 1e9;
  }

  /** Reads every thread again if the last reading is older than {@link #REFRESH_NANOS}. */
  private void refresh() {
    long now = nanoTime.getAsLong();
    if (everRead && now - readAt < REFRESH_NANOS) {
      return;
    }
    everRead = true;
    readAt = now;
    Map<Long, Seen> found = new HashMap<>();
    try (DirectoryStream<Path> threads = Files.newDirectoryStream(tasks)) {
      for (Path thread : threads) {
        long tid;
        try {
          tid = Long.parseLong(thread.getFileName().toString());
        } catch (NumberFormatException e) {
          continue;
        }
        long[] figures = readTwo(thread.resolve("schedstat"));
        String comm = readComm(thread.resolve("comm"));
        if (figures != null && comm != null) {
          found.put(tid, new Seen(Group.of(comm), figures[0], figures[1]));
        }
      }
    } catch (IOException e) {
      return; // the last reading stands
    }
    // Threads gone since, or whose id now names another thread (its figures went back): their last
    // figures stay in their group. A thread that renamed itself stays in the group it was first read in.
    for (Iterator<Map.Entry<Long, Seen>> it = seen.entrySet().iterator(); it.hasNext(); ) {
      Map.Entry<Long, Seen> entry = it.next();
      Seen before = entry.getValue();
      Seen current = found.get(entry.getKey());
      if (current == null || current.cpuNanos() < before.cpuNanos() || current.waitNanos() < before.waitNanos()) {
        endedCpu[before.group().ordinal()] += before.cpuNanos();
        endedWait[before.group().ordinal()] += before.waitNanos();
        it.remove();
      } else if (current.group() != before.group()) {
        found.put(entry.getKey(), new Seen(before.group(), current.cpuNanos(), current.waitNanos()));
      }
    }
    seen.putAll(found);
    System.arraycopy(endedCpu, 0, cpu, 0, cpu.length);
    System.arraycopy(endedWait, 0, waited, 0, waited.length);
    for (Seen thread : seen.values()) {
      cpu[thread.group().ordinal()] += thread.cpuNanos();
      waited[thread.group().ordinal()] += thread.waitNanos();
    }
    if (processCpuNanos != null) {
      // Threads that started and ended between two readings (a version's session-opening thread,
      // a pool's short-lived worker), and ended threads' last moments: the process's CPU time
      // beyond the threads' sum. Read after them, it also holds what the live threads ran since
      // their reading, which the next reading counts as theirs: kept only where it grows, so the
      // counter never goes back and over-counts at most the largest such gap (a reading's length).
      long counted = 0;
      for (long nanos : cpu) {
        counted += nanos;
      }
      unseenCpu = Math.max(unseenCpu, processCpuNanos.getAsLong() - counted);
      cpu[Group.OTHER.ordinal()] += unseenCpu;
    }
  }

  /** The first two fields of a {@code schedstat} file (ns on a core, ns waiting for one), or null. */
  static long[] readTwo(Path schedstat) {
    String text;
    try {
      text = Files.readString(schedstat, StandardCharsets.US_ASCII);
    } catch (IOException | RuntimeException e) {
      return null;
    }
    String[] fields = text.trim().split(" ");
    if (fields.length < 2) {
      return null;
    }
    try {
      return new long[] {Long.parseLong(fields[0]), Long.parseLong(fields[1])};
    } catch (NumberFormatException e) {
      return null;
    }
  }

  private static String readComm(Path comm) {
    try {
      return Files.readString(comm, StandardCharsets.UTF_8).strip();
    } catch (IOException | RuntimeException e) {
      return null;
    }
  }
}

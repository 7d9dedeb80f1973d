package io.modelgate.bench;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The in-process server's threads as its scrape counts them ({@code
 * modelgate_threads_cpu_seconds_total} and {@code modelgate_threads_run_queue_wait_seconds_total},
 * by what the threads do): seconds on a core and seconds runnable waiting for one, at one moment.
 * Two readings around a run say where the server's CPU went while it ran, and how much of its busy
 * time went to waiting for a core.
 *
 * @param cpu seconds on a core by group ({@code event_loop}, {@code model}, ...)
 * @param waited seconds waiting for a core by group
 */
record ServerThreads(Map<String, Double> cpu, Map<String, Double> waited) {
  /** The groups a report names, in its order. */
  static final List<String> GROUPS = List.of("event_loop", "model", "drift", "admin", "gc", "jit", "other");
  private static final String CPU = "modelgate.threads.cpu";
  private static final String WAIT = "modelgate.threads.run.queue.wait";

  /** The counters now, or null where the server exports none (not Linux). */
  static ServerThreads read(MeterRegistry registry) {
    Map<String, Double> cpu = new LinkedHashMap<>();
    Map<String, Double> wait = new LinkedHashMap<>();
    for (String group : GROUPS) {
      FunctionCounter onCore = registry.find(CPU).tag("threads", group).functionCounter();
      FunctionCounter waiting = registry.find(WAIT).tag("threads", group).functionCounter();
      if (onCore == null || waiting == null) {
        return null;
      }
      cpu.put(group, onCore.count());
      wait.put(group, waiting.count());
    }
    return new ServerThreads(cpu, wait);
  }

  /** What ran since {@code before}: each group's seconds on a core and waiting, as differences; null if either is null. */
  ServerThreads since(ServerThreads before) {
    if (before == null) {
      return null;
    }
    Map<String, Double> cpuSince = new LinkedHashMap<>();
    Map<String, Double> waitedSince = new LinkedHashMap<>();
    for (String group : GROUPS) {
      cpuSince.put(group, cpu.get(group) - before.cpu.get(group));
      waitedSince.put(group, waited.get(group) - before.waited.get(group));
    }
    return new ServerThreads(cpuSince, waitedSince);
  }

  /** This and {@code other} added, group by group (spans of several runs); this where {@code other} is null. */
  ServerThreads plus(ServerThreads other) {
    if (other == null) {
      return this;
    }
    Map<String, Double> cpuSum = new LinkedHashMap<>(cpu);
    Map<String, Double> waitedSum = new LinkedHashMap<>(waited);
    other.cpu.forEach((group, seconds) -> cpuSum.merge(group, seconds, Double::sum));
    other.waited.forEach((group, seconds) -> waitedSum.merge(group, seconds, Double::sum));
    return new ServerThreads(cpuSum, waitedSum);
  }

  /**
   * The event loop and the model threads between {@code before} and {@code after}, for a report:
   * "event loop 3.21 s on a core, 1.07 s waiting for one (25% of its busy time); model threads ...";
   * "not counted" where either is null.
   */
  static String between(ServerThreads before, ServerThreads after) {
    if (before == null || after == null) {
      return NOT_COUNTED;
    }
    ServerThreads spent = after.since(before);
    return part("event loop", spent.cpu.get("event_loop"), spent.waited.get("event_loop"))
        + "; " + part("model threads", spent.cpu.get("model"), spent.waited.get("model"));
  }

  /**
   * Every group's CPU in {@code spent} (differences, {@link #since}) for each of {@code calls}, µs,
   * with the share of its busy time spent waiting for a core: "event loop 14.6 µs (31% waiting),
   * model 19.2 µs (40% waiting), ...". Groups that ran less than 0.05 µs a call are left out. Where
   * the load generator runs in the server's process, {@code clientCpuSeconds} (its threads' CPU over
   * the same span, {@link #loadGeneratorCpuSeconds}) is taken out of {@code other}, where the
   * server counts it, and named apart; 0 otherwise.
   */
  static String perCall(ServerThreads spent, long calls, double clientCpuSeconds) {
    if (spent == null || calls <= 0) {
      return NOT_COUNTED;
    }
    StringBuilder text = new StringBuilder();
    for (String group : GROUPS) {
      double cpu = spent.cpu.get(group) - (group.equals("other") ? Math.min(clientCpuSeconds, spent.cpu.get(group)) : 0);
      double waited = spent.waited.get(group);
      if (cpu * 1e6 / calls < 0.05) {
        continue;
      }
      text.append(text.length() == 0 ? "" : ", ").append(String.format("%s %.1f µs (%.0f%% waiting)", group.replace('_', ' '),
          cpu * 1e6 / calls, 100 * waited / (cpu + waited)));
    }
    if (clientCpuSeconds * 1e6 / calls >= 0.05) {
      text.append(text.length() == 0 ? "" : "; ").append(String.format("and the load generator in the same process %.1f µs",
          clientCpuSeconds * 1e6 / calls));
    }
    return text.length() == 0 ? "none counted" : text.toString();
  }

  /**
   * Seconds on a core of this process's load-generator threads (named {@code modelgate-bench-*}:
   * its connections' event loops, its pacing and progress threads), from the JVM's per-thread CPU
   * time, which the kernel counts as it counts the server's; 0 where the JVM does not measure it.
   */
  static double loadGeneratorCpuSeconds() {
    java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
    if (!threads.isThreadCpuTimeSupported() || !threads.isThreadCpuTimeEnabled()) {
      return 0;
    }
    long nanos = 0;
    for (java.lang.management.ThreadInfo info : threads.getThreadInfo(threads.getAllThreadIds())) {
      if (info != null && info.getThreadName().startsWith("modelgate-bench")) {
        nanos += Math.max(0, threads.getThreadCpuTime(info.getThreadId()));
      }
    }
    return nanos / 1e9;
  }

  private static final String NOT_COUNTED = "not counted (the kernel's per-thread statistics are Linux's)";

  private static String part(String what, double cpu, double wait) {
    return String.format("%s %.2f s on a core, %.2f s waiting for one (%.0f%% of its busy time)", what, cpu, wait,
        cpu + wait <= 0 ? 0 : 100 * wait / (cpu + wait));
  }
}

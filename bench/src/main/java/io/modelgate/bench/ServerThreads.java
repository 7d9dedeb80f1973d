package io.modelgate.bench;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * The in-process server's event loops and model threads as its scrape counts them ({@code
 * modelgate_threads_cpu_seconds_total} and {@code modelgate_threads_run_queue_wait_seconds_total}):
 * seconds on a core and seconds runnable waiting for one, at one moment. Two readings around a run
 * say how much of the server's busy time went to waiting for a core while it ran.
 *
 * @param eventLoopCpu seconds the event loops ran
 * @param eventLoopWait seconds they waited for a core
 * @param modelCpu seconds the versions' batchers and executors ran
 * @param modelWait seconds they waited for a core
 */
record ServerThreads(double eventLoopCpu, double eventLoopWait, double modelCpu, double modelWait) {
  /** The counters now, or null where the server exports none (not Linux). */
  static ServerThreads read(MeterRegistry registry) {
    FunctionCounter loopCpu = counter(registry, "modelgate.threads.cpu", "event_loop");
    FunctionCounter loopWait = counter(registry, "modelgate.threads.run.queue.wait", "event_loop");
    FunctionCounter modelCpu = counter(registry, "modelgate.threads.cpu", "model");
    FunctionCounter modelWait = counter(registry, "modelgate.threads.run.queue.wait", "model");
    if (loopCpu == null || loopWait == null || modelCpu == null || modelWait == null) {
      return null;
    }
    return new ServerThreads(loopCpu.count(), loopWait.count(), modelCpu.count(), modelWait.count());
  }

  private static FunctionCounter counter(MeterRegistry registry, String name, String threads) {
    return registry.find(name).tag("threads", threads).functionCounter();
  }

  /**
   * What ran between {@code before} and {@code after}, for a report: "event loop 3.21 s on a core,
   * 1.07 s waiting for one (25% of its busy time); model threads ..."; "not counted" where either
   * is null.
   */
  static String between(ServerThreads before, ServerThreads after) {
    if (before == null || after == null) {
      return "not counted (the kernel's per-thread statistics are Linux's)";
    }
    return part("event loop", after.eventLoopCpu - before.eventLoopCpu, after.eventLoopWait - before.eventLoopWait)
        + "; " + part("model threads", after.modelCpu - before.modelCpu, after.modelWait - before.modelWait);
  }

  private static String part(String what, double cpu, double wait) {
    return String.format("%s %.2f s on a core, %.2f s waiting for one (%.0f%% of its busy time)", what, cpu, wait,
        cpu + wait <= 0 ? 0 : 100 * wait / (cpu + wait));
  }
}

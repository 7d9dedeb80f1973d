package io.modelgate.bench;

import io.modelgate.runtime.threads.DaemonThreads;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;

/**
 * Runs a benchmark's phase that blocks for its length (a load generator's run, connections made
 * and dropped over a window) on a daemon thread of its own, beside the phases the calling thread
 * runs. Not {@code CompletableFuture.supplyAsync} without an executor: on a two-core machine its
 * default is a thread a task on JDK 17 but the common pool with one thread on JDK 25, where such
 * phases would run one after another instead of together.
 */
final class OwnThread {
  private OwnThread() {}

  /** Starts {@code task} on a new daemon thread named {@code name}; its result or failure completes the future. */
  static <T> CompletableFuture<T> supply(String name, Callable<T> task) {
    CompletableFuture<T> result = new CompletableFuture<>();
    DaemonThreads.thread(name, () -> {
      try {
        result.complete(task.call());
      } catch (Throwable e) {
        result.completeExceptionally(e);
      }
    }).start();
    return result;
  }
}

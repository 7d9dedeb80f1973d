package io.modelgate.gateway.testing;

import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * Waits for what a background thread does (a file watcher's check, a connection's end, etcd's
 * watch): polls {@code condition} and fails the test with {@code what} after 30 s. A deadline for a
 * test that would otherwise hang, not a measurement: the condition usually holds in milliseconds.
 */
public final class Eventually {
  private Eventually() {}

  public static void eventually(String what, BooleanSupplier condition) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("not within 30 s: " + what);
      }
      Thread.sleep(20);
    }
  }
}

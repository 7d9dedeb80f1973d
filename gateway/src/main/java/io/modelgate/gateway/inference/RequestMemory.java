package io.modelgate.gateway.inference;

import io.modelgate.runtime.error.InferenceException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The bytes of request messages the server holds, from admission until they are answered, across
 * every version, and their limit. A version's queue bounds how many requests wait, not how large
 * they are: a model with a dimension of any length takes messages up to the inbound limit (128 MiB
 * by default), so a full queue of them would hold far more than the heap. Past the limit a request
 * is refused {@code RESOURCE_EXHAUSTED} at once, before it is decoded. As fair admission keeps a
 * quarter of each queue, a quarter of the bytes is kept for a tenant with nothing waiting for the
 * version it calls ({@link io.modelgate.gateway.callers.FairShare#RESERVE}): one tenant's large
 * requests cannot take all of it.
 *
 * <p>Threads: {@link #acquire} on the event loop that admits a request, {@link #release} on the
 * thread that answers it; one atomic counter, no lock.
 */
public final class RequestMemory {
  /** The default limit: a quarter of the JVM's heap ({@code -Xmx}). */
  public static long defaultLimit() {
    return Runtime.getRuntime().maxMemory() / 4;
  }

  private final long limit;
  /** What requests that may not use the reserve can fill: the limit less its reserved share. */
  private final long unreserved;
  private final AtomicLong held = new AtomicLong();

  /** @param limit bytes of request messages held at once, at least 1 */
  public RequestMemory(long limit) {
    if (limit < 1) {
      throw new IllegalArgumentException("request memory: " + limit + " bytes (expected: at least 1)");
    }
    this.limit = limit;
    this.unreserved = (long) (limit * (1 - io.modelgate.gateway.callers.FairShare.RESERVE));
  }

  /**
   * Holds {@code bytes} for a request until {@link #release}, or refuses it when that would pass
   * the limit. A request larger than the whole limit is refused even when nothing else is held.
   *
   * @param scheduler the request's version: a refusal asks for a retry once it has served what
   *     waits
   * @param mayUseReserve whether the whole limit is open to the request, or only the part not
   *     kept for tenants with nothing waiting ({@link
   *     io.modelgate.gateway.callers.FairShare.Place#mayUseReserve})
   * @throws InferenceException RESOURCE_EXHAUSTED, with that hint
   */
  void acquire(long bytes, io.modelgate.runtime.execution.VersionScheduler scheduler, boolean mayUseReserve) {
    long open = mayUseReserve ? limit : unreserved;
    long now = held.addAndGet(bytes);
    if (now > open) {
      held.addAndGet(-bytes);
      // Concatenated, not String.format: refused under load, many times a second.
      throw InferenceException.resourceExhausted("the server holds " + mebibytes(now - bytes)
          + " of requests not yet answered, and this one's " + mebibytes(bytes) + " would pass "
          + (mayUseReserve ? "its limit of " + mebibytes(limit)
              : mebibytes(unreserved) + ", the part of its limit of " + mebibytes(limit) + " not kept for tenants with nothing waiting")
          + " (--request-memory); retry later or send smaller requests", scheduler.retryAfter(scheduler.queuedCount()));
    }
  }

  /** Lets go of {@code bytes} that {@link #acquire} held. */
  void release(long bytes) {
    held.addAndGet(-bytes);
  }

  /**
   * Exports {@code modelgate_request_memory_held_bytes} and {@code
   * modelgate_request_memory_limit_bytes}; returns this.
   */
  public RequestMemory bindTo(io.micrometer.core.instrument.MeterRegistry registry) {
    io.micrometer.core.instrument.Gauge.builder("modelgate.request.memory.held", this, RequestMemory::held)
        .description("Bytes of request messages admitted and not yet answered, across versions")
        .baseUnit("bytes")
        .register(registry);
    io.micrometer.core.instrument.Gauge.builder("modelgate.request.memory.limit", this, RequestMemory::limit)
        .description("The most bytes of request messages held at once (--request-memory); past it requests are refused")
        .baseUnit("bytes")
        .register(registry);
    return this;
  }

  /** Bytes held now. */
  public long held() {
    return held.get();
  }

  /** The limit, bytes. */
  public long limit() {
    return limit;
  }

  private static String mebibytes(long bytes) {
    return bytes >= (10L << 20) ? (bytes >> 20) + " MiB" : bytes >= 10_240 ? (bytes >> 10) + " KiB" : bytes + " bytes";
  }
}

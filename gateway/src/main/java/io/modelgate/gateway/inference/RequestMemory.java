package io.modelgate.gateway.inference;

import io.modelgate.runtime.error.InferenceException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The bytes of request messages the server holds, from admission until they are answered, across
 * every version, and their limit. A version's queue bounds how many requests wait, not how large
 * they are: a model with a dimension of any length takes messages up to the inbound limit (128 MiB
 * by default), so a full queue of them would hold far more than the heap. Past the limit a request
 * is refused {@code RESOURCE_EXHAUSTED} at once, before it is decoded.
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
  private final AtomicLong held = new AtomicLong();

  /** @param limit bytes of request messages held at once, at least 1 */
  public RequestMemory(long limit) {
    if (limit < 1) {
      throw new IllegalArgumentException("request memory: " + limit + " bytes (expected: at least 1)");
    }
    this.limit = limit;
  }

  /**
   * Holds {@code bytes} for a request until {@link #release}, or refuses it when that would pass
   * the limit. A request larger than the whole limit is refused even when nothing else is held.
   *
   * @param scheduler the request's version: a refusal asks for a retry once it has served what
   *     waits
   * @throws InferenceException RESOURCE_EXHAUSTED, with that hint
   */
  void acquire(long bytes, io.modelgate.runtime.execution.VersionScheduler scheduler) {
    long now = held.addAndGet(bytes);
    if (now > limit) {
      held.addAndGet(-bytes);
      // Concatenated, not String.format: refused under load, many times a second.
      throw InferenceException.resourceExhausted("the server holds " + mebibytes(now - bytes)
          + " of requests not yet answered, and this one's " + mebibytes(bytes) + " would pass its limit of "
          + mebibytes(limit) + " (--request-memory); retry later or send smaller requests", scheduler.retryAfter(scheduler.queuedCount()));
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

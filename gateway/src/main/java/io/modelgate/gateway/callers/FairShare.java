package io.modelgate.gateway.callers;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.LoadedVersion;
import java.time.Duration;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Fair admission to a version's queue among tenants: with caller identity on, the tenants that
 * have requests waiting for a version share its queue ({@code queue_capacity}) equally, and a
 * quarter of it is always kept free for a tenant that has none waiting. A tenant flooding a
 * version is refused (RESOURCE_EXHAUSTED, with a retry hint) once it holds its share, instead of
 * filling the queue and getting everyone else refused; a tenant within its share is admitted.
 *
 * <p>Counts run from admission to the answer. Threads: request threads admit, answering threads
 * release; counters are atomic, the per-version table is looked up under a short lock (only with
 * a callers file).
 */
public final class FairShare {
  /** Share of a version's queue kept free for tenants with nothing waiting. */
  static final double RESERVE = 0.25;

  /** Per load of a version: tenant → requests admitted and not answered. */
  private final Map<LoadedVersion, Map<String, AtomicInteger>> versions = new WeakHashMap<>();

  /** An admitted request's place in its tenant's share; released once, when it is answered. */
  public static final class Place {
    static final Place NONE = new Place(null);
    private final AtomicInteger count;

    Place(AtomicInteger count) {
      this.count = count;
    }

    public void release() {
      if (count != null) {
        count.decrementAndGet();
      }
    }
  }

  /**
   * Admits a request of {@code caller} to {@code loaded}'s queue, or refuses it when the tenant
   * already holds its share. Anonymous callers (no callers file) are not counted.
   *
   * @throws InferenceException RESOURCE_EXHAUSTED with a retry hint
   */
  public Place admit(CallerAuth.Caller caller, io.modelgate.runtime.repository.ModelVersion version, LoadedVersion loaded) {
    if (caller.entry() == null) {
      return Place.NONE;
    }
    Map<String, AtomicInteger> tenants;
    synchronized (versions) {
      tenants = versions.computeIfAbsent(loaded, l -> new ConcurrentHashMap<>());
    }
    AtomicInteger mine = tenants.computeIfAbsent(caller.tenant(), t -> new AtomicInteger());
    int active = 0;
    for (AtomicInteger count : tenants.values()) {
      if (count.get() > 0 || count == mine) {
        active++;
      }
    }
    int capacity = loaded.settings().scheduler().queueCapacity();
    int share = Math.max(1, (int) (capacity * (1 - RESERVE) / active));
    if (mine.incrementAndGet() > share) {
      mine.decrementAndGet();
      throw InferenceException.overQuota(String.format(
          "tenant '%s' holds its fair share of %s (%d of %d places, shared by %d tenants with requests waiting); retry shortly",
          caller.tenant(), version.label(), share, capacity, active), Duration.ofMillis(10));
    }
    return new Place(mine);
  }
}

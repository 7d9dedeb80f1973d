package io.modelgate.gateway.callers;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.LoadedVersion;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Fair admission to a version's queue among tenants: with caller identity on, the tenants that
 * have requests waiting for a version share its queue ({@code queue_capacity}) in proportion to
 * their weights ({@link CallerPolicy.Tenant#weight}; equally when all are 1), and a quarter of it is
 * always kept free for a tenant that has none waiting. A tenant flooding a
 * version is refused (RESOURCE_EXHAUSTED, with a retry hint) once it holds its share, instead of
 * filling the queue and getting everyone else refused; a tenant within its share is admitted.
 *
 * <p>Counts run from admission to the answer. Threads: request threads admit, answering threads
 * release; counters are atomic, the per-version table is looked up under a short lock (only with
 * a callers file). Admission costs the same with ten tenants or ten thousand: each version counts
 * its tenants with requests waiting as they come and go.
 */
public final class FairShare {
  /**
   * Share of a version's queue kept free for tenants with nothing waiting; the server's request
   * memory keeps the same share of its bytes for them.
   */
  public static final double RESERVE = 0.25;

  /** Per load of a version: its tenants' shares. */
  private final Map<LoadedVersion, Shares> versions = new WeakHashMap<>();

  /**
   * One version's tenants: requests admitted and not answered, by tenant, and the weights of the
   * tenants that have any.
   */
  private static final class Shares {
    final Map<String, Held> held = new ConcurrentHashMap<>();
    /** Sum of the weights of the tenants holding at least one place: changed only as a count leaves or reaches 0. */
    final AtomicInteger active = new AtomicInteger();
  }

  /**
   * A tenant's places in one version's queue, counted at one weight. A callers file read again with
   * another weight for the tenant starts a new count; requests admitted before release into the one
   * they were counted in, so the active weights stay exact.
   */
  private static final class Held {
    final AtomicInteger count = new AtomicInteger();
    final int weight;

    Held(int weight) {
      this.weight = weight;
    }
  }

  /** An admitted request's place in its tenant's share; released once, when it is answered. */
  public static final class Place {
    static final Place NONE = new Place(null, null, true);
    private final Held held;
    private final AtomicInteger active;
    private final boolean first;

    Place(Held held, AtomicInteger active, boolean first) {
      this.held = held;
      this.active = active;
      this.first = first;
    }

    /**
     * Whether the request may use what is kept for tenants with nothing waiting: its tenant had no
     * other request waiting for the version when it was admitted, or callers are not identified.
     */
    public boolean mayUseReserve() {
      return first;
    }

    public void release() {
      if (held != null && held.count.decrementAndGet() == 0) {
        active.addAndGet(-held.weight);
      }
    }
  }

  /** The weights of the tenants holding places in {@code loaded}'s queue now, summed (for tests). */
  int activeTenants(LoadedVersion loaded) {
    synchronized (versions) {
      Shares shares = versions.get(loaded);
      return shares == null ? 0 : shares.active.get();
    }
  }

  /**
   * Admits a request of {@code caller} to {@code loaded}'s queue, or refuses it when the tenant
   * already holds its share. Anonymous callers (no callers file) are not counted.
   *
   * @param weight the tenant's weight ({@link Quotas#weight}: the admin API's, else the file's)
   * @throws InferenceException RESOURCE_EXHAUSTED with a retry hint
   */
  public Place admit(CallerAuth.Caller caller, int weight, io.modelgate.runtime.repository.ModelVersion version,
      LoadedVersion loaded) {
    if (caller.entry() == null) {
      return Place.NONE;
    }
    Shares shares;
    synchronized (versions) {
      shares = versions.computeIfAbsent(loaded, l -> new Shares());
    }
    Held mine = shares.held.get(caller.tenant());
    if (mine == null || mine.weight != weight) {
      // The weight changed (the callers file was read again): a new count from here on.
      Held counted = mine;
      mine = shares.held.compute(caller.tenant(), (t, h) -> h != null && h != counted && h.weight == weight ? h : new Held(weight));
    }
    // This tenant counts among the active whether or not it holds a place yet.
    int active = Math.max(weight, shares.active.get() + (mine.count.get() == 0 ? weight : 0));
    int capacity = loaded.settings().scheduler().queueCapacity();
    int share = Math.max(1, (int) (capacity * (1 - RESERVE) * weight / active));
    int held = mine.count.incrementAndGet();
    Place place = new Place(mine, shares.active, held == 1);
    if (held == 1) {
      shares.active.addAndGet(weight);
    }
    if (held > share) {
      place.release();
      // Retry once the version has served the share this tenant holds, its lane getting one turn
      // among the tenants waiting (all their shares), at the pace of the executors that serve a backlog.
      java.time.Duration retry = loaded.scheduler().backlogRetryAfter((long) share * active / weight);
      // Concatenated, not String.format: refused under a flood, many times a second.
      throw InferenceException.overFairShare("tenant '" + caller.tenant() + "' holds its fair share of " + version.label()
          + " (" + share + " of " + capacity + " places: its weight " + weight + " of " + active
          + ", the weights of the tenants with requests waiting); retry shortly", retry);
    }
    return place;
  }
}

package io.modelgate.gateway.callers;

import io.github.bucket4j.Bandwidth;
import io.github.bucket4j.Bucket;
import io.github.bucket4j.ConsumptionProbe;
import io.github.bucket4j.TimeMeter;
import io.modelgate.runtime.error.InferenceException;
import java.time.Clock;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Each tenant's quota and weight — set through the admin API, else the callers file's (the quota
 * measure by measure: those the API leaves to the file stay the file's). The quota: requests and
 * rows a second (Bucket4j token buckets holding one second's worth) and requests in flight. Over a limit, a request is refused at once
 * with RESOURCE_EXHAUSTED and the time after which a retry can succeed ({@link
 * InferenceException#retryAfter}), sent to the client as a {@code google.rpc.RetryInfo}.
 *
 * <p>Threads: request threads call {@link #admit}, answering threads {@link Admission#release};
 * the buckets are lock-free. A tenant's buckets are made again when its quota in force changes (a
 * new file or API quota that comes to the same limits keeps them).
 *
 * <p>Memory: one entry (two buckets and a counter) per tenant of the callers file with a quota
 * that has been called. When the file is read again, the first request resolved under it lets go
 * of the entries of tenants it no longer names.
 */
public final class Quotas {
  private final TimeMeter time;
  private final Map<String, State> states = new ConcurrentHashMap<>();
  private final java.util.function.Function<String, CallerPolicy.QuotaOverride> overrides;
  private final java.util.function.Function<String, Integer> weights;
  /** The callers file's tenants in force (the same map until the file is read again), or null. */
  private final java.util.function.Supplier<? extends Map<String, ?>> fileTenants;
  /** The tenants' map the entries were last pruned for. */
  private volatile Map<String, ?> prunedFor;

  /**
   * A tenant's buckets for one quota in force, with the file's quota and the API's override it was
   * resolved from (compared by identity, so that a request finds it without resolving again).
   */
  private static final class State {
    final CallerPolicy.Quota quota;
    final CallerPolicy.Quota file;
    final CallerPolicy.QuotaOverride override;
    final Bucket requests;
    final Bucket rows;
    final AtomicInteger inFlight;

    State(CallerPolicy.Quota quota, CallerPolicy.Quota file, CallerPolicy.QuotaOverride override, TimeMeter time) {
      this.quota = quota;
      this.file = file;
      this.override = override;
      this.requests = quota.requestsPerSecond() > 0 ? bucket(quota.requestsPerSecond(), time) : null;
      this.rows = quota.rowsPerSecond() > 0 ? bucket(quota.rowsPerSecond(), time) : null;
      this.inFlight = new AtomicInteger();
    }

    /** The same buckets and count, resolved from another file quota or override to the same limits. */
    private State(State same, CallerPolicy.Quota file, CallerPolicy.QuotaOverride override) {
      this.quota = same.quota;
      this.file = file;
      this.override = override;
      this.requests = same.requests;
      this.rows = same.rows;
      this.inFlight = same.inFlight;
    }

    boolean resolvedFrom(CallerPolicy.Quota file, CallerPolicy.QuotaOverride override) {
      return this.file == file && this.override == override;
    }

    /** A bucket of {@code perSecond} tokens, refilled continuously; precise to a thousandth of a token. */
    private static Bucket bucket(double perSecond, TimeMeter time) {
      long milliTokens = Math.max(1, Math.round(perSecond * 1000));
      return Bucket.builder()
          .addLimit(Bandwidth.builder().capacity(milliTokens).refillGreedy(milliTokens, Duration.ofSeconds(1)).build())
          .withCustomTimePrecision(time)
          .build();
    }
  }

  /** A request admitted under its tenant's quota; released exactly once, when it is answered. */
  public static final class Admission {
    static final Admission FREE = new Admission(null);
    private final AtomicInteger inFlight;

    Admission(AtomicInteger inFlight) {
      this.inFlight = inFlight;
    }

    public void release() {
      if (inFlight != null) {
        inFlight.decrementAndGet();
      }
    }
  }

  /** No quota is set through the admin API. */
  public Quotas(Clock clock) {
    this(clock, tenant -> null, tenant -> null);
  }

  /**
   * @param overrides the quota set through the admin API for a tenant, in place of the callers
   *     file's measure by measure, or null; called on request threads, so it must not block
   * @param weights likewise, the weight set through the admin API for a tenant, or null
   */
  public Quotas(Clock clock, java.util.function.Function<String, CallerPolicy.QuotaOverride> overrides,
      java.util.function.Function<String, Integer> weights) {
    this(clock, overrides, weights, () -> null);
  }

  /**
   * As {@link #Quotas(Clock, java.util.function.Function, java.util.function.Function)}, letting go
   * of the entries of tenants the callers file no longer names.
   *
   * @param fileTenants the callers file's tenants in force ({@link CallerPolicy#tenants}: the same
   *     map until the file is read again), or null; called when a tenant's quota is resolved again
   */
  public Quotas(Clock clock, java.util.function.Function<String, CallerPolicy.QuotaOverride> overrides,
      java.util.function.Function<String, Integer> weights, java.util.function.Supplier<? extends Map<String, ?>> fileTenants) {
    this.overrides = overrides;
    this.weights = weights;
    this.fileTenants = fileTenants;
    this.time = new TimeMeter() {
      @Override
      public long currentTimeNanos() {
        return clock.millis() * 1_000_000L;
      }

      @Override
      public boolean isWallClockBased() {
        return true;
      }
    };
  }

  /**
   * {@code caller}'s weight where tenants contend for a version ({@link CallerPolicy.Tenant#weight}):
   * the one set through the admin API, else the callers file's; 1 for an anonymous caller.
   */
  public int weight(CallerAuth.Caller caller) {
    if (caller.entry() == null) {
      return 1;
    }
    Integer override = weights.apply(caller.tenant());
    return override != null ? override : caller.entry().weight();
  }

  /**
   * Admits one request of {@code rows} rows for {@code caller}, or refuses it.
   *
   * @throws InferenceException RESOURCE_EXHAUSTED with {@link InferenceException#retryAfter} when a
   *     limit is reached; nothing is taken then
   */
  public Admission admit(CallerAuth.Caller caller, int rows) {
    if (caller.entry() == null) {
      return Admission.FREE;
    }
    CallerPolicy.QuotaOverride override = overrides.apply(caller.tenant());
    CallerPolicy.Quota file = caller.entry().quota();
    if (override == null && !file.limits()) {
      return Admission.FREE;
    }
    State state = states.get(caller.tenant());
    if (state == null || !state.resolvedFrom(file, override)) {
      state = resolve(caller.tenant(), file, override);
    }
    CallerPolicy.Quota quota = state.quota;
    if (!quota.limits()) {
      return Admission.FREE;
    }
    if (quota.inFlight() > 0 && state.inFlight.incrementAndGet() > quota.inFlight()) {
      state.inFlight.decrementAndGet();
      throw InferenceException.overQuota("tenant '" + caller.tenant() + "' has " + quota.inFlight()
          + " requests in flight, its quota; retry when one is answered", Duration.ofMillis(10));
    }
    if (state.requests != null) {
      ConsumptionProbe probe = state.requests.tryConsumeAndReturnRemaining(1000);
      if (!probe.isConsumed()) {
        refuse(state, quota, caller, "requests", quota.requestsPerSecond(), probe);
      }
    }
    if (state.rows != null) {
      ConsumptionProbe probe = state.rows.tryConsumeAndReturnRemaining(1000L * rows);
      if (!probe.isConsumed()) {
        if (state.requests != null) {
          state.requests.addTokens(1000);
        }
        refuse(state, quota, caller, "rows", quota.rowsPerSecond(), probe);
      }
    }
    return quota.inFlight() > 0 ? new Admission(state.inFlight) : Admission.FREE;
  }

  /** The tenant's state for the quota {@code override} over {@code file}: the same buckets when its limits are the same. */
  private State resolve(String tenant, CallerPolicy.Quota file, CallerPolicy.QuotaOverride override) {
    Map<String, ?> named = fileTenants.get();
    if (named != null && named != prunedFor) {
      // The file was read again: forget the tenants it no longer names (once per reading).
      prunedFor = named;
      states.keySet().removeIf(name -> !named.containsKey(name));
    }
    CallerPolicy.Quota quota = override != null ? override.over(file) : file;
    return states.compute(tenant, (name, old) -> old != null && old.quota.equals(quota)
        ? (old.resolvedFrom(file, override) ? old : new State(old, file, override))
        : new State(quota, file, override, time));
  }

  /** Tenants with an entry (for tests). */
  int tenantsKept() {
    return states.size();
  }

  private static void refuse(State state, CallerPolicy.Quota quota, CallerAuth.Caller caller, String what, double perSecond,
      ConsumptionProbe probe) {
    if (quota.inFlight() > 0) {
      state.inFlight.decrementAndGet();
    }
    Duration retry = Duration.ofNanos(Math.max(1_000_000, probe.getNanosToWaitForRefill()));
    // Concatenated, not String.format: a refusal under a flood should not build a Formatter and
    // its locale's number symbols each time.
    throw InferenceException.overQuota("tenant '" + caller.tenant() + "' is over its quota of " + trim(perSecond)
        + " " + what + " a second; retry in " + retry.toMillis() + " ms", retry);
  }

  private static String trim(double value) {
    return value == Math.rint(value) ? String.valueOf((long) value) : String.valueOf(value);
  }
}

package io.modelgate.gateway.server;

import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.usage.Usage;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import java.time.Clock;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Forgets what the server keeps for a version once the version has been out of memory for {@link
 * #AFTER}: its statistics windows (about 3 MB each with the defaults), and its Prometheus series —
 * requests by code, latency and batch histograms, state, queue, golden and routing gauges, usage
 * totals per tenant (some 150 series). Each is bounded per version, but without this a server
 * given new versions for months would keep every version it ever loaded; drift profiles already
 * go with their load.
 *
 * <p>A version is out of memory while {@link VersionState#UNAVAILABLE} (unloaded, or never loaded)
 * or {@link VersionState#FAILED}. One that loads again in time keeps everything; one that loads
 * later gets new statistics and series (Prometheus reads the counters' restart as a reset). The
 * usage ledger keeps its hours, and the model's list of versions keeps it, with its state — until
 * the model itself goes: a model whose folder has gone from the repository is removed once each of
 * its versions has been forgotten ({@link ModelRepository#removeIfGone}), and with it its route and
 * its model-wide series.
 *
 * <p>Threads: {@link #changed} on whichever thread changed a version's state (a subscriber to the
 * repository's events: it never blocks); {@link #sweep} on the statistics rotator after each
 * rotation. Each forgetting checks, under the owner's own lock, that the version is still out: a
 * version loading at that moment keeps its statistics or gets new ones, never half of each.
 */
public final class VersionRetirement {
  /**
   * How long a version stays out of memory before it is forgotten: the longest statistics window
   * (so the admin API's windows of a version just unloaded stay readable until they would be
   * empty), and many Prometheus scrapes of its last counts.
   */
  public static final Duration AFTER = StatsRegistry.WINDOWS.get(StatsRegistry.WINDOWS.size() - 1).getValue();

  private static final Logger log = LoggerFactory.getLogger(VersionRetirement.class);

  private final StatsRegistry stats;
  private final Usage usage;
  private final GatewayMetrics metrics;
  private final Clock clock;
  private final long afterMillis;
  /** Set once by {@link #start}, before the first sweep. */
  private volatile ModelRepository repository;
  /** Versions out of memory, and since when (epoch ms). */
  private final Map<ModelVersion, Long> outSince = new ConcurrentHashMap<>();

  VersionRetirement(StatsRegistry stats, Usage usage, GatewayMetrics metrics, Duration after) {
    this.stats = stats;
    this.usage = usage;
    this.metrics = metrics;
    this.clock = stats.clock();
    this.afterMillis = after.toMillis();
  }

  /** Follows {@code repository}'s versions from now on and sweeps after each rotation; returns this. */
  VersionRetirement start(ModelRepository repository) {
    this.repository = repository;
    repository.events().subscribe(this::changed);
    for (Model model : repository.models()) {
      for (ModelVersion version : model.versions()) {
        changed(version);
      }
    }
    stats.afterEachRotation(this::sweep);
    return this;
  }

  private static boolean out(ModelVersion version) {
    VersionState state = version.state();
    return state == VersionState.UNAVAILABLE || state == VersionState.FAILED;
  }

  /** Notes that {@code version} left memory, or came back. */
  void changed(ModelVersion version) {
    if (out(version)) {
      outSince.putIfAbsent(version, clock.millis());
    } else {
      outSince.remove(version);
    }
  }

  /**
   * Forgets the versions out of memory for {@link #AFTER} or longer, then removes from the
   * repository each model whose folder has gone and whose versions have all been forgotten.
   */
  void sweep() {
    forgetVersions();
    for (Model model : repository.models()) {
      repository.removeIfGone(model.name(), this::forgotten);
    }
  }

  /**
   * When {@code model} is removed if its folder stays gone (epoch ms): {@link #AFTER} after the
   * last of its versions left memory, at the first sweep from then (within one statistics
   * interval); now, if each has already been forgotten; {@code -1} while a version of it is in
   * memory (the wait starts when the last one leaves). Any thread.
   */
  public long removalDue(Model model) {
    long due = clock.millis();
    for (ModelVersion version : model.versions()) {
      if (!out(version)) {
        return -1;
      }
      Long since = outSince.get(version);
      if (since != null) {
        due = Math.max(due, since + afterMillis);
      }
    }
    return due;
  }

  /** Whether no version of {@code model} waits here to be forgotten. */
  private boolean forgotten(Model model) {
    for (ModelVersion version : model.versions()) {
      if (outSince.containsKey(version)) {
        return false;
      }
    }
    return true;
  }

  private void forgetVersions() {
    long now = clock.millis();
    for (Map.Entry<ModelVersion, Long> entry : outSince.entrySet()) {
      ModelVersion version = entry.getKey();
      long since = entry.getValue();
      if (now - since < afterMillis) {
        continue;
      }
      // Still out, and out since the same moment: not loaded (and perhaps unloaded) meanwhile.
      java.util.function.BooleanSupplier gone = () -> {
        Long at = outSince.get(version);
        return at != null && at == since && out(version);
      };
      boolean hadStats = stats.retire(version.model(), version.number(), gone);
      metrics.retire(version, gone);
      if (gone.getAsBoolean()) {
        usage.retire(version.model(), version.numberText());
        outSince.remove(version, since);
        if (hadStats) {
          log.info("{}: its statistics and series forgotten, {} s after it left memory ({})", version.label(),
              (now - since) / 1000, version.state());
        }
      }
    }
  }
}

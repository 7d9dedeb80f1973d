package io.modelgate.gateway.stats;

import io.grpc.Status;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.modelgate.proto.admin.v1.Distribution;
import io.modelgate.proto.admin.v1.ShadowStats;
import io.modelgate.proto.admin.v1.StatsResponse;
import io.modelgate.proto.admin.v1.WindowStats;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every version's {@link VersionStats}, the Prometheus registry they export to, and the rotator
 * that closes their intervals. Versions get their statistics through {@link #create}, the {@link
 * StageRecorder.Factory} handed to the repository; the same object serves a version across
 * reloads.
 */
public final class StatsRegistry implements StageRecorder.Factory, AutoCloseable {
  /** The windows reported: name and length. */
  public static final List<Map.Entry<String, Duration>> WINDOWS =
      List.of(
          Map.entry("1m", Duration.ofMinutes(1)),
          Map.entry("5m", Duration.ofMinutes(5)),
          Map.entry("15m", Duration.ofMinutes(15)));

  private final PrometheusMeterRegistry prometheus =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final Map<String, VersionStats> stats = new ConcurrentHashMap<>();
  private final List<Runnable> afterRotation = new java.util.concurrent.CopyOnWriteArrayList<>();
  private final Duration interval;
  private final Clock clock;
  private final ScheduledExecutorService rotator;
  private final boolean background;
  private final Counter rotationFailures;
  private final Counter[] rejected = new Counter[Status.Code.values().length];
  private volatile long lastFailureLog;
  /** Runs before each version's rotation; tests make it throw to show that rotation survives. */
  volatile java.util.function.Consumer<VersionStats> beforeRotate = v -> {};
  private static final long FAILURE_LOG_INTERVAL_MS = 60_000;
  private static final Logger log = LoggerFactory.getLogger(StatsRegistry.class);

  /**
   * @param interval how often intervals close; windows are multiples of it
   * @param background whether time-driven work runs on background threads: closing intervals
   *     here, and judging rollouts in the {@code ControlPlane} that shares this clock. Tests
   *     pass false and call {@link #rotate} and {@code tick} themselves.
   */
  public StatsRegistry(Duration interval, Clock clock, boolean background) {
    if (interval.toMillis() < 10 || Duration.ofMinutes(1).toMillis() % interval.toMillis() != 0) {
      throw new IllegalArgumentException(
          "stats interval: " + interval + " (expected: at least 10 ms, dividing one minute)");
    }
    this.interval = interval;
    this.clock = clock;
    this.background = background;
    this.rotationFailures =
        Counter.builder("modelgate.stats.rotation.failures")
            .description("Statistics intervals that failed to close (logged; recording goes on)")
            .register(prometheus);
    for (Status.Code code : Status.Code.values()) {
      rejected[code.value()] =
          Counter.builder("modelgate.requests.rejected")
              .description(
                  "Inference requests answered before any version was chosen (unknown model or"
                      + " version, malformed request), by gRPC status code")
              .tags("code", code.name())
              .register(prometheus);
    }
    if (background) {
      rotator =
          DaemonThreads.scheduled("modelgate-stats-rotator");
      rotator.scheduleAtFixedRate(
          this::rotate, interval.toMillis(), interval.toMillis(), TimeUnit.MILLISECONDS);
    } else {
      rotator = null;
    }
  }

  /** Five-second intervals on the system clock, rotated in the background. */
  public static StatsRegistry standard() {
    return new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), true);
  }

  @Override
  public VersionStats create(String model, long version) {
    return stats.computeIfAbsent(
        key(model, version),
        k -> {
          VersionStats created =
              new VersionStats(model, version, prometheus, intervalsIn(Duration.ofMinutes(1)), clock.millis());
          created.own(Gauge.builder("modelgate.stats.memory", created, VersionStats::footprintBytes)
              .description("Bytes held by a version's statistics windows (fixed when it first loads)")
              .baseUnit("bytes")
              .tags("model", model, "version", Long.toString(version))
              .register(prometheus));
          return created;
        });
  }

  /**
   * Forgets the statistics of {@code version} of {@code model} and takes its meters from the
   * registry, when {@code gone} still holds: checked atomically with {@link #create}, so a version
   * loading again at the same moment keeps its statistics, or gets new ones. Statistics are made
   * when a version loads and would otherwise stay for the process's life (a few MB each, and some
   * 150 series), however many versions come and go; {@code VersionRetirement} calls this once a
   * version has been out of memory longer than the longest window.
   *
   * @return whether they were forgotten
   */
  public boolean retire(String model, long version, java.util.function.BooleanSupplier gone) {
    boolean[] retired = {false};
    stats.computeIfPresent(key(model, version), (k, existing) -> {
      if (!gone.getAsBoolean()) {
        return existing;
      }
      existing.removeMeters();
      retired[0] = true;
      return null;
    });
    if (retired[0]) {
      // Shadows of the model compared with it: their series naming it as primary go too.
      for (VersionStats other : stats.values()) {
        if (other.model().equals(model)) {
          other.forgetPrimary(version);
        }
      }
    }
    return retired[0];
  }

  /**
   * Runs {@code task} after each rotation, on the rotating thread (in tests, in {@link #rotate}):
   * for periodic upkeep that must follow the same clock. A throw is logged, and the task runs again
   * next time.
   */
  public void afterEachRotation(Runnable task) {
    afterRotation.add(task);
  }

  /**
   * Counts a request answered before any version was chosen. No model label: the names come from
   * clients and would make the series unbounded.
   */
  public void recordRejected(Status.Code code) {
    rejected[code.value()].increment();
  }

  /** Every version's statistics, by model and version. */
  public List<VersionStats> all() {
    List<VersionStats> all = new ArrayList<>(stats.values());
    all.sort(Comparator.comparing(VersionStats::model).thenComparingLong(VersionStats::version));
    return all;
  }

  public VersionStats find(String model, long version) {
    return stats.get(key(model, version));
  }

  private static String key(String model, long version) {
    return model + '\u0000' + version;
  }

  public Clock clock() {
    return clock;
  }

  /** Whether time-driven work runs on background threads (false in tests). */
  public boolean background() {
    return background;
  }

  public PrometheusMeterRegistry prometheus() {
    return prometheus;
  }

  /** The Prometheus text exposition of every meter. */
  public String scrape() {
    return prometheus.scrape();
  }

  /**
   * Closes the current interval of every version. A failure with one version (even an {@link
   * Error}) is logged and counted in {@code modelgate_stats_rotation_failures_total}, and never
   * stops the rotation of the others or the next rotation: a scheduled task that throws would
   * silently never run again.
   */
  public void rotate() {
    long now = clock.millis();
    for (VersionStats version : stats.values()) {
      try {
        beforeRotate.accept(version);
        version.rotate(now);
      } catch (Throwable t) {
        rotationFailures.increment();
        long last = lastFailureLog;
        if (now - last >= FAILURE_LOG_INTERVAL_MS || last == 0) {
          lastFailureLog = now;
          log.error(
              "statistics of model '{}' version {}: closing an interval failed ({} failures so far);"
                  + " recording goes on",
              version.model(), version.version(), (long) rotationFailures.count(), t);
        }
      }
    }
    for (Runnable task : afterRotation) {
      try {
        task.run();
      } catch (RuntimeException e) {
        log.error("upkeep after closing statistics intervals failed; it runs again next time", e);
      }
    }
  }

  private int intervalsIn(Duration window) {
    return (int) (window.toMillis() / interval.toMillis());
  }

  /** Windowed statistics of a model's versions (all models when empty; all versions when 0). */
  public StatsResponse report(String model, long version) {
    List<VersionStats> selected = new ArrayList<>();
    for (VersionStats s : stats.values()) {
      if ((model.isEmpty() || s.model().equals(model)) && (version == 0 || s.version() == version)) {
        selected.add(s);
      }
    }
    selected.sort(Comparator.comparing(VersionStats::model).thenComparingLong(VersionStats::version));
    StatsResponse.Builder response = StatsResponse.newBuilder().setTimeMs(clock.millis());
    for (VersionStats s : selected) {
      io.modelgate.proto.admin.v1.VersionStats.Builder v =
          response.addVersionsBuilder().setModel(s.model()).setVersion(s.version());
      for (Map.Entry<String, Duration> window : WINDOWS) {
        v.addWindows(window(window.getKey(), s.window(intervalsIn(window.getValue())), null));
      }
      v.addWindows(window("all", s.sinceStart(), s));
    }
    return response.build();
  }

  /**
   * One version's queue and compute times (µs, every answer) over the statistics intervals that
   * closed in the last minute and began at or after {@code sinceMillis}, {@code seconds} long.
   * Histograms of the caller's own, to add to.
   */
  public record Stages(Histogram queueMicros, Histogram computeMicros, double seconds) {
    /** None: empty histograms of a version's range, over no time, to add other replicas' to. */
    public static Stages none() {
      return new Stages(VersionStats.latencyHistogram(), VersionStats.latencyHistogram(), 0);
    }
  }

  /** {@link Stages} of one version since {@code sinceMillis}, or null when it never loaded. */
  public Stages stagesSince(String model, long version, long sinceMillis) {
    VersionStats s = find(model, version);
    if (s == null) {
      return null;
    }
    Windows.Window w = s.closedSince(sinceMillis);
    return new Stages(w.queue(), w.compute(), w.seconds());
  }

  /** The last closed interval of one version, or null when it never loaded. */
  public WindowStats latest(String model, long version) {
    VersionStats s = find(model, version);
    return s == null ? null : window("latest", s.window(1), null);
  }

  /**
   * What this replica publishes of one version for the fleet: its last minute's answers by code and
   * end-to-end latency histogram. The caller adds the replica, the time and any step samples.
   */
  public io.modelgate.proto.admin.v1.ReplicaSnapshot.Builder lastMinute(VersionStats s) {
    Windows.Window w = s.window(intervalsIn(Duration.ofMinutes(1)));
    io.modelgate.proto.admin.v1.ReplicaSnapshot.Builder out =
        io.modelgate.proto.admin.v1.ReplicaSnapshot.newBuilder()
            .setModel(s.model())
            .setVersion(s.version())
            .setSeconds(w.seconds())
            .setEndToEndUs(Histograms.encode(w.endToEnd()));
    for (Status.Code code : Status.Code.values()) {
      long n = w.answers()[code.value()];
      if (n > 0) {
        out.putAnswersByCode(code.name(), n);
      }
    }
    return out;
  }

  /**
   * One window over several replicas' snapshots of a version: answers summed, latency histograms
   * added (so its percentiles are the fleet's, not an average of the replicas'), the rate the sum
   * of the replicas' rates.
   */
  public static WindowStats merged(String name, List<io.modelgate.proto.admin.v1.ReplicaSnapshot> snapshots) {
    Histogram endToEnd = new Histogram(2);
    long requests = 0;
    long errors = 0;
    double rate = 0;
    double seconds = 0;
    WindowStats.Builder out = WindowStats.newBuilder().setWindow(name);
    Map<String, Long> byCode = new java.util.TreeMap<>();
    for (io.modelgate.proto.admin.v1.ReplicaSnapshot snapshot : snapshots) {
      endToEnd.add(Histograms.decode(snapshot.getEndToEndUs()));
      long replicaRequests = 0;
      for (Map.Entry<String, Long> e : snapshot.getAnswersByCodeMap().entrySet()) {
        replicaRequests += e.getValue();
        if (!e.getKey().equals("OK")) {
          errors += e.getValue();
          byCode.merge(e.getKey(), e.getValue(), Long::sum);
        }
      }
      requests += replicaRequests;
      rate += snapshot.getSeconds() > 0 ? replicaRequests / snapshot.getSeconds() : 0;
      seconds = Math.max(seconds, snapshot.getSeconds());
    }
    return out.setSeconds(seconds)
        .setRequests(requests)
        .setErrors(errors)
        .putAllErrorsByCode(byCode)
        .setRequestsPerSecond(rate)
        .setEndToEndMs(distribution(endToEnd, 1000.0))
        .build();
  }

  private static WindowStats window(String name, Windows.Window w, VersionStats shadowSource) {
    long requests = 0;
    long errors = 0;
    WindowStats.Builder out = WindowStats.newBuilder().setWindow(name).setSeconds(w.seconds()).setThroughMs(w.throughMillis());
    for (Status.Code code : Status.Code.values()) {
      long n = w.answers()[code.value()];
      requests += n;
      if (code != Status.Code.OK && n > 0) {
        errors += n;
        out.putErrorsByCode(code.name(), n);
      }
    }
    out.setRequests(requests)
        .setErrors(errors)
        .setRequestsPerSecond(w.seconds() > 0 ? requests / w.seconds() : 0)
        .setEndToEndMs(distribution(w.endToEnd(), 1000.0))
        .setQueueMs(distribution(w.queue(), 1000.0))
        .setComputeMs(distribution(w.compute(), 1000.0))
        .setBatchRows(distribution(w.rows(), 1.0));
    long compared = w.answers()[VersionStats.SHADOW_COMPARED];
    long failed = w.answers()[VersionStats.SHADOW_FAILED];
    if (shadowSource != null) {
      // Since the version loaded: the largest difference too.
      out.setShadow(
          ShadowStats.newBuilder()
              .setCompared(shadowSource.shadowCompared())
              .setArgmaxAgreed(shadowSource.shadowAgreed())
              .setMaxAbsDiff(shadowSource.shadowMaxDiff())
              .setFailed(shadowSource.shadowFailed()));
    } else if (compared > 0 || failed > 0) {
      out.setShadow(
          ShadowStats.newBuilder()
              .setCompared(compared)
              .setArgmaxAgreed(w.answers()[VersionStats.SHADOW_AGREED])
              .setFailed(failed));
    }
    return out.build();
  }

  /** Percentiles of a histogram, divided by {@code scale} (1000 turns µs into ms). */
  public static Distribution distribution(Histogram h, double scale) {
    if (h.getTotalCount() == 0) {
      return Distribution.getDefaultInstance();
    }
    return Distribution.newBuilder()
        .setCount(h.getTotalCount())
        .setMean(h.getMean() / scale)
        .setP50(h.getValueAtPercentile(50) / scale)
        .setP90(h.getValueAtPercentile(90) / scale)
        .setP99(h.getValueAtPercentile(99) / scale)
        .setP999(h.getValueAtPercentile(99.9) / scale)
        .setMax(h.getMaxValue() / scale)
        .build();
  }

  @Override
  public void close() {
    if (rotator != null) {
      rotator.shutdownNow();
    }
    prometheus.close();
  }
}

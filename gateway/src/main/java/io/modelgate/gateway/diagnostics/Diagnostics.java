package io.modelgate.gateway.diagnostics;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import io.modelgate.gateway.tracing.Tracing;
import io.modelgate.proto.admin.v1.LogLevelSet;
import io.modelgate.proto.admin.v1.TraceSampleRateSet;
import io.modelgate.runtime.error.InferenceException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Log levels and the trace sample rate set for a while through the admin API ({@code admin log},
 * {@code admin trace}): each goes back to what it was when its time runs out, so that the debug
 * logging or the tracing turned on for an incident does not outlive it. A level or rate set again
 * before it ran out replaces the first, and still goes back to what was there before either.
 * Every change — set, set back, run out — is audited and logged. Nothing is kept across a restart:
 * a server starts with its flags' levels and rate.
 *
 * <p>The one owner of these changes: Logback's levels are otherwise set only as the server starts
 * ({@code Logging}), and the rate in force is {@link Tracing}'s, set only from here.
 *
 * <p>Threading: admin calls and the {@code modelgate-diagnostics} timer thread, under this
 * object's lock; nothing here is on a request's path (a request reads the rate, a volatile field).
 */
public final class Diagnostics implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Diagnostics.class);

  /** How long a level or rate is set for when the call says nothing. */
  public static final Duration DEFAULT_FOR = Duration.ofMinutes(15);
  /** The longest a level or rate may be set for. */
  public static final Duration MOST_FOR = Duration.ofHours(24);
  /** The most loggers set at once: what they hold stays bounded whoever calls. */
  public static final int MOST_LOGGERS = 100;
  /** The caller the audit log names for a level or rate that ran out. */
  public static final String TIMER = "modelgate-diagnostics";
  /** How {@link LogLevelSet#getWas} names a logger that had no level of its own (its parent's applied). */
  static final String INHERITED = "INHERITED";

  private static final List<String> LEVELS = List.of("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF");
  /** A logger's name as code names them: dotted words, or ROOT. */
  private static final Pattern LOGGER = Pattern.compile("[A-Za-z_$][A-Za-z0-9_$-]*(\\.[A-Za-z_$][A-Za-z0-9_$-]*)*");

  /** Records an audited change: caller, action, detail. */
  public interface Audit {
    void record(String caller, String action, String detail);
  }

  /** A logger's level set for a while: what it was before, and the timer that sets that back. */
  private record LevelSet(Level level, Level was, Instant until, String setBy, String note, ScheduledFuture<?> end) {}

  /** What {@link LogLevelSet#getNote} says of a name no logger had when it was set. */
  static final String NEW_LOGGER = "no logger had this name: nothing in this server had written under it yet (a typo?)";

  /** The rate set for a while, and the timer that sets the configured one back. */
  private record RateSet(double rate, Instant until, String setBy, ScheduledFuture<?> end) {}

  private final Tracing tracing;
  private final Clock clock;
  private final String replica;
  private final Audit audit;
  private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "modelgate-diagnostics");
    t.setDaemon(true);
    return t;
  });
  /** By logger name (ROOT for the root); guarded by this. */
  private final Map<String, LevelSet> levels = new TreeMap<>();
  /** Guarded by this; null while the configured rate is in force. */
  private RateSet rate;

  /**
   * @param tracing whose sample rate is set (one that is off refuses it)
   * @param replica names this replica in reports
   * @param audit where each change is recorded
   */
  public Diagnostics(Tracing tracing, Clock clock, String replica, Audit audit) {
    this.tracing = tracing;
    this.clock = clock;
    this.replica = replica;
    this.audit = audit;
  }

  /**
   * Sets {@code logger}'s level to {@code level} for {@code forHow} (zero: {@link #DEFAULT_FOR}),
   * or, with {@code level} empty, sets it back now to what it was before the admin API set it.
   *
   * @throws InferenceException INVALID_ARGUMENT for a name or level that is not one, or a time
   *     outside 0 to {@link #MOST_FOR}; FAILED_PRECONDITION to set back a logger not set, or where
   *     the logging is not Logback's, or for a logger more than {@link #MOST_LOGGERS}
   */
  public synchronized io.modelgate.proto.admin.v1.Diagnostics setLogLevel(String logger, String level, Duration forHow,
      String caller) {
    String name = logger.isEmpty() || logger.equalsIgnoreCase(org.slf4j.Logger.ROOT_LOGGER_NAME)
        ? org.slf4j.Logger.ROOT_LOGGER_NAME
        : logger;
    if (name.length() > 200 || !LOGGER.matcher(name).matches()) {
      throw InferenceException.invalidArgument("logger: " + InferenceException.quote(logger)
          + " (expected: a logger's or package's name, such as io.modelgate.gateway.admin.RepositoryPoll or io.grpc;"
          + " empty or ROOT for the root logger)");
    }
    if (!levels.containsKey(name) && levels.size() >= MOST_LOGGERS) {
      throw InferenceException.failedPrecondition(MOST_LOGGERS + " loggers have a level set for a while, the most"
          + " at once: set one back (--restore) first");
    }
    // A name no logger has yet (a typo, or a library that has not written) is taken, and said so.
    boolean known = context().exists(name) != null;
    ch.qos.logback.classic.Logger target = context().getLogger(name);
    LevelSet set = levels.get(name);
    if (level.isEmpty()) {
      if (set == null) {
        throw InferenceException.failedPrecondition("logger " + name + " has no level set through the admin API"
            + " (its level is the server's own: " + describe(target.getLevel()) + ")");
      }
      setBack(name, set, caller, "set back by " + caller);
      return report();
    }
    String upper = level.toUpperCase(Locale.ROOT);
    if (!LEVELS.contains(upper)) {
      throw InferenceException.invalidArgument("level: " + InferenceException.quote(level) + " (expected: one of "
          + String.join(", ", LEVELS) + ", or empty to set the logger back)");
    }
    Duration span = span(forHow);
    Level was = set == null ? target.getLevel() : set.was();
    String note = set == null ? (known ? "" : NEW_LOGGER) : set.note();
    if (set != null) {
      set.end().cancel(false);
    }
    Level chosen = Level.toLevel(upper);
    target.setLevel(chosen);
    Instant until = clock.instant().plus(span);
    LevelSet[] made = new LevelSet[1];
    made[0] = new LevelSet(chosen, was, until, caller, note, timer.schedule(() -> ranOut(name, made[0]), span.toMillis(),
        TimeUnit.MILLISECONDS));
    levels.put(name, made[0]);
    String detail = name + " " + upper + " for " + text(span) + " (until " + until + "; then " + describe(was) + ")"
        + (note.isEmpty() ? "" : "; " + note);
    log.info("log level of {} set by {}", detail, caller);
    audit.record(caller, "SetLogLevel", detail);
    return report();
  }

  /**
   * Puts {@code sampleRate} in force for {@code forHow} (zero: {@link #DEFAULT_FOR}), or, with
   * {@code restore}, the rate the server started with, now.
   *
   * @throws InferenceException FAILED_PRECONDITION where no call is traced (no {@code
   *     --trace-endpoint}) or, to restore, no rate is set; INVALID_ARGUMENT for a rate outside 0 to
   *     1 or a time outside 0 to {@link #MOST_FOR}
   */
  public synchronized io.modelgate.proto.admin.v1.Diagnostics setTraceSampleRate(double sampleRate, boolean restore,
      Duration forHow, String caller) {
    if (!tracing.on()) {
      throw InferenceException.failedPrecondition(
          "this server traces no call: it was started without --trace-endpoint, so there is no rate to set");
    }
    if (restore) {
      if (rate == null) {
        throw InferenceException.failedPrecondition("the trace sample rate is the one the server started with ("
            + tracing.configuredSampleRate() + "): nothing to set back");
      }
      rateBack(rate, caller, "set back by " + caller);
      return report();
    }
    if (!(sampleRate >= 0 && sampleRate <= 1)) {
      throw InferenceException.invalidArgument("sample_rate: " + sampleRate + " (expected: 0 to 1)");
    }
    Duration span = span(forHow);
    if (rate != null) {
      rate.end().cancel(false);
    }
    tracing.sampleRate(sampleRate);
    Instant until = clock.instant().plus(span);
    RateSet[] made = new RateSet[1];
    made[0] = new RateSet(sampleRate, until, caller, timer.schedule(() -> rateRanOut(made[0]), span.toMillis(),
        TimeUnit.MILLISECONDS));
    rate = made[0];
    String detail = sampleRate + " for " + text(span) + " (until " + until + "; then " + tracing.configuredSampleRate()
        + ", the server's --trace-sample-rate)";
    log.info("trace sample rate {} set by {}", detail, caller);
    audit.record(caller, "SetTraceSampleRate", detail);
    return report();
  }

  /** What is set for a while now. */
  public synchronized io.modelgate.proto.admin.v1.Diagnostics report() {
    io.modelgate.proto.admin.v1.Diagnostics.Builder report = io.modelgate.proto.admin.v1.Diagnostics.newBuilder()
        .setReplica(replica)
        .setTracing(tracing.on())
        .setTraceSampleRate(tracing.sampleRate())
        .setTraceSampleRateConfigured(tracing.configuredSampleRate());
    levels.forEach((name, set) -> report.addLogLevels(LogLevelSet.newBuilder()
        .setLogger(name)
        .setLevel(set.level().toString())
        .setWas(describe(set.was()))
        .setUntilMs(set.until().toEpochMilli())
        .setSetBy(set.setBy())
        .setNote(set.note())));
    if (rate != null) {
      report.setTraceSampleRateSet(TraceSampleRateSet.newBuilder()
          .setSampleRate(rate.rate())
          .setUntilMs(rate.until().toEpochMilli())
          .setSetBy(rate.setBy()));
    }
    return report.build();
  }

  /** Levels set for a while, now. Any thread. */
  public synchronized int levelsSet() {
    return levels.size();
  }

  /** Registers {@code modelgate_log_levels_set}; returns this. */
  public Diagnostics bindTo(io.micrometer.core.instrument.MeterRegistry registry) {
    io.micrometer.core.instrument.Gauge.builder("modelgate.log.levels.set", this, Diagnostics::levelsSet)
        .description("Loggers whose level the admin API set for a while and that has not run out")
        .register(registry);
    return this;
  }

  private synchronized void ranOut(String name, LevelSet set) {
    if (levels.get(name) == set) {
      setBack(name, set, TIMER, "ran out (set by " + set.setBy() + ")");
    }
  }

  private synchronized void rateRanOut(RateSet set) {
    if (rate == set) {
      rateBack(set, TIMER, "ran out (set by " + set.setBy() + ")");
    }
  }

  private void setBack(String name, LevelSet set, String caller, String why) {
    set.end().cancel(false);
    levels.remove(name);
    context().getLogger(name).setLevel(set.was());
    String detail = name + " back to " + describe(set.was()) + " from " + set.level() + ": " + why;
    log.info("log level of {}", detail);
    audit.record(caller, "SetLogLevel", detail);
  }

  private void rateBack(RateSet set, String caller, String why) {
    set.end().cancel(false);
    rate = null;
    tracing.sampleRate(tracing.configuredSampleRate());
    String detail = "back to " + tracing.configuredSampleRate() + " from " + set.rate() + ": " + why;
    log.info("trace sample rate {}", detail);
    audit.record(caller, "SetTraceSampleRate", detail);
  }

  private static Duration span(Duration forHow) {
    if (forHow.isNegative() || forHow.compareTo(MOST_FOR) > 0) {
      throw InferenceException.invalidArgument("for: " + forHow.toMillis() + " ms (expected: up to " + text(MOST_FOR)
          + ", or 0 for " + text(DEFAULT_FOR) + ")");
    }
    return forHow.isZero() ? DEFAULT_FOR : forHow;
  }

  /** A time as an operator writes it: 90s, 15m, 2h. */
  private static String text(Duration span) {
    long seconds = span.toSeconds();
    if (seconds > 0 && seconds % 3600 == 0) {
      return seconds / 3600 + "h";
    }
    if (seconds > 0 && seconds % 60 == 0) {
      return seconds / 60 + "m";
    }
    return span.toMillis() % 1000 == 0 ? seconds + "s" : span.toMillis() + "ms";
  }

  private static String describe(Level level) {
    return level == null ? INHERITED : level.toString();
  }

  private static LoggerContext context() {
    if (LoggerFactory.getILoggerFactory() instanceof LoggerContext context) {
      return context;
    }
    throw InferenceException.failedPrecondition("this server's logging is not Logback's: its levels cannot be set here");
  }

  /** Sets back whatever is set, and stops the timer. */
  @Override
  public synchronized void close() {
    for (Map.Entry<String, LevelSet> set : new TreeMap<>(levels).entrySet()) {
      set.getValue().end().cancel(false);
      context().getLogger(set.getKey()).setLevel(set.getValue().was());
    }
    levels.clear();
    if (rate != null && tracing.on()) {
      tracing.sampleRate(tracing.configuredSampleRate());
      rate = null;
    }
    timer.shutdownNow();
  }
}

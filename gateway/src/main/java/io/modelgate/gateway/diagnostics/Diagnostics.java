package io.modelgate.gateway.diagnostics;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.control.ControlStore;
import io.modelgate.gateway.tracing.Tracing;
import io.modelgate.proto.admin.v1.FleetDiagnostics;
import io.modelgate.proto.admin.v1.LogLevelSet;
import io.modelgate.proto.admin.v1.TraceSampleRateSet;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.logging.LogThrottle;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
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
 * Every change — set, set back, run out — is audited and logged. Nothing of a replica's own is kept
 * across a restart: a server starts with its flags' levels and rate.
 *
 * <p>In a fleet, a level or rate may be set for every replica ({@code --fleet}): one record in the
 * control store ({@link ControlStore#diagnostics}), changed by compare-and-swap and audited once
 * where it is asked; each replica reads it as soon as etcd's watch tells it of a change ({@link
 * ControlStore#follow}, {@link #follow}) and puts in force what it holds, and sets back what it no
 * longer holds or what ran out (logged, not audited again). A replica's own level for a logger, or its own rate, holds over the fleet's while it lasts.
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

  /** A logger's level set for a while: what it was before, and the timer that sets that back. */
  private record LevelSet(Level level, Level was, Instant until, String setBy, String note, boolean fleet,
      ScheduledFuture<?> end) {}

  /** The rate set for a while, and the timer that sets the configured one back. */
  private record RateSet(double rate, Instant until, String setBy, boolean fleet, ScheduledFuture<?> end) {}

  /** What {@link LogLevelSet#getNote} says of a name no logger had when it was set. */
  static final String NEW_LOGGER = "no logger had this name: nothing in this server had written under it yet (a typo?)";
  /** Tries of a fleet-wide change that other changes got in before. */
  private static final int FLEET_TRIES = 5;

  private final Tracing tracing;
  private final Clock clock;
  private final String replica;
  private final ControlPlane control;
  private final ScheduledExecutorService timer = DaemonThreads.scheduled("modelgate-diagnostics");
  private final LogThrottle unreadable = new LogThrottle(Duration.ofMinutes(1));
  /** By logger name (ROOT for the root); guarded by this. */
  private final Map<String, LevelSet> levels = new TreeMap<>();
  /** Guarded by this; null while the configured rate is in force. */
  private RateSet rate;
  /** What was set for the fleet at the last read of it; guarded by this. */
  private FleetDiagnostics fleet = FleetDiagnostics.getDefaultInstance();

  /**
   * Follows, in a fleet, what is set for every replica (read again whenever the store says it may have changed).
   *
   * @param tracing whose sample rate is set (one that is off refuses it)
   * @param replica names this replica in reports
   * @param control audits each change, and holds what is set for the fleet
   */
  public Diagnostics(Tracing tracing, Clock clock, String replica, ControlPlane control) {
    this.tracing = tracing;
    this.clock = clock;
    this.replica = replica;
    this.control = control;
    control.store().follow(ControlStore.Topic.DIAGNOSTICS, timer, this::follow);
  }

  /**
   * Sets {@code logger}'s level to {@code level} for {@code forHow} (zero: {@link #DEFAULT_FOR}),
   * or, with {@code level} empty, sets it back now to what it was before the admin API set it; on
   * this replica, or with {@code forFleet} on every replica of the fleet (a replica's own level for
   * the logger holding over the fleet's while it lasts).
   *
   * @throws InferenceException INVALID_ARGUMENT for a name or level that is not one, or a time
   *     outside 0 to {@link #MOST_FOR}; FAILED_PRECONDITION to set back a logger not set (or, on
   *     this replica alone, one set for the fleet), where the logging is not Logback's, for a
   *     logger more than {@link #MOST_LOGGERS}, or for the fleet without one; ABORTED where other
   *     fleet-wide changes kept coming first
   */
  public io.modelgate.proto.admin.v1.Diagnostics setLogLevel(String logger, String level, Duration forHow,
      boolean forFleet, String caller) {
    String name = logger.isEmpty() || logger.equalsIgnoreCase(org.slf4j.Logger.ROOT_LOGGER_NAME)
        ? org.slf4j.Logger.ROOT_LOGGER_NAME
        : logger;
    if (name.length() > 200 || !LOGGER.matcher(name).matches()) {
      throw InferenceException.invalidArgument("logger: " + InferenceException.quote(logger)
          + " (expected: a logger's or package's name, such as io.modelgate.gateway.admin.RepositoryPoll or io.grpc;"
          + " empty or ROOT for the root logger)");
    }
    Level chosen = null;
    if (!level.isEmpty()) {
      String upper = level.toUpperCase(Locale.ROOT);
      if (!LEVELS.contains(upper)) {
        throw InferenceException.invalidArgument("level: " + InferenceException.quote(level) + " (expected: one of "
            + String.join(", ", LEVELS) + ", or empty to set the logger back)");
      }
      chosen = Level.toLevel(upper);
    }
    Duration span = span(forHow);
    if (forFleet) {
      Level fleetLevel = chosen;
      editFleet(caller, "SetLogLevel", (record, now) -> {
        int at = -1;
        for (int i = 0; i < record.getLogLevelsCount(); i++) {
          if (record.getLogLevels(i).getLogger().equals(name)) {
            at = i;
          }
        }
        if (fleetLevel == null) {
          if (at < 0) {
            throw InferenceException.failedPrecondition("logger " + name + " has no level set for the fleet");
          }
          record.removeLogLevels(at);
          return "for the fleet: " + name + " set back";
        }
        if (at < 0 && record.getLogLevelsCount() >= MOST_LOGGERS) {
          throw InferenceException.failedPrecondition(MOST_LOGGERS + " loggers have a level set for the fleet, the"
              + " most at once: set one back (--fleet --restore) first");
        }
        Instant until = now.plus(span);
        LogLevelSet entry = LogLevelSet.newBuilder().setLogger(name).setLevel(fleetLevel.toString())
            .setUntilMs(until.toEpochMilli()).setSetBy(caller).setFleet(true).build();
        if (at < 0) {
          record.addLogLevels(entry);
        } else {
          record.setLogLevels(at, entry);
        }
        return "for the fleet: " + name + " " + fleetLevel + " for " + text(span) + " (until " + until + ")";
      });
      follow();
      return report();
    }
    synchronized (this) {
      LevelSet set = levels.get(name);
      if (chosen == null) {
        if (set == null || set.fleet()) {
          throw InferenceException.failedPrecondition("logger " + name + " has no level set through the admin API"
              + " on this replica" + (set == null
                  ? " (its level is the server's own: " + describe(context().getLogger(name).getLevel()) + ")"
                  : " (it is the fleet's: set it back with --fleet --restore)"));
        }
        setBack(name, set, caller, "set back by " + caller, true);
        return report();
      }
      install(name, chosen, clock.instant().plus(span), span, caller, false, true);
      return report();
    }
  }

  /**
   * Puts {@code sampleRate} in force for {@code forHow} (zero: {@link #DEFAULT_FOR}), or, with
   * {@code restore}, the rate the server started with, now; on this replica, or with {@code
   * forFleet} on every replica of the fleet that traces calls (a replica's own rate holding over the
   * fleet's while it lasts).
   *
   * @throws InferenceException FAILED_PRECONDITION where this replica traces no call (no {@code
   *     --trace-endpoint}), to restore where no rate is set (or, on this replica alone, where the
   *     fleet's is), or for the fleet without one; INVALID_ARGUMENT for a rate outside 0 to 1 or a
   *     time outside 0 to {@link #MOST_FOR}; ABORTED where other fleet-wide changes kept coming first
   */
  public io.modelgate.proto.admin.v1.Diagnostics setTraceSampleRate(double sampleRate, boolean restore,
      Duration forHow, boolean forFleet, String caller) {
    if (!tracing.on()) {
      throw InferenceException.failedPrecondition(
          "this server traces no call: it was started without --trace-endpoint, so there is no rate to set");
    }
    if (!restore && !(sampleRate >= 0 && sampleRate <= 1)) {
      throw InferenceException.invalidArgument("sample_rate: " + sampleRate + " (expected: 0 to 1)");
    }
    Duration span = span(forHow);
    if (forFleet) {
      editFleet(caller, "SetTraceSampleRate", (record, now) -> {
        if (restore) {
          if (!record.hasTraceSampleRateSet()) {
            throw InferenceException.failedPrecondition("no trace sample rate is set for the fleet: nothing to set back");
          }
          record.clearTraceSampleRateSet();
          return "for the fleet: set back";
        }
        Instant until = now.plus(span);
        record.setTraceSampleRateSet(TraceSampleRateSet.newBuilder().setSampleRate(sampleRate)
            .setUntilMs(until.toEpochMilli()).setSetBy(caller).setFleet(true));
        return "for the fleet: " + sampleRate + " for " + text(span) + " (until " + until + ")";
      });
      follow();
      return report();
    }
    synchronized (this) {
      if (restore) {
        if (rate == null || rate.fleet()) {
          throw InferenceException.failedPrecondition(rate == null
              ? "the trace sample rate is the one the server started with (" + tracing.configuredSampleRate()
                  + "): nothing to set back"
              : "the trace sample rate in force is the fleet's: set it back with --fleet --restore");
        }
        rateBack(rate, caller, "set back by " + caller, true);
        return report();
      }
      installRate(sampleRate, clock.instant().plus(span), span, caller, false, true);
      return report();
    }
  }

  /** What is set for a while now: on this replica, and for the fleet as last read. */
  public synchronized io.modelgate.proto.admin.v1.Diagnostics report() {
    io.modelgate.proto.admin.v1.Diagnostics.Builder report = io.modelgate.proto.admin.v1.Diagnostics.newBuilder()
        .setReplica(replica)
        .setTracing(tracing.on())
        .setTraceSampleRate(tracing.sampleRate())
        .setTraceSampleRateConfigured(tracing.configuredSampleRate())
        .setFleet(fleet);
    levels.forEach((name, set) -> report.addLogLevels(LogLevelSet.newBuilder()
        .setLogger(name)
        .setLevel(set.level().toString())
        .setWas(describe(set.was()))
        .setUntilMs(set.until().toEpochMilli())
        .setSetBy(set.setBy())
        .setNote(set.note())
        .setFleet(set.fleet())));
    if (rate != null) {
      report.setTraceSampleRateSet(TraceSampleRateSet.newBuilder()
          .setSampleRate(rate.rate())
          .setUntilMs(rate.until().toEpochMilli())
          .setSetBy(rate.setBy())
          .setFleet(rate.fleet()));
    }
    return report.build();
  }

  /** An edit of what is set for the fleet (its entries that ran out already taken out); returns what it did, for the audit. */
  private interface FleetEdit {
    String apply(FleetDiagnostics.Builder record, Instant now);
  }

  /** Reads what is set for the fleet, edits it and writes it back, again while other changes come first. */
  private void editFleet(String caller, String action, FleetEdit edit) {
    control.store().requireFleet();
    for (int attempt = 0; attempt < FLEET_TRIES; attempt++) {
      ControlStore.StoredDiagnostics stored = control.diagnostics();
      Instant now = clock.instant();
      FleetDiagnostics.Builder record = current(stored.diagnostics(), now.toEpochMilli()).toBuilder();
      String detail = edit.apply(record, now);
      try {
        control.commitDiagnostics(record.build(), stored.revision(), caller, action, detail);
        log.info("{} set by {}", detail, caller);
        return;
      } catch (ControlStore.DiagnosticsConflict conflict) {
        // Another change came first: read it, and edit again.
      }
    }
    throw InferenceException.aborted("what is set for the fleet changed " + FLEET_TRIES + " times while this change"
        + " was made: ask again");
  }

  /** {@code record} without what ran out by {@code nowMillis}. */
  private static FleetDiagnostics current(FleetDiagnostics record, long nowMillis) {
    FleetDiagnostics.Builder kept = FleetDiagnostics.newBuilder();
    for (LogLevelSet set : record.getLogLevelsList()) {
      if (set.getUntilMs() > nowMillis) {
        kept.addLogLevels(set);
      }
    }
    if (record.hasTraceSampleRateSet() && record.getTraceSampleRateSet().getUntilMs() > nowMillis) {
      kept.setTraceSampleRateSet(record.getTraceSampleRateSet());
    }
    return kept.build();
  }

  /**
   * Reads what is set for the fleet and follows it: each level or rate set for the fleet in force
   * here (unless this replica set its own for the logger, or its own rate), each one no longer set
   * for it set back. On the timer thread whenever the store says it may have changed, and after a
   * fleet-wide change here; the read is made outside the lock.
   */
  void follow() {
    if (!control.store().shared()) {
      return;
    }
    FleetDiagnostics record;
    try {
      record = control.diagnostics().diagnostics();
    } catch (RuntimeException e) {
      if (Thread.currentThread().isInterrupted()) {
        return; // stopping: the read was cut short, not refused
      }
      long heldBack = unreadable.pass();
      if (heldBack >= 0) {
        log.warn("cannot read what is set for the fleet's log levels and trace sample rate ({}); what is in force"
            + " stays{}", e.getMessage(), LogThrottle.since(heldBack));
      }
      return;
    }
    apply(record);
  }

  private synchronized void apply(FleetDiagnostics read) {
    Instant now = clock.instant();
    fleet = current(read, now.toEpochMilli());
    Map<String, LogLevelSet> wanted = new TreeMap<>();
    for (LogLevelSet set : fleet.getLogLevelsList()) {
      wanted.put(set.getLogger(), set);
    }
    for (Map.Entry<String, LevelSet> set : new TreeMap<>(levels).entrySet()) {
      if (set.getValue().fleet() && !wanted.containsKey(set.getKey())) {
        setBack(set.getKey(), set.getValue(), TIMER, "set back for the fleet", false);
      }
    }
    wanted.forEach((name, set) -> {
      LevelSet here = levels.get(name);
      Level level = Level.toLevel(set.getLevel());
      Instant until = Instant.ofEpochMilli(set.getUntilMs());
      if (here == null || here.fleet() && (!here.level().equals(level) || !here.until().equals(until))) {
        if (here != null || levels.size() < MOST_LOGGERS) {
          install(name, level, until, Duration.between(now, until), set.getSetBy(), true, false);
        }
      }
    });
    if (!tracing.on()) {
      return; // no rate to follow (said where it was set)
    }
    TraceSampleRateSet wantedRate = fleet.hasTraceSampleRateSet() ? fleet.getTraceSampleRateSet() : null;
    if (rate != null && rate.fleet() && wantedRate == null) {
      rateBack(rate, TIMER, "set back for the fleet", false);
    }
    if (wantedRate != null) {
      Instant until = Instant.ofEpochMilli(wantedRate.getUntilMs());
      if (rate == null || rate.fleet() && (rate.rate() != wantedRate.getSampleRate() || !rate.until().equals(until))) {
        installRate(wantedRate.getSampleRate(), until, Duration.between(now, until), wantedRate.getSetBy(), true, false);
      }
    }
  }

  /**
   * Puts {@code level} in force for {@code name} until {@code until}, keeping what was there before
   * any; {@code span}, how long from now, as the log and audit say it. The fleet's is put in force
   * with the record's own {@code until}, so that a later read of the same record finds it in force
   * as it is and puts nothing in force again. Under the lock.
   */
  private void install(String name, Level level, Instant until, Duration span, String setBy, boolean forFleet,
      boolean audited) {
    if (!levels.containsKey(name) && levels.size() >= MOST_LOGGERS) {
      throw InferenceException.failedPrecondition(MOST_LOGGERS + " loggers have a level set for a while, the most"
          + " at once: set one back (--restore) first");
    }
    // A name no logger has yet (a typo, or a library that has not written) is taken, and said so.
    boolean known = context().exists(name) != null;
    ch.qos.logback.classic.Logger target = context().getLogger(name);
    LevelSet set = levels.get(name);
    Level was = set == null ? target.getLevel() : set.was();
    String note = set == null ? (known ? "" : NEW_LOGGER) : set.note();
    if (set != null) {
      set.end().cancel(false);
    }
    target.setLevel(level);
    long delay = Math.max(0, Duration.between(clock.instant(), until).toMillis());
    LevelSet[] made = new LevelSet[1];
    made[0] = new LevelSet(level, was, until, setBy, note, forFleet,
        timer.schedule(() -> ranOut(name, made[0]), delay, TimeUnit.MILLISECONDS));
    levels.put(name, made[0]);
    String detail = name + " " + level + " for " + text(span) + (forFleet ? " for the fleet" : "") + " (until " + until
        + "; then " + describe(was) + ")" + (note.isEmpty() ? "" : "; " + note);
    log.info("log level of {} set by {}", detail, setBy);
    if (audited) {
      control.audit(setBy, "SetLogLevel", "", 0, detail);
    }
  }

  /** Puts {@code sampleRate} in force until {@code until} (as {@link #install} a level). Under the lock. */
  private void installRate(double sampleRate, Instant until, Duration span, String setBy, boolean forFleet,
      boolean audited) {
    if (rate != null) {
      rate.end().cancel(false);
    }
    tracing.sampleRate(sampleRate);
    long delay = Math.max(0, Duration.between(clock.instant(), until).toMillis());
    RateSet[] made = new RateSet[1];
    made[0] = new RateSet(sampleRate, until, setBy, forFleet,
        timer.schedule(() -> rateRanOut(made[0]), delay, TimeUnit.MILLISECONDS));
    rate = made[0];
    String detail = sampleRate + " for " + text(span) + (forFleet ? " for the fleet" : "")
        + " (until " + until + "; then " + tracing.configuredSampleRate() + ", the server's --trace-sample-rate)";
    log.info("trace sample rate {} set by {}", detail, setBy);
    if (audited) {
      control.audit(setBy, "SetTraceSampleRate", "", 0, detail);
    }
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
      // A fleet's level ran out on every replica at once: the change was audited where it was made.
      setBack(name, set, TIMER, "ran out (set by " + set.setBy() + (set.fleet() ? " for the fleet)" : ")"), !set.fleet());
    }
  }

  private synchronized void rateRanOut(RateSet set) {
    if (rate == set) {
      rateBack(set, TIMER, "ran out (set by " + set.setBy() + (set.fleet() ? " for the fleet)" : ")"), !set.fleet());
    }
  }

  private void setBack(String name, LevelSet set, String caller, String why, boolean audited) {
    set.end().cancel(false);
    levels.remove(name);
    context().getLogger(name).setLevel(set.was());
    String detail = name + " back to " + describe(set.was()) + " from " + set.level() + ": " + why;
    log.info("log level of {}", detail);
    if (audited) {
      control.audit(caller, "SetLogLevel", "", 0, detail);
    }
  }

  private void rateBack(RateSet set, String caller, String why, boolean audited) {
    set.end().cancel(false);
    rate = null;
    tracing.sampleRate(tracing.configuredSampleRate());
    String detail = "back to " + tracing.configuredSampleRate() + " from " + set.rate() + ": " + why;
    log.info("trace sample rate {}", detail);
    if (audited) {
      control.audit(caller, "SetTraceSampleRate", "", 0, detail);
    }
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

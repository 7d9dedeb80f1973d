package io.modelgate.gateway.admin;

import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.BiConsumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Audits calls refused for their token's role ({@code PERMISSION_DENIED}), at a bounded rate and
 * off the transport's threads. A client that retries what its role does not allow (a job given the
 * wrong token, say) would otherwise write an audit record per attempt — to etcd, in a fleet — each
 * queued without bound for the control plane's lock, which routing changes and rollouts wait on
 * too. At most {@link #PER_MINUTE} records are written a minute, by one thread from a queue of as
 * many; refusals past that are counted ({@code modelgate_admin_denied_unaudited_total}) and the
 * next record written says how many were not recorded one by one. Every refused call is still
 * answered {@code PERMISSION_DENIED}.
 *
 * <p>Threads: {@link #accept} on any thread, never blocking (one short lock); records are written
 * on the {@code modelgate-denied-audit} thread.
 */
public final class DeniedAudit implements BiConsumer<String, String>, AutoCloseable {
  /** The most refusals recorded one by one in a minute. */
  public static final int PER_MINUTE = 30;

  private static final Logger log = LoggerFactory.getLogger(DeniedAudit.class);
  private static final long MINUTE_MS = 60_000;

  private final BiConsumer<String, String> record;
  private final Clock clock;
  private final Executor writer;
  private final ExecutorService ownWriter;
  private final LongAdder unaudited = new LongAdder();
  // Guarded by this.
  private long minuteStart;
  private int recorded;
  private long skipped;

  /**
   * @param record writes one record: the caller and what was refused (the control plane's audit,
   *     which may block on its store)
   */
  public DeniedAudit(BiConsumer<String, String> record, Clock clock) {
    this(record, clock, null);
  }

  /** With {@code writer} running the records (tests), or a thread of its own when null. */
  DeniedAudit(BiConsumer<String, String> record, Clock clock, Executor writer) {
    this.record = record;
    this.clock = clock;
    this.minuteStart = clock.millis();
    if (writer == null) {
      this.ownWriter = DaemonThreads.single("modelgate-denied-audit", PER_MINUTE);
      this.writer = ownWriter;
    } else {
      this.ownWriter = null;
      this.writer = writer;
    }
  }

  /** Audits that {@code caller} was refused {@code what}, or counts it when the minute's records are written. */
  @Override
  public void accept(String caller, String what) {
    String detail;
    synchronized (this) {
      long now = clock.millis();
      if (now - minuteStart >= MINUTE_MS || now < minuteStart) {
        minuteStart = now;
        recorded = 0;
      }
      if (recorded >= PER_MINUTE) {
        if (skipped++ == 0) {
          log.warn("more than {} admin calls a minute refused for their role (the last by {}: {}); the rest are counted,"
              + " not audited one by one", PER_MINUTE, caller, what);
        }
        unaudited.increment();
        return;
      }
      recorded++;
      detail = skipped == 0 ? what
          : what + " (before it, " + skipped + " refusal" + (skipped == 1 ? "" : "s")
              + " for a role not audited one by one: more than " + PER_MINUTE + " a minute)";
      skipped = 0;
    }
    try {
      writer.execute(() -> record.accept(caller, detail));
    } catch (RejectedExecutionException e) {
      // The writer is behind (a slow store) or stopped: count it, said in the next record.
      synchronized (this) {
        skipped++;
      }
      unaudited.increment();
    }
  }

  /** Refusals not audited one by one so far. */
  public long unaudited() {
    return unaudited.sum();
  }

  /** Exports {@code modelgate_admin_denied_unaudited_total}; returns this. */
  public DeniedAudit bindTo(io.micrometer.core.instrument.MeterRegistry registry) {
    io.micrometer.core.instrument.FunctionCounter.builder("modelgate.admin.denied.unaudited", unaudited, LongAdder::sum)
        .description("Calls refused for their token's role beyond the audit's rate (" + PER_MINUTE
            + " records a minute): counted, and their number written in the next record")
        .register(registry);
    return this;
  }

  /** Writes what is queued (for up to a second), then stops the writer. */
  @Override
  public void close() {
    if (ownWriter != null) {
      ownWriter.shutdown();
      try {
        ownWriter.awaitTermination(1, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}

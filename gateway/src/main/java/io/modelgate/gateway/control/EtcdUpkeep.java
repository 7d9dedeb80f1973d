package io.modelgate.gateway.control;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.options.DeleteOption;
import io.etcd.jetcd.options.GetOption;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.modelgate.runtime.error.InferenceException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Function;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What keeps a fleet's etcd small: the judge compacts etcd's history ({@link #compactHistory},
 * every {@link ControlSettings#compaction}), and every replica deletes the audit records past the
 * retention and the most kept ({@link #applyAuditLimits}, once an hour). Logged under the store's
 * logger, as operators know its lines.
 *
 * <p>Threading: the store's thread runs both on their schedule ({@link #scheduleOn}); tests call
 * them directly. {@code modelgate_etcd_compacted_revision} is read from any thread.
 */
final class EtcdUpkeep {
  private static final Logger log = LoggerFactory.getLogger(EtcdControlStore.class);

  /** The most audit keys one request of {@link #applyAuditLimits} reads and deletes (about 60 bytes each). */
  static final long AUDIT_DELETE_CHUNK = 10_000;
  /** How long after the start the audit log's limits are first applied. */
  static final Duration AUDIT_LIMITS_FIRST = Duration.ofMinutes(1);
  /** How often they are applied after that, by every replica (what one deleted, another finds gone). */
  static final Duration AUDIT_LIMITS_EVERY = Duration.ofHours(1);

  private final ControlSettings settings;
  private final Clock clock;
  private final Supplier<KV> kv;
  private final EtcdControlStore.Await etcd;
  private final Function<IOException, InferenceException> unreachable;
  private final BooleanSupplier judges;
  private final ByteSequence judgeKey;
  private final String auditPrefix;
  /** Audit records deleted past the retention, and as the oldest past the most kept. */
  private final Counter auditExpired;
  private final Counter auditOverLimit;
  /** The revision seen at the last {@link #compactHistory} as the judge (0: none). */
  private long compactMark;
  /** The revision this replica last compacted etcd's history to (0: none). */
  private volatile long compactedRevision;

  /**
   * @param kv the client in use (it changes with the password)
   * @param unreachable the store's UNAVAILABLE for a request etcd did not answer
   * @param judges whether this replica judges rollouts now
   */
  EtcdUpkeep(ControlSettings settings, Clock clock, MeterRegistry registry, Supplier<KV> kv, EtcdControlStore.Await etcd,
      Function<IOException, InferenceException> unreachable, BooleanSupplier judges, ByteSequence judgeKey,
      String auditPrefix) {
    this.settings = settings;
    this.clock = clock;
    this.kv = kv;
    this.etcd = etcd;
    this.unreachable = unreachable;
    this.judges = judges;
    this.judgeKey = judgeKey;
    this.auditPrefix = auditPrefix;
    String deleted = "Audit records deleted from etcd by this replica: older than the retention (reason=retention), or"
        + " the oldest past the most kept (reason=limit)";
    this.auditExpired = Counter.builder("modelgate.audit.records.deleted").description(deleted).tag("reason", "retention")
        .register(registry);
    this.auditOverLimit = Counter.builder("modelgate.audit.records.deleted").description(deleted).tag("reason", "limit")
        .register(registry);
    Gauge.builder("modelgate.etcd.compacted.revision", this, upkeep -> upkeep.compactedRevision)
        .description("The etcd revision this replica last compacted the history to, as the replica that judges"
            + " rollouts (0: none since it started)")
        .register(registry);
  }

  /** Runs the audit log's limits and (unless {@link ControlSettings#compaction} is 0) the compaction on {@code thread}. */
  void scheduleOn(ScheduledExecutorService thread) {
    thread.scheduleWithFixedDelay(this::applyAuditLimitsQuietly, AUDIT_LIMITS_FIRST.toMillis(), AUDIT_LIMITS_EVERY.toMillis(),
        TimeUnit.MILLISECONDS);
    if (!settings.compaction().isZero()) {
      long interval = settings.compaction().toMillis();
      thread.scheduleWithFixedDelay(this::compactQuietly, interval, interval, TimeUnit.MILLISECONDS);
    }
  }

  private void compactQuietly() {
    try {
      compactHistory();
    } catch (InferenceException e) {
      log.warn("etcd's history not compacted ({}); tried again in {} s", e.getMessage(), settings.compaction().toSeconds());
    }
  }

  /**
   * On the replica that judges rollouts, compacts etcd's history to the revision this replica saw
   * at its call before (as the Kubernetes API server compacts its etcd), then notes the current
   * revision for the next call: at least one interval of history stays, for watches that resume
   * after a short outage; a replica away longer finds its watch's revision compacted and reads
   * every record again, as after any watch error. A replica that does not judge only forgets its
   * mark (the judge may change).
   *
   * @return the revision compacted to, or 0 when nothing was (not the judge, or no mark yet)
   * @throws InferenceException UNAVAILABLE when etcd cannot be reached
   */
  long compactHistory() {
    if (!judges.getAsBoolean()) {
      compactMark = 0;
      return 0;
    }
    try {
      long current = etcd.await(kv.get().get(judgeKey)).getHeader().getRevision();
      long to = compactMark;
      compactMark = current;
      if (to == 0) {
        return 0;
      }
      try {
        etcd.await(kv.get().compact(to));
      } catch (IOException e) {
        if (!String.valueOf(e.getMessage()).contains("has been compacted")) {
          throw e;
        }
        // etcd (its own auto-compaction) or an earlier judge has compacted past it already.
      }
      compactedRevision = to;
      log.debug("etcd's history compacted to revision {} (now at {})", to, current);
      return to;
    } catch (IOException e) {
      throw unreachable.apply(e);
    }
  }

  private void applyAuditLimitsQuietly() {
    try {
      applyAuditLimits(AUDIT_DELETE_CHUNK);
    } catch (InferenceException e) {
      log.warn("audit log in etcd: its retention not applied ({}); tried again in an hour", e.getMessage());
    }
  }

  /**
   * Deletes the audit records older than the retention ({@link ControlSettings#auditRetention},
   * by the time in their keys), then, while more than the most kept ({@link
   * ControlSettings#auditMaxRecords}) remain, the oldest, {@code chunk} a request; returns how many
   * were deleted (counted in {@code modelgate_audit_records_deleted_total}, by {@code reason}:
   * {@code retention}, {@code limit}). Blocks while etcd answers.
   *
   * @throws InferenceException UNAVAILABLE when etcd cannot be reached (nothing is lost: the next
   *     pass deletes what this one did not)
   */
  long applyAuditLimits(long chunk) {
    long expired = 0;
    long overLimit = 0;
    try {
      ByteSequence from = bytes(auditPrefix);
      if (!settings.auditRetention().isZero()) {
        long before = clock.millis() - settings.auditRetention().toMillis();
        // Keys sort by time: [audit/, audit/<before>) holds exactly the records written before it.
        expired = etcd.await(kv.get().delete(from, DeleteOption.builder()
            .withRange(bytes(String.format("%s%013d", auditPrefix, Math.max(0, before)))).build())).getDeleted();
      }
      if (settings.auditMaxRecords() > 0) {
        long count = etcd.await(kv.get().get(from, GetOption.builder().isPrefix(true).withCountOnly(true).build()))
            .getCount();
        long excess = count - settings.auditMaxRecords();
        // The oldest, chunk keys a request at most (each request's answer stays small).
        while (excess > 0) {
          GetResponse oldest = etcd.await(kv.get().get(from, GetOption.builder().isPrefix(true).withKeysOnly(true)
              .withSortField(GetOption.SortTarget.KEY).withSortOrder(GetOption.SortOrder.ASCEND)
              .withLimit(Math.min(excess, chunk)).build()));
          if (oldest.getKvs().isEmpty()) {
            break;
          }
          // Up to the last of them, included: the key with a zero byte after it is the range's end.
          ByteSequence last = oldest.getKvs().get(oldest.getKvs().size() - 1).getKey();
          long deleted = etcd.await(kv.get().delete(from, DeleteOption.builder()
              .withRange(last.concat(ByteSequence.from(new byte[] {0}))).build())).getDeleted();
          overLimit += deleted;
          excess -= Math.max(1, deleted);
        }
      }
    } catch (IOException e) {
      throw unreachable.apply(e);
    } finally {
      auditExpired.increment(expired);
      auditOverLimit.increment(overLimit);
      if (expired + overLimit > 0) {
        log.info("audit log in etcd: {} records older than {} h deleted, and {} oldest past the {} kept", expired,
            settings.auditRetention().toHours(), overLimit, settings.auditMaxRecords());
      }
    }
    return expired + overLimit;
  }

  private static ByteSequence bytes(String s) {
    return ByteSequence.from(s, StandardCharsets.UTF_8);
  }
}

package io.modelgate.gateway.control;

import io.modelgate.proto.admin.v1.AuditRecord;
import io.modelgate.proto.admin.v1.ControlStoreStatus;
import io.modelgate.proto.admin.v1.ModelControl;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Where the control state lives: one {@link ModelControl} record per model (its routing policy,
 * their history and its rollout), each changed as a unit by compare-and-swap on the record's store
 * revision, plus an append-only audit log. Two implementations: the state directory of one process
 * ({@link FileControlStore}, the default) and etcd, shared by a fleet of replicas ({@link
 * EtcdControlStore}).
 *
 * <p>Only the {@link ControlPlane} calls a store, under its lock (except {@link #access}, which is
 * thread-safe); a store never calls back into it
 * except through the listener given to {@link #watch}, from the store's own thread, which must not
 * be a thread a blocking store call waits on.
 */
public interface ControlStore extends AutoCloseable {
  /**
   * The store {@code settings} name: etcd where they list endpoints (connected, not read yet),
   * else this replica's own files in {@code files}.
   *
   * @throws IOException when etcd's password file or TLS files cannot be read
   */
  static ControlStore open(ControlSettings settings, StateStore files, io.micrometer.core.instrument.MeterRegistry registry,
      java.time.Clock clock) throws IOException {
    return settings.etcd() ? new EtcdControlStore(settings, registry, clock) : new FileControlStore(files, settings.replica());
  }

  /** A model's record and the store revision it was written at (0: never written). */
  record Stored(ModelControl control, long revision) {}

  /**
   * Every model's record. Called once, before {@link #watch}.
   *
   * @throws IOException when the store cannot be read (the server does not start)
   */
  Map<String, Stored> load() throws IOException;

  /**
   * Replaces {@code next.getModel()}'s record if it is still at {@code expectedRevision}, and
   * appends {@code audit}, in one step.
   *
   * @return the record's new store revision
   * @throws Conflict when the record has changed since (another replica wrote it)
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be
   *     reached or written; nothing was changed then, or the change's outcome is reported as unknown
   */
  long commit(ModelControl next, long expectedRevision, List<AuditRecord> audit);

  /**
   * Deletes {@code model}'s record if it is still at {@code expectedRevision} (0: if there is none),
   * with the drift references asked of every replica for its versions, and appends {@code audit},
   * in one step: the store keeps nothing of the model from then on but its usage (other replicas are
   * told as of any change, by a record at revision 0).
   *
   * @throws Conflict when the record has changed since (another replica wrote it)
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE as {@link #commit}
   */
  void forget(String model, long expectedRevision, AuditRecord audit);

  /** Appends an audit record that changes no model's record (a version loaded, say). */
  void audit(AuditRecord record);

  /**
   * Delivers records written by others, and after a reconnection every record again (a full read),
   * on the store's own thread. A file store has no other writers and never calls it.
   */
  void watch(Consumer<Map<String, Stored>> changes);

  /** What a replica follows of the fleet besides the models' records ({@link #watch}), each read whole when it changes. */
  enum Topic {
    /** The managed admin tokens and caller keys ({@link #access}). */
    ACCESS,
    /** What is set for every replica for a while: log levels, the trace sample rate ({@link #diagnostics}). */
    DIAGNOSTICS,
    /** The drift references asked of every replica ({@link #driftBaselines}). */
    DRIFT_BASELINES,
    /** Replicas' asks for every other's drift sketches ({@link #driftSketchAsks}). */
    DRIFT_SKETCH_ASKS
  }

  /**
   * Has {@code reread} run on {@code executor} whenever {@code topic} may have changed: at once
   * when another replica (or this one) changes it (etcd: a watch of its keys), once its watch is
   * set up, after this replica was cut off from the store and is back, and otherwise every {@link
   * ControlSettings#rereadEvery} in case a word was lost. A word that comes while {@code reread}
   * is queued and not yet running is folded into it; {@code reread} reads the topic whole (the
   * word says only that it may have changed). A store no other replica shares never runs it: its
   * only writer is this replica. Any thread; {@code reread} must not block {@code executor}'s
   * other work for long.
   */
  default void follow(Topic topic, java.util.concurrent.Executor executor, Runnable reread) {}

  /** What the store is, whether it is reachable now, and since when not. Never blocks. */
  ControlStoreStatus status();

  /**
   * Publishes this replica's snapshot of one version for the fleet (etcd: under this replica's
   * lease, so that it goes when the replica does). A file store has no fleet and keeps nothing.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be reached
   */
  void publish(io.modelgate.proto.admin.v1.ReplicaSnapshot snapshot);

  /**
   * Withdraws this replica's snapshot of {@code version} of {@code model}, which it no longer
   * keeps statistics for (etcd: deletes its key, which would otherwise stay while the replica
   * lives). A file store keeps none.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be reached
   */
  void unpublish(String model, long version);

  /**
   * Every live replica's latest snapshot of {@code model}'s versions (every model when empty),
   * this replica's included once published. Empty for a file store.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be reached
   */
  List<io.modelgate.proto.admin.v1.ReplicaSnapshot> snapshots(String model);

  /**
   * Keeps this replica's usage of one hour for the fleet ({@code report}: its records, that hour;
   * etcd: {@code usage/<hour>/<replica>}, without a lease: usage outlives the replica). A file store
   * keeps nothing (the ledger in the state directory is the record).
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be reached
   */
  void putUsage(String hour, io.modelgate.proto.admin.v1.UsageReport report);

  /**
   * Every replica's usage of the hours from {@code fromHour} (inclusive) to {@code toHour}
   * (exclusive), {@code yyyy-MM-ddTHH}; empty for a file store.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be reached
   */
  List<io.modelgate.proto.admin.v1.UsageReport> usage(String fromHour, String toHour);

  /**
   * Deletes every replica's usage of the hours before {@code hour} ({@code yyyy-MM-ddTHH},
   * exclusive), for the ledger's retention; returns how many hours of replicas were deleted (0 for
   * a file store, which keeps none). Any replica may call it: deleting what is gone already deletes
   * nothing.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be reached
   */
  long deleteUsageBefore(String hour);

  /**
   * Whether a password newly read from the etcd password file waits for etcd to accept it (the
   * one in use stays meanwhile); false for a store without one. Any thread.
   */
  default boolean passwordPending() {
    return false;
  }

  /** The access the admin API manages (tokens, quotas) and its store revision (0: never written). */
  record StoredAccess(io.modelgate.proto.admin.v1.ManagedAccess access, long revision) {
    public static final StoredAccess NONE =
        new StoredAccess(io.modelgate.proto.admin.v1.ManagedAccess.getDefaultInstance(), 0);
  }

  /**
   * The access the admin API manages, as last committed by any replica. Thread-safe: called
   * without the control plane's lock.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   */
  StoredAccess access();

  /**
   * Replaces the managed access if it is still at {@code expectedRevision}, with its audit record.
   * Returns the new revision.
   *
   * @throws AccessConflict when another change came first
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be written
   */
  long commitAccess(io.modelgate.proto.admin.v1.ManagedAccess next, long expectedRevision, AuditRecord audit);

  /** What is set for every replica for a while ({@code admin log --fleet}), and its revision (0: never written). */
  record StoredDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics diagnostics, long revision) {
    public static final StoredDiagnostics NONE =
        new StoredDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics.getDefaultInstance(), 0);
  }

  /**
   * What is set for every replica of the fleet for a while, as the store holds it now. Any thread;
   * a store that is not {@link #shared} has none.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   */
  default StoredDiagnostics diagnostics() {
    return StoredDiagnostics.NONE;
  }

  /**
   * Replaces what is set for every replica with {@code next} if it is still at {@code
   * expectedRevision}, with {@code audit}, atomically; returns the new revision.
   *
   * @throws DiagnosticsConflict when another change came first
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be
   *     written; FAILED_PRECONDITION for a store that is not {@link #shared}
   */
  default long commitDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics next, long expectedRevision,
      AuditRecord audit) {
    throw noFleet();
  }

  /**
   * Keeps {@code asked} as the latest drift reference asked of every replica for its version,
   * with {@code audit}, atomically.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be
   *     written; FAILED_PRECONDITION for a store that is not {@link #shared}
   */
  default void putDriftBaseline(io.modelgate.proto.admin.v1.DriftBaselineAsked asked, AuditRecord audit) {
    throw noFleet();
  }

  /**
   * The drift references asked of every replica, the latest per version, of {@code model} ("": of
   * every model); empty for a store that is not {@link #shared}. Any thread.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   */
  default List<io.modelgate.proto.admin.v1.DriftBaselineAsked> driftBaselines(String model) {
    return List.of();
  }

  /**
   * Asks every replica for its drift sketches of {@code asked}'s model, to merge: kept {@code
   * keep}.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be
   *     written; FAILED_PRECONDITION for a store that is not {@link #shared}
   */
  default void askDriftSketches(io.modelgate.proto.admin.v1.DriftSketchesAsked asked, java.time.Duration keep) {
    throw noFleet();
  }

  /**
   * Every replica's asks for drift sketches still kept; empty for a store that is not {@link #shared}.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   */
  default List<io.modelgate.proto.admin.v1.DriftSketchesAsked> driftSketchAsks() {
    return List.of();
  }

  /**
   * This replica's answer to {@code asked}, kept {@code keep} for the asking replica.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be
   *     written; FAILED_PRECONDITION for a store that is not {@link #shared}
   */
  default void answerDriftSketches(io.modelgate.proto.admin.v1.DriftSketchesAsked asked,
      io.modelgate.proto.admin.v1.DriftSketchesAnswer answer, java.time.Duration keep) {
    throw noFleet();
  }

  /**
   * The replicas that have answered this replica's ask for {@code model}'s drift sketches made at
   * {@code askedAtMs}: what the asker waits on, read without the answers themselves.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   */
  default java.util.Set<String> driftSketchAnswerers(String model, long askedAtMs) {
    return java.util.Set.of();
  }

  /**
   * The answers kept to this replica's ask for {@code model}'s drift sketches made at {@code
   * askedAtMs}.
   *
   * @throws io.modelgate.runtime.error.InferenceException UNAVAILABLE when the store cannot be read
   */
  default List<io.modelgate.proto.admin.v1.DriftSketchesAnswer> driftSketchAnswers(String model, long askedAtMs) {
    return List.of();
  }

  /** A compare-and-swap of the fleet's diagnostics that lost: someone else changed them first. */
  final class DiagnosticsConflict extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public DiagnosticsConflict() {
      super("the fleet's diagnostics changed since they were read", null, false, false);
    }
  }

  /** A compare-and-swap of the managed access that lost: someone else changed it first. */
  final class AccessConflict extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public AccessConflict() {
      super("the managed access changed since it was read", null, false, false);
    }
  }

  /** Whether other replicas share this store (and publish snapshots). */
  boolean shared();

  /** The refusal of a fleet-wide ask on a replica whose store is not {@link #shared}. */
  static io.modelgate.runtime.error.InferenceException noFleet() {
    return io.modelgate.runtime.error.InferenceException.failedPrecondition(
        "this replica has no fleet (its control store is its state directory): ask without --fleet");
  }

  /**
   * Refuses a fleet-wide ask where this store is not {@link #shared}.
   *
   * @throws io.modelgate.runtime.error.InferenceException FAILED_PRECONDITION, saying to ask without --fleet
   */
  default void requireFleet() {
    if (!shared()) {
      throw noFleet();
    }
  }

  /** The replica whose judge runs rollouts: a fleet elects one; one process is its own. */
  boolean judges();

  /**
   * Stops taking part in the fleet as a stopping replica does first: no more probing, watching or
   * campaigning, and its leases revoked, so that another replica judges rollouts at once and this
   * one leaves the fleet's views; what it still writes (its last usage, an audit record) goes
   * through until {@link #close}. Idempotent; nothing for a store of one process.
   */
  default void leave() {}

  /** Leaves (above) if it has not, then closes the connection. Idempotent. */
  @Override
  void close();

  /** A compare-and-swap that lost: the record was changed by someone else. */
  final class Conflict extends RuntimeException {
    private final transient Stored current;

    public Conflict(Stored current) {
      super("changed since", null, false, false);
      this.current = current;
    }

    /** The record as it is now. */
    public Stored current() {
      return current;
    }
  }
}

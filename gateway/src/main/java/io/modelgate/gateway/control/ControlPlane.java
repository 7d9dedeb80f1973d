package io.modelgate.gateway.control;

import io.modelgate.gateway.rollout.RolloutJudge;
import io.modelgate.gateway.rollout.RolloutSpecs;
import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.admin.v1.AuditRecord;
import io.modelgate.proto.admin.v1.ControlStoreStatus;
import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.Evidence;
import io.modelgate.proto.admin.v1.ModelControl;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.ShadowRouting;
import io.modelgate.proto.admin.v1.VersionLoad;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.time.Clock;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one owner of the control state: routing policies and their history, rollouts, revisions,
 * and their writing to the {@link ControlStore} (the state directory, or etcd shared by a fleet)
 * with the audit log. Operators (the admin API, the repository RPCs) and rollouts (an automated
 * operator, driven by this component's own scheduler thread) change them only here; changes other
 * replicas made arrive from the store's watch and are applied here too.
 *
 * <p>Threading: every change and every read of the mutable state holds this object's lock — one
 * lock, taken in one order (this, then the {@link Router}'s, which never calls back) — and this
 * component never calls into whoever asked. That is what the earlier pair lacked: the policy store
 * persisted by asking the rollout controller for its rollouts while the controller, judging a
 * step, called the store: two locks taken in both orders could deadlock. Request threads never
 * take the lock: they read the router's immutable routes; metrics read {@link #current} without it.
 *
 * <p>A change is validated, written to the store with its audit records in one compare-and-swap
 * on the model's record, and only then swapped in. A change that names a stale revision is
 * ABORTED and changes nothing; so is one that loses the swap to another replica (the record that
 * won is applied here first). A store that cannot be reached refuses changes with UNAVAILABLE
 * while traffic keeps the routing last applied.
 */
public final class ControlPlane implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ControlPlane.class);
  /** Earlier policies kept per model for rollback. */
  static final int HISTORY = 32;
  /** The caller rollouts record in policies and the audit log. */
  public static final String ROLLOUT_CALLER = "rollout";

  private final Router router;
  private final ControlStore store;
  private final RolloutEvidence evidence;
  private final Clock clock;
  private final String replica;
  /**
   * Each model's record as last written or applied, with its store revision. Written under the
   * lock; read without it only by {@link #current} (metrics).
   */
  private final Map<String, ControlStore.Stored> records = new ConcurrentSkipListMap<>();
  /**
   * The models whose running rollouts this replica, judging, passed by at its last tick (it lacks
   * them, and no replica publishes statistics of them), each warned of once while it stays so; under the lock.
   */
  private java.util.Set<String> unjudged = java.util.Set.of();
  /** {@code unjudged}'s size, for metrics (read without the lock). */
  private volatile int unjudgedCount;
  /** Told when another replica's write, or a forgetting, changes a model's loads; null until set. Under the lock. */
  private Runnable loadsListener;
  /** Since when this replica judges rollouts (-1: it does not); steps are judged on samples since. */
  private long judgingSinceMs;
  private final ScheduledExecutorService scheduler;

  /**
   * @param stats where rollouts read their samples
   * @param golden the versions' golden-set results, which rollouts require the candidate to keep
   * @param schedule whether rollouts are judged by a background thread once a second; tests pass
   *     false and call {@link #tick}
   * @param replica this replica's name, recorded in audit records
   */
  public ControlPlane(
      Router router,
      ControlStore store,
      StatsRegistry stats,
      io.modelgate.gateway.health.GoldenSets golden,
      Clock clock,
      boolean schedule,
      String replica) {
    this.router = router;
    this.store = store;
    this.evidence = new RolloutEvidence(router, store, stats, golden, replica);
    this.clock = clock;
    this.replica = replica;
    this.judgingSinceMs = store.judges() ? clock.millis() : -1;
    if (schedule) {
      scheduler =
          DaemonThreads.scheduled("modelgate-rollouts");
      scheduler.scheduleWithFixedDelay(this::tickQuietly, 1, 1, TimeUnit.SECONDS);
    } else {
      scheduler = null;
    }
  }

  public Router router() {
    return router;
  }

  public Clock clock() {
    return clock;
  }

  public ControlStore store() {
    return store;
  }

  public String replica() {
    return replica;
  }

  /** The store's state as this replica sees it, with the judging replica. */
  public ControlStoreStatus status() {
    return store.status();
  }

  // ---- routing ----

  /**
   * Replaces the policy of {@code requested.getModel()}.
   *
   * @throws InferenceException ABORTED for a stale {@code expectedRevision} or a change another
   *     replica made first; INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION for a policy that
   *     does not fit the model; UNAVAILABLE when the control store cannot be written
   */
  public synchronized RoutingPolicy set(
      RoutingPolicy requested, long expectedRevision, String caller, String action, String reason) {
    return apply(requested, expectedRevision, caller, action, reason, Memory.REMEMBER, null, List.of(), Where.HERE);
  }

  /** Sends all weighted traffic to {@code version}, keeping the sticky and shadow settings. */
  public synchronized RoutingPolicy promote(String model, long version, long expectedRevision, String caller) {
    return apply(promoted(model, version), expectedRevision, caller, "Promote",
        "promote version " + version + " to 100%", Memory.REMEMBER, null, List.of(), Where.HERE);
  }

  /** The policy in force for {@code model} with {@code version} taking all weighted traffic. Under the lock. */
  private RoutingPolicy promoted(String model, long version) {
    RoutingPolicy current = policyNow(model, router.routeOrNull(model));
    RoutingPolicy.Builder next = current.toBuilder().clearWeights().putWeights(version, 1);
    if (current.getShadow().getVersion() == version) {
      next.clearShadow();
    }
    return next.build();
  }

  /**
   * Restores the policy the current one replaced.
   *
   * @throws InferenceException FAILED_PRECONDITION when there is none
   */
  public synchronized RoutingPolicy rollback(String model, long expectedRevision, String caller) {
    Route current = router.route(model);
    List<RoutingPolicy> earlier = record(model).control().getHistoryList();
    if (earlier.isEmpty()) {
      throw InferenceException.failedPrecondition(
          "model '" + model + "' has no earlier routing policy to roll back to");
    }
    RoutingPolicy previous = earlier.get(earlier.size() - 1);
    RoutingPolicy restored =
        apply(
            previous,
            expectedRevision,
            caller,
            "Rollback",
            "rollback to the policy of revision " + previous.getRevision(),
            Memory.FORGET_LAST,
            null,
            List.of(),
            Where.HERE);
    log.info("model '{}' rolled back from revision {}", model, current.policy().getRevision());
    return restored;
  }

  /** What a change does to the model's history of policies. */
  private enum Memory {
    /** The replaced policy joins the history. */
    REMEMBER,
    /** The newest entry of the history leaves it (a rollback restored it). */
    FORGET_LAST,
    /** The history stays as it is. */
    KEEP
  }

  /** Where a change may be made. */
  private enum Where {
    /** Only on a replica whose repository has the model: the policy is checked against its versions. */
    HERE,
    /**
     * Also on a replica whose repository lacks the model: written to the store unchecked, for the
     * replicas that have it to install (a rollout's baseline restored by an abort asked there, a
     * rollout's step or promotion by a judge that lacks the model). Checked where it has it.
     */
    EVEN_WHERE_ABSENT
  }

  /**
   * Validates {@code requested}, writes it (with {@code rolloutAfter}'s rollout, when given, and
   * the audit records) as one change to the store, then installs it. Under the lock.
   *
   * @param rolloutAfter given the policy about to be written, the model's rollout to write with
   *     it; null keeps the rollout as it is
   */
  private RoutingPolicy apply(
      RoutingPolicy requested,
      long expectedRevision,
      String caller,
      String action,
      String reason,
      Memory memory,
      java.util.function.Function<RoutingPolicy, Rollout> rolloutAfter,
      List<AuditRecord> alsoAudit,
      Where where) {
    String model = requested.getModel();
    Route route = where == Where.EVEN_WHERE_ABSENT ? router.routeOrNull(model) : router.route(model);
    RoutingPolicy currentPolicy = policyNow(model, route);
    long revision = currentPolicy.getRevision();
    if (revision != expectedRevision) {
      throw InferenceException.aborted(
          "routing of model '" + model + "' is at revision " + revision + ", not " + expectedRevision
              + "; read it again and retry");
    }
    RoutingPolicy next =
        requested.toBuilder()
            .setRevision(revision + 1)
            .setUpdatedBy(caller)
            .setUpdatedAtMs(clock.millis())
            .setReason(reason)
            .build();
    Route compiled = route != null ? router.compile(next) : null;
    ModelControl record = record(model).control();
    ModelControl.Builder written = record.toBuilder().setModel(model).setPolicy(next);
    switch (memory) {
      case REMEMBER -> {
        written.addHistory(currentPolicy);
        while (written.getHistoryCount() > HISTORY) {
          written.removeHistory(0);
        }
      }
      case FORGET_LAST -> written.removeHistory(written.getHistoryCount() - 1);
      case KEEP -> { }
    }
    if (rolloutAfter != null) {
      written.setRollout(rolloutAfter.apply(next));
    }
    List<AuditRecord> audit = new ArrayList<>(alsoAudit.size() + 1);
    audit.add(
        AuditRecord.newBuilder()
            .setTimeMs(next.getUpdatedAtMs())
            .setCaller(caller)
            .setAction(action)
            .setModel(model)
            .setDetail(reason)
            .setOldPolicy(currentPolicy)
            .setNewPolicy(next)
            .build());
    audit.addAll(alsoAudit);
    write(written.build(), audit);
    if (compiled != null) {
      router.install(compiled, revision);
    }
    log.info("model '{}' routing revision {} by {}: {} {}", model, next.getRevision(), caller, reason, next.getWeightsMap());
    return next;
  }

  /**
   * The policy in force for {@code model}: its {@code route}'s, or where this replica lacks the
   * model (null), the one its record keeps. Under the lock.
   */
  private RoutingPolicy policyNow(String model, Route route) {
    return route != null ? route.policy() : record(model).control().getPolicy();
  }

  /**
   * Writes {@code next} as its model's record, by compare-and-swap on the record this replica
   * knows. Under the lock. Installs nothing.
   *
   * @throws InferenceException ABORTED when another replica changed the record first (its record
   *     is applied here before this returns); UNAVAILABLE when the store cannot be written
   */
  private void write(ModelControl next, List<AuditRecord> audit) {
    String model = next.getModel();
    ControlStore.Stored known = record(model);
    long written;
    try {
      written = store.commit(next, known.revision(), audit);
    } catch (ControlStore.Conflict lost) {
      adopt(lost.current());
      throw InferenceException.aborted(
          "model '" + model + "' was changed on another replica first; routing is at revision "
              + router.route(model).policy().getRevision() + " now; read it again and retry");
    }
    records.put(model, new ControlStore.Stored(next, written));
  }

  /** The record this replica knows for {@code model} (an empty one at revision 0 when none). */
  private ControlStore.Stored record(String model) {
    ControlStore.Stored known = records.get(model);
    return known != null ? known : new ControlStore.Stored(ModelControl.newBuilder().setModel(model).build(), 0);
  }

  /**
   * The access the admin API manages, as the store has it. Not under this object's lock: a
   * store's {@code access()} is thread-safe (a volatile read, or one etcd read), and a replica
   * polling it while etcd is down must not hold up routing changes and the watch.
   */
  public ControlStore.StoredAccess access() {
    return store.access();
  }

  /**
   * Replaces the managed access by compare-and-swap, audited as {@code action} by {@code caller}.
   *
   * @throws ControlStore.AccessConflict when another change came first
   */
  public synchronized long commitAccess(io.modelgate.proto.admin.v1.ManagedAccess next, long expectedRevision,
      String caller, String action, String detail) {
    return store.commitAccess(next, expectedRevision, auditRecord(caller, action, "", 0, detail));
  }

  /** What is set for every replica for a while, as the store holds it now (none without a fleet). Any thread. */
  public ControlStore.StoredDiagnostics diagnostics() {
    return store.diagnostics();
  }

  /**
   * Replaces what is set for every replica, audited as {@code caller}'s {@code action}, if it is
   * still at {@code expectedRevision}.
   *
   * @throws ControlStore.DiagnosticsConflict when another change came first
   */
  public synchronized long commitDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics next, long expectedRevision,
      String caller, String action, String detail) {
    return store.commitDiagnostics(next, expectedRevision, auditRecord(caller, action, "", 0, detail));
  }

  /**
   * Keeps {@code asked} in the store for every replica to follow, with its audit record (action
   * {@code SetDriftBaseline}), atomically.
   *
   * @throws InferenceException UNAVAILABLE when the store cannot be written; FAILED_PRECONDITION without a fleet
   */
  public synchronized void putDriftBaseline(io.modelgate.proto.admin.v1.DriftBaselineAsked asked, String detail) {
    store.putDriftBaseline(asked, auditRecord(asked.getAskedBy(), "SetDriftBaseline", asked.getModel(),
        asked.getVersion(), detail));
  }

  private AuditRecord auditRecord(String caller, String action, String model, long version, String detail) {
    return AuditRecord.newBuilder()
        .setTimeMs(clock.millis())
        .setCaller(caller)
        .setAction(action)
        .setModel(model)
        .setVersion(version)
        .setDetail(detail)
        .build();
  }

  /**
   * Records that an operator's {@code version} of {@code model} is now loaded ({@code loaded}) or
   * unloaded on this replica, audited as {@code action} by {@code caller}: the ask is written to
   * the model's record with its audit record, in one change ({@link #loads}). In a fleet (a shared
   * store) every replica follows it; in one process's state directory it is kept for the process's
   * next start (a version unloaded stays unloaded).
   *
   * @throws InferenceException UNAVAILABLE when the store cannot be written (the version is as
   *     asked on this replica, not recorded; the message says so)
   */
  public void recordLoad(
      String model, long version, boolean loaded, String caller, String action, String detail) {
    recordLoad(model, version, loaded, 0, "", "", caller, action, detail);
  }

  /**
   * As {@link #recordLoad(String, long, boolean, String, String, String)}, the version loaded and
   * {@code reloadedAtMs} (not 0) the stamp of its reload while it served ({@link
   * VersionLoad#getReloadedAtMs}), which loaded the model file of SHA-256 {@code modelSha256} with
   * the {@code model.yaml} of SHA-256 {@code modelYamlSha256} ({@link VersionLoad#getModelYamlSha256}):
   * in a fleet, every replica that has it READY loads it again once, and again until its files are
   * those.
   */
  public synchronized void recordLoad(String model, long version, boolean loaded, long reloadedAtMs,
      String modelSha256, String modelYamlSha256, String caller, String action, String detail) {
    VersionLoad ask = VersionLoad.newBuilder().setVersion(version).setLoaded(loaded).setCaller(caller)
        .setReplica(replica).setAtMs(clock.millis()).setReloadedAtMs(reloadedAtMs).setModelSha256(modelSha256)
        .setModelYamlSha256(modelYamlSha256).build();
    AuditRecord audit = auditRecord(caller, action, model, version,
        store.shared() ? detail + " (every replica of the fleet follows)" : detail);
    for (int attempt = 1; ; attempt++) {
      ModelControl current = record(model).control();
      ModelControl.Builder next = current.toBuilder().setModel(model).clearLoads();
      for (VersionLoad earlier : current.getLoadsList()) {
        if (earlier.getVersion() != version) {
          next.addLoads(earlier);
        }
      }
      next.addLoads(ask);
      try {
        write(next.build(), List.of(audit));
        return;
      } catch (InferenceException e) {
        if (e.code() == io.modelgate.runtime.error.ErrorCode.ABORTED && attempt < 3) {
          continue;  // another replica wrote the record first; it is adopted now: ask again on top of it
        }
        throw InferenceException.unavailable("version " + version + " of model '" + model + "' is "
            + (loaded ? "loaded" : "unloaded") + " on this replica, but "
            + (store.shared() ? "the fleet was not told" : "the state directory does not keep it for the next start")
            + " (" + e.getMessage() + "); ask again once the control store is back");
      }
    }
  }

  /**
   * Each model's operator asks of its versions ({@link #recordLoad}), the latest per version: in a
   * fleet, asked on any replica, what every replica's versions are to be; with a store of this
   * replica's own, its own. Never blocks.
   */
  public Map<String, List<VersionLoad>> loads() {
    return loads(records.values());
  }

  /**
   * The operator asks that {@code records} (as a store's {@link ControlStore#load} reads them) hold,
   * by model: what {@link #loads()} gives once they are installed; for a replica that starts, before
   * it loads its repository.
   */
  public static Map<String, List<VersionLoad>> loads(java.util.Collection<ControlStore.Stored> records) {
    Map<String, List<VersionLoad>> loads = new java.util.TreeMap<>();
    for (ControlStore.Stored stored : records) {
      if (stored.control().getLoadsCount() > 0) {
        loads.put(stored.control().getModel(), stored.control().getLoadsList());
      }
    }
    return loads;
  }

  /**
   * Forgets what the control store keeps for a model that this replica's repository no longer has
   * (removed, its folder gone; or never here): its routing policy and their history, its latest
   * rollout, its versions' last loads and unloads, and in a fleet the drift references asked of
   * every replica for its versions, in the store and here, audited ({@code ForgetModel}). A model of that name added later starts with the default routing and every
   * version loaded. In a fleet every replica that lacks the model forgets it too; one whose
   * repository still has it keeps the routing in force (it writes a new record at its next change).
   *
   * @return what was forgotten, in words (the audit record's detail)
   * @throws InferenceException FAILED_PRECONDITION while this replica's repository has the model,
   *     while its rollout is RUNNING, or while another replica of the fleet has a version of it loaded
   *     (as its published snapshots say); NOT_FOUND when nothing is kept for it; ABORTED when another
   *     replica changed its record first; UNAVAILABLE when the store cannot be written or read
   */
  public synchronized String forget(String model, String caller) {
    if (router.routeOrNull(model) != null) {
      throw InferenceException.failedPrecondition("model '" + model + "' is in this replica's repository; what is kept"
          + " for a model is forgotten only once it has been removed (its folder deleted, then no version of it in"
          + " memory for 15 minutes: admin models says when)");
    }
    ControlStore.Stored known = records.get(model);
    List<Long> driftReferences = store.driftBaselines(model).stream()
        .map(io.modelgate.proto.admin.v1.DriftBaselineAsked::getVersion).sorted().toList();
    if (known == null && driftReferences.isEmpty()) {
      throw InferenceException.notFound("nothing is kept for model '" + model + "' in the control store");
    }
    ModelControl control = known != null ? known.control() : ModelControl.newBuilder().setModel(model).build();
    if (control.getRollout().getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition("model '" + model + "' has a RUNNING rollout; abort it first (admin"
          + " rollout abort --model " + model + ")");
    }
    List<String> serving = loadedElsewhere(model).getOrDefault(model, List.of());
    if (!serving.isEmpty()) {
      throw InferenceException.failedPrecondition("model '" + model + "' is loaded on replica " + String.join(", ", serving)
          + ", which route it by this record; take it down there first (admin unload --model " + model + "), or forget"
          + " it once they have removed it");
    }
    String detail = forgotten(control, driftReferences);
    AuditRecord audit = AuditRecord.newBuilder().setTimeMs(clock.millis()).setCaller(caller).setAction("ForgetModel")
        .setModel(model).setDetail(detail).setOldPolicy(control.getPolicy()).build();
    try {
      // At revision 0 (no record, or one already gone from the store): only if there is still none.
      store.forget(model, known != null ? known.revision() : 0, audit);
    } catch (ControlStore.Conflict lost) {
      adopt(lost.current());
      throw InferenceException.aborted("model '" + model + "''s record was changed on another replica first; retry");
    }
    records.remove(model);
    if (control.getLoadsCount() > 0 && loadsListener != null) {
      loadsListener.run(); // a fleet's load this replica owes of it is owed no more
    }
    log.info("model '{}' forgotten by {}: {}", model, caller, detail);
    return detail;
  }

  /**
   * The other replicas of a fleet that have a version of {@code model} loaded ("" for every model),
   * as their last published snapshots say — "r2 (version 1)" — by model; empty with a store of this
   * replica's own. Reads the store.
   *
   * @throws InferenceException UNAVAILABLE when the store cannot be read
   */
  private Map<String, List<String>> loadedElsewhere(String model) {
    if (!store.shared()) {
      return Map.of();
    }
    Map<String, java.util.SortedSet<String>> loaded = new java.util.TreeMap<>();
    for (io.modelgate.proto.admin.v1.ReplicaSnapshot snapshot : store.snapshots(model)) {
      if (!snapshot.getReplica().equals(replica) && !snapshot.getModelSha256().isEmpty()) {
        loaded.computeIfAbsent(snapshot.getModel(), m -> new java.util.TreeSet<>())
            .add(snapshot.getReplica() + " (version " + snapshot.getVersion() + ")");
      }
    }
    Map<String, List<String>> lists = new java.util.TreeMap<>();
    loaded.forEach((name, replicas) -> lists.put(name, List.copyOf(replicas)));
    return lists;
  }

  /**
   * What the store keeps for models this replica's repository does not have (removed here, or
   * another replica's), by name: what {@link #forget} would drop, with the other replicas that
   * have them loaded where the store answers. Any thread (reads the records without the lock, as
   * metrics do).
   */
  public List<io.modelgate.proto.admin.v1.KeptModel> keptWithoutModel() {
    // A store known to be down is not waited for: what it keeps is listed without the fleet's drift
    // references, and without where the models are loaded.
    boolean up = store.status().getUp();
    Map<String, java.util.TreeSet<Long>> references = new java.util.TreeMap<>();
    if (up) {
      try {
        for (io.modelgate.proto.admin.v1.DriftBaselineAsked ask : store.driftBaselines("")) {
          references.computeIfAbsent(ask.getModel(), m -> new java.util.TreeSet<>()).add(ask.getVersion());
        }
      } catch (InferenceException e) {
        up = false;
      }
    }
    java.util.Set<String> models = new java.util.TreeSet<>(records.keySet());
    models.addAll(references.keySet());
    models.removeIf(model -> router.routeOrNull(model) != null);
    Map<String, List<String>> loaded = Map.of();
    if (up && !models.isEmpty()) {
      try {
        loaded = loadedElsewhere("");
      } catch (InferenceException e) {
        // listed without where they are loaded
      }
    }
    List<io.modelgate.proto.admin.v1.KeptModel> kept = new ArrayList<>();
    for (String model : models) {
      ControlStore.Stored stored = records.get(model);
      ModelControl control = stored != null ? stored.control() : ModelControl.getDefaultInstance();
      kept.add(io.modelgate.proto.admin.v1.KeptModel.newBuilder().setModel(model)
          .setRoutingRevision(control.getPolicy().getRevision()).setRolloutState(control.getRollout().getState())
          .setVersionLoads(control.getLoadsCount()).addAllLoadedOn(loaded.getOrDefault(model, List.of()))
          .addAllDriftReferenceVersions(references.getOrDefault(model, new java.util.TreeSet<>())).build());
    }
    return kept;
  }

  /** What forgetting {@code control} drops, in words. */
  private static String forgotten(ModelControl control, List<Long> driftReferences) {
    List<String> parts = new ArrayList<>();
    if (control.hasPolicy()) {
      parts.add("routing revision " + control.getPolicy().getRevision() + " " + control.getPolicy().getWeightsMap());
    }
    if (control.getHistoryCount() > 0) {
      parts.add(control.getHistoryCount() + " earlier polic" + (control.getHistoryCount() == 1 ? "y" : "ies"));
    }
    if (control.hasRollout()) {
      parts.add("its last rollout (" + control.getRollout().getState() + ")");
    }
    if (control.getLoadsCount() > 0) {
      parts.add("the last load or unload of " + control.getLoadsCount() + " version"
          + (control.getLoadsCount() == 1 ? "" : "s"));
    }
    if (!driftReferences.isEmpty()) {
      parts.add("the fleet's drift reference" + (driftReferences.size() == 1 ? "" : "s") + " of version"
          + (driftReferences.size() == 1 ? " " : "s ") + driftReferences.stream().map(String::valueOf)
              .collect(java.util.stream.Collectors.joining(", ")));
    }
    return parts.isEmpty() ? "forgot an empty record" : "forgot " + String.join(", ", parts);
  }

  /** Records an admin action that is not a routing change (load, unload). */
  public synchronized void audit(String caller, String action, String model, long version, String detail) {
    AuditRecord record = auditRecord(caller, action, model, version, detail);
    try {
      store.audit(record);
    } catch (InferenceException e) {
      // The action (a version loaded on this replica) has happened; say so where it can be read.
      log.error("audit record not stored ({}): {}", e.getMessage(), record.toString().replace('\n', ' '));
    }
  }

  /**
   * Reads every model's record from the store and installs it, then follows the store's changes.
   * A policy is never dropped because a version it names is not READY (a corrupt file, a folder
   * removed): it is kept, at its revision, and routes among the READY versions it names, or
   * refuses requests when none is — traffic never falls back to another version, so a candidate
   * is not promoted by accident. Each such policy is logged as an error and shown by {@code admin
   * models}; loading the missing version restores it whole. Only a policy invalid in itself (or
   * for an unknown model) is skipped. A RUNNING rollout resumes its current step, judged on
   * samples from the time this replica became its judge.
   *
   * @throws IOException when the store cannot be read
   */
  public synchronized void start() throws IOException {
    for (ControlStore.Stored stored : store.load().values()) {
      adopt(stored);
      Rollout rollout = stored.control().getRollout();
      if (rollout.getState().equals("RUNNING")) {
        log.info("rollout of model '{}' resumes at step {}%", rollout.getModel(),
            rollout.getSpec().getSteps(rollout.getStepIndex()));
      }
    }
    store.watch(this::adoptAll);
  }

  /** Applies records another replica wrote (from the store's watch thread). */
  private synchronized void adoptAll(Map<String, ControlStore.Stored> changed) {
    for (ControlStore.Stored stored : changed.values()) {
      adopt(stored);
    }
  }

  /**
   * Installs a record read from the store unless this replica already has it or a newer one.
   * Under the lock.
   */
  private void adopt(ControlStore.Stored stored) {
    String model = stored.control().getModel();
    ControlStore.Stored known = records.get(model);
    if (stored.revision() == 0) {
      if (known == null) {
        return;
      }
      if (router.routeOrNull(model) == null) {
        // Forgotten (ForgetModel on another replica, or deleted by hand) while this replica's
        // repository lacks the model: a model of that name added later starts afresh here too.
        records.remove(model);
        log.info("model '{}': the control store forgot its record; nothing of it is kept here either", model);
        if (known.control().getLoadsCount() > 0 && loadsListener != null) {
          loadsListener.run();
        }
      } else {
        // Gone from the store while this replica serves the model: keep the routing in force and
        // write the next change as a new record.
        records.put(model, new ControlStore.Stored(known.control(), 0));
        log.warn("model '{}': its record was deleted from the control store; the routing in force stays", model);
      }
      return;
    }
    if (known != null && stored.revision() <= known.revision()) {
      return;
    }
    records.put(model, stored);
    install(model, stored);
    boolean loadsChanged = known == null
        ? stored.control().getLoadsCount() > 0
        : !known.control().getLoadsList().equals(stored.control().getLoadsList());
    if (loadsChanged && loadsListener != null) {
      loadsListener.run();
    }
  }

  /**
   * Calls {@code listener} whenever a record read from the store (another replica's write) changes
   * a model's {@link #loads}: on the store's watch thread, under this object's lock, so it must
   * only hand the work to a thread of its own.
   */
  public synchronized void onLoadsChanged(Runnable listener) {
    this.loadsListener = listener;
  }

  /**
   * A model added to the repository since the start: the routing its record in the store gives it
   * (kept, not applied, while the model was unknown here), if any. On the thread adding it.
   */
  public synchronized void modelAdded(String model) {
    ControlStore.Stored stored = records.get(model);
    if (stored != null) {
      install(model, stored);
    }
  }

  /**
   * A model the repository has removed (its folder gone, nothing of it in memory): its route goes;
   * its record in the store stays, for a model of that name added later. On the thread removing it.
   */
  public synchronized void modelRemoved(String model) {
    router.forget(model);
  }

  /**
   * Installs {@code stored}'s routing policy for {@code model}, logging the outcome; a record with
   * no policy (only a fleet's loads) leaves the routing as it is. Under the lock.
   */
  private void install(String model, ControlStore.Stored stored) {
    if (!stored.control().hasPolicy()) {
      return;
    }
    RoutingPolicy policy = stored.control().getPolicy().toBuilder().setModel(model).build();
    try {
      Route compiled = router.compileKeeping(policy);
      router.installRestored(compiled);
      if (compiled.degraded() == null) {
        log.info("model '{}' routing at revision {}: {}", model, policy.getRevision(), policy.getWeightsMap());
      } else {
        log.error(
            "model '{}' routing at revision {} IN PART: {} {}; traffic goes only to the"
                + " READY versions it names (refused UNAVAILABLE when none is) until they load",
            model, policy.getRevision(), policy.getWeightsMap(), compiled.degraded());
      }
    } catch (RuntimeException e) {
      log.error("model '{}': routing revision {} not applied: {}", model, policy.getRevision(), e.getMessage());
    }
  }

  // ---- rollouts ----

  /**
   * Starts a rollout: the candidate gets the first step's share at once.
   *
   * @throws InferenceException INVALID_ARGUMENT for a malformed spec, NOT_FOUND for an unknown
   *     model, FAILED_PRECONDITION when a version is not READY or a rollout already runs
   */
  public Rollout startRollout(RolloutSpec requested, String caller) {
    RolloutSpec spec = RolloutSpecs.validated(requested);
    if (spec.getCopyControl() || spec.getControl() != 0) {
      RolloutSpecs.requireControl(router.route(spec.getModel()).model(), spec);
    }
    return startValidated(spec, caller);
  }

  private synchronized Rollout startValidated(RolloutSpec spec, String caller) {
    Model model = router.route(spec.getModel()).model();
    RolloutSpecs.requireReady(model, spec.getBaseline(), "baseline");
    RolloutSpecs.requireReady(model, spec.getCandidate(), "candidate");
    if (spec.getControl() != 0) {
      RolloutSpecs.requireReady(model, spec.getControl(), "control");
    }
    Rollout existing = current(spec.getModel());
    if (existing != null && existing.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition(
          "a rollout of model '" + spec.getModel() + "' is already running (candidate version "
              + existing.getSpec().getCandidate() + "); abort it first");
    }
    Route route = router.route(spec.getModel());
    RoutingPolicy current = route.policy();
    if (route.weightOf(spec.getBaseline()) == 0 || route.weightOf(spec.getCandidate()) > 0) {
      throw InferenceException.failedPrecondition(
          "a rollout starts from a policy in which the baseline (version " + spec.getBaseline()
              + ") takes traffic and the candidate (version " + spec.getCandidate() + ") takes none;"
              + " routing revision " + current.getRevision() + " is " + current.getWeightsMap()
              + (current.getWeightsCount() == 0 ? " (the default: the highest READY version)" : "")
              + ". Route the traffic to the baseline first (admin promote --model " + spec.getModel() + " --version "
              + spec.getBaseline() + ", or admin routes set)");
    }
    if (spec.getControl() != 0 && route.weightOf(spec.getControl()) > 0) {
      throw InferenceException.failedPrecondition(
          "the control (version " + spec.getControl() + ") takes traffic in routing revision " + current.getRevision()
              + " " + current.getWeightsMap() + "; a rollout gives it the candidate's share, from none");
    }
    RolloutEvidence.Validity validity = evidence.validity(spec, Evidence.newBuilder());
    if (validity.verdict() != RolloutJudge.Verdict.PASS) {
      throw InferenceException.failedPrecondition("the rollout does not start: " + validity.reason());
    }
    // The policy to come back to. The default (no weights) would send everything to the highest
    // READY version, which may be the candidate: name the baseline instead.
    RoutingPolicy baselinePolicy =
        current.getWeightsCount() > 0 ? current : current.toBuilder().putWeights(spec.getBaseline(), 1).build();
    long now = clock.millis();
    boolean shadowPhase = spec.getThresholds().getMinShadowAgreement() > 0;
    Rollout rollout =
        Rollout.newBuilder()
            .setModel(spec.getModel())
            .setSpec(spec)
            .setState("RUNNING")
            .setStepIndex(0)
            .setShadowPhase(shadowPhase)
            .setStartedAtMs(now)
            .setStepStartedAtMs(now)
            .setBaselinePolicy(baselinePolicy)
            .addDecisions(
                Decision.newBuilder()
                    .setTimeMs(now)
                    .setStepPercent(shadowPhase ? 0 : spec.getSteps(0))
                    .setVerdict("START")
                    .setReason("rollout started by " + caller + ": " + RolloutSpecs.described(spec)))
            .build();
    AuditRecord started =
        AuditRecord.newBuilder()
            .setTimeMs(now)
            .setCaller(caller)
            .setAction("StartRollout")
            .setModel(spec.getModel())
            .setVersion(spec.getCandidate())
            .setDetail(spec.toString().replace('\n', ' '))
            .build();
    if (shadowPhase) {
      RoutingPolicy shadowed = baselinePolicy.toBuilder()
          .setShadow(ShadowRouting.newBuilder().setVersion(spec.getCandidate()).setSampleRate(spec.getShadowRate()))
          .build();
      apply(shadowed, current.getRevision(), ROLLOUT_CALLER, "RolloutShadow",
          "rollout shadow phase: candidate " + spec.getCandidate() + " as the shadow", Memory.REMEMBER,
          next -> rollout.toBuilder().setPolicyRevision(next.getRevision()).build(), List.of(started), Where.HERE);
    } else {
      applyStep(rollout, 0, current.getRevision(), List.of(started));
    }
    return current(spec.getModel());
  }

  public synchronized Rollout rollout(String model) {
    Rollout rollout = current(model);
    if (rollout == null) {
      throw InferenceException.notFound("model '" + model + "' has no rollout");
    }
    return rollout;
  }

  /**
   * Stops a running rollout and restores the policy it started from. Asked on a replica whose
   * repository lacks the model (a fleet's judge may, or the model was removed here since), it is
   * written all the same: the replicas that have the model install the restored policy.
   */
  public synchronized Rollout abortRollout(String model, String caller) {
    Rollout rollout = rollout(model);
    if (!rollout.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition(
          "the rollout of model '" + model + "' is " + rollout.getState() + ", not RUNNING");
    }
    AuditRecord aborted =
        AuditRecord.newBuilder()
            .setTimeMs(clock.millis())
            .setCaller(caller)
            .setAction("AbortRollout")
            .setModel(model)
            .setVersion(rollout.getSpec().getCandidate())
            .setDetail("aborted")
            .build();
    return restoreBaseline(rollout, "ABORTED", "ABORT", "aborted by " + caller, null, List.of(aborted));
  }

  /**
   * Aborts the model's rollout if one runs, audited as {@link #abortRollout} is: a model being
   * taken down ends it (its versions go, so no step of it could be judged). Whether one ran.
   */
  public synchronized boolean abortRunningRollout(String model, String caller) {
    Rollout rollout = current(model);
    if (rollout == null || !rollout.getState().equals("RUNNING")) {
      return false;
    }
    abortRollout(model, caller);
    return true;
  }

  /**
   * A tick; a refusal of the store (etcd down, say) is logged without a stack. Anything else it
   * throws goes to the thread's executor, which logs it (once a minute) and counts it in {@code
   * modelgate_background_failures_total}; the next tick comes in 1 s either way.
   */
  private void tickQuietly() {
    try {
      tick();
    } catch (InferenceException e) {
      log.error("rollout tick failed: {}", e.getMessage());
    }
  }

  /**
   * Judges every running rollout whose step has lasted its interval, when this replica is the
   * judge (always, with a file store; the elected one in a fleet). A step is judged on samples
   * from its start, or from when this replica became the judge if later (a judge that took over
   * lacks the samples the one before it saw).
   */
  public synchronized void tick() {
    long now = clock.millis();
    if (!store.judges()) {
      judgingSinceMs = -1;
      passedBy(java.util.Set.of());
      return;
    }
    if (judgingSinceMs < 0) {
      judgingSinceMs = now;
      log.info("this replica ({}) judges rollouts from now on", replica);
    }
    java.util.Set<String> passed = new java.util.TreeSet<>();
    try {
      judgeEach(now, passed);
    } finally {
      passedBy(passed);
    }
  }

  /** Notes the rollouts this tick passed by, warning once of each newly passed by. Under the lock. */
  private void passedBy(java.util.Set<String> passed) {
    for (String model : passed) {
      if (!unjudged.contains(model)) {
        log.warn("rollout of model '{}' not judged: this replica does not have the model (no folder {} in its"
            + " repository) and no other replica publishes statistics of it; it waits for one that does, or an abort"
            + " on any replica", model, model);
      }
    }
    unjudged = passed;
    unjudgedCount = passed.size();
  }

  /**
   * Running rollouts that this replica, judging, passes by because its repository lacks their
   * model and no other replica publishes statistics of it (as of its last tick; 0 while it does not
   * judge): they do not advance. Any thread.
   */
  public int unjudgedRollouts() {
    return unjudgedCount;
  }

  /** {@link #tick}'s judging of each running rollout; adds to {@code passed} those it lacks. Under the lock. */
  private void judgeEach(long now, java.util.Set<String> passed) {
    for (ControlStore.Stored stored : new ArrayList<>(records.values())) {
      Rollout rollout = stored.control().getRollout();
      if (!rollout.getState().equals("RUNNING")) {
        continue;
      }
      String model = rollout.getModel();
      Route route = router.routeOrNull(model);
      if (route == null && (!store.shared() || store.snapshots(model).isEmpty())) {
        // A model this replica does not have (never, or removed since: its folder gone), of which
        // no other replica publishes statistics either: nothing to judge it on; it waits.
        passed.add(model);
        continue;
      }
      // Where this replica lacks the model, it judges on what the replicas that have it publish,
      // against the policy in force as the record keeps it.
      long current = policyNow(model, route).getRevision();
      long own = rollout.getPolicyRevision();
      if (own != 0 && current != own) {
        Rollout stopped = rollout.toBuilder()
            .setState("ABORTED")
            .addDecisions(decision(now, rollout, "ABORT",
                "routing was changed outside the rollout (revision " + current + ", rollout set " + own
                    + "); the rollout stops and leaves it as it is", null))
            .build();
        write(stored.control().toBuilder().setRollout(stopped).build(), List.of());
        continue;
      }
      // A judge that took over (or restarted) waits a whole interval of its own.
      long since = Math.max(rollout.getStepStartedAtMs(), judgingSinceMs);
      if (now - since >= rollout.getSpec().getIntervalS() * 1000L) {
        evaluate(stored.control(), rollout, now);
      }
    }
  }

  private void evaluate(ModelControl record, Rollout rollout, long now) {
    RolloutSpec spec = rollout.getSpec();
    RolloutJudge.Judgement judgement = evidence.judge(rollout);
    String model = spec.getModel();
    switch (judgement.verdict()) {
      case WAIT -> {
        Decision last = rollout.getDecisions(rollout.getDecisionsCount() - 1);
        Rollout.Builder next = rollout.toBuilder();
        Decision wait = decision(now, rollout, "WAIT", judgement.reason(), judgement);
        if (last.getVerdict().equals("WAIT") && last.getStepPercent() == wait.getStepPercent()) {
          next.setDecisions(rollout.getDecisionsCount() - 1, wait);
        } else {
          next.addDecisions(wait);
        }
        write(record.toBuilder().setRollout(next.build()).build(), List.of());
      }
      case FAIL -> {
        restoreBaseline(rollout, "ROLLED_BACK", "ROLLBACK", judgement.reason(), judgement, List.of());
        log.warn("rollout of model '{}' rolled back: {}", model, judgement.reason());
      }
      case PASS -> {
        if (rollout.getShadowPhase()) {
          Rollout live = rollout.toBuilder()
              .setShadowPhase(false)
              .setStepIndex(0)
              .setStepStartedAtMs(now)
              .addDecisions(decision(now, rollout, "ADVANCE",
                  judgement.reason() + "; first live step " + spec.getSteps(0) + "%", judgement))
              .build();
          applyStep(live, 0, policyNow(model, router.routeOrNull(model)).getRevision(), List.of());
          log.info("rollout of model '{}' leaves its shadow phase for {}%: {}", model, spec.getSteps(0), judgement.reason());
          return;
        }
        int nextStep = rollout.getStepIndex() + 1;
        long revision = policyNow(model, router.routeOrNull(model)).getRevision();
        // A step can be judged only while the baseline still takes traffic: passing the last step
        // below 100% promotes the candidate.
        if (nextStep >= spec.getStepsCount() || spec.getSteps(nextStep) >= 100) {
          Rollout done = rollout.toBuilder()
              .setState("PROMOTED")
              .addDecisions(decision(now, rollout, "PROMOTE", judgement.reason(), judgement))
              .build();
          apply(promoted(model, spec.getCandidate()), revision, ROLLOUT_CALLER, "Promote",
              "promote version " + spec.getCandidate() + " to 100%", Memory.REMEMBER,
              policy -> done.toBuilder().setPolicyRevision(policy.getRevision()).build(), List.of(),
              Where.EVEN_WHERE_ABSENT);
          log.info("rollout of model '{}' promoted version {}: {}", model, spec.getCandidate(), judgement.reason());
        } else {
          Rollout advanced = rollout.toBuilder()
              .setStepIndex(nextStep)
              .setStepStartedAtMs(now)
              .addDecisions(decision(now, rollout, "ADVANCE",
                  judgement.reason() + "; next step " + spec.getSteps(nextStep) + "%", judgement))
              .build();
          applyStep(advanced, nextStep, revision, List.of());
          log.info("rollout of model '{}' advanced to {}%: {}", model, spec.getSteps(nextStep), judgement.reason());
        }
      }
    }
  }

  private Rollout restoreBaseline(
      Rollout rollout, String state, String verdict, String reason, RolloutJudge.Judgement judgement,
      List<AuditRecord> alsoAudit) {
    String model = rollout.getModel();
    long now = clock.millis();
    long revision = policyNow(model, router.routeOrNull(model)).getRevision();
    Rollout done =
        rollout.toBuilder()
            .setState(state)
            .addDecisions(decision(now, rollout, verdict, reason, judgement))
            .build();
    apply(
        rollout.getBaselinePolicy(),
        revision,
        ROLLOUT_CALLER,
        "RolloutRestore",
        "rollout " + state.toLowerCase(java.util.Locale.ROOT) + ": " + reason,
        Memory.REMEMBER,
        policy -> done.toBuilder().setPolicyRevision(policy.getRevision()).build(),
        alsoAudit,
        Where.EVEN_WHERE_ABSENT);
    return current(model);
  }

  /** Routes the step's share to the candidate and writes {@code rollout} with it, as one change. */
  private void applyStep(Rollout rollout, int step, long expectedRevision, List<AuditRecord> alsoAudit) {
    RolloutSpec spec = rollout.getSpec();
    int percent = spec.getSteps(step);
    RoutingPolicy.Builder policy =
        rollout.getBaselinePolicy().toBuilder().clearWeights().putWeights(spec.getCandidate(), percent);
    boolean controlled = spec.getControl() != 0 && percent <= RolloutSpecs.MAX_CONTROLLED_STEP;
    if (controlled) {
      policy.putWeights(spec.getControl(), percent);
    }
    int baseline = 100 - percent - (controlled ? percent : 0);
    if (baseline > 0) {
      policy.putWeights(spec.getBaseline(), baseline);
    }
    apply(
        policy.build(),
        expectedRevision,
        ROLLOUT_CALLER,
        "RolloutStep",
        "rollout step " + (step + 1) + "/" + spec.getStepsCount() + ": candidate " + spec.getCandidate() + " at "
            + percent + "%",
        Memory.REMEMBER,
        next -> rollout.toBuilder().setPolicyRevision(next.getRevision()).build(),
        alsoAudit,
        Where.EVEN_WHERE_ABSENT);
  }

  private static Decision decision(
      long now, Rollout rollout, String verdict, String reason, RolloutJudge.Judgement judgement) {
    Decision.Builder decision =
        Decision.newBuilder()
            .setTimeMs(now)
            .setStepPercent(rollout.getShadowPhase() ? 0 : rollout.getSpec().getSteps(rollout.getStepIndex()))
            .setVerdict(verdict)
            .setReason(reason);
    if (judgement != null) {
      decision.setEvidence(judgement.evidence());
    }
    return decision.build();
  }



  /** The rollout of {@code model}, or null; never blocks (for metrics). */
  public Rollout current(String model) {
    ControlStore.Stored stored = records.get(model);
    return stored == null || !stored.control().hasRollout() ? null : stored.control().getRollout();
  }

  /**
   * Stops judging rollouts and leaves the fleet ({@link ControlStore#leave}): the first step of a
   * stopping server, whose components may still audit and share their last usage until {@link
   * #close}. Idempotent.
   */
  public void leave() {
    if (scheduler != null) {
      scheduler.shutdownNow();
    }
    store.leave();
  }

  /** Leaves (above) if it has not, then closes the store. Idempotent. */
  @Override
  public void close() {
    leave();
    store.close();
  }
}

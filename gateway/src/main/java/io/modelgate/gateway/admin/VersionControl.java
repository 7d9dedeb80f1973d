package io.modelgate.gateway.admin;

import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.inference.RepositoryControl;
import io.modelgate.gateway.rollout.RolloutSpecs;
import io.modelgate.gateway.routing.Route;
import io.modelgate.proto.admin.v1.OwedLoad;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.VersionLoad;
import io.modelgate.proto.inference.RepositoryIndexRequest;
import io.modelgate.proto.inference.RepositoryIndexResponse;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.RepositoryFolder;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one way versions are loaded and unloaded at run time, for the admin API and for the model
 * repository extension on the inference port: load (then let the routing policy serve whole again),
 * unload (draining first), each audited — in a fleet, asked of every replica, which follow
 * ({@link #reconcileLoads}); and the copies of a baseline's model that rollouts with {@code
 * copy_control} run as their control: loaded before such a rollout starts, loaded on every other
 * replica once it sees the rollout, unloaded once it ends ({@link #reconcileCopies}).
 *
 * <p>Loading and unloading block (an ONNX Runtime session loads, a queue drains). The admin API
 * calls them on its own executor; the inference port's repository calls and the reconciling of
 * a fleet's asks and of copies run on this component's single thread, one at a time, never on an
 * event loop.
 */
public final class VersionControl implements RepositoryControl, AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(VersionControl.class);

  /** The repository index's reason for a model folder added since the start, not loaded yet. */
  static final String NOT_LOADED = "not loaded: its folder has appeared in the repository since the server started";
  /** The caller of the loads and unloads a replica makes as a fleet's operators asked, in the audit log. */
  public static final String FLEET_CALLER = "fleet";
  /** What requests to a copy that is unloading are told. */
  static final String COPY_UNLOADING = "the rollout it was the control of has ended";
  /** How long after a load's first failure (a copy, a fleet's ask) it is tried again (ms); doubled after each. */
  static final long FIRST_RETRY_MS = 1_000;
  /** The longest wait between two tries of a load that fails (ms). */
  static final long LAST_RETRY_MS = 60_000;

  private final ModelRepository repository;
  /** Each reload's new load must score as well on the model's golden set as the load serving. */
  private final io.modelgate.gateway.health.GoldenSets golden;
  private final ControlPlane policies;
  private final Duration drainTimeout;
  private final ScheduledExecutorService worker =
      DaemonThreads.scheduled("modelgate-repository");
  /** Per model, the copy a rollout's start has loaded and is starting with: not unloaded meanwhile. */
  private final Map<String, Long> starting = new ConcurrentHashMap<>();
  /** Per model, this replica's failed loads of its running rollout's copy (none: try at once). */
  private final Map<String, Retry> retries = new ConcurrentHashMap<>();
  /** Per model and version ("model/version"), this replica's failed loads of a fleet's ask. */
  private final Map<String, Retry> fleetRetries = new ConcurrentHashMap<>();
  /**
   * Per model and version ("model/version"), the fleet's reload this replica followed with a model
   * file other than the one the asker loaded (its copy of the repository not there yet), tried
   * again until its file is that one.
   */
  private final Map<String, OwedReload> reloadRetries = new ConcurrentHashMap<>();

  /**
   * A fleet's reload owed: its retry, and the size and modification time of the model file when it
   * was last read whole — a try finding them the same reads it no more (a large file is not read
   * every minute while nothing lands).
   */
  private record OwedReload(Retry retry, String fileRead) {}
  /**
   * Per model and version ("model/version"), the last reload asked of a fleet ({@link
   * VersionLoad#getReloadedAtMs}) this replica has followed (or that found it loading its folder as
   * it is then); at the start, every one asked before it, which its repository's loads have seen.
   */
  private final Map<String, Long> reloadsFollowed = new ConcurrentHashMap<>();
  /** Reloads done on this replica (an operator's or a fleet's ask): swapped in, and those whose new load failed. */
  private final java.util.concurrent.atomic.AtomicLong reloaded = new java.util.concurrent.atomic.AtomicLong();
  private final java.util.concurrent.atomic.AtomicLong reloadsFailed = new java.util.concurrent.atomic.AtomicLong();
  private final Clock clock;

  /**
   * The loads that failed on this replica in a row since what asked for them (a rollout's start,
   * an operator's ask, at {@code askedAtMs}), and when (ms of the clock) to try again.
   */
  private record Retry(OwedLoad owed, long askedAtMs) {
    /** The retry of the ask made at {@code askedAtMs}: {@code known}, or a first try now. */
    static Retry of(Retry known, OwedLoad asked, long askedAtMs, long nowMs) {
      return known != null && known.askedAtMs() == askedAtMs
          ? known : new Retry(asked.toBuilder().setNextTryMs(nowMs).build(), askedAtMs);
    }

    /** After one more failure at {@code nowMs} for {@code reason}: the wait doubles from 1 s up to 60 s. */
    Retry failedAgain(long nowMs, String reason) {
      int failures = owed.getFailures();
      return new Retry(owed.toBuilder().setFailures(failures + 1).setReason(reason)
          .setNextTryMs(nowMs + Math.min(LAST_RETRY_MS, FIRST_RETRY_MS << Math.min(failures, 16))).build(), askedAtMs);
    }
  }

  /**
   * @param clock the time of the retries of copies and of a fleet's asks (a test's, to try them
   *     again without waiting)
   * @param golden the golden sets a reload's new load is checked on before it is swapped in
   */
  public VersionControl(ModelRepository repository, ControlPlane policies, Duration drainTimeout, Clock clock,
      io.modelgate.gateway.health.GoldenSets golden) {
    this.repository = repository;
    this.golden = golden;
    this.policies = policies;
    this.drainTimeout = drainTimeout;
    this.clock = clock;
    for (Map.Entry<String, List<VersionLoad>> entry : policies.loads().entrySet()) {
      for (VersionLoad ask : entry.getValue()) {
        if (ask.getReloadedAtMs() != 0) {
          reloadsFollowed.put(entry.getKey() + "/" + ask.getVersion(), ask.getReloadedAtMs());
        }
      }
    }
  }

  /**
   * The versions a server that starts leaves unloaded though its repository has their folders:
   * those its operators last asked unloaded ({@code loads}, as {@link
   * ControlPlane#loads(java.util.Collection)} reads them from the store before the repository
   * loads) — in a fleet ({@code fleet}), on every replica; else in this process's state directory,
   * where an unload by the {@link RepositoryPoll} (its folder had gone) is not kept: the folder is
   * there again.
   * Any thread.
   */
  public static ModelRepository.LeftUnloaded leftUnloaded(Map<String, List<VersionLoad>> loads, boolean fleet) {
    return (model, version) -> {
      for (VersionLoad ask : loads.getOrDefault(model, List.of())) {
        // The repository poll unloads a version because its folder went; the folder is there now.
        // (In a fleet it is kept: the fleet's ask stands until the judge's poll sees the folder back.)
        if (!fleet && ask.getCaller().equals(RepositoryPoll.CALLER)) {
          continue;
        }
        if (ask.getVersion() == version && !ask.getLoaded()) {
          return fleet ? "unloaded on every replica, as " + ask.getCaller() + " asked on replica " + ask.getReplica()
              : "unloaded, as " + ask.getCaller() + " asked at " + java.time.Instant.ofEpochMilli(ask.getAtMs())
                  + " (kept in the state directory; admin load loads it)";
        }
      }
      return null;
    };
  }

  /**
   * Loads one version (new, unloaded or failed; a READY one is left as it is), of a model the
   * repository has or one whose folder has appeared since the start. In a fleet, one that is READY
   * is then loaded by every replica ({@link #reconcileLoads}). Blocks.
   *
   * @throws InferenceException as {@link ModelRepository#loadVersion}, and UNAVAILABLE when the
   *     version is READY here but a fleet's control store could not be told
   */
  public ModelVersion load(String model, long number, String caller, String action) {
    ModelVersion version = repository.loadVersion(model, number);
    String detail = version.state() + " " + version.reason();
    if (version.isReady() && !version.isCopy()) {
      policies.recordLoad(model, number, true, caller, action, detail);
    } else {
      policies.audit(caller, action, model, number, detail);
    }
    return version;
  }

  /**
   * Loads a READY version again while it serves, from its folder and {@code model.yaml} as they are
   * now, swapping the new load in ({@link ModelRepository#reloadVersion}), audited; in a fleet,
   * every replica that has it READY then does the same ({@link #reconcileLoads}). A new load that
   * fails leaves the version serving as before, is audited, and is refused with its reason; the
   * fleet is not asked. Blocks while the version loads and its old load drains.
   *
   * @throws InferenceException as {@link ModelRepository#reloadVersion}; FAILED_PRECONDITION for a
   *     version a RUNNING rollout names, or a new load that failed; UNAVAILABLE when it reloaded here
   *     but a fleet's control store could not be told
   */
  public ModelVersion reload(String model, long number, String caller, String action) {
    String role = rolloutRole(model, number);
    if (role != null) {
      throw InferenceException.failedPrecondition("version " + number + " of model '" + model + "' is the " + role
          + " of its RUNNING rollout, whose evidence would mix two loads of it; abort the rollout first (admin"
          + " rollout abort --model " + model + ")");
    }
    return reloadUnchecked(model, number, caller, action);
  }

  /**
   * What version {@code number} of {@code model} is in the model's RUNNING rollout ({@code
   * baseline}, {@code candidate} or {@code control}), or null where no running rollout names it:
   * a version {@link #reload} refuses to load again. Any thread.
   */
  public String rolloutRole(String model, long number) {
    Rollout rollout = policies.current(model);
    if (rollout == null || !rollout.getState().equals("RUNNING")) {
      return null;
    }
    RolloutSpec spec = rollout.getSpec();
    return spec.getBaseline() == number ? "baseline" : spec.getCandidate() == number ? "candidate"
        : spec.getControl() == number ? "control" : null;
  }

  /**
   * Loads every READY version of {@code model}'s own folders again while it serves, one after
   * another, as {@link #reload} does each (versions not READY, and copies, are left as they are).
   * Blocks.
   *
   * @throws InferenceException NOT_FOUND for an unknown model; FAILED_PRECONDITION while a rollout
   *     of it is RUNNING (it names some of them), or naming the versions whose new load failed (they
   *     serve as before; the others were reloaded)
   */
  public Model reloadModel(String model, String caller, String action) {
    Model found = repository.model(model).orElseThrow(
        () -> InferenceException.notFound("unknown model " + InferenceException.quote(model)));
    Rollout rollout = policies.current(model);
    if (rollout != null && rollout.getState().equals("RUNNING")) {
      throw InferenceException.failedPrecondition("model '" + model + "' has a RUNNING rollout, whose evidence would"
          + " mix two loads of its versions; abort it first (admin rollout abort --model " + model + "), or reload"
          + " the versions it does not name one by one (--version)");
    }
    List<String> failed = new ArrayList<>();
    for (ModelVersion version : found.versions()) {
      if (!version.isReady() || version.isCopy()) {
        continue;
      }
      try {
        reloadUnchecked(model, version.number(), caller, action);
      } catch (InferenceException e) {
        failed.add(e.getMessage());
      }
    }
    if (!failed.isEmpty()) {
      throw InferenceException.failedPrecondition(
          "model '" + model + "' was not loaded again whole: " + String.join("; ", failed));
    }
    return found;
  }

  /** {@link #reload} once the rollout's versions are ruled out. */
  private ModelVersion reloadUnchecked(String model, long number, String caller, String action) {
    String key = model + "/" + number;
    ModelRepository.Reload reload =
        counted(repository.reloadVersion(model, number, drainTimeout, golden::refusesReload));
    ModelVersion version = reload.version();
    if (!reload.reloaded()) {
      policies.audit(caller, action, model, number, reloadDetail(reload));
      throw InferenceException.failedPrecondition(
          version.label() + " not loaded again: " + reload.failure() + "; it serves as before");
    }
    long previous = policies.loads().getOrDefault(model, List.of()).stream()
        .filter(ask -> ask.getVersion() == number).mapToLong(VersionLoad::getReloadedAtMs).max().orElse(0);
    long stamp = Math.max(clock.millis(), previous + 1);
    // Followed here before the fleet hears of it: this replica's own ask does not reload it twice.
    reloadsFollowed.put(key, stamp);
    io.modelgate.runtime.repository.LoadedVersion loaded = version.loadedOrNull();
    // The model.yaml as the reload read it, but for an edit in the last instants (then a change again).
    String config;
    try {
      config = repository.folder().configSha256(model);
    } catch (InferenceException e) {
      config = "";
    }
    policies.recordLoad(model, number, true, stamp, loaded == null ? "" : loaded.modelSha256(), config, caller, action,
        reloadDetail(reload));
    return version;
  }

  private ModelRepository.Reload counted(ModelRepository.Reload reload) {
    (reload.reloaded() ? reloaded : reloadsFailed).incrementAndGet();
    return reload;
  }

  /**
   * Versions this replica has loaded again while they served since it started ({@code failed}:
   * whose new load failed, the version serving as before). Any thread.
   */
  public long reloads(boolean failed) {
    return failed ? reloadsFailed.get() : reloaded.get();
  }

  /** What a reload did, for the audit log. */
  private static String reloadDetail(ModelRepository.Reload reload) {
    if (!reload.reloaded()) {
      return "not loaded again, serving as before: " + reload.failure();
    }
    io.modelgate.runtime.repository.LoadedVersion loaded = reload.version().loadedOrNull();
    return "READY, loaded again while it served: model.onnx sha256 " + (loaded == null ? "-" : loaded.modelSha256());
  }

  /**
   * Unloads one READY version after draining it. Blocks.
   *
   * @param whileRouted whether a version that still takes traffic may go (the whole model is being
   *     taken down); else FAILED_PRECONDITION until its traffic is moved away
   */
  public ModelVersion unload(String model, long number, String caller, String action, boolean whileRouted) {
    if (!whileRouted) {
      refuseWhileRouted(model, number);
    }
    ModelVersion version = repository.unloadVersion(model, number, drainTimeout);
    if (version.isCopy()) {
      policies.audit(caller, action, model, number, "unloaded after draining");
    } else {
      policies.recordLoad(model, number, false, caller, action, "unloaded after draining");
    }
    return version;
  }

  /**
   * What an operator's unload of one version did.
   *
   * @param version the version unloaded here; or, where {@code withdrawn} is set, what this replica
   *     has of it (null: no such version here)
   * @param withdrawn null, or the detail of the fleet's load withdrawn instead ({@link #withdrawLoad})
   */
  public record Unloaded(ModelVersion version, String withdrawn) {}

  /**
   * The admin API's unload of one version: drained and unloaded ({@link #unload}, refused while
   * routing names it) where it is READY here; in a fleet, where it is not but every replica is asked
   * to load it, that ask withdrawn ({@link #withdrawLoad}). Blocks.
   *
   * @throws InferenceException as {@link #unload}, or {@link #withdrawLoad}
   */
  public Unloaded unloadAsked(String model, long number, String caller, String action) {
    String withdrawn = withdrawLoad(model, number, caller, action);
    if (withdrawn != null) {
      return new Unloaded(repository.model(model).flatMap(m -> m.version(number)).orElse(null), withdrawn);
    }
    return new Unloaded(unload(model, number, caller, action, false), null);
  }

  /** FAILED_PRECONDITION while routing gives version {@code number} of {@code model} weight or makes it the shadow. */
  private void refuseWhileRouted(String model, long number) {
    Route route = policies.router().route(model);
    long weight = route.weightOf(number);
    if (weight > 0 || route.policy().getShadow().getVersion() == number) {
      throw InferenceException.failedPrecondition(
          "version " + number + " of model '" + model + "' still takes traffic under routing revision "
              + route.policy().getRevision()
              + (weight > 0 ? " (weight " + weight + ")" : " (as the shadow)")
              + "; move its traffic away first");
    }
  }

  /**
   * An operator's unload of a version that this replica does not have READY (its folder gone here,
   * or it fails to load) while its fleet still asks every replica to load it: withdraws that ask
   * instead, as an unload ask, audited — every replica that owes the load stops trying, every one
   * that has it READY unloads it. Without it, a version loaded on a replica that has since gone,
   * from a folder no other replica has, would be owed (and alerted on) by every replica for good,
   * with no replica able to unload it. Blocks while the store is written.
   *
   * @return what this replica has of the version, in words (the withdrawal's detail in the audit
   *     log), or null where there is nothing to withdraw: the version is READY here (unload it),
   *     or no load of it is asked of a fleet (no fleet, or not asked)
   * @throws InferenceException FAILED_PRECONDITION while routing still names it; UNAVAILABLE when
   *     the store could not be written (nothing was withdrawn)
   */
  private String withdrawLoad(String model, long number, String caller, String action) {
    if (!policies.store().shared()) {
      return null;
    }
    ModelVersion here = repository.model(model).flatMap(m -> m.version(number)).orElse(null);
    if (here != null && here.isReady()) {
      return null;
    }
    boolean asked = policies.loads().getOrDefault(model, List.of()).stream()
        .anyMatch(ask -> ask.getVersion() == number && ask.getLoaded());
    if (!asked) {
      return null;
    }
    refuseWhileRouted(model, number);
    String detail = "not loaded on this replica ("
        + (here == null ? "no version folder " + model + "/" + number + " here"
            : here.state() + (here.reason().isEmpty() ? "" : ": " + here.reason()))
        + "): the load asked of every replica withdrawn, an unload asked instead";
    try {
      policies.recordLoad(model, number, false, caller, action, detail);
    } catch (InferenceException e) {
      if (e.code() != io.modelgate.runtime.error.ErrorCode.UNAVAILABLE) {
        throw e;
      }
      throw InferenceException.unavailable("version " + number + " of model '" + model + "' is not loaded on this"
          + " replica, and the load asked of every replica was not withdrawn: the control store cannot be written ("
          + e.getMessage() + "); ask again once it is back");
    }
    fleetRetries.remove(model + "/" + number);
    return detail;
  }

  /**
   * Reconciles a fleet's asks and the copies every second from now on ({@link #reconcileLoads},
   * {@link #reconcileCopies}), and at once when another replica's write changes the asks; returns
   * this.
   */
  public VersionControl start() {
    worker.scheduleWithFixedDelay(this::reconcileBoth, 1, 1, TimeUnit.SECONDS);
    policies.onLoadsChanged(() -> {
      try {
        worker.execute(this::reconcileBoth);
      } catch (java.util.concurrent.RejectedExecutionException closing) {
        // The server is stopping: nothing more to follow.
      }
    });
    return this;
  }

  /**
   * Starts a rollout; one with {@code copy_control} after loading its control, the baseline's
   * model file as version {@code control} (0: one above every version the model has, on disk or
   * loaded, copies aside), the number the rollout then names. Blocks while the copy loads.
   *
   * @throws InferenceException as {@link ControlPlane#startRollout}, and FAILED_PRECONDITION when
   *     the copy cannot be made or does not load
   */
  public Rollout startRollout(RolloutSpec requested, String caller) {
    RolloutSpec spec = RolloutSpecs.validated(requested);
    if (!spec.getCopyControl()) {
      return policies.startRollout(spec, caller);
    }
    String name = spec.getModel();
    Model model = repository.model(name).orElseThrow(() -> InferenceException.notFound("unknown model '" + name + "'"));
    RolloutSpecs.requireReady(model, spec.getBaseline(), "baseline");
    long number = spec.getControl() != 0 ? spec.getControl() : copyNumber(model);
    if (starting.putIfAbsent(name, number) != null) {
      throw InferenceException.failedPrecondition("a rollout of model '" + name + "' is being started; wait for it");
    }
    try {
      ModelVersion copy = repository.loadCopy(name, number, spec.getBaseline());
      policies.audit(caller, "LoadControl", name, number,
          copy.state() + " as a copy of version " + spec.getBaseline() + " " + copy.reason());
      if (!copy.isReady()) {
        throw InferenceException.failedPrecondition("the control, baseline version " + spec.getBaseline()
            + "'s model loaded again as version " + number + ", is " + copy.state() + ": " + copy.reason());
      }
      return policies.startRollout(spec.toBuilder().setControl(number).build(), caller);
    } finally {
      starting.remove(name, number);
    }
  }

  /** One above every version of {@code model} that is not a copy, and every version folder it has. */
  private long copyNumber(Model model) {
    long highest = 0;
    for (ModelVersion version : model.versions()) {
      if (!version.isCopy()) {
        highest = Math.max(highest, version.number());
      }
    }
    for (long number : repository.versionsOnDisk(model.name())) {
      highest = Math.max(highest, number);
    }
    return highest + 1;
  }

  /**
   * Both reconciliations, each whatever the other did; what either throws is thrown after both, to
   * the repository thread's executor, which logs it (once a minute), counts it in {@code
   * modelgate_background_failures_total} and runs this again in 1 s.
   */
  private void reconcileBoth() {
    RuntimeException failed = null;
    try {
      reconcileLoads();
    } catch (RuntimeException e) {
      failed = new IllegalStateException("the fleet's loads not reconciled", e);
    }
    try {
      reconcileCopies();
    } catch (RuntimeException e) {
      RuntimeException copies = new IllegalStateException("copies of rollouts' controls not reconciled", e);
      if (failed == null) {
        failed = copies;
      } else {
        failed.addSuppressed(copies);
      }
    }
    if (failed != null) {
      throw failed;
    }
  }

  /**
   * In a fleet, makes this replica's versions what operators asked on any replica ({@link
   * ControlPlane#loads}; nothing with a store of this process's own): each version asked loaded is
   * loaded here (its model added if its folder appeared since the start), each asked unloaded is
   * drained and unloaded here. A load that
   * fails is tried again 1 s later, the wait doubling up to {@value #LAST_RETRY_MS} ms, until it
   * loads or another ask replaces it; meanwhile routing that names it serves in part here. Runs
   * on this component's thread every second and when the store's watch brings another replica's
   * ask (see {@link #start}), and once as the server starts, before it serves; tests call it
   * directly.
   */
  public void reconcileLoads() {
    if (!policies.store().shared()) {
      // One process: its asks are its own, already done; they matter again only at its next start.
      return;
    }
    java.util.Set<String> asked = new java.util.HashSet<>();
    for (Map.Entry<String, List<VersionLoad>> entry : policies.loads().entrySet()) {
      String name = entry.getKey();
      for (VersionLoad ask : entry.getValue()) {
        ModelVersion here = repository.model(name).flatMap(m -> m.version(ask.getVersion())).orElse(null);
        String key = name + "/" + ask.getVersion();
        asked.add(key);
        if (!ask.getLoaded()) {
          fleetRetries.remove(key);
          if (here != null && here.isReady() && !here.isCopy()) {
            try {
              follow(name, ask, () -> repository.unloadVersion(name, ask.getVersion(), drainTimeout,
                  "it is being unloaded on every replica, as " + ask.getCaller() + " asked on replica " + ask.getReplica()));
            } catch (RuntimeException e) {
              log.error("model '{}' version {}: not unloaded on this replica as {} asked on replica {}: {}; tried"
                  + " again in 1 s", name, ask.getVersion(), ask.getCaller(), ask.getReplica(), e.getMessage());
            }
          }
          continue;
        }
        if (here != null && here.isReady() && !here.isCopy()) {
          fleetRetries.remove(key);
          followReload(name, ask);
          continue;
        }
        // Not serving here: a load reads the folder as it is then, which any reload asked so far saw.
        reloadsFollowed.put(key, ask.getReloadedAtMs());
        if (here != null && (here.isReady() || here.state() == VersionState.LOADING
            || here.state() == VersionState.UNLOADING)) {
          fleetRetries.remove(key);
          continue;
        }
        OwedLoad owed = OwedLoad.newBuilder().setModel(name).setVersion(ask.getVersion()).setAsks("fleet")
            .setAskedBy(ask.getCaller()).setReplica(ask.getReplica()).build();
        Failure failure = tryLoad(fleetRetries, key, owed, ask.getAtMs(),
            () -> follow(name, ask, () -> repository.loadVersion(name, ask.getVersion())));
        if (failure != null) {
          log.error("model '{}' version {}: not loaded on this replica as {} asked on replica {} ({}); the routing"
              + " that names it serves in part here meanwhile; tried again in {} s (failure {} in a row)", name,
              ask.getVersion(), ask.getCaller(), ask.getReplica(), failure.reason(), failure.nextTryS(),
              failure.inARow());
        }
      }
    }
    // An ask gone from the records (its model's record deleted) is owed no more.
    fleetRetries.keySet().retainAll(asked);
    reloadsFollowed.keySet().retainAll(asked);
    reloadRetries.keySet().retainAll(asked);
  }

  /**
   * Loads the version {@code ask} names, READY here, again where the ask holds a reload this replica has
   * not followed yet; once per reload, whether it loads or not (a new load that fails leaves the
   * version serving as before, logged and audited: the operator mends the files and asks again).
   */
  private void followReload(String model, VersionLoad ask) {
    String key = model + "/" + ask.getVersion();
    long stamp = ask.getReloadedAtMs();
    Long followed = reloadsFollowed.put(key, stamp);
    if (stamp == 0) {
      return;
    }
    long now = clock.millis();
    OwedReload owing = reloadRetries.get(key);
    Retry retry = owing == null ? null : owing.retry();
    if (followed != null && followed == stamp) {
      // Followed once: again only while its file was another than the asker's, when it is due.
      if (retry == null || retry.askedAtMs() != stamp || now < retry.owed().getNextTryMs()) {
        return;
      }
      String file = fileLooks(model, ask.getVersion());
      if (file.equals(owing.fileRead())) {
        reloadRetries.put(key, new OwedReload(retry.failedAgain(now, retry.owed().getReason()), file));
        return;
      }
      String differs = filesDiffer(model, ask, null);
      if (differs != null) {
        reloadRetries.put(key, new OwedReload(retry.failedAgain(now, differs), file));
        return;
      }
    }
    String detail;
    String loaded = null;
    try {
      // A new load that fails is logged by the repository, with its reason.
      ModelRepository.Reload reload =
          counted(repository.reloadVersion(model, ask.getVersion(), drainTimeout, golden::refusesReload));
      detail = reloadDetail(reload);
      io.modelgate.runtime.repository.LoadedVersion serving = reload.version().loadedOrNull();
      loaded = reload.reloaded() && serving != null ? serving.modelSha256() : null;
    } catch (RuntimeException e) {
      detail = "not loaded again: " + e.getMessage();
      log.error("model '{}' version {}: {} (as {} asked on replica {})", model, ask.getVersion(), detail,
          ask.getCaller(), ask.getReplica());
    }
    String file = fileLooks(model, ask.getVersion());
    String differs = filesDiffer(model, ask, loaded);
    if (differs == null) {
      reloadRetries.remove(key);
    } else {
      OwedLoad owed = OwedLoad.newBuilder().setModel(model).setVersion(ask.getVersion()).setAsks("reload")
          .setAskedBy(ask.getCaller()).setReplica(ask.getReplica()).build();
      Retry next = Retry.of(retry, owed, stamp, now).failedAgain(now, differs);
      reloadRetries.put(key, new OwedReload(next, file));
      detail += "; " + differs + ": loaded again once it is, tried in " + (next.owed().getNextTryMs() - now) / 1000 + " s";
      log.warn("model '{}' version {}: {}", model, ask.getVersion(), detail);
    }
    policies.audit(FLEET_CALLER, "FleetReload", model, ask.getVersion(),
        detail + ": as " + ask.getCaller() + " asked on replica " + ask.getReplica());
  }

  /**
   * Why this replica's model file of the version {@code ask} reloads, or its model's {@code
   * model.yaml}, is not the one the asking replica loaded ({@link VersionLoad#getModelSha256},
   * {@link VersionLoad#getModelYamlSha256}), or null where both are (or the ask does not say). Reads
   * the whole model file, unless {@code loaded} gives its SHA-256 (a load of it just made).
   */
  private String filesDiffer(String model, VersionLoad ask, String loaded) {
    String expected = ask.getModelSha256();
    if (!expected.isEmpty()) {
      String here = loaded;
      if (here == null) {
        try {
          here = repository.folder().fileSha256(model, ask.getVersion());
        } catch (InferenceException e) {
          return e.getMessage();
        }
      }
      if (!here.equals(expected)) {
        return "the model.onnx here (sha256 " + abbreviated(here) + ") is not the one replica " + ask.getReplica()
            + " loaded (sha256 " + abbreviated(expected) + ")";
      }
    }
    String expectedConfig = ask.getModelYamlSha256();
    if (expectedConfig.isEmpty()) {
      return null;
    }
    String config;
    try {
      config = repository.folder().configSha256(model);
    } catch (InferenceException e) {
      return e.getMessage();
    }
    return config.equals(expectedConfig) ? null : "the model.yaml here (" + configText(config)
        + ") is not the one replica " + ask.getReplica() + " loaded with (" + configText(expectedConfig) + ")";
  }

  private static String configText(String sha256) {
    return sha256.equals(RepositoryFolder.NO_CONFIG) ? "none" : "sha256 " + abbreviated(sha256);
  }

  /**
   * How version {@code number}'s model file and its model's {@code model.yaml} here look, as to the
   * repository poll ("" for one that cannot be read).
   */
  private String fileLooks(String model, long number) {
    java.nio.file.Path modelDir = repository.root().resolve(model);
    return looks(modelDir.resolve(Long.toString(number)).resolve(RepositoryFolder.MODEL_FILE)) + " "
        + looks(modelDir.resolve(io.modelgate.runtime.repository.ModelConfigFile.FILE_NAME));
  }

  private static String looks(java.nio.file.Path file) {
    try {
      return RepositoryPoll.fileLooks(file);
    } catch (java.io.IOException e) {
      return "";
    }
  }

  private static String abbreviated(String sha256) {
    return sha256.length() > 12 ? sha256.substring(0, 12) : sha256;
  }

  /** Does what {@code ask} asks on this replica (the version after it) and audits what it did. */
  private ModelVersion follow(String model, VersionLoad ask, java.util.function.Supplier<ModelVersion> action) {
    ModelVersion version = action.get();
    policies.audit(FLEET_CALLER, ask.getLoaded() ? "FleetLoad" : "FleetUnload", model, ask.getVersion(),
        version.state() + " " + version.reason() + ": " + (ask.getLoaded() ? "loaded" : "unloaded") + " as "
            + ask.getCaller() + " asked on replica " + ask.getReplica());
    return version;
  }

  /**
   * Makes this replica's copies what its models' rollouts want: the control of a RUNNING rollout
   * with {@code copy_control} loaded while its baseline is READY here, and every other READY copy
   * unloaded after draining. A copy that does not load, or stops serving, is tried again 1 s after
   * its first failure, the wait doubling up to {@value #LAST_RETRY_MS} ms; meanwhile this replica
   * serves the rollout without it (the control's share goes to the others it names). Runs on this
   * component's thread every second (see {@link #start}); tests call it directly.
   */
  public void reconcileCopies() {
    for (Model model : repository.models()) {
      String name = model.name();
      Rollout rollout = policies.current(name);
      // A running rollout's control is kept whoever made it (an operator may name a copy left
      // READY); only one with copy_control has it loaded here.
      boolean controlled = rollout != null && rollout.getState().equals("RUNNING") && rollout.getSpec().getControl() != 0;
      boolean running = controlled && rollout.getSpec().getCopyControl();
      Long pending = starting.get(name);
      long wanted = controlled ? rollout.getSpec().getControl() : pending != null ? pending : 0;
      long of = running ? rollout.getSpec().getBaseline() : 0;
      for (ModelVersion version : model.versions()) {
        if (version.isCopy() && version.isReady()
            && (version.number() != wanted || (running && version.copyOf() != of))) {
          try {
            repository.unloadVersion(name, version.number(), drainTimeout, COPY_UNLOADING);
            policies.audit(ControlPlane.ROLLOUT_CALLER, "UnloadControl", name, version.number(),
                "the copy of version " + version.copyOf() + " unloaded: " + COPY_UNLOADING);
          } catch (RuntimeException e) {
            log.warn("{}: the copy not unloaded: {}", version.label(), e.getMessage());
          }
        }
      }
      if (!running) {
        retries.remove(name);
      } else {
        loadCopy(model, rollout.getStartedAtMs(), wanted, of);
      }
    }
  }

  /**
   * Loads the copy {@code number} of version {@code of}, a running rollout's control, unless it is
   * READY, its baseline is not, or its last failure is too recent.
   */
  private void loadCopy(Model model, long rolloutStartedAtMs, long number, long of) {
    String name = model.name();
    ModelVersion existing = model.version(number).orElse(null);
    if (existing != null && existing.isReady() && existing.copyOf() == of) {
      retries.remove(name);
      return;
    }
    if (!model.version(of).map(ModelVersion::isReady).orElse(false)) {
      return;  // no control without the baseline it copies; tried once the baseline is READY again
    }
    OwedLoad owed = OwedLoad.newBuilder().setModel(name).setVersion(number).setAsks("control")
        .setAskedBy(ControlPlane.ROLLOUT_CALLER).build();
    Failure failure = tryLoad(retries, name, owed, rolloutStartedAtMs, () -> {
      ModelVersion copy = repository.loadCopy(name, number, of);
      policies.audit(ControlPlane.ROLLOUT_CALLER, "LoadControl", name, number,
          copy.state() + " as a copy of version " + of + " " + copy.reason());
      return copy;
    });
    if (failure != null) {
      log.error("model '{}': the rollout's control (version {}, a copy of version {}) not loaded on this replica ({});"
          + " the rollout goes on here without it, the copy tried again in {} s (failure {} in a row)",
          name, number, of, failure.reason(), failure.nextTryS(), failure.inARow());
    }
  }

  /**
   * How many loads this replica owes and tries again after failing: a fleet's asks ({@code
   * fleet}: loads, and reloads followed with another model file than the asker's), or rollouts'
   * copies. Any thread.
   */
  public int retrying(boolean fleet) {
    return fleet ? fleetRetries.size() + reloadRetries.size() : retries.size();
  }

  /** The loads this replica owes and tries again, by model and version. Any thread. */
  public List<OwedLoad> owed() {
    List<OwedLoad> owed = new ArrayList<>();
    for (Retry retry : retries.values()) {
      owed.add(retry.owed());
    }
    for (Retry retry : fleetRetries.values()) {
      owed.add(retry.owed());
    }
    for (OwedReload owing : reloadRetries.values()) {
      owed.add(owing.retry().owed());
    }
    owed.sort(java.util.Comparator.comparing(OwedLoad::getModel).thenComparingLong(OwedLoad::getVersion));
    return owed;
  }

  /** A try that did not load: why, in how many seconds the next, and how many failed in a row. */
  private record Failure(String reason, long nextTryS, int inARow) {}

  /**
   * Loads by {@code load} what was asked at {@code askedAtMs}, unless the last failure of that ask
   * ({@code retries} under {@code key}) is too recent (routing that names it serves whole again as
   * it becomes READY: {@link io.modelgate.gateway.routing.Router#refresh}); a load that throws or ends not READY sets the next try after a longer wait. Null when it loaded or it
   * was not yet time to try; else the failure.
   */
  private Failure tryLoad(Map<String, Retry> retries, String key, OwedLoad owed, long askedAtMs,
      java.util.function.Supplier<ModelVersion> load) {
    long now = clock.millis();
    Retry retry = Retry.of(retries.get(key), owed, askedAtMs, now);
    if (now < retry.owed().getNextTryMs()) {
      return null;
    }
    String reason;
    try {
      ModelVersion version = load.get();
      if (version.isReady()) {
        retries.remove(key);
        return null;
      }
      reason = version.state() + ": " + version.reason();
    } catch (RuntimeException e) {
      reason = e.getMessage();
    }
    retry = retry.failedAgain(now, reason);
    retries.put(key, retry);
    return new Failure(reason, (retry.owed().getNextTryMs() - now) / 1000, retry.owed().getFailures());
  }

  @Override
  public RepositoryIndexResponse index(RepositoryIndexRequest request) {
    RepositoryIndexResponse.Builder response = RepositoryIndexResponse.newBuilder();
    for (Model model : repository.models()) {
      for (ModelVersion version : model.versions()) {
        if (request.getReady() && !version.isReady()) {
          continue;
        }
        response.addModelsBuilder()
            .setName(model.name())
            .setVersion(version.numberText())
            .setState(version.state().name())
            .setReason(version.reason());
      }
    }
    if (!request.getReady()) {
      // Folders an operator has added since the start: loadable by RepositoryModelLoad.
      for (String name : repository.modelsNotAdded()) {
        response.addModelsBuilder().setName(name).setState(VersionState.UNAVAILABLE.name()).setReason(NOT_LOADED);
      }
    }
    return response.build();
  }

  /**
   * Loads every version folder of {@code model} that is not READY (in a fleet, on every replica),
   * the model added first if its folder has appeared since the start. Blocks.
   *
   * @throws InferenceException NOT_FOUND where the repository has no such folder,
   *     FAILED_PRECONDITION naming the versions that did not load (the others did)
   */
  public Model loadModel(String model, String caller, String action) {
    Model found = repository.modelOrAdd(model);
    List<String> failed = new ArrayList<>();
    for (long number : repository.versionsOnDisk(model)) {
      ModelVersion version = load(model, number, caller, action);
      if (!version.isReady()) {
        failed.add("version " + number + " is " + version.state() + ": " + version.reason());
      }
    }
    if (!failed.isEmpty()) {
      throw InferenceException.failedPrecondition(
          "model '" + model + "' did not load whole: " + String.join("; ", failed));
    }
    return found;
  }

  @Override
  public CompletableFuture<Void> load(String model, String caller) {
    return CompletableFuture.runAsync(() -> loadModel(model, caller, "RepositoryModelLoad"), worker);
  }

  @Override
  public CompletableFuture<Void> unload(String model, String caller) {
    return CompletableFuture.runAsync(() -> unloadModel(model, caller, "RepositoryModelUnload"), worker);
  }

  /**
   * Takes {@code model} down: aborts its running rollout, if any, then unloads every READY version
   * of it (in a fleet, on every replica), those that take traffic included, each drained first.
   * Blocks.
   *
   * @throws InferenceException NOT_FOUND for an unknown model
   */
  public Model unloadModel(String model, String caller, String action) {
    Model found = repository.model(model).orElseThrow(
        () -> InferenceException.notFound("unknown model " + InferenceException.quote(model)));
    // Its rollout cannot go on without its versions: ended first, its routing restored.
    policies.abortRunningRollout(model, caller);
    for (ModelVersion version : found.versions()) {
      if (version.isReady()) {
        unload(model, version.number(), caller, action, true);
      }
    }
    return found;
  }

  @Override
  public void close() {
    worker.shutdownNow();
  }
}

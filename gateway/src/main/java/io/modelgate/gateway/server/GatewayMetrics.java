package io.modelgate.gateway.server;

import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.control.StateStore;
import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import io.modelgate.runtime.threads.DaemonThreads;
import java.util.ArrayList;
import java.util.List;

/**
 * The gauges that describe the gateway's state rather than its traffic: per version its state,
 * queue depth and capacity and routing share (for every version, FAILED ones too); per model its
 * routing revision, whether the policy serves only in part, and its rollout; the state store's
 * health; and the JVM and process (Micrometer's binders). Per-request meters live in {@link
 * io.modelgate.gateway.stats.VersionStats}; gRPC server meters in the interceptor the server
 * installs.
 *
 * <p>Every gauge reads a snapshot when scraped (volatile reads, no locks), on the scraping thread.
 * Versions added at run time get their gauges on their first state change.
 */
final class GatewayMetrics implements AutoCloseable {
  private final MeterRegistry registry;
  private final ModelRepository repository;
  private final Router router;
  private final ControlPlane rollouts;
  private final io.modelgate.gateway.health.GoldenSets golden;
  /** Each version's model-file gauge and the SHA-256 it is tagged with, by model and number; guarded by this. */
  private final java.util.Map<String, java.util.Map.Entry<String, io.micrometer.core.instrument.Meter>> modelFiles =
      new java.util.HashMap<>();
  /** Each model's routing and rollout gauges, by name; guarded by this. */
  private final java.util.Map<String, List<io.micrometer.core.instrument.Meter>> modelMeters = new java.util.HashMap<>();
  /** Each version's gauges, by model and number; guarded by this. */
  private final java.util.Map<String, List<io.micrometer.core.instrument.Meter>> registered = new java.util.HashMap<>();
  private final JvmGcMetrics gc = new JvmGcMetrics();
  /** Held here: Micrometer's function counters keep only a weak reference to it. Null off Linux. */
  private final ThreadScheduling threads;
  /** Registers a failures counter for each background job made; closed with this. */
  private final DaemonThreads.Watching backgroundJobs;

  GatewayMetrics(
      MeterRegistry registry,
      ModelRepository repository,
      Router router,
      ControlPlane rollouts,
      StateStore state,
      io.modelgate.gateway.health.GoldenSets golden,
      io.modelgate.gateway.admin.VersionControl versions) {
    this.registry = registry;
    this.golden = golden;
    this.repository = repository;
    this.router = router;
    this.rollouts = rollouts;
    new JvmMemoryMetrics().bindTo(registry);
    gc.bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ClassLoaderMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    new UptimeMetrics().bindTo(registry);
    // jvm_info{runtime,vendor,version}: which JDK each replica runs on (the JDK moves throughput).
    new io.micrometer.core.instrument.binder.jvm.JvmInfoMetrics().bindTo(registry);
    new FileDescriptorMetrics().bindTo(registry);
    // CPU and waits for a core of the server's threads, by what they do (Linux).
    threads = ThreadScheduling.ofThisProcess();
    if (threads != null) {
      threads.bindTo(registry);
    }
    // Background jobs that fail: a periodic task that threw (and runs again at its next turn), a
    // thread ended by a throwable; from 0 for every job the process has made.
    backgroundJobs = DaemonThreads.onJobs(job ->
        io.micrometer.core.instrument.FunctionCounter.builder("modelgate.background.failures", job, DaemonThreads::failures)
            .description("Failures of the server's background jobs, by thread (modelgate-stats-rotator,"
                + " modelgate-control-store, ...; every version's threads are modelgate-model): a periodic task"
                + " that threw (it runs again at its next turn), a task run once that threw, or a thread ended by a"
                + " throwable; see the log")
            .tag("thread", job)
            .register(registry));
    Gauge.builder("modelgate.loads.retrying", versions, v -> v.retrying(true))
        .description("Loads this replica owes and tries again after failing: versions a fleet's operators loaded (or"
            + " loaded again, while this replica's model file is not the one they loaded) on another replica"
            + " (asks=fleet), rollouts' copied controls (asks=control); 0 while it has all")
        .tags("asks", "fleet")
        .register(registry);
    Gauge.builder("modelgate.loads.retrying", versions, v -> v.retrying(false))
        .description("Loads this replica owes and tries again after failing: versions a fleet's operators loaded (or"
            + " loaded again, while this replica's model file is not the one they loaded) on another replica"
            + " (asks=fleet), rollouts' copied controls (asks=control); 0 while it has all")
        .tags("asks", "control")
        .register(registry);
    for (boolean failed : new boolean[] {false, true}) {
      io.micrometer.core.instrument.FunctionCounter.builder("modelgate.version.reloads", versions,
              v -> v.reloads(failed))
          .description("Versions loaded again while they served (admin load --reload, or a fleet's ask of it):"
              + " result=reloaded, swapped in; result=failed, the new load failed and the version serves as before")
          .tags("result", failed ? "failed" : "reloaded")
          .register(registry);
    }
    Gauge.builder("modelgate.state.store.healthy", state, s -> s.healthy() ? 1 : 0)
        .description("1 when the last write of the state directory (routing, rollouts, audit) succeeded")
        .register(registry);
    Gauge.builder("modelgate.state.store.failures", state, StateStore::failures)
        .description("Writes of the state directory that failed since start")
        .register(registry);
    String kind = rollouts.status().getKind();
    Gauge.builder("modelgate.control.store.up", rollouts, c -> c.status().getUp() ? 1 : 0)
        .description("1 while this replica reaches its control store (file: the last write succeeded; etcd: it answers)")
        .tags("kind", kind)
        .register(registry);
    Gauge.builder("modelgate.control.store.down.since", rollouts, c -> c.status().getDownSinceMs() / 1000.0)
        .description("When the control store was found unreachable, in seconds since the epoch; 0 while it is up")
        .baseUnit("seconds")
        .tags("kind", kind)
        .register(registry);
    Gauge.builder("modelgate.control.store.out.of.space", rollouts, c -> c.status().getOutOfSpace() ? 1 : 0)
        .description("1 while etcd refuses this replica's writes for want of space (its NOSPACE alarm): changes are"
            + " refused until an operator frees it")
        .tags("kind", kind)
        .register(registry);
    Gauge.builder("modelgate.control.store.applied.revision", rollouts, c -> c.status().getAppliedRevision())
        .description("The newest control store revision this replica has applied")
        .tags("kind", kind)
        .register(registry);
    Gauge.builder("modelgate.control.store.password.pending", rollouts, c -> c.store().passwordPending() ? 1 : 0)
        .description("1 while a password newly read from the etcd password file waits for etcd to accept it"
            + " (the one in use stays meanwhile), 0 otherwise")
        .tags("kind", kind)
        .register(registry);
    Gauge.builder("modelgate.control.judge", rollouts, c -> c.store().judges() ? 1 : 0)
        .description("1 on the replica that judges rollouts (always 1 with a file store)")
        .register(registry);
    Gauge.builder("modelgate.rollouts.unjudged", rollouts, ControlPlane::unjudgedRollouts)
        .description("Running rollouts that this replica, judging, passes by because its repository lacks their"
            + " model: they do not advance (0 on a replica that does not judge)")
        .register(registry);
    for (Model model : repository.models()) {
      registerModel(model.name());
      for (ModelVersion version : model.versions()) {
        versionChanged(version);
      }
    }
    repository.onModelAdded(this::registerModel);
    repository.onModelRemoved(this::removeModel);
    repository.events().subscribe(this::versionChanged);
  }

  /** A version's state changed: its gauges, made at its first change, and its model file's. */
  private synchronized void versionChanged(ModelVersion version) {
    registerVersion(version);
    registerModelFile(version);
  }

  /**
   * {@code modelgate_version_model_file{sha256}} for the file a READY version loaded: made when it
   * loads a file it was not tagged with (the gauge of the file before goes), kept while it is not
   * READY (reading 0).
   */
  private synchronized void registerModelFile(ModelVersion version) {
    LoadedVersion loaded = version.loadedOrNull();
    if (loaded == null) {
      return;
    }
    String key = version.model() + '\u0000' + version.number();
    String sha256 = loaded.modelSha256();
    java.util.Map.Entry<String, io.micrometer.core.instrument.Meter> current = modelFiles.get(key);
    if (current != null && current.getKey().equals(sha256)) {
      return;
    }
    if (current != null) {
      registry.remove(current.getValue());
    }
    modelFiles.put(key, java.util.Map.entry(sha256, Gauge.builder("modelgate.version.model.file", version,
            v -> servesFile(v, sha256) ? 1 : 0)
        .description("1 while the version is READY with the model.onnx of this SHA-256 (sha256), else 0: which"
            + " file each replica serves")
        .tags("model", version.model(), "version", version.numberText(), "sha256", sha256)
        .register(registry)));
  }

  /** The model's routing and rollout gauges: for each model at the start, and each added since. */
  private synchronized void registerModel(String name) {
    List<io.micrometer.core.instrument.Meter> meters = new ArrayList<>();
    modelMeters.put(name, meters);
    meters.add(Gauge.builder("modelgate.routing.revision", router, r -> revision(r.routeOrNull(name)))
        .description("Revision of the model's routing policy (0: the default, highest READY version)")
        .tags("model", name)
        .register(registry));
    meters.add(Gauge.builder("modelgate.routing.degraded", router, r -> degraded(r.routeOrNull(name)))
        .description("1 when the routing policy names versions that are not READY (FAILED, loading, unloading or"
            + " missing) and serves only in part; 0 when those it names are only unloaded (a model taken down)")
        .tags("model", name)
        .register(registry));
    meters.add(Gauge.builder("modelgate.model.folder.gone", repository, r -> r.folderGone(name) ? 1 : 0)
        .description("1 while the model's folder is not in the repository (served from memory until it is taken"
            + " down, then removed 15 minutes later, this series with it)")
        .tags("model", name)
        .register(registry));
    meters.add(Gauge.builder("modelgate.rollout.running", rollouts, c -> running(c.current(name)) ? 1 : 0)
        .description("1 while a rollout of the model runs")
        .tags("model", name)
        .register(registry));
    meters.add(Gauge.builder("modelgate.rollout.step.percent", rollouts, c -> stepPercent(c.current(name)))
        .description("The candidate's share of traffic in the running rollout's current step, in percent")
        .tags("model", name)
        .register(registry));
  }

  /** A route's revision; NaN for a model removed a moment before its gauges. */
  private static double revision(io.modelgate.gateway.routing.Route route) {
    return route == null ? Double.NaN : route.policy().getRevision();
  }

  /**
   * 1 when the route serves its policy in part for a fault (a version it names FAILED, loading,
   * unloading or missing); 0 when it serves it whole, or leaves out only versions an operator
   * unloaded (a model taken down: not a fault to alert on).
   */
  private static double degraded(io.modelgate.gateway.routing.Route route) {
    if (route == null) {
      return Double.NaN;
    }
    return route.degraded() == null || route.degradedByUnloads() ? 0 : 1;
  }

  /** A model its repository removed: its routing and rollout gauges go (its versions' went before). */
  private synchronized void removeModel(String name) {
    List<io.micrometer.core.instrument.Meter> meters = modelMeters.remove(name);
    if (meters != null) {
      meters.forEach(registry::remove);
    }
  }

  private double goldenScore(ModelVersion version) {
    io.modelgate.proto.admin.v1.GoldenResult result = golden.result(version);
    return result.getState().equals("DONE") ? result.getScore() : Double.NaN;
  }

  private static boolean running(Rollout rollout) {
    return rollout != null && rollout.getState().equals("RUNNING");
  }

  private static double stepPercent(Rollout rollout) {
    return running(rollout) ? rollout.getSpec().getSteps(rollout.getStepIndex()) : 0;
  }

  private synchronized void registerVersion(ModelVersion version) {
    String key = version.model() + '\u0000' + version.number();
    if (registered.containsKey(key)) {
      return;
    }
    List<io.micrometer.core.instrument.Meter> meters = new ArrayList<>();
    registered.put(key, meters);
    String model = version.model();
    String number = version.numberText();
    for (VersionState state : VersionState.values()) {
      meters.add(Gauge.builder("modelgate.version.state", version, v -> v.state() == state ? 1 : 0)
          .description("1 for the version's current state (LOADING, READY, UNLOADING, UNAVAILABLE, FAILED), else 0")
          .tags("model", model, "version", number, "state", state.name())
          .register(registry));
    }
    meters.add(Gauge.builder("modelgate.golden.score", version, this::goldenScore)
        .description("Share of the model's golden examples the version's current load answers as expected (NaN until run, or without a golden set)")
        .tags("model", model, "version", number)
        .register(registry));
    meters.add(Gauge.builder("modelgate.golden.examples", version, v -> golden.result(v).getExamples())
        .description("Golden examples the version was last scored on (0 until run, or without a golden set)")
        .tags("model", model, "version", number)
        .register(registry));
    for (boolean second : new boolean[] {true, false}) {
      meters.add(io.micrometer.core.instrument.FunctionCounter.builder("modelgate.batch.large", version,
              v -> largeBatches(v, second))
          .description("Batches of large_batch_rows rows or more, by the session that ran them: second (more intra-op"
              + " threads) or first (where the second measured no faster a row); 0 without a second session."
              + " Counts the version's current load")
          .tags("model", model, "version", number, "session", second ? "second" : "first")
          .register(registry));
    }
    meters.add(Gauge.builder("modelgate.queue.depth", version, GatewayMetrics::queued)
        .description("Requests waiting for execution (in the queue or a forming batch)")
        .tags("model", model, "version", number)
        .register(registry));
    meters.add(Gauge.builder("modelgate.queue.capacity", version, GatewayMetrics::capacity)
        .description("Requests that may wait; more are refused RESOURCE_EXHAUSTED (0 unless READY)")
        .tags("model", model, "version", number)
        .register(registry));
    meters.add(Gauge.builder("modelgate.routing.weight", version, this::share)
        .description("The version's share of the model's live traffic under the current routing, 0 to 1")
        .tags("model", model, "version", number)
        .register(registry));
  }

  /**
   * Takes the gauges of {@code version} from the registry when {@code gone} still holds (checked
   * under the same lock as their registration, which a version's next state change makes again).
   */
  synchronized void retire(ModelVersion version, java.util.function.BooleanSupplier gone) {
    String key = version.model() + '\u0000' + version.number();
    List<io.micrometer.core.instrument.Meter> meters = registered.get(key);
    if (meters == null || !gone.getAsBoolean()) {
      return;
    }
    registered.remove(key);
    for (io.micrometer.core.instrument.Meter meter : meters) {
      registry.remove(meter);
    }
    java.util.Map.Entry<String, io.micrometer.core.instrument.Meter> file = modelFiles.remove(key);
    if (file != null) {
      registry.remove(file.getValue());
    }
  }

  /** Whether {@code version} is READY with the model file of {@code sha256}: one read of what it serves with. */
  private static boolean servesFile(ModelVersion version, String sha256) {
    LoadedVersion loaded = version.loadedOrNull();
    return loaded != null && loaded.modelSha256().equals(sha256);
  }

  private static double queued(ModelVersion version) {
    LoadedVersion loaded = version.loadedOrNull();
    return loaded == null ? 0 : loaded.scheduler().queuedCount();
  }

  private static double largeBatches(ModelVersion version, boolean second) {
    LoadedVersion loaded = version.loadedOrNull();
    return loaded == null ? 0 : loaded.largeBatches(second);
  }

  private static double capacity(ModelVersion version) {
    LoadedVersion loaded = version.loadedOrNull();
    return loaded == null ? 0 : loaded.settings().scheduler().queueCapacity();
  }

  private double share(ModelVersion version) {
    Route route = router.route(version.model());
    double total = 0;
    for (ModelVersion v : route.model().versions()) {
      total += route.weightOf(v.number());
    }
    return total == 0 ? 0 : route.weightOf(version.number()) / total;
  }

  @Override
  public void close() {
    backgroundJobs.close();
    gc.close();
  }
}

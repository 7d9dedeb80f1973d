package io.modelgate.gateway.health;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.modelgate.proto.admin.v1.DriftReport;
import io.modelgate.proto.admin.v1.FeatureDrift;
import io.modelgate.proto.admin.v1.VersionDrift;
import io.modelgate.proto.admin.v1.WindowDrift;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.DriftSettings;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.InputTensor;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.threads.DaemonThreads;
import java.time.Clock;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Drift while serving: for each loaded version of a model whose {@code model.yaml} has {@code
 * drift}, a {@link DriftProfile} of a sample of what it sees and answers, compared with a reference
 * profile over the 1m, 5m and 15m windows; exported as {@code modelgate_drift_*} and read by {@code
 * admin drift}.
 *
 * <p>Off the request path: the request thread only draws the sample ({@link #sampled}, no
 * allocation when not drawn); the answering thread hands the request's decoded inputs and its
 * outputs (immutable views, no copy) to a bounded queue, dropping and counting when it is full
 * ({@link #QUEUE} observations or {@link #MAX_QUEUED_BYTES}). One thread, {@code modelgate-drift},
 * owns every profile: it profiles, rotates the windows, scores every {@link #SCORE_MILLIS} and
 * answers the admin calls, which reach it as commands.
 *
 * <p>The reference of a version comes from its golden set (this is a {@link GoldenSets.Observer}:
 * each golden run of a version forms its reference, unless an operator set one from a window), from
 * its first {@code reference_requests} profiled requests, or from an operator's {@link #baseline}.
 *
 * <p>A profile is the version's, not one load's: a version loaded again while it serves (a reload:
 * an edited {@code model.yaml}, a replaced {@code model.onnx}) keeps its windows and its reference,
 * with the new load's settings, unless the new load's inputs or outputs, or its {@code
 * max_features}, lay its features out otherwise; then it starts anew, and {@code admin drift} says
 * why ({@link #carry}). An unloaded version's profile goes.
 */
public final class Drift implements GoldenSets.Observer, AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Drift.class);
  /** Observations waiting for the drift thread; more are dropped. */
  static final int QUEUE = 4096;
  /** Bytes of inputs and outputs waiting for the drift thread; more are dropped. */
  static final long MAX_QUEUED_BYTES = 32L << 20;
  /** Observations taken from the queue at once. */
  private static final int BATCH = 256;
  private static final long MIN_IDLE_NANOS = 1_000_000;
  private static final long MAX_IDLE_NANOS = 50_000_000;
  /** How often scores and gauges are brought up to date. */
  static final long SCORE_MILLIS = 5_000;

  private final ModelRepository repository;
  private final MeterRegistry registry;
  private final Clock clock;
  private final String replica;
  private final BlockingQueue<Observation> queue = new ArrayBlockingQueue<>(QUEUE);
  private final AtomicLong queuedBytes = new AtomicLong();
  private final ConcurrentLinkedQueue<Runnable> commands = new ConcurrentLinkedQueue<>();
  /** (profiled, dropped) counters per version; any thread. */
  private final Map<ModelVersion, Counter[]> counters = new ConcurrentHashMap<>();
  /** Per version, with the load it profiles now. Drift thread only. */
  private final Map<ModelVersion, Entry> entries = new HashMap<>();
  private final Thread thread;
  private volatile boolean closed;
  private long lastFailureLog;
  private long nextScore;

  private record Observation(ModelVersion version, LoadedVersion loaded, InputTensor[] inputs, OutputTensor[] outputs, long bytes) {}

  /** A version's profile, with what is exported of it. Drift thread only (but {@link #settings}). */
  private static final class Entry {
    final ModelVersion version;
    /** The load profiled: the version's current one (a reload hands the entry over, {@link #carry}). */
    LoadedVersion loaded;
    /** The load's drift settings; read by the threshold gauges on a scrape's thread too. */
    volatile DriftSettings settings;
    /** Whether golden runs form the reference (the model's {@code drift.reference}, or its golden set). */
    boolean goldenReference;
    /** The reference is a window an operator set: golden runs keep it (but one asked for by {@link #goldenOnce}). */
    boolean operatorReference;
    /** What the last reload did to the profile ("" when the version has not been loaded again). */
    String reload = "";
    DriftProfile profile;
    /** Golden examples seen before the first request laid the profile out. */
    List<Observation> earlyGolden = new ArrayList<>();
    boolean goldenRunning;
    /** The next golden run forms the reference whatever the model's reference source (an operator asked). */
    boolean goldenOnce;
    final Map<DriftProfile.Feature, Exported> exported = new HashMap<>();
    Counter profiled;
    final List<Meter> meters = new ArrayList<>();

    Entry(ModelVersion version, LoadedVersion loaded, DriftSettings settings, boolean goldenReference) {
      this.version = version;
      this.loaded = loaded;
      this.settings = settings;
      this.goldenReference = goldenReference;
    }

    /** Whether the next golden run forms the reference. */
    boolean goldenForms() {
      return goldenOnce || (goldenReference && !operatorReference);
    }
  }

  /** A feature's score in the exported window, read by the gauges. */
  private static final class Exported {
    volatile double score = Double.NaN;
    volatile double drifted;
  }

  /**
   * @param replica named in reports
   */
  public Drift(ModelRepository repository, MeterRegistry registry, Clock clock, String replica) {
    this.repository = repository;
    this.registry = registry;
    this.clock = clock;
    this.replica = replica;
    this.thread = DaemonThreads.thread("modelgate-drift", this::run);
    thread.start();
    repository.events().subscribe(version -> commands.add(this::followLoads));
  }

  // ---- the request side (any thread, never blocks) ----

  /**
   * Whether this request of {@code loaded} is profiled: false (most of the time, when the model has
   * no drift profiling or the draw says no). Request thread.
   */
  public boolean sampled(LoadedVersion loaded) {
    DriftSettings settings = loaded.settings().drift();
    if (settings == null || settings.sampleRate() <= 0) {
      return false;
    }
    return settings.sampleRate() >= 1 || ThreadLocalRandom.current().nextDouble() < settings.sampleRate();
  }

  /**
   * Hands a sampled request's inputs and its outputs to the drift thread; drops them (counted)
   * when it is behind. Never blocks.
   */
  public void offer(ModelVersion version, LoadedVersion loaded, InputTensor[] inputs, OutputTensor[] outputs) {
    long bytes = 64;
    for (InputTensor input : inputs) {
      bytes += input == null ? 0 : input.byteSize();
    }
    for (OutputTensor output : outputs) {
      bytes += output.data().size();
    }
    if (closed || queuedBytes.addAndGet(bytes) > MAX_QUEUED_BYTES
        || !queue.offer(new Observation(version, loaded, inputs, outputs, bytes))) {
      queuedBytes.addAndGet(-bytes);
      counters(version)[1].increment();
    }
  }

  private Counter[] counters(ModelVersion version) {
    return counters.computeIfAbsent(version, v -> {
      Counter[] made = new Counter[2];
      String[] outcomes = {"profiled", "dropped"};
      for (int i = 0; i < 2; i++) {
        made[i] = Counter.builder("modelgate.drift.samples")
            .description("Sampled requests for drift profiling: profiled, or dropped because the profiler was behind")
            .tags("model", version.model(), "version", version.numberText(), "outcome", outcomes[i])
            .register(registry);
      }
      return made;
    });
  }

  // ---- golden runs (GoldenSets' thread or an admin thread) ----

  @Override
  public void goldenStarted(ModelVersion version, LoadedVersion loaded, int examples) {
    commands.add(() -> {
      Entry entry = entry(version, loaded);
      if (entry != null && entry.goldenForms()) {
        entry.goldenRunning = true;
        entry.earlyGolden.clear();
        if (entry.profile != null) {
          entry.profile.referenceFromGolden("the golden set (" + examples + " examples)");
        }
      }
    });
  }

  @Override
  public void goldenExample(ModelVersion version, LoadedVersion loaded, DecodedRequest request, InferenceResult result) {
    Observation observation = new Observation(version, loaded, request.inputs(), result.outputs(), 0);
    commands.add(() -> {
      Entry entry = entry(version, loaded);
      if (entry == null || !entry.goldenRunning) {
        return;
      }
      if (entry.profile == null) {
        entry.earlyGolden.add(observation);
      } else {
        entry.profile.observeReference(observation.inputs(), observation.outputs());
      }
    });
  }

  @Override
  public void goldenFinished(ModelVersion version, LoadedVersion loaded, int examples, boolean complete) {
    commands.add(() -> {
      Entry entry = entry(version, loaded);
      if (entry == null || !entry.goldenRunning) {
        return;
      }
      entry.goldenRunning = false;
      entry.goldenOnce = false;
      if (!complete) {
        entry.earlyGolden.clear();
        if (entry.profile != null) {
          entry.profile.abandonReference();
        }
        return;
      }
      if (entry.profile == null && !entry.earlyGolden.isEmpty()) {
        Observation first = entry.earlyGolden.get(0);
        layOut(entry, first.inputs(), first.outputs());
        entry.profile.referenceFromGolden("the golden set (" + examples + " examples)");
        for (Observation o : entry.earlyGolden) {
          entry.profile.observeReference(o.inputs(), o.outputs());
        }
        entry.earlyGolden.clear();
      }
      if (entry.profile != null) {
        entry.profile.completeReference();
        entry.operatorReference = false;
        log.info("{}: drift reference set from the golden set ({} examples)", version.label(), examples);
      }
    });
  }

  // ---- admin (any thread; answered by the drift thread) ----

  /** The drift of {@code model}'s loaded versions ({@code version} 0: all). */
  public CompletableFuture<DriftReport> report(String model, long version) {
    CompletableFuture<DriftReport> answer = new CompletableFuture<>();
    command(answer, () -> answer.complete(build(model, version)));
    return answer;
  }

  /**
   * Makes {@code window} of {@code version} its reference.
   *
   * @throws InferenceException (in the future) FAILED_PRECONDITION when the model has no drift
   *     profiling or the window has no request
   */
  public CompletableFuture<DriftReport> baseline(ModelVersion version, String window) {
    if (!DriftSettings.WINDOWS.contains(window)) {
      throw InferenceException.invalidArgument("window " + InferenceException.quote(window) + " (expected one of: " + DriftSettings.WINDOWS + ")");
    }
    LoadedVersion loaded = version.serving();
    CompletableFuture<DriftReport> answer = new CompletableFuture<>();
    command(answer, () -> {
      Entry entry = profiled(version, loaded);
      DriftProfile.Sketches sketches = entry.profile == null ? null : entry.profile.window(window, clock.millis());
      if (sketches == null || sketches.count == 0) {
        throw InferenceException.failedPrecondition(version.label() + " has profiled no request in the last " + window);
      }
      entry.profile.setReference(sketches, "the " + window + " window set by an operator at " + java.time.Instant.ofEpochMilli(clock.millis()));
      entry.operatorReference = true;
      log.info("{}: drift reference set from its {} window ({} requests)", version.label(), window, sketches.count);
      score(entry, clock.millis());
      answer.complete(build(version.model(), version.number()));
    });
    return answer;
  }

  /**
   * The entry of {@code loaded}, a load of {@code version}. Drift thread.
   *
   * @throws InferenceException FAILED_PRECONDITION where its model has no drift profiling
   */
  private Entry profiled(ModelVersion version, LoadedVersion loaded) {
    Entry entry = entry(version, loaded);
    if (entry == null) {
      throw InferenceException.failedPrecondition("model " + InferenceException.quote(version.model())
          + " has no drift profiling (add drift to its model.yaml)");
    }
    return entry;
  }

  /**
   * Makes {@code reference} — a fleet's, merged from every replica's window ({@link
   * DriftMerge#reference}) — the drift reference of {@code version} here, as it is; golden runs
   * keep it, as an operator's window.
   *
   * @throws InferenceException (in the future) FAILED_PRECONDITION where the model has no drift
   *     profiling, the version serves another model file than the reference's, or lays its
   *     features out otherwise; UNAVAILABLE where it has profiled no request yet (its first lays its
   *     features out): the caller asks again later
   */
  public CompletableFuture<DriftReport> adoptReference(ModelVersion version, io.modelgate.proto.admin.v1.DriftSketches reference) {
    LoadedVersion loaded = version.serving();
    CompletableFuture<DriftReport> answer = new CompletableFuture<>();
    command(answer, () -> {
      Entry entry = profiled(version, loaded);
      if (!reference.getModelSha256().isEmpty() && !loaded.modelSha256().isEmpty()
          && !reference.getModelSha256().equals(loaded.modelSha256())) {
        throw InferenceException.failedPrecondition(version.label() + " serves another model.onnx (sha256 "
            + loaded.modelSha256().substring(0, Math.min(12, loaded.modelSha256().length())) + ") than the reference's ("
            + reference.getModelSha256().substring(0, Math.min(12, reference.getModelSha256().length())) + ")");
      }
      if (entry.profile == null) {
        throw InferenceException.unavailable(version.label() + " has profiled no request yet (its first lays its"
            + " features out); the reference is taken once it has");
      }
      if (!entry.profile.slots().equals(reference.getFeaturesList())
          || entry.profile.firstOutputSlot() != reference.getFirstOutputSlot()) {
        throw InferenceException.failedPrecondition(version.label() + " lays its features out otherwise than the"
            + " reference (rows of another shape)");
      }
      try {
        entry.profile.setReference(reference.getReference(), reference.getReferenceSource());
      } catch (IllegalArgumentException e) {
        throw InferenceException.failedPrecondition("the reference's sketches do not read: " + e.getMessage());
      }
      entry.operatorReference = true;
      log.info("{}: drift reference taken: {} ({} requests)", version.label(), reference.getReferenceSource(),
          entry.profile.referenceSamples());
      score(entry, clock.millis());
      answer.complete(build(version.model(), version.number()));
    });
    return answer;
  }

  /**
   * Makes the next golden run of {@code version} (which the caller starts after this call) form its
   * reference, whatever the model's {@code drift.reference} says.
   */
  public void takeReferenceFromNextGoldenRun(ModelVersion version) {
    LoadedVersion loaded = version.serving();
    commands.add(() -> {
      Entry entry = entry(version, loaded);
      if (entry != null) {
        entry.goldenOnce = true;
      }
    });
  }

  /** Completes once every observation handed over before this call has been profiled, and scores. */
  public CompletableFuture<Void> flush() {
    CompletableFuture<Void> done = new CompletableFuture<>();
    command(done, () -> {
      drain(Integer.MAX_VALUE);
      long now = clock.millis();
      for (Entry entry : entries.values()) {
        score(entry, now);
      }
      done.complete(null);
    });
    return done;
  }

  /** Runs {@code task} on the drift thread, between observations (tests hold the thread with it). */
  void onDriftThread(Runnable task) {
    commands.add(task);
  }

  private void command(CompletableFuture<?> answer, Runnable command) {
    if (closed) {
      answer.completeExceptionally(InferenceException.unavailable("the server is stopping"));
      return;
    }
    commands.add(() -> {
      try {
        command.run();
      } catch (RuntimeException e) {
        answer.completeExceptionally(e);
      }
    });
  }

  // ---- the drift thread ----

  /**
   * The drift thread's loop. It never blocks on the queue: it takes what is there in batches and,
   * when there is nothing, sleeps a little (1 ms, growing to 50 ms while idle), so that handing a
   * sample over never has to wake it (a wake-up per request would cost more than profiling it).
   */
  private void run() {
    List<Observation> batch = new ArrayList<>(BATCH);
    long idleNanos = MIN_IDLE_NANOS;
    while (!closed) {
      try {
        int taken = queue.drainTo(batch, BATCH);
        for (int i = 0; i < taken; i++) {
          profile(batch.get(i));
        }
        batch.clear();
        boolean worked = taken > 0;
        for (Runnable command; (command = commands.poll()) != null; ) {
          command.run();
          worked = true;
        }
        long now = clock.millis();
        if (now >= nextScore) {
          nextScore = now + SCORE_MILLIS;
          for (Entry entry : entries.values()) {
            score(entry, now);
          }
        }
        if (worked) {
          idleNanos = MIN_IDLE_NANOS;
        } else {
          java.util.concurrent.locks.LockSupport.parkNanos(idleNanos);
          idleNanos = Math.min(MAX_IDLE_NANOS, idleNanos * 2);
        }
      } catch (Throwable e) {
        batch.clear();
        long now = System.currentTimeMillis();
        if (now - lastFailureLog > 60_000) {
          lastFailureLog = now;
          log.warn("drift profiling failed (it goes on; logged once a minute)", e);
        }
      }
    }
    for (Entry entry : entries.values()) {
      removeMeters(entry);
    }
  }

  private void drain(int most) {
    for (int i = 0; i < most; i++) {
      Observation next = queue.poll();
      if (next == null) {
        return;
      }
      profile(next);
    }
  }

  private void profile(Observation o) {
    queuedBytes.addAndGet(-o.bytes());
    Entry entry = entry(o.version(), o.loaded());
    if (entry == null) {
      return;
    }
    if (entry.profile == null) {
      layOut(entry, o.inputs(), o.outputs());
    }
    entry.profile.observe(o.inputs(), o.outputs(), clock.millis());
    entry.profiled.increment();
  }

  /**
   * The entry of a version's load: null when that load is not the version's current one (an
   * observation of a load before a reload, a golden run checking a load not yet serving) or the
   * model has no drift profiling. Made on first use; the entry of the load before is handed over
   * ({@link #carry}) when the version was loaded again in place.
   */
  private Entry entry(ModelVersion version, LoadedVersion loaded) {
    Entry entry = entries.get(version);
    if (entry != null && entry.loaded == loaded) {
      return entry;
    }
    if (version.loadedOrNull() != loaded) {
      return null;
    }
    DriftSettings settings = loaded.settings().drift();
    if (settings == null) {
      if (entry != null) {
        forget(entry);
      }
      return null;
    }
    boolean golden = settings.reference() == DriftSettings.Reference.GOLDEN
        || (settings.reference() == null && GoldenSet.exists(repository.root().resolve(version.model())));
    if (entry != null) {
      return carry(entry, loaded, settings, golden);
    }
    return add(new Entry(version, loaded, settings, golden));
  }

  private Entry add(Entry entry) {
    entry.profiled = counters(entry.version)[0];
    entries.put(entry.version, entry);
    return entry;
  }

  /**
   * Hands {@code entry} over to {@code loaded}, the load its version serves with since a reload:
   * the windows and the reference go on, read with the new load's settings (thresholds, window,
   * minimum samples), when the new load lays the features out as the old one did (the same inputs
   * and outputs, the same {@code max_features}); otherwise the profile starts anew. A change of
   * where the reference comes from takes effect: to the golden set, by the golden run the reload
   * makes on the new load; to requests, by forming it from the next {@code reference_requests}
   * (the old reference scores meanwhile). An operator's window stays the reference.
   */
  private Entry carry(Entry entry, LoadedVersion loaded, DriftSettings settings, boolean golden) {
    String at = java.time.Instant.ofEpochMilli(clock.millis()).toString();
    String change = layoutChange(entry, loaded, settings);
    if (change != null) {
      forget(entry);
      Entry fresh = add(new Entry(entry.version, loaded, settings, golden));
      fresh.reload = "started anew at its reload at " + at + ": " + change;
      log.info("{}: drift profile {}", entry.version.label(), fresh.reload);
      return fresh;
    }
    boolean fileChanged = !entry.loaded.modelSha256().equals(loaded.modelSha256());
    entry.loaded = loaded;
    entry.settings = settings;
    if (entry.goldenRunning) {
      // A golden run of the load before, cut short by the swap: the new load's run forms the reference.
      entry.goldenRunning = false;
      entry.earlyGolden.clear();
      if (entry.profile != null) {
        entry.profile.abandonReference();
      }
    }
    DriftProfile profile = entry.profile;
    if (profile != null) {
      profile.settings(settings);
      boolean sourceChanged = golden != entry.goldenReference && !entry.operatorReference;
      if (sourceChanged) {
        if (golden) {
          profile.abandonReference();
        } else {
          profile.referenceFromRequests(settings.referenceRequests());
        }
      }
      if (fileChanged) {
        // The outputs' reference forms again: from requests, or (golden set) by the reload's golden
        // run; an operator's window is kept for the inputs, its outputs formed from requests.
        profile.outputsChanged(clock.millis(), settings.referenceRequests(),
            !sourceChanged && (!golden || entry.operatorReference));
      }
    }
    entry.goldenReference = golden;
    entry.reload = "kept across its reload at " + at + (fileChanged ? " to another model file: its outputs are scored"
        + " again once their reference has formed anew and a window no longer holds the old file's answers" : "");
    log.info("{}: drift profile {} (windows and reference go on)", entry.version.label(), entry.reload);
    return entry;
  }

  /** Why a profile of the load {@code entry} has cannot go on for {@code loaded}; null when it can. */
  private static String layoutChange(Entry entry, LoadedVersion loaded, DriftSettings settings) {
    if (entry.profile == null) {
      return null;
    }
    String before = layout(entry.loaded.signature());
    String now = layout(loaded.signature());
    if (!before.equals(now)) {
      return "its inputs or outputs changed (were " + before + "; now " + now + ")";
    }
    if (settings.maxFeatures() != entry.settings.maxFeatures()) {
      return "drift.max_features changed from " + entry.settings.maxFeatures() + " to " + settings.maxFeatures();
    }
    return null;
  }

  /** What lays a profile's features out: each tensor's name, type, shape and batch axis. */
  private static String layout(io.modelgate.runtime.tensor.ModelSignature signature) {
    StringBuilder text = new StringBuilder("inputs");
    for (int i = 0; i < signature.inputs().size(); i++) {
      text.append(' ').append(signature.inputs().get(i)).append(signature.batches() ? " axis " + signature.inputAxis(i) : "");
    }
    text.append(", outputs");
    for (int i = 0; i < signature.outputs().size(); i++) {
      text.append(' ').append(signature.outputs().get(i)).append(signature.batches() ? " axis " + signature.outputAxis(i) : "");
    }
    return text.toString();
  }

  /** Lays the profile out from the shapes of its first observation and registers its gauges. */
  private void layOut(Entry entry, InputTensor[] inputs, OutputTensor[] outputs) {
    entry.profile = new DriftProfile(entry.settings, entry.loaded.signature(), inputs, outputs);
    if (!entry.goldenReference) {
      entry.profile.referenceFromRequests(entry.settings.referenceRequests());
    } else if (entry.goldenRunning) {
      entry.profile.referenceFromGolden("the golden set");
      for (Observation o : entry.earlyGolden) {
        entry.profile.observeReference(o.inputs(), o.outputs());
      }
      entry.earlyGolden.clear();
    }
    for (DriftProfile.Feature feature : entry.profile.features) {
      Exported exported = new Exported();
      entry.exported.put(feature, exported);
      Tags tags = Tags.of("model", entry.version.model(), "version", entry.version.numberText(),
          "tensor", feature.tensor(), "feature", feature.name(), "statistic", feature.statistic());
      entry.meters.add(Gauge.builder("modelgate.drift.score", exported, e -> e.score)
          .description("Drift of a feature against the version's reference over the model's drift window: Kolmogorov-Smirnov statistic (ks) or population stability index (psi); NaN while unscored")
          .tags(tags)
          .register(registry));
      entry.meters.add(Gauge.builder("modelgate.drift.drifted", exported, e -> e.drifted)
          .description("1 while the feature's drift score is over its threshold (and, for ks, significant)")
          .tags(tags)
          .register(registry));
      entry.meters.add(Gauge.builder("modelgate.drift.threshold", entry,
              e -> feature.classes() ? e.settings.psiThreshold() : e.settings.ksThreshold())
          .description("The threshold of a feature's drift score, from model.yaml")
          .tags(tags)
          .register(registry));
    }
  }

  private void score(Entry entry, long now) {
    if (entry.profile == null) {
      return;
    }
    List<DriftProfile.Score> scores = entry.profile.scores(entry.settings.window(), now);
    for (DriftProfile.Score score : scores) {
      Exported exported = entry.exported.get(score.feature());
      exported.score = score.score();
      exported.drifted = score.drifted() ? 1 : 0;
    }
  }

  /**
   * After a version changed: the profile of a version no longer loaded goes, with its series; that
   * of a version loaded again in place is handed to its new load ({@link #carry}).
   */
  private void followLoads() {
    var moved = entries.values().stream().filter(e -> e.version.loadedOrNull() != e.loaded).toList();
    for (Entry entry : moved) {
      LoadedVersion now = entry.version.loadedOrNull();
      if (now == null || entry(entry.version, now) == null) {
        forget(entry);
      }
    }
    // The counters of a version unloaded, or loaded again without drift profiling.
    counters.keySet().removeIf(version -> {
      LoadedVersion loaded = version.loadedOrNull();
      if (entries.containsKey(version) || (loaded != null && loaded.settings().drift() != null)) {
        return false;
      }
      for (Counter c : counters.get(version)) {
        registry.remove(c);
      }
      return true;
    });
  }

  /** Removes a version's profile and its gauges ({@link #followLoads} removes its counters). */
  private void forget(Entry entry) {
    entries.remove(entry.version, entry);
    removeMeters(entry);
  }

  private void removeMeters(Entry entry) {
    for (Meter meter : entry.meters) {
      registry.remove(meter);
    }
    entry.meters.clear();
  }

  private DriftReport build(String model, long number) {
    var found = io.modelgate.gateway.routing.LatestReadyVersionSelector.model(repository, model);
    DriftReport.Builder report = DriftReport.newBuilder().setModel(model).setReplica(replica);
    long now = clock.millis();
    for (ModelVersion version : found.versions()) {
      LoadedVersion loaded = version.loadedOrNull();
      if ((number != 0 && version.number() != number) || loaded == null) {
        continue;
      }
      report.addVersions(versionDrift(version, loaded, now));
    }
    if (number != 0 && report.getVersionsCount() == 0) {
      throw InferenceException.notFound("model " + InferenceException.quote(model) + " has no loaded version " + number);
    }
    return report.build();
  }

  private VersionDrift versionDrift(ModelVersion version, LoadedVersion loaded, long now) {
    VersionDrift.Builder out = VersionDrift.newBuilder().setVersion(version.number());
    Entry entry = entry(version, loaded);
    if (entry == null) {
      return out.setState("OFF").build();
    }
    Counter[] made = counters(version);
    out.setSampleRate(entry.settings.sampleRate())
        .setWindow(entry.settings.window())
        .setProfiled((long) made[0].count())
        .setDropped((long) made[1].count())
        .setReload(entry.reload);
    DriftProfile profile = entry.profile;
    if (profile == null) {
      return out.setState("WAITING").build();
    }
    out.setMemoryBytes(profile.bytes())
        .setReference(profile.referenceSource())
        .setReferenceSamples(profile.referenceSamples())
        .setForming(profile.formingSource());
    if (!profile.hasReference()) {
      return out.setState("FORMING").build();
    }
    out.setState("READY");
    addFeatures(out, profile.features, entry.settings, window -> profile.scores(window, now));
    return out.build();
  }

  /**
   * Adds every feature of {@code features}, with its scores in each window ({@code scores} of the
   * window), to {@code out}: one path for a replica's report and a fleet's merged one ({@link DriftMerge}).
   */
  static void addFeatures(VersionDrift.Builder out, List<DriftProfile.Feature> features, DriftSettings settings,
      java.util.function.Function<String, List<DriftProfile.Score>> scores) {
    Map<DriftProfile.Feature, FeatureDrift.Builder> built = new java.util.LinkedHashMap<>();
    for (DriftProfile.Feature feature : features) {
      built.put(feature, FeatureDrift.newBuilder()
          .setTensor(feature.tensor())
          .setFeature(feature.name())
          .setStatistic(feature.statistic())
          .setThreshold(feature.classes() ? settings.psiThreshold() : settings.ksThreshold()));
    }
    for (String window : DriftSettings.WINDOWS) {
      for (DriftProfile.Score score : scores.apply(window)) {
        WindowDrift.Builder w = WindowDrift.newBuilder()
            .setWindow(window)
            .setSamples(score.samples())
            .setScored(!Double.isNaN(score.score()))
            .setDrifted(score.drifted());
        if (!Double.isNaN(score.score())) {
          w.setScore(score.score());
        }
        if (!Double.isNaN(score.significant())) {
          w.setSignificant(score.significant());
        }
        built.get(score.feature()).addWindows(w);
      }
    }
    for (FeatureDrift.Builder feature : built.values()) {
      out.addFeatures(feature);
    }
  }

  /**
   * What this replica's profiles of {@code model}'s loaded versions ({@code version} 0: all) hold,
   * for another replica to merge with its own ({@link DriftMerge}): one entry per version with a
   * profile, and why each other has none.
   */
  public CompletableFuture<io.modelgate.proto.admin.v1.DriftSketchesAnswer> sketches(String model, long version) {
    CompletableFuture<io.modelgate.proto.admin.v1.DriftSketchesAnswer> answer = new CompletableFuture<>();
    command(answer, () -> {
      var found = io.modelgate.gateway.routing.LatestReadyVersionSelector.model(repository, model);
      io.modelgate.proto.admin.v1.DriftSketchesAnswer.Builder out =
          io.modelgate.proto.admin.v1.DriftSketchesAnswer.newBuilder().setReplica(replica);
      long now = clock.millis();
      for (ModelVersion v : found.versions()) {
        if (version != 0 && v.number() != version) {
          continue;
        }
        LoadedVersion loaded = v.loadedOrNull();
        Entry entry = loaded == null ? null : entry(v, loaded);
        if (loaded == null) {
          out.addMissing(v.number() + ": not loaded");
        } else if (entry == null) {
          out.addMissing(v.number() + ": no drift profiling");
        } else if (entry.profile == null) {
          out.addMissing(v.number() + ": no request profiled yet");
        } else {
          Counter[] made = counters(v);
          out.addVersions(entry.profile.sketches(now).setVersion(v.number())
              .setSampleRate(entry.settings.sampleRate())
              .setProfiled((long) made[0].count())
              .setDropped((long) made[1].count())
              .setModelSha256(loaded.modelSha256()));
        }
      }
      if (version != 0 && out.getVersionsCount() == 0 && out.getMissingCount() == 0) {
        throw InferenceException.notFound("model " + InferenceException.quote(model) + " has no version " + version);
      }
      answer.complete(out.build());
    });
    return answer;
  }

  /** Stops the drift thread (what is queued is dropped) and removes the gauges. */
  @Override
  public void close() {
    closed = true;
    java.util.concurrent.locks.LockSupport.unpark(thread);
    try {
      thread.join(5000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}

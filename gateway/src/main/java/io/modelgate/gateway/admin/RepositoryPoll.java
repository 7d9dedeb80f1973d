package io.modelgate.gateway.admin;

import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.routing.Route;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.logging.LogThrottle;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelConfigFile;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.RepositoryFolder;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.FileVisitOption;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Looks at the model repository folder every interval and does what its changes ask, as an
 * operator would through the admin API ({@code serve --repository-poll}; Triton's poll mode, with
 * the decisions of operators and of routing kept):
 *
 * <ul>
 *   <li>a version folder that appears is loaded (its model added first where its folder is new too);
 *   <li>a READY version whose files change (a file under its folder added, removed, or of another
 *       size, modification time, inode or change time), or whose model's {@code model.yaml} changes, is loaded again
 *       while it serves ({@link VersionControl#reload}: checked on the model's golden set, no
 *       request refused) — but not where only change times changed and what serves was made from
 *       what the files hold ({@link #contentServes}); a FAILED one whose files change is loaded again;
 *   <li>a READY version whose folder has gone is drained and unloaded, unless routing names it (a
 *       weight of a policy, the shadow, a running rollout): it serves from memory until its traffic
 *       is moved, then goes; a model whose folder has gone is taken down whole ({@link
 *       VersionControl#unloadModel}: its rollout aborted), and removed 15 minutes later;
 *   <li>a version an operator unloaded stays unloaded whatever its files do ({@code admin load}
 *       loads it), and a version's golden set ({@code <model>/golden/}) is read as it is whenever
 *       it runs, so its changes ask for nothing.
 * </ul>
 *
 * <p>A change is acted on once the folder has looked the same at two polls in a row, so that files
 * still being copied in are not loaded half-written; what was acted on is not tried again until
 * its files change again (a load that failed waits for a new file). A change that cannot be acted
 * on yet — routing names a version whose folder has gone, a running rollout names a version whose
 * files changed — is tried again at each poll and logged once. Each action is audited with the
 * caller {@value #CALLER}. The first look, as the server starts, compares the folder with a look
 * taken just before the repository loaded it ({@link io.modelgate.gateway.server.RepositoryAtStart}):
 * what changed while the server loaded and warmed up is acted on as any change.
 *
 * <p>In a fleet, only the replica that judges rollouts acts, and does it as a fleet's operator
 * would: every replica then loads, loads again or unloads as it follows the asks ({@link
 * VersionControl#reconcileLoads}). The others look too, and keep each change they saw: one that
 * becomes the judge acts on what changes from then on, and, at its first look as the judge, on each
 * change it saw meanwhile that has not reached it ({@link #catchUp}: the judge before stopped
 * before acting on it, or no replica judged then).
 *
 * <p>Looks take at most {@value #LOOK_SHARE_PERCENT}% of a core: after a look that took longer than
 * that share of the interval, the next waits 20 times as long as it took ({@link #spacing}), and
 * the server says so.
 *
 * <p>Threading: {@link #poll} runs on this component's single thread, one look at a time; loads
 * block it (never an event loop), and interleave with the admin API's as any two loads do, each
 * under its model's lock. Counters and {@link #waiting} may be read on any thread.
 */
public final class RepositoryPoll implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RepositoryPoll.class);
  /** The caller of the poll's loads, reloads and unloads in the audit log. */
  public static final String CALLER = "repository poll";
  /** How deep under a version folder files are looked at. */
  private static final int DEPTH = 8;
  /** Settled as no look ever is: a key settled so differs from its look, and is acted on. */
  private static final String NOT_ACTED = "\0not acted on";

  /** What a poll does to a version, for the counters. */
  public enum Action {
    LOAD, RELOAD, UNLOAD;

    String label() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  private final ModelRepository repository;
  private final VersionControl versions;
  private final ControlPlane policies;
  private final Duration every;
  private final ScheduledExecutorService thread =
      DaemonThreads.scheduled("modelgate-repository-poll");
  /** The look taken before the repository loaded, or null. */
  private final Map<String, String> before;
  /** What the last look found: per model its {@code model.yaml}, per version ("model/N") its files. Poll thread only. */
  private Map<String, String> seen;
  /** The same, as last acted on (or as first seen): a key whose look differs is a change. Poll thread only. */
  private final Map<String, String> settled = new TreeMap<>();
  /**
   * Keys whose change held still while this replica followed another's judging: checked at its
   * first look as the judge ({@link #catchUp}). Poll thread only.
   */
  private final Set<String> followed = new TreeSet<>();
  /** The changes seen that cannot be acted on yet, each with why. */
  private final Map<String, String> waiting = new ConcurrentHashMap<>();
  private final AtomicLong[] done = newCounters();
  private final AtomicLong[] failed = newCounters();
  private final AtomicLong looksDone = new AtomicLong();
  private final AtomicLong looksFailed = new AtomicLong();
  private final LogThrottle lookFailures = new LogThrottle(Duration.ofMinutes(1));
  private final LogThrottle slowLooks = new LogThrottle(Duration.ofMinutes(10));
  /**
   * The wait before the next look (ns): {@link #every}, or longer where the last look took over
   * {@value #LOOK_SHARE_PERCENT}% of it ({@link #spacing}). Written on the poll thread.
   */
  private volatile long spacingNanos;
  /** How long each look that succeeded took; null until {@link #bindTo}. */
  private volatile io.micrometer.core.instrument.Timer lookTime;

  /**
   * @param every how often the repository folder is looked at
   * @throws IllegalArgumentException where {@code every} is not positive
   */
  public RepositoryPoll(ModelRepository repository, VersionControl versions, ControlPlane policies, Duration every) {
    this(repository, versions, policies, every, null);
  }

  /**
   * @param before the {@link #look} at the repository folder taken just before {@code repository}
   *     loaded it ({@link io.modelgate.gateway.server.RepositoryAtStart}), so that what changed
   *     while it loaded is acted on; null: what the first {@link #poll} finds is taken as loaded
   */
  public RepositoryPoll(ModelRepository repository, VersionControl versions, ControlPlane policies, Duration every,
      Map<String, String> before) {
    if (every.isNegative() || every.isZero()) {
      throw new IllegalArgumentException("repository poll: " + every + " (expected: more than zero)");
    }
    this.before = before == null ? null : Map.copyOf(before);
    this.repository = repository;
    this.versions = versions;
    this.policies = policies;
    this.every = every;
    this.spacingNanos = every.toNanos();
  }

  private static AtomicLong[] newCounters() {
    AtomicLong[] counters = new AtomicLong[Action.values().length];
    for (int i = 0; i < counters.length; i++) {
      counters[i] = new AtomicLong();
    }
    return counters;
  }

  /**
   * Looks at the repository every interval from now on, on this component's thread; returns this.
   * The first look (comparing the folder with the look before the repository loaded) is the
   * caller's {@link #poll}, made before.
   */
  public RepositoryPoll start() {
    next();
    log.info("the model repository {} is looked at every {} for changes to load, load again or unload",
        repository.root(), io.modelgate.gateway.config.TimeSpans.format(every));
    return this;
  }

  /** Schedules the next look, {@link #spacingNanos} from now (none once closed). */
  private void next() {
    try {
      thread.schedule(this::pollThenNext, spacingNanos, TimeUnit.NANOSECONDS);
    } catch (java.util.concurrent.RejectedExecutionException closed) {
      // closed: no more looks
    }
  }

  /**
   * One look, then the next scheduled whatever it did; what it throws past its own handling goes to
   * the poll thread's executor, which logs it (once a minute) and counts it in {@code
   * modelgate_background_failures_total}.
   */
  private void pollThenNext() {
    try {
      poll();
    } finally {
      next();
    }
  }

  /**
   * One look at the repository folder, acting on every change that has held still since the last
   * look (see the class). Blocks while versions load and drain. On this component's thread; tests
   * call it directly (one caller at a time).
   */
  public void poll() {
    Map<String, String> now;
    try {
      long began = System.nanoTime();
      now = look(repository.root());
      long took = System.nanoTime() - began;
      io.micrometer.core.instrument.Timer timer = lookTime;
      if (timer != null) {
        timer.record(took, TimeUnit.NANOSECONDS);
      }
      spacingNanos = spacing(took, every);
      String slow = slowLook(took, every, now.size());
      if (slow != null) {
        long heldBack = slowLooks.pass();
        if (heldBack >= 0) {
          log.warn("{}{}", slow, LogThrottle.since(heldBack));
        }
      }
    } catch (IOException | UncheckedIOException e) {
      looksFailed.incrementAndGet();
      long heldBack = lookFailures.pass();
      if (heldBack >= 0) {
        log.error("cannot look at the model repository {} for changes: {}; nothing is loaded or unloaded until it"
            + " can be{}", repository.root(), e.getMessage(), LogThrottle.since(heldBack));
      }
      return;
    }
    looksDone.incrementAndGet();
    if (seen == null) {
      // The first look: the repository as it was loaded is what it holds. A change since the look
      // taken before it loaded, if any, is a change like any other (acted on once it holds still).
      Map<String, String> loaded = before == null ? now : before;
      seen = loaded;
      settled.putAll(loaded);
    }
    boolean acting = !policies.store().shared() || policies.store().judges();
    if (acting && !followed.isEmpty()) {
      catchUp(now);
    }
    Set<String> reloadedWhole = new HashSet<>();
    Set<String> keys = new TreeSet<>(settled.keySet());
    keys.addAll(now.keySet());
    // A model's key sorts before its versions' ("m" before "m/1"): model.yaml, or the model gone, first.
    for (String key : keys) {
      String looks = now.get(key);
      if (Objects.equals(looks, settled.get(key))) {
        waiting.remove(key);
        continue;
      }
      if (!Objects.equals(looks, seen.get(key))) {
        continue; // changed since the last look: acted on once it holds still
      }
      if (!acting) {
        followed.add(key);
      }
      if (!acting || contentServes(key, settled.get(key), looks) || act(key, looks, now, reloadedWhole)) {
        waiting.remove(key);
        if (looks == null) {
          settled.remove(key);
        } else {
          settled.put(key, looks);
        }
      }
    }
    if (acting) {
      loadWhatThisPollUnloaded(now);
    } else {
      // A folder gone whose version or model serves nothing here has nothing left to reach: kept
      // only while it might, so that months of folders coming and going leave no keys behind.
      followed.removeIf(key -> !now.containsKey(key) && reached(key, null));
    }
    seen = now;
  }

  /**
   * As this replica starts to judge: each change it saw while it followed, and that has not
   * reached it, is made a change again, acted on by this look. A change the judge acted on has
   * reached every replica that follows (it loaded, loaded again or unloaded as asked), and is left;
   * one it did not act on — it stopped before its next look, or no replica judged then — would
   * otherwise wait until the files change again. What has reached this replica is read from what
   * it serves: a version folder there, the version loaded (or unloaded as asked, or loading); a
   * changed {@code model.onnx}, the version's load made from the file (its SHA-256); a changed
   * {@code model.yaml}, every READY version's load made with its settings; a folder gone, nothing
   * of it READY. Other files of a version folder are not compared.
   */
  private void catchUp(Map<String, String> now) {
    for (String key : followed) {
      String looks = now.get(key);
      if (Objects.equals(looks, settled.get(key)) && !reached(key, looks)) {
        log.info("{} in the model repository changed while another replica judged, and no replica acted on it; acting"
            + " on it now", key);
        settled.put(key, NOT_ACTED);
      }
    }
    followed.clear();
  }

  /** Whether what the change of {@code key} (now looking as {@code looks}; null: gone) asks is what this replica holds. */
  private boolean reached(String key, String looks) {
    int slash = key.indexOf('/');
    String model = slash < 0 ? key : key.substring(0, slash);
    Model found = repository.model(model).orElse(null);
    if (slash < 0) {
      if (found == null) {
        return true; // a new model's versions load by their own keys; a gone one is not here
      }
      List<ModelVersion> ready = found.versions().stream().filter(v -> v.isReady() && !v.isCopy()).toList();
      if (looks == null || ready.isEmpty()) {
        return ready.isEmpty();
      }
      try {
        ModelSettings onDisk = repository.folder().settings(model);
        for (ModelVersion version : ready) {
          ModelSettings loaded = version.serving().settings();
          if (!(onDisk.maxBatchSize() == null ? onDisk.withMaxBatchSize(loaded.maxBatchSize()) : onDisk).equals(loaded)) {
            return false;
          }
        }
        return true;
      } catch (ModelConfigFile.InvalidConfigException | RuntimeException e) {
        return false; // acted on: the reload says what is wrong
      }
    }
    long number = Long.parseLong(key.substring(slash + 1));
    ModelVersion version = found == null ? null : found.version(number).orElse(null);
    if (looks == null) {
      return version == null || !version.isReady() || version.isCopy();
    }
    if (version == null || version.state() == VersionState.FAILED) {
      return false;
    }
    if (!version.isReady() || version.isCopy()) {
      return true; // unloaded (an operator's is kept; the poll's is loaded when its folder is back), or loading
    }
    try {
      return repository.folder().fileSha256(model, number).equals(version.serving().modelSha256());
    } catch (RuntimeException e) {
      return false;
    }
  }

  /**
   * Whether the change of {@code key} from {@code was} to {@code looks} is in change times only —
   * a file's owner, permissions or links changed (chmod, chown, a hard link made to it), or it was
   * written again in place with its size and time kept — and what serves was made from what the
   * files hold now, so that nothing is to be loaded again: for a version's {@code model.onnx}, the
   * READY version's load made from a file of the same SHA-256 (read again, once per such change);
   * for a model's {@code model.yaml}, every READY version's load made with its settings. A change
   * of any other file, or in anything else, is acted on (false). Poll thread.
   */
  private boolean contentServes(String key, String was, String looks) {
    if (was == null || looks == null || !withoutChangeTimes(was).equals(withoutChangeTimes(looks))) {
      return false;
    }
    int slash = key.indexOf('/');
    String file;
    if (slash < 0) {
      file = ModelConfigFile.FILE_NAME;
      if (repository.model(key).map(m -> m.versions().stream().noneMatch(v -> v.isReady() && !v.isCopy()))
          .orElse(true)) {
        return false; // nothing serves: acting on it costs nothing, and may load what failed
      }
    } else {
      String[] before = was.split("\n");
      String[] after = looks.split("\n");
      for (int i = 0; i < before.length; i++) {
        if (!before[i].equals(after[i]) && !before[i].startsWith(RepositoryFolder.MODEL_FILE + " ")) {
          return false; // a file whose content no load records
        }
      }
      file = RepositoryFolder.MODEL_FILE;
      ModelVersion version = repository.model(key.substring(0, slash))
          .flatMap(m -> m.version(Long.parseLong(key.substring(slash + 1)))).orElse(null);
      if (version == null || !version.isReady() || version.isCopy()) {
        return false; // not serving (a failed load, say, that a permission fixed may now load)
      }
    }
    if (!reached(key, looks)) {
      return false;
    }
    log.info("{}: {} changed in its owner, permissions or links, not in what it holds (what serves was made from it);"
        + " not loaded again", key, file);
    return true;
  }

  /** A look with each file's change time taken out: its size, modification time and file key, per file. */
  private static String withoutChangeTimes(String looks) {
    StringBuilder kept = new StringBuilder(looks.length());
    for (String line : looks.split("\n")) {
      int tilde = line.lastIndexOf('~');
      kept.append(tilde < 0 ? line : line.substring(0, tilde)).append('\n');
    }
    return kept.toString();
  }

  /**
   * Loads each version this poll unloaded when its folder went (in a fleet, the judge's poll, on
   * any replica) whose folder is back and held still: whether it came back while the server ran,
   * while it was down (a server alone loads it as it starts: {@link VersionControl#leftUnloaded}),
   * or before this replica became the judge.
   */
  private void loadWhatThisPollUnloaded(Map<String, String> now) {
    Map<String, List<io.modelgate.proto.admin.v1.VersionLoad>> asks = null; // read once, if any version needs it
    for (Model model : repository.models()) {
      for (ModelVersion version : model.versions()) {
        String key = model.name() + "/" + version.number();
        String looks = now.get(key);
        if (version.state() != VersionState.UNAVAILABLE || looks == null || !looks.equals(seen.get(key))) {
          continue;
        }
        asks = asks == null ? policies.loads() : asks;
        if (unloadedByPoll(asks, model.name(), version.number())) {
          log.info("version {} of model '{}': its folder is back; loading it", version.number(), model.name());
          load(model.name(), version.number(), "version " + version.number() + " of model '" + model.name() + "'");
          settled.put(key, looks);
        }
      }
    }
  }

  /** Does what the change of {@code key} (now looking as {@code looks}; null: gone) asks; false: not yet. */
  private boolean act(String key, String looks, Map<String, String> now, Set<String> reloadedWhole) {
    int slash = key.indexOf('/');
    try {
      if (slash < 0) {
        return actOnModel(key, looks, reloadedWhole);
      }
      String model = key.substring(0, slash);
      long number = Long.parseLong(key.substring(slash + 1));
      if (looks == null) {
        // A model whose whole folder has gone was taken down by its own key.
        return !now.containsKey(model) || unloadGone(model, number);
      }
      return loadChanged(model, number, reloadedWhole.contains(model));
    } catch (RuntimeException e) {
      log.error("the change to {} in the model repository was not acted on (it is when it changes again)", key, e);
      return true;
    }
  }

  /** The folder of {@code model} has gone ({@code looks} null), appeared, or its {@code model.yaml} changed. */
  private boolean actOnModel(String model, String looks, Set<String> reloadedWhole) {
    Model found = repository.model(model).orElse(null);
    if (found == null) {
      return true; // a new folder: its versions load by their own keys
    }
    if (looks == null) {
      if (found.versions().stream().noneMatch(ModelVersion::isReady)) {
        return true;
      }
      log.info("model '{}': its folder has gone from the repository; taking it down", model);
      count(Action.UNLOAD, guard(() -> versions.unloadModel(model, CALLER, "PollUnload"), "model '" + model + "'"));
      return true;
    }
    List<Long> ready = new ArrayList<>();
    for (ModelVersion version : found.versions()) {
      if (version.isReady() && !version.isCopy()) {
        ready.add(version.number());
      }
    }
    if (ready.isEmpty()) {
      return true; // model.yaml is read again as each version loads
    }
    for (long number : ready) {
      String role = versions.rolloutRole(model, number);
      if (role != null) {
        return wait(model, "its model.yaml changed, but version " + number + " is the " + role + " of its RUNNING"
            + " rollout; its versions are loaded again once the rollout ends");
      }
    }
    log.info("model '{}': its model.yaml changed; loading versions {} again", model, ready);
    count(Action.RELOAD, guard(() -> versions.reloadModel(model, CALLER, "PollReload"), "model '" + model + "'"));
    reloadedWhole.add(model);
    return true;
  }

  /** Version {@code number}'s folder appeared or its files changed. */
  private boolean loadChanged(String model, long number, boolean reloaded) {
    ModelVersion version = repository.model(model).flatMap(m -> m.version(number)).orElse(null);
    String label = "version " + number + " of model '" + model + "'";
    if (version == null || version.state() == VersionState.FAILED) {
      log.info("{}: {}; loading it", label, version == null ? "its folder has appeared" : "its files changed");
      load(model, number, label);
      return true;
    }
    if (version.isCopy()) {
      log.warn("{}: a folder has appeared with the number of a rollout's copied control; it is left as it is", label);
      return true;
    }
    if (version.isReady()) {
      if (reloaded) {
        return true; // loaded again whole for its model.yaml, with these files
      }
      String role = versions.rolloutRole(model, number);
      if (role != null) {
        return wait(model + "/" + number, "its files changed, but it is the " + role + " of its model's RUNNING"
            + " rollout; it is loaded again once the rollout ends");
      }
      log.info("{}: its files changed; loading it again while it serves", label);
      count(Action.RELOAD, guard(() -> versions.reload(model, number, CALLER, "PollReload"), label));
      return true;
    }
    if (version.state() == VersionState.UNAVAILABLE) {
      if (unloadedByPoll(policies.loads(), model, number)) {
        return true; // loaded as its folder is back, by loadWhatThisPollUnloaded
      }
      log.info("{}: its files changed; it stays unloaded, as an operator asked (admin load loads it)", label);
      return true;
    }
    return wait(model + "/" + number, "its files changed while it is " + version.state());
  }

  /** Loads version {@code number} of {@code model} as an operator's load does, counted. */
  private void load(String model, long number, String label) {
    count(Action.LOAD, guard(() -> {
      ModelVersion loaded = versions.load(model, number, CALLER, "PollLoad");
      if (!loaded.isReady()) {
        throw InferenceException.failedPrecondition(loaded.state() + ": " + loaded.reason());
      }
    }, label));
  }

  /** Whether the last load or unload {@code asks} hold for version {@code number} of {@code model} is this poll's unload. */
  private static boolean unloadedByPoll(Map<String, List<io.modelgate.proto.admin.v1.VersionLoad>> asks, String model,
      long number) {
    return asks.getOrDefault(model, List.of()).stream().anyMatch(
        ask -> ask.getVersion() == number && !ask.getLoaded() && ask.getCaller().equals(CALLER));
  }

  /** Version {@code number}'s folder has gone while its model's is there. */
  private boolean unloadGone(String model, long number) {
    ModelVersion version = repository.model(model).flatMap(m -> m.version(number)).orElse(null);
    if (version == null || !version.isReady() || version.isCopy()) {
      return true;
    }
    Route route = policies.router().route(model);
    long weight = route.policy().getWeightsOrDefault(number, 0);
    if (weight > 0 || (route.policy().hasShadow() && route.policy().getShadow().getVersion() == number)) {
      return wait(model + "/" + number, "its folder has gone, but routing revision " + route.policy().getRevision()
          + (weight > 0 ? " gives it weight " + weight : " makes it the shadow")
          + "; it serves from memory until its traffic is moved away, then it is unloaded");
    }
    String label = "version " + number + " of model '" + model + "'";
    log.info("{}: its folder has gone from the repository; draining and unloading it", label);
    count(Action.UNLOAD, guard(() -> versions.unload(model, number, CALLER, "PollUnload", true), label));
    return true;
  }

  /** Runs {@code action}; false, logged (the reason cut short: the load's own line gives it whole), where it throws. */
  private static boolean guard(Runnable action, String what) {
    try {
      action.run();
      return true;
    } catch (InferenceException e) {
      String reason = e.getMessage();
      log.error("{}: not done, tried again when its files change: {}", what,
          reason.length() <= 200 ? reason : reason.substring(0, 200) + "...");
      return false;
    }
  }

  private void count(Action action, boolean succeeded) {
    (succeeded ? done : failed)[action.ordinal()].incrementAndGet();
  }

  /** Notes {@code key}'s change as waiting for {@code why}, logged when the reason is new; false. */
  private boolean wait(String key, String why) {
    if (!why.equals(waiting.put(key, why))) {
      log.warn("{} in the model repository: {}", key, why);
    }
    return false;
  }

  /**
   * The most of a core the looks take from serving, in percent: a look that took longer than this
   * share of the interval spaces the next one out, and is logged.
   */
  static final int LOOK_SHARE_PERCENT = 5;

  /**
   * The wait (ns) after a look that took {@code tookNanos} before the next: {@code every}, or
   * {@code 100 / }{@value #LOOK_SHARE_PERCENT} times the look's time where that is longer, so that
   * looks take at most that share of a core however large or slow the repository folder is.
   */
  public static long spacing(long tookNanos, Duration every) {
    return Math.max(every.toNanos(), tookNanos * (100 / LOOK_SHARE_PERCENT));
  }

  /**
   * What to say of a look that took {@code tookNanos} every {@code every} over {@code entries}
   * model and version folders, or null where it took under {@value #LOOK_SHARE_PERCENT}% of
   * the interval.
   */
  static String slowLook(long tookNanos, Duration every, int entries) {
    double share = 100.0 * tookNanos / every.toNanos();
    if (share < LOOK_SHARE_PERCENT) {
      return null;
    }
    return String.format(java.util.Locale.ROOT, "a look at the model repository (%d model and version folders) took %.0f ms,"
        + " %.0f%% of the poll's interval of %s: the next look waits %s instead, so that looks take at most %d%% of a"
        + " core from serving, and changes are found that much later; a shorter look needs fewer files or a faster"
        + " disk (logged at most every 10 minutes)", entries, tookNanos / 1e6, share,
        io.modelgate.gateway.config.TimeSpans.format(every),
        io.modelgate.gateway.config.TimeSpans.format(Duration.ofMillis(spacing(tookNanos, every) / 1_000_000)),
        LOOK_SHARE_PERCENT);
  }

  /**
   * What the repository folder {@code root} holds now, as a poll compares it from one look to the
   * next: per model folder, how its {@code model.yaml} looks ({@link #attributesLook}, or none);
   * per version folder ("model/N"), how every file under it looks. Reads the disk (one
   * listing per model folder, one per version folder, and each file's attributes); any thread.
   *
   * @throws IOException when the repository folder cannot be listed
   */
  public static Map<String, String> look(Path root) throws IOException {
    Map<String, String> found = new TreeMap<>();
    for (Map.Entry<String, List<Long>> model : RepositoryFolder.onDisk(root).entrySet()) {
      Path dir = root.resolve(model.getKey());
      found.put(model.getKey(), fileLooks(dir.resolve(ModelConfigFile.FILE_NAME)));
      for (long number : model.getValue()) {
        found.put(model.getKey() + "/" + number, folderLooks(dir.resolve(Long.toString(number))));
      }
    }
    return found;
  }

  /** How {@code file} looks to a poll ({@link #attributesLook}), or "none" where there is none. */
  static String fileLooks(Path file) throws IOException {
    try {
      return attributesLook(file, Files.readAttributes(file, BasicFileAttributes.class));
    } catch (NoSuchFileException absent) {
      return "none";
    }
  }

  /** Whether the default file system tells a file's change time ({@code unix:ctime}: Linux, macOS and other Unix systems). */
  private static final boolean CHANGE_TIMES =
      java.nio.file.FileSystems.getDefault().supportedFileAttributeViews().contains("unix");

  /**
   * A file as a poll compares it: its size, its modification time (ns), its file key (on Linux
   * and other Unix systems its device and inode: a file replaced by a rename over it, or deleted
   * and written again, is another file even where its size and time are the same — a copy that
   * keeps the source's time, say), and where the file system tells it its change time (ns; Unix's
   * {@code ctime}, which no program can set: a file written again in place with its size kept and
   * its modification time set back, as {@code cp -p} or {@code rsync --inplace -t} over it do, has
   * changed it; so has a change of its owner, permissions or links, which {@link #contentServes} tells
   * apart where it can). The first three are read from the
   * attributes a listing returns; the change time costs one more {@code stat} of the file.
   */
  private static String attributesLook(Path file, BasicFileAttributes attributes) throws IOException {
    String look = attributes.size() + "@" + attributes.lastModifiedTime().to(TimeUnit.NANOSECONDS) + "#"
        + attributes.fileKey();
    if (!CHANGE_TIMES) {
      return look;
    }
    return look + "~" + ((java.nio.file.attribute.FileTime) Files.getAttribute(file, "unix:ctime")).to(TimeUnit.NANOSECONDS);
  }

  /**
   * Every file under {@code folder} (links followed), in name order, with how it looks ({@link
   * #attributesLook}): one walk, each entry's attributes as the walk reads them, and its change time.
   */
  private static String folderLooks(Path folder) throws IOException {
    List<String> files = new ArrayList<>();
    boolean[] changing = {false};
    Files.walkFileTree(folder, java.util.EnumSet.of(FileVisitOption.FOLLOW_LINKS), DEPTH,
        new java.nio.file.SimpleFileVisitor<>() {
          @Override
          public java.nio.file.FileVisitResult visitFile(Path file, BasicFileAttributes attributes) {
            if (attributes.isRegularFile()) {
              try {
                files.add(folder.relativize(file) + " " + attributesLook(file, attributes));
              } catch (IOException e) {
                return visitFileFailed(file, e);
              }
            }
            return java.nio.file.FileVisitResult.CONTINUE;
          }

          @Override
          public java.nio.file.FileVisitResult visitFileFailed(Path file, IOException e) {
            if (e instanceof NoSuchFileException) {
              // Gone while it was looked at: it is changing, and is looked at again next time.
              changing[0] = true;
              return java.nio.file.FileVisitResult.TERMINATE;
            }
            // A link back to a folder above it, a file or folder that cannot be read: it stays so
            // from one look to the next (a load says what it makes of it), not a change.
            files.add(folder.relativize(file) + " " + (e instanceof java.nio.file.FileSystemLoopException
                ? "link loop" : "unreadable (" + e.getClass().getSimpleName() + ")"));
            return java.nio.file.FileVisitResult.CONTINUE;
          }
        });
    if (changing[0]) {
      return "changing " + System.nanoTime();
    }
    files.sort(null);
    return String.join("\n", files);
  }

  /**
   * The changes this replica saw while another judged that it keeps for when it judges (by key:
   * "m" or "m/N"). Poll thread only (tests make the looks themselves).
   */
  public Set<String> changesFollowed() {
    return Set.copyOf(followed);
  }

  /** How often the repository folder is looked at, as configured ({@code --repository-poll}). */
  public Duration every() {
    return every;
  }

  /**
   * The wait between looks now: {@link #every}, or {@code 100 / }{@value #LOOK_SHARE_PERCENT}
   * times the last look's time where that is longer. Any thread.
   */
  public Duration spacing() {
    return Duration.ofNanos(spacingNanos);
  }

  /** Changes of the repository seen but not acted on yet, by model ("m") or version ("m/N"), each with why. Any thread. */
  public Map<String, String> waiting() {
    return Map.copyOf(waiting);
  }

  /** Actions of this poll that succeeded ({@code succeeded}) or failed since the start. Any thread. */
  public long actions(Action action, boolean succeeded) {
    return (succeeded ? done : failed)[action.ordinal()].get();
  }

  /** Looks at the repository folder since the start ({@code failed}: those that could not list it). Any thread. */
  public long looks(boolean failed) {
    return failed ? looksFailed.get() : looksDone.get();
  }

  /** Registers this poll's counters and gauge with {@code registry}; returns this. */
  public RepositoryPoll bindTo(io.micrometer.core.instrument.MeterRegistry registry) {
    for (Action action : Action.values()) {
      for (boolean succeeded : new boolean[] {true, false}) {
        io.micrometer.core.instrument.FunctionCounter.builder("modelgate.repository.poll.actions", this,
                p -> p.actions(action, succeeded))
            .description("Versions the repository poll loaded, loaded again or unloaded as their folders changed"
                + " (result failed: the version serves, or stays failed, as before)")
            .tag("action", action.label())
            .tag("result", succeeded ? "done" : "failed")
            .register(registry);
      }
    }
    for (boolean lookFailed : new boolean[] {false, true}) {
      io.micrometer.core.instrument.FunctionCounter.builder("modelgate.repository.polls", this, p -> p.looks(lookFailed))
          .description("Looks at the model repository folder for changes (result failed: it could not be listed)")
          .tag("result", lookFailed ? "failed" : "ok")
          .register(registry);
    }
    lookTime = io.micrometer.core.instrument.Timer.builder("modelgate.repository.poll.look")
        .description("How long a look at the repository folder took: listing its folders and reading every file's size,"
            + " times and inode (slow on a network file system with many files)")
        .register(registry);
    io.micrometer.core.instrument.Gauge.builder("modelgate.repository.poll.spacing", this,
            p -> p.spacingNanos / 1e9)
        .description("The wait between looks at the repository folder now: --repository-poll, or 20 times the last"
            + " look's time where that is longer (looks take at most 5% of a core)")
        .baseUnit("seconds")
        .register(registry);
    io.micrometer.core.instrument.Gauge.builder("modelgate.repository.poll.waiting", waiting, Map::size)
        .description("Changes of the repository seen but not acted on yet: a version whose folder has gone that routing"
            + " still names, or one a running rollout names whose files changed")
        .register(registry);
    return this;
  }

  @Override
  public void close() {
    thread.shutdownNow();
  }
}

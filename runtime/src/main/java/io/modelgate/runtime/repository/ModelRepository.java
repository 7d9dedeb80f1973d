package io.modelgate.runtime.repository;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.error.ModelLoadException;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.repository.ModelConfigFile.InvalidConfigException;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The models loaded from a repository folder ({@link RepositoryFolder}: {@code
 * <root>/<model>/<version>/model.onnx} with an optional {@code <root>/<model>/model.yaml}), and
 * their versions' states. Versions are positive integers; other folders are ignored with a
 * warning. What the folder holds now, loaded or not, is {@link #folder}'s to say.
 *
 * <p>Every version gets a visible state. One that cannot load — missing or corrupt file, a
 * non-tensor output, an invalid config — is FAILED with its reason, and the other models load and
 * serve regardless.
 *
 * <p>A model whose folder appears after the start is added when an operator loads it ({@link
 * #modelOrAdd}). An unloaded model stays listed, its versions UNAVAILABLE, while its folder is
 * there; one whose folder has gone is removed once nothing of it is left in memory ({@link
 * #removeIfGone}).
 *
 * <p>Thread-safe: request threads read it without locking; adding or removing a model takes the
 * repository's lock (then, to remove, the model's), loading or unloading a version its model's.
 */
public final class ModelRepository {
  private static final Logger log = LoggerFactory.getLogger(ModelRepository.class);

  /** The folder on disk, read as it is whenever asked. */
  private final RepositoryFolder folder;
  /** By name; written only under its own lock, by {@link #modelOrAdd}. */
  private final java.util.concurrent.ConcurrentSkipListMap<String, Model> models;
  private final List<java.util.function.Consumer<String>> modelListeners = new java.util.concurrent.CopyOnWriteArrayList<>();
  private final List<java.util.function.Consumer<String>> removedListeners = new java.util.concurrent.CopyOnWriteArrayList<>();
  private final StageRecorder.Factory recorders;
  private final VersionEvents events;

  private ModelRepository(
      RepositoryFolder folder,
      Map<String, Model> models,
      StageRecorder.Factory recorders,
      VersionEvents events) {
    this.folder = folder;
    this.events = events;
    this.models = new java.util.concurrent.ConcurrentSkipListMap<>(models);
    this.recorders = recorders;
  }

  /**
   * Scans {@code root} and loads every version it finds, each under its model's settings over
   * {@code defaults}. Returns once every version is READY or FAILED.
   *
   * @throws IOException when {@code root} is not a readable folder
   */
  public static ModelRepository load(Path root, ModelSettings defaults) throws IOException {
    return load(root, defaults, StageRecorder.Factory.NONE);
  }

  /**
   * As {@link #load(Path, ModelSettings)}, with each version's scheduler reporting its stage
   * timings to a recorder from {@code recorders}.
   */
  public static ModelRepository load(
      Path root, ModelSettings defaults, StageRecorder.Factory recorders) throws IOException {
    return load(root, defaults, recorders, LeftUnloaded.NONE);
  }

  /**
   * Which versions a repository leaves unloaded as it starts, though their folders are there: in a
   * fleet, those its operators unloaded on every replica (a replica that starts after loads none
   * of them, not even for a moment). Called once per version folder, on the loading thread.
   */
  @FunctionalInterface
  public interface LeftUnloaded {
    /** Every version loads. */
    LeftUnloaded NONE = (model, version) -> null;

    /**
     * Why version {@code version} of {@code model} is left UNAVAILABLE, in the words its
     * {@link ModelVersion#reason()} then gives; null to load it.
     */
    String why(String model, long version);
  }

  /**
   * As {@link #load(Path, ModelSettings, StageRecorder.Factory)}, each version for which {@code
   * leftUnloaded} gives a reason left UNAVAILABLE with it (loaded later as an unloaded one is).
   */
  public static ModelRepository load(
      Path root, ModelSettings defaults, StageRecorder.Factory recorders, LeftUnloaded leftUnloaded)
      throws IOException {
    return load(root, defaults, recorders, leftUnloaded, 1);
  }

  /**
   * As {@link #load(Path, ModelSettings, StageRecorder.Factory, LeftUnloaded)}, up to {@code
   * threads} models loading at once, each model's versions in turn on one thread (1: every model
   * on the calling thread, in name order). More threads bring a server with many models to serving
   * sooner where it has the cores (a session's graph optimization runs on one thread), and hold the
   * memory of as many loads in progress at once.
   *
   * @throws IllegalArgumentException for {@code threads} below 1
   */
  public static ModelRepository load(
      Path root, ModelSettings defaults, StageRecorder.Factory recorders, LeftUnloaded leftUnloaded, int threads)
      throws IOException {
    if (threads < 1) {
      throw new IllegalArgumentException("load threads: " + threads + " (expected: at least 1)");
    }
    if (!Files.isDirectory(root)) {
      throw new IOException("model repository " + root + " is not a folder");
    }
    RepositoryFolder disk = new RepositoryFolder(root, defaults);
    if (RepositoryFolder.list(root).stream().noneMatch(Files::isDirectory)) {
      log.warn("model repository {} holds no model folders (expected: {}/<model>/<version>/{})", root, root,
          RepositoryFolder.MODEL_FILE);
    }
    VersionEvents events = new VersionEvents();
    Map<String, Path> folders = new TreeMap<>();
    for (Path dir : RepositoryFolder.list(root)) {
      String name = dir.getFileName().toString();
      if (!Files.isDirectory(dir) || name.startsWith(".")) {
        continue;
      }
      if (!RepositoryFolder.isModelName(name)) {
        log.warn("ignoring {}: a model name may hold only letters, digits, '_', '.' and '-'", dir);
        continue;
      }
      folders.put(name, dir);
    }
    Map<String, Model> models = new TreeMap<>();
    if (threads == 1 || folders.size() < 2) {
      for (Map.Entry<String, Path> folder : folders.entrySet()) {
        models.put(folder.getKey(), loadModel(folder.getKey(), folder.getValue(), defaults, recorders, events, leftUnloaded));
      }
      return new ModelRepository(disk, models, recorders, events);
    }
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(
        Math.min(threads, folders.size()), DaemonThreads.numbered("modelgate-load"));
    Map<String, java.util.concurrent.Future<Model>> loading = new TreeMap<>();
    try {
      for (Map.Entry<String, Path> folder : folders.entrySet()) {
        loading.put(folder.getKey(), pool.submit(
            () -> loadModel(folder.getKey(), folder.getValue(), defaults, recorders, events, leftUnloaded)));
      }
      Throwable failed = null;
      for (Map.Entry<String, java.util.concurrent.Future<Model>> model : loading.entrySet()) {
        try {
          models.put(model.getKey(), model.getValue().get());
        } catch (java.util.concurrent.ExecutionException e) {
          failed = failed == null ? e.getCause() : failed;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          failed = failed == null ? e : failed;
          break;
        }
      }
      if (failed != null) {
        // What loaded goes too: the caller gets no repository to close.
        pool.shutdownNow();
        new ModelRepository(disk, models, recorders, events).close(java.time.Duration.ZERO);
        if (failed instanceof IOException io) {
          throw io;
        }
        if (failed instanceof RuntimeException runtime) {
          throw runtime;
        }
        if (failed instanceof Error error) {
          throw error;
        }
        throw new IOException("loading the model repository " + root + " was interrupted", failed);
      }
    } finally {
      pool.shutdown();
    }
    return new ModelRepository(disk, models, recorders, events);
  }

  private static Model loadModel(
      String name, Path dir, ModelSettings defaults, StageRecorder.Factory recorders, VersionEvents events,
      LeftUnloaded leftUnloaded) throws IOException {
    List<ModelVersion> versions = new ArrayList<>();
    for (Path versionDir : RepositoryFolder.list(dir)) {
      if (!Files.isDirectory(versionDir)) {
        continue;
      }
      String folder = versionDir.getFileName().toString();
      if (RepositoryFolder.MODEL_FOLDERS.contains(folder)) {
        continue;
      }
      if (!RepositoryFolder.isVersionName(folder)) {
        log.warn(
            "ignoring {}: a version folder is named by a positive integer, e.g. {}/1", versionDir, dir);
        continue;
      }
      versions.add(new ModelVersion(name, Long.parseLong(folder), versionDir, events));
    }
    if (versions.isEmpty()) {
      log.warn("model '{}' in {} has no version folders (expected: {}/1/{})", name, dir, dir, RepositoryFolder.MODEL_FILE);
    }
    ModelSettings settings;
    try {
      settings = ModelConfigFile.read(dir, defaults);
    } catch (InvalidConfigException e) {
      for (ModelVersion version : versions) {
        version.failed(e.getMessage());
        log.error("{} FAILED: {}", version.label(), e.getMessage());
      }
      return new Model(name, versions, events);
    }
    for (ModelVersion version : versions) {
      String why = leftUnloaded.why(name, version.number());
      if (why == null) {
        new VersionLoader(recorders).load(version, settings, null);
      } else {
        version.leftUnloaded(why);
        log.info("{} left unloaded: {}", version.label(), why);
      }
    }
    return new Model(name, versions, events);
  }

  /**
   * Loads version {@code number} of {@code modelName} from its folder, re-reading the model's
   * {@code model.yaml}: a new version, or one that was unloaded or failed (a copy that was, loaded
   * now from its own folder). A READY version is left as it is. Blocks while the session loads;
   * never call it on the request path.
   *
   * @throws InferenceException NOT_FOUND for a model the repository has no folder of, or a
   *     missing version folder, FAILED_PRECONDITION for a version that is loading or unloading
   */
  public ModelVersion loadVersion(String modelName, long number) {
    Path dir = folder.versionFolder(modelName, number);
    while (true) {
      Model model = modelOrAdd(modelName);
      synchronized (model) {
        if (model.removed()) {
          continue; // removed since it was looked up: look it up again (its folder may be back)
        }
        ModelVersion existing = model.version(number).orElse(null);
        if (existing != null && existing.isReady()) {
          return existing;
        }
        if (!Files.isDirectory(dir) && (existing == null || existing.isCopy())) {
          throw InferenceException.notFound(
              "model '" + modelName + "' has no version folder " + modelName + "/" + number
                  + " in the repository");
        }
        return load(model, number, existing, dir, 0, null);
      }
    }
  }

  /**
   * Loads the model file of version {@code of} of {@code modelName} a second time, as version
   * {@code number}, which no folder of the repository has: a rollout's control, the baseline's
   * model run at the candidate's share. A READY source is copied as it serves: the file it loaded
   * (a file changed on disk since fails the copy) under the settings it loaded with, whatever
   * {@code model.yaml} says now. It is served, counted and unloaded like any version, but
   * is never the model's latest READY version (a request naming no version, the default routing).
   * A READY copy of {@code of} is left as it is. Blocks while the session loads; never call it on
   * the request path.
   *
   * @throws InferenceException NOT_FOUND for an unknown model or source version,
   *     FAILED_PRECONDITION where {@code number} has a folder, is a version of its own, is loading
   *     or unloading, or is a copy of another version
   */
  public ModelVersion loadCopy(String modelName, long number, long of) {
    Model model = model(modelName).orElseThrow(() -> unknownModel(modelName));
    synchronized (model) {
      if (model.removed()) {
        throw unknownModel(modelName);
      }
      ModelVersion source = model.version(of).filter(v -> !v.isCopy()).orElseThrow(
          () -> InferenceException.notFound("model '" + modelName + "' has no version " + of + " to copy"));
      if (Files.isDirectory(folder.versionFolder(modelName, number))) {
        throw InferenceException.failedPrecondition(
            "model '" + modelName + "' has a version folder " + modelName + "/" + number
                + "; a copy takes a number that no folder has");
      }
      ModelVersion existing = model.version(number).orElse(null);
      if (existing != null && existing.isReady() && existing.copyOf() == of) {
        return existing;
      }
      if (existing != null && existing.isReady()) {
        throw InferenceException.failedPrecondition(
            existing.label() + " is READY" + (existing.isCopy() ? " as a copy of version " + existing.copyOf() : "")
                + "; unload it first");
      }
      // What the source loaded: the same file, and the settings it runs under (model.yaml may have
      // changed since); a copy of anything else would not be the source's model as it serves.
      return load(model, number, existing, source.directory(), of, source.loadedOrNull());
    }
  }

  /**
   * Loads a version that is not READY from {@code dir}, under {@code model}'s lock: with {@code
   * model.yaml}'s settings as they are now, or for a copy of a loaded {@code source}, with the
   * settings it loaded with, and only from the model file it loaded (by SHA-256).
   */
  private ModelVersion load(Model model, long number, ModelVersion existing, Path dir, long copyOf, LoadedVersion source) {
    if (existing != null && (existing.state() == VersionState.UNLOADING || existing.state() == VersionState.LOADING)) {
      throw InferenceException.failedPrecondition(existing.label() + " is " + existing.state());
    }
    ModelVersion version = existing != null ? existing : model.versionOrAdd(number, dir);
    version.loading(dir, copyOf);
    try {
      ModelSettings settings = source != null ? source.settings() : folder.settings(model.name());
      new VersionLoader(recorders).load(version, settings, source != null ? source.modelSha256() : null);
    } catch (InvalidConfigException e) {
      version.failed(e.getMessage());
      log.error("{} FAILED: {}", version.label(), e.getMessage());
    }
    return version;
  }

  /**
   * What {@link #reloadVersion} did.
   *
   * @param version the version, READY: with its new load, or as before where {@code failure} is set
   * @param failure why the new load failed, in the words of a version's reason (no server paths);
   *     null when it was swapped in
   */
  public record Reload(ModelVersion version, String failure) {
    public boolean reloaded() {
      return failure == null;
    }
  }

  /**
   * Loads a READY version again while it serves, from its folder with {@code model.yaml} as it is
   * now — an edited file or a replaced {@code model.onnx} — and swaps the new load in once it is
   * warmed up: requests routed to the version from then on run on the new load; those the old one
   * had accepted are completed on it ({@code drainTimeout}, as an unload drains), then its session
   * closes. The version stays READY throughout: a request is refused for the reload only where
   * its caller took the old load just before the swap and published to it after its drain began
   * ({@code UNAVAILABLE}); a caller that then takes the version's {@linkplain
   * ModelVersion#loadedOrNull current load} and publishes again loses nothing. The statistics
   * recorder is the version's, as before. Both loads are in memory until the old one has drained.
   * Where the new load fails, it is closed and the version serves as before ({@link
   * Reload#failure}). Blocks while the session loads and the old one drains; never call it on the
   * request path.
   *
   * @throws InferenceException NOT_FOUND for an unknown model or version, or a version whose folder
   *     has gone; FAILED_PRECONDITION for a version that is not READY (load it) or a copy
   */
  public Reload reloadVersion(String modelName, long number, Duration drainTimeout) {
    return reloadVersion(modelName, number, drainTimeout, ReloadCheck.NONE);
  }

  /** What a new load must pass before it replaces the one serving ({@link #reloadVersion}). */
  @FunctionalInterface
  public interface ReloadCheck {
    /** Every new load that loads is swapped in. */
    ReloadCheck NONE = (version, serving, fresh) -> null;

    /**
     * Why {@code fresh} (warmed up, its scheduler running, not serving) must not replace {@code
     * serving} as {@code version}'s load, in words for the operator; null to swap it in. Runs on the
     * reloading thread under the model's lock; may run requests on either load.
     */
    String refuses(ModelVersion version, LoadedVersion serving, LoadedVersion fresh);
  }

  /**
   * As {@link #reloadVersion(String, long, Duration)}, the new load swapped in only if {@code check}
   * lets it (else closed, the version serving as before, {@link Reload#failure} saying why).
   */
  public Reload reloadVersion(String modelName, long number, Duration drainTimeout, ReloadCheck check) {
    Model model = model(modelName).orElseThrow(() -> unknownModel(modelName));
    ModelVersion version;
    LoadedVersion serving;
    synchronized (model) {
      if (model.removed()) {
        throw unknownModel(modelName);
      }
      version = model.version(number).orElseThrow(
          () -> InferenceException.notFound("model '" + modelName + "' has no version " + number));
      serving = version.loaded();
      if (serving == null) {
        throw InferenceException.failedPrecondition(version.label() + " is " + version.state()
            + ", not READY: load it (a load reads its folder and model.yaml as they are now)");
      }
      if (version.isCopy()) {
        throw InferenceException.failedPrecondition(version.label() + " is a copy of version " + version.copyOf()
            + ", serving that version's file as it loaded; reload version " + version.copyOf() + " instead");
      }
      if (!Files.isDirectory(version.directory())) {
        throw InferenceException.notFound(version.label() + " has no version folder " + modelName + "/" + number
            + " in the repository any more; it serves as before");
      }
      LoadedVersion fresh;
      try {
        ModelSettings settings = folder.settings(modelName);
        fresh = new VersionLoader(recorders).open(version, settings, null, "loaded again");
      } catch (InvalidConfigException | ModelLoadException | RuntimeException e) {
        return notReloaded(version, VersionLoader.reason(e));
      } catch (Error e) {
        if (!VersionLoader.survivable(e)) {
          throw e;
        }
        return notReloaded(version, VersionLoader.reason(e));
      }
      String refused;
      try {
        refused = check.refuses(version, serving, fresh);
      } catch (RuntimeException e) {
        refused = "the check of the new load failed: " + e.getMessage();
      }
      if (refused == null && !version.reloaded(serving, fresh)) {
        refused = "it stopped serving with its load before while the new one loaded (now " + version.state() + ")";
      }
      if (refused != null) {
        fresh.scheduler().drain(Duration.ZERO);
        fresh.onnx().close();
        return notReloaded(version, refused);
      }
    }
    serving.scheduler().drain(drainTimeout);
    serving.onnx().close();
    log.info("{} reloaded: the load before drained and closed", version.label());
    return new Reload(version, null);
  }

  private static Reload notReloaded(ModelVersion version, String reason) {
    log.error("{} not loaded again, serving as before: {}", version.label(), reason);
    return new Reload(version, version.withoutServerPaths(reason));
  }

  /**
   * The version numbers of {@code modelName} that have a folder in the repository now, lowest
   * first; folders added since the server started are included.
   *
   * @throws InferenceException NOT_FOUND for a model the repository does not have
   */
  public List<Long> versionsOnDisk(String modelName) {
    model(modelName).orElseThrow(() -> unknownModel(modelName));
    try {
      return folder.versions(modelName);
    } catch (IOException e) {
      throw InferenceException.unavailable(
          "cannot list the versions of model '" + modelName + "' in the repository: " + e.getMessage());
    }
  }

  /**
   * Unloads a READY version: it stops accepting, completes what it has queued (or answers
   * UNAVAILABLE after {@code drainTimeout}), then its session closes. Blocks until done; never call
   * it on the request path.
   *
   * @throws InferenceException NOT_FOUND for an unknown model or version, FAILED_PRECONDITION for a
   *     version that is not READY
   */
  public ModelVersion unloadVersion(String modelName, long number, Duration drainTimeout) {
    return unloadVersion(modelName, number, drainTimeout, "it is being unloaded by an operator");
  }

  /**
   * As {@link #unloadVersion(String, long, Duration)}, requests refused meanwhile told {@code why}
   * the version is unloading.
   */
  public ModelVersion unloadVersion(String modelName, long number, Duration drainTimeout, String why) {
    Model model = model(modelName).orElseThrow(() -> unknownModel(modelName));
    ModelVersion version;
    LoadedVersion loaded;
    synchronized (model) {
      version =
          model
              .version(number)
              .orElseThrow(
                  () -> InferenceException.notFound("model '" + modelName + "' has no version " + number));
      loaded = version.loaded();
      if (loaded == null) {
        throw InferenceException.failedPrecondition(
            version.label() + " is " + version.state() + ", not READY");
      }
      version.unloading(loaded, why);
    }
    loaded.scheduler().drain(drainTimeout);
    LoadedVersion closing = version.unloaded();
    if (closing != null) {
      closing.onnx().close();
    }
    log.info("{} unloaded", version.label());
    return version;
  }

  private static InferenceException unknownModel(String name) {
    return InferenceException.notFound("unknown model '" + name + "'");
  }

  /**
   * The model {@code name}: one the repository has, or one whose folder has appeared in the
   * repository since the server started, added now with no version loaded (its versions are then
   * loaded one by one, as any version is); each listener of {@link #onModelAdded} has been told
   * of it before this returns. Takes the repository's lock only to add; never call it on the
   * request path.
   *
   * @throws InferenceException NOT_FOUND where the repository has no folder {@code name}, or the
   *     name is not a model's
   */
  public Model modelOrAdd(String name) {
    Model known = models.get(name);
    if (known != null) {
      return known;
    }
    synchronized (models) {
      known = models.get(name);
      if (known != null) {
        return known;
      }
      // The name's pattern keeps it one folder below the root (no separator, no leading dot).
      Path dir = folder.modelFolder(name);
      if (!RepositoryFolder.isModelName(name) || !Files.isDirectory(dir)) {
        throw InferenceException.notFound("unknown model '" + name + "': the repository has no folder " + name);
      }
      Model added = new Model(name, List.of(), events);
      models.put(name, added);
      log.info("model '{}' added: its folder {} has appeared in the repository since the server started", name, dir);
      tell(modelListeners, name, "added");
      return added;
    }
  }

  /**
   * Removes the model {@code name} once it has gone from the disk and from memory: its folder is no
   * longer in the repository, none of its versions is in memory (each UNAVAILABLE or FAILED), and
   * {@code forgotten} says that what the server keeps for its versions elsewhere has gone too. From
   * then on it is listed nowhere, a request naming it is NOT_FOUND as for any unknown model, and a
   * folder of that name appearing later is a model added anew ({@link #modelOrAdd}). Each listener
   * of {@link #onModelRemoved} has been told before this returns, under the repository's lock (as
   * for an added model). Reads the disk (one look for the folder, only once the rest holds); never
   * call it on the request path.
   *
   * @return whether the model was removed now
   */
  public boolean removeIfGone(String name, java.util.function.Predicate<Model> forgotten) {
    Model model = models.get(name);
    if (model == null || !model.allOut() || !forgotten.test(model) || !folderGone(name)) {
      return false;
    }
    synchronized (models) {
      synchronized (model) {
        // Checked again under the locks a load takes: no version of it loads meanwhile.
        if (models.get(name) != model || !model.allOut() || !forgotten.test(model) || !folderGone(name)) {
          return false;
        }
        model.markRemoved();
        models.remove(name);
      }
      log.info("model '{}' removed: its folder has gone from the repository and none of its versions is in memory"
          + " ({})", name, model.describeVersions());
      tell(removedListeners, name, "removed");
      return true;
    }
  }

  /** Tells each of {@code listeners} of {@code name}, one failing not keeping it from the others. */
  private static void tell(List<java.util.function.Consumer<String>> listeners, String name, String what) {
    for (java.util.function.Consumer<String> listener : listeners) {
      try {
        listener.accept(name);
      } catch (RuntimeException e) {
        log.error("model '{}': a listener of {} models failed", name, what, e);
      }
    }
  }

  /**
   * Calls {@code listener} with the name of each model removed ({@link #removeIfGone}), on the
   * thread removing it, under the repository's lock (so it must not add a model itself).
   */
  public void onModelRemoved(java.util.function.Consumer<String> listener) {
    removedListeners.add(listener);
  }

  /**
   * Calls {@code listener} with the name of each model added after the start, on the thread
   * adding it, under the repository's lock (so it must not add a model itself) and before the
   * model's versions load.
   */
  public void onModelAdded(java.util.function.Consumer<String> listener) {
    modelListeners.add(listener);
  }

  /**
   * The names of the model folders in the repository now that it has not added yet: models an
   * operator may load. Sorted.
   */
  public List<String> modelsNotAdded() {
    List<String> names = new ArrayList<>();
    try {
      for (Path dir : RepositoryFolder.list(folder.root())) {
        String name = dir.getFileName().toString();
        if (Files.isDirectory(dir) && RepositoryFolder.isModelName(name) && !models.containsKey(name)) {
          names.add(name);
        }
      }
    } catch (IOException e) {
      log.warn("cannot list the repository {}: {}", folder.root(), e.getMessage());
    }
    return names;
  }

  /** Where each version's scheduler records its stage timings. */
  public StageRecorder.Factory recorders() {
    return recorders;
  }

  /** The repository folder as it is on disk now (what a load reads). */
  public RepositoryFolder folder() {
    return folder;
  }

  public Path root() {
    return folder.root();
  }

  /**
   * Whether the repository has no folder named {@code name} (any more): the one look at the disk
   * that removal, {@code admin models} and the metrics share. Any thread; never on the request path.
   */
  public boolean folderGone(String name) {
    return folder.modelFolderGone(name);
  }

  /** Where version state changes are announced. */
  public VersionEvents events() {
    return events;
  }

  public Optional<Model> model(String name) {
    return Optional.ofNullable(models.get(name));
  }

  /** All models, by name. */
  public List<Model> models() {
    return List.copyOf(models.values());
  }

  /** Whether at least one version of one model is READY. */
  public boolean anyReady() {
    for (Model model : models.values()) {
      if (model.latestReady().isPresent()) {
        return true;
      }
    }
    return false;
  }

  /**
   * Unloads every version: {@link #drain} then {@link #closeSessions}. Blocks until done.
   */
  public void close(Duration drainTimeout) {
    drain(drainTimeout);
    closeSessions();
  }

  /**
   * Moves every READY version to UNLOADING and drains its scheduler: it accepts nothing new,
   * completes what it has queued, and answers UNAVAILABLE what is still queued once {@code
   * drainTimeout} has passed. Versions drain in parallel. Blocks until every accepted request is
   * answered and no execution runs.
   */
  public void drain(Duration drainTimeout) {
    long deadline = System.nanoTime() + drainTimeout.toNanos();
    List<LoadedVersion> draining = new ArrayList<>();
    for (Model model : models.values()) {
      for (ModelVersion version : model.versions()) {
        LoadedVersion loaded = version.loaded();
        if (loaded != null) {
          version.unloading(loaded, "the server is stopping");
          draining.add(loaded);
        }
      }
    }
    List<Thread> drainers = new ArrayList<>();
    for (LoadedVersion loaded : draining) {
      Duration remaining = Duration.ofNanos(Math.max(0, deadline - System.nanoTime()));
      Thread drainer = DaemonThreads.thread("modelgate-drain", () -> loaded.scheduler().drain(remaining));
      drainer.start();
      drainers.add(drainer);
    }
    boolean interrupted = false;
    for (Thread drainer : drainers) {
      while (drainer.isAlive()) {
        try {
          drainer.join();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  /** Closes the session of every drained version, which becomes UNAVAILABLE. Call after {@link #drain}. */
  public void closeSessions() {
    for (Model model : models.values()) {
      for (ModelVersion version : model.versions()) {
        LoadedVersion loaded = version.unloaded();
        if (loaded != null) {
          loaded.onnx().close();
          log.info("{} unloaded", version.label());
        }
      }
    }
  }
}

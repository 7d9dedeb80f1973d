package io.modelgate.runtime.repository;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.error.ModelLoadException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.BatchPolicy;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.execution.RingScheduler;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.onnx.OnnxBatchExecutor;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.repository.ModelConfigFile.InvalidConfigException;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.tensor.TensorSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The models in a repository folder, laid out as {@code <root>/<model>/<version>/model.onnx} with
 * an optional {@code <root>/<model>/model.yaml} (see {@link ModelConfigFile}). Versions are
 * positive integers; other folders are ignored with a warning.
 *
 * <p>Every version gets a visible state. One that cannot load — missing or corrupt file, a
 * non-tensor output, an invalid config — is FAILED with its reason, and the other models load and
 * serve regardless.
 *
 * <p>Thread-safe: loaded once, then read by request threads without locking.
 */
public final class ModelRepository {
  /** Folders of a model that are not versions: its golden set. */
  public static final java.util.Set<String> MODEL_FOLDERS = java.util.Set.of("golden");

  private static final Logger log = LoggerFactory.getLogger(ModelRepository.class);
  private static final Pattern MODEL_NAME = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.-]*");
  private static final Pattern VERSION = Pattern.compile("[1-9][0-9]{0,17}");
  public static final String MODEL_FILE = "model.onnx";

  private final Path root;
  private final Map<String, Model> models;
  private final ModelSettings defaults;
  private final StageRecorder.Factory recorders;
  private final VersionEvents events;

  private ModelRepository(
      Path root,
      Map<String, Model> models,
      ModelSettings defaults,
      StageRecorder.Factory recorders,
      VersionEvents events) {
    this.root = root;
    this.events = events;
    this.models = Collections.unmodifiableMap(models);
    this.defaults = defaults;
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
    if (!Files.isDirectory(root)) {
      throw new IOException("model repository " + root + " is not a folder");
    }
    if (list(root).stream().noneMatch(Files::isDirectory)) {
      log.warn("model repository {} holds no model folders (expected: {}/<model>/<version>/{})", root, root, MODEL_FILE);
    }
    VersionEvents events = new VersionEvents();
    Map<String, Model> models = new TreeMap<>();
    for (Path dir : list(root)) {
      String name = dir.getFileName().toString();
      if (!Files.isDirectory(dir) || name.startsWith(".")) {
        continue;
      }
      if (!MODEL_NAME.matcher(name).matches()) {
        log.warn("ignoring {}: a model name may hold only letters, digits, '_', '.' and '-'", dir);
        continue;
      }
      models.put(name, loadModel(name, dir, defaults, recorders, events));
    }
    return new ModelRepository(root, models, defaults, recorders, events);
  }

  private static Model loadModel(
      String name, Path dir, ModelSettings defaults, StageRecorder.Factory recorders, VersionEvents events)
      throws IOException {
    List<ModelVersion> versions = new ArrayList<>();
    for (Path versionDir : list(dir)) {
      if (!Files.isDirectory(versionDir)) {
        continue;
      }
      String folder = versionDir.getFileName().toString();
      if (MODEL_FOLDERS.contains(folder)) {
        continue;
      }
      if (!VERSION.matcher(folder).matches()) {
        log.warn(
            "ignoring {}: a version folder is named by a positive integer, e.g. {}/1", versionDir, dir);
        continue;
      }
      versions.add(new ModelVersion(name, Long.parseLong(folder), versionDir, events));
    }
    if (versions.isEmpty()) {
      log.warn("model '{}' in {} has no version folders (expected: {}/1/{})", name, dir, dir, MODEL_FILE);
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
      loadVersion(version, settings, recorders);
    }
    return new Model(name, versions, events);
  }

  private static void loadVersion(
      ModelVersion version, ModelSettings settings, StageRecorder.Factory recorders) {
    long start = System.nanoTime();
    OnnxModel onnx = null;
    try {
      onnx = OnnxModel.open(version.directory().resolve(MODEL_FILE), settings.session());
      ModelSignature signature = signature(onnx, settings);
      BatchPolicy policy;
      try {
        policy = BatchPolicy.of(signature.maxBatchSize(), settings.scheduler());
      } catch (IllegalArgumentException e) {
        throw new ModelLoadException(ModelConfigFile.FILE_NAME + ": " + e.getMessage());
      }
      ModelSettings effective = settings.withMaxBatchSize(signature.maxBatchSize());
      OnnxModel session = onnx;
      warmUp(version, onnx, signature);
      StageRecorder recorder = recorders.create(version.model(), version.number());
      LoadedVersion[] serving = new LoadedVersion[1];
      RingScheduler scheduler =
          new RingScheduler(
              version.label(),
              settings.scheduler(),
              policy,
              () -> new OnnxBatchExecutor(session, signature, version.label()),
              recorder,
              error -> stoppedServing(version, serving[0], error));
      serving[0] = new LoadedVersion(signature, scheduler, effective, policy, recorder, onnx);
      version.ready(serving[0]);
      log.info(
          "{} READY in {} ms on {}: inputs {}, outputs {}, max_batch_size {}, max_queue_delay_us {}",
          version.label(),
          (System.nanoTime() - start) / 1_000_000,
          onnx.provider().configName(),
          signature.inputs(),
          signature.outputs(),
          signature.maxBatchSize(),
          settings.scheduler().maxQueueDelayMicros());
    } catch (ModelLoadException e) {
      if (onnx != null) {
        onnx.close();
      }
      version.failed(e.getMessage());
      log.error("{} FAILED: {}", version.label(), e.getMessage());
    } catch (RuntimeException e) {
      if (onnx != null) {
        onnx.close();
      }
      String reason = "unexpected error while loading: " + e;
      version.failed(reason);
      log.error("{} FAILED: {}", version.label(), reason, e);
    }
  }

  /**
   * A READY version's scheduler failed and answered its queue: the version becomes FAILED with the
   * reason (requests to it get UNAVAILABLE naming it) and its session closes. Runs on the failed
   * batcher thread; loading the version again through the admin API brings it back.
   */
  private static void stoppedServing(ModelVersion version, LoadedVersion loaded, Throwable error) {
    String reason = "stopped serving after an internal failure of its batcher: " + error;
    if (version.failedWhileServing(loaded, reason)) {
      log.error("{} FAILED: {}", version.label(), reason);
      if (loaded != null) {
        loaded.onnx().close();
      }
    }
  }

  /**
   * Runs one request of zeros (empty strings for BYTES), every variable dimension 1, so that the
   * first client request does not pay for ONNX Runtime's first-run allocations. A model that
   * rejects zeros still loads; the warning says so.
   */
  private static void warmUp(ModelVersion version, OnnxModel onnx, ModelSignature signature) {
    ModelInferRequest.Builder request = ModelInferRequest.newBuilder();
    for (TensorSpec input : signature.inputs()) {
      ModelInferRequest.InferInputTensor.Builder tensor =
          request.addInputsBuilder().setName(input.name()).setDatatype(input.dataType().wireName());
      long elements = 1;
      for (long dim : input.shape()) {
        long size = dim < 0 ? 1 : dim;
        tensor.addShape(size);
        elements *= size;
      }
      int bytes =
          (int) Math.min(Integer.MAX_VALUE, elements * (input.dataType().isVariableSize() ? 4 : input.dataType().elementSize()));
      request.addRawInputContents(ByteString.copyFrom(new byte[bytes]));
    }
    CompletableFuture<InferenceResult> done = new CompletableFuture<>();
    InferenceCallback callback = InferenceCallback.completing(done);
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(onnx, signature, version.label())) {
      DecodedRequest decoded = RequestDecoder.decode(request.build(), signature);
      executor.execute(Batch.of(InferenceRequest.of(decoded, System.nanoTime(), null, callback)));
      done.join();
    } catch (RuntimeException e) {
      Throwable cause = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
      log.warn("{}: warm-up with zeros failed, serving anyway: {}", version.label(), cause.getMessage());
    }
  }

  /**
   * The signature with batch axes and {@code max_batch_size} resolved against what the model
   * allows.
   */
  static ModelSignature signature(OnnxModel onnx, ModelSettings settings)
      throws ModelLoadException {
    for (String name : settings.batchAxes().keySet()) {
      if (find(onnx.inputs(), name) < 0 && find(onnx.outputs(), name) < 0) {
        throw new ModelLoadException(
            ModelConfigFile.FILE_NAME
                + ": batch_axes: unknown tensor '"
                + name
                + "' (expected one of: "
                + names(onnx.inputs())
                + ", "
                + names(onnx.outputs())
                + ")");
      }
    }
    int[] inputAxes = axes(onnx.inputs(), settings.batchAxes());
    int[] outputAxes = axes(onnx.outputs(), settings.batchAxes());
    String notBatchable = notBatchableReason(onnx.inputs(), inputAxes, onnx.outputs(), outputAxes);
    Integer configured = settings.maxBatchSize();
    int maxBatchSize;
    if (configured == null) {
      maxBatchSize = notBatchable == null ? ModelSettings.DEFAULT_MAX_BATCH_SIZE : 0;
    } else if (configured > 0 && notBatchable != null) {
      throw new ModelLoadException(
          ModelConfigFile.FILE_NAME
              + ": max_batch_size: "
              + configured
              + ", but "
              + notBatchable
              + " (expected: max_batch_size 0 for this model, or batch_axes that name a"
              + " variable dimension)");
    } else {
      maxBatchSize = configured;
    }
    try {
      return new ModelSignature(onnx.inputs(), onnx.outputs(), maxBatchSize, inputAxes, outputAxes);
    } catch (IllegalArgumentException e) {
      throw new ModelLoadException(ModelConfigFile.FILE_NAME + ": batch_axes: " + e.getMessage());
    }
  }

  private static int[] axes(List<TensorSpec> specs, Map<String, Integer> configured) {
    int[] axes = new int[specs.size()];
    for (int i = 0; i < axes.length; i++) {
      TensorSpec spec = specs.get(i);
      Integer axis = configured.get(spec.name());
      axes[i] = axis != null ? axis : spec.rank() == 0 ? ModelSignature.NO_AXIS : 0;
    }
    return axes;
  }

  private static int find(List<TensorSpec> specs, String name) {
    for (int i = 0; i < specs.size(); i++) {
      if (specs.get(i).name().equals(name)) {
        return i;
      }
    }
    return -1;
  }

  private static String names(List<TensorSpec> specs) {
    return specs.stream().map(TensorSpec::name).collect(java.util.stream.Collectors.joining(", "));
  }

  /** Why the tensors cannot batch along their axes, or null when they can. */
  private static String notBatchableReason(
      List<TensorSpec> inputs, int[] inputAxes, List<TensorSpec> outputs, int[] outputAxes) {
    boolean anyAxis = false;
    for (int i = 0; i < inputs.size(); i++) {
      TensorSpec input = inputs.get(i);
      int axis = inputAxes[i];
      if (axis == ModelSignature.NO_AXIS) {
        continue;
      }
      anyAxis = true;
      if (axis >= input.rank()) {
        return "input '" + input.name() + "' has shape " + input.shapeText() + ", with no axis " + axis;
      }
      if (input.dim(axis) != -1) {
        return "input '"
            + input.name()
            + "' has shape "
            + input.shapeText()
            + ", whose batch axis "
            + axis
            + " is not variable (-1)";
      }
    }
    if (!anyAxis) {
      return "no input has a batch axis";
    }
    for (int i = 0; i < outputs.size(); i++) {
      if (outputAxes[i] != ModelSignature.NO_AXIS && outputAxes[i] >= outputs.get(i).rank()) {
        return "output '"
            + outputs.get(i).name()
            + "' has shape "
            + outputs.get(i).shapeText()
            + ", with no axis "
            + outputAxes[i];
      }
    }
    return null;
  }

  private static List<Path> list(Path dir) throws IOException {
    try (Stream<Path> entries = Files.list(dir)) {
      return entries.sorted().toList();
    }
  }

  /**
   * Loads version {@code number} of {@code modelName} from its folder, re-reading the model's
   * {@code model.yaml}: a new version, or one that was unloaded or failed. A READY version is left
   * as it is. Blocks while the session loads; never call it on the request path.
   *
   * @throws InferenceException NOT_FOUND for an unknown model or a missing folder,
   *     FAILED_PRECONDITION for a version that is loading or unloading
   */
  public ModelVersion loadVersion(String modelName, long number) {
    Model model = model(modelName).orElseThrow(() -> unknownModel(modelName));
    Path dir = root.resolve(modelName).resolve(Long.toString(number));
    synchronized (model) {
      ModelVersion existing = model.version(number).orElse(null);
      if (existing == null && !Files.isDirectory(dir)) {
        throw InferenceException.notFound(
            "model '" + modelName + "' has no version folder " + modelName + "/" + number
                + " in the repository");
      }
      ModelVersion version = existing != null ? existing : model.versionOrAdd(number, dir);
      VersionState state = version.state();
      if (state == VersionState.READY) {
        return version;
      }
      if (state == VersionState.UNLOADING || (state == VersionState.LOADING && existing != null)) {
        throw InferenceException.failedPrecondition(version.label() + " is " + state);
      }
      version.loading();
      try {
        loadVersion(version, ModelConfigFile.read(root.resolve(modelName), defaults), recorders);
      } catch (InvalidConfigException e) {
        version.failed(e.getMessage());
        log.error("{} FAILED: {}", version.label(), e.getMessage());
      }
      return version;
    }
  }

  /**
   * The version numbers of {@code modelName} that have a folder in the repository now, lowest
   * first; folders added since the server started are included.
   *
   * @throws InferenceException NOT_FOUND for a model the repository does not have
   */
  public List<Long> versionsOnDisk(String modelName) {
    model(modelName).orElseThrow(() -> unknownModel(modelName));
    List<Long> numbers = new ArrayList<>();
    try {
      for (Path dir : list(root.resolve(modelName))) {
        String folder = dir.getFileName().toString();
        if (Files.isDirectory(dir) && VERSION.matcher(folder).matches()) {
          numbers.add(Long.parseLong(folder));
        }
      }
    } catch (IOException e) {
      throw InferenceException.unavailable(
          "cannot list the versions of model '" + modelName + "' in the repository: " + e.getMessage());
    }
    numbers.sort(null);
    return numbers;
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
      version.unloading(loaded, "it is being unloaded by an operator");
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

  public Path root() {
    return root;
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
      Thread drainer = new Thread(() -> loaded.scheduler().drain(remaining), "modelgate-drain");
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

package io.modelgate.runtime.repository;

import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.ExecutionProvider;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.tensor.ModelSignature;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import org.yaml.snakeyaml.error.YAMLException;

/**
 * Reads a model's optional {@code model.yaml}. Keys (all optional):
 *
 * <ul>
 *   <li>{@code max_batch_size}: 0 if the model does not batch; otherwise the most rows one
 *       execution may carry. Default: {@value ModelSettings#DEFAULT_MAX_BATCH_SIZE} when every
 *       input batches along a variable dimension, else 0.
 *   <li>{@code max_queue_delay_us}: how long the oldest request of a forming batch may wait for
 *       more, in microseconds. Default 0: run whatever is queued at once.
 *   <li>{@code preferred_batch_sizes}: batch sizes, in rows, to run as soon as they can be formed.
 *   <li>{@code batch_axes}: a mapping from input or output name to its batch axis, or {@code none}
 *       for a tensor without one (which must then be equal across a batch). Default: axis 0, and
 *       none for scalars.
 *   <li>{@code queue_capacity}: requests that may wait per version; more are refused with
 *       RESOURCE_EXHAUSTED. Rounded up to a power of two. Default from the server.
 *   <li>{@code instances}: executor threads per version. Default from the server.
 *   <li>{@code reserved_instances}: executors kept for tenants without a backlog while another
 *       tenant has one (see {@link SchedulerSettings#reservedInstances()}). Default from the
 *       server (0).
 *   <li>{@code execution_provider}: {@code cpu} or {@code cuda}; {@code device_id} for cuda;
 *       {@code allow_cpu_fallback}: run on the CPU when CUDA is not available instead of failing;
 *       {@code cuda_tf32}: let CUDA do FP32 matrix products in TF32 (default false: full FP32).
 *   <li>{@code intra_op_threads}, {@code inter_op_threads}: ONNX Runtime threads per session.
 *       Default from the server.
 *   <li>{@code large_batch_rows}, {@code large_batch_intra_op_threads} (together, cpu only): batches
 *       of at least that many rows may run on a second session of the model with that many
 *       intra-op threads (more than {@code intra_op_threads}), while it measures faster a row than
 *       the first; smaller ones on the first. Default: off.
 *   <li>{@code payload_log}: a mapping: {@code sample_rate} (0 to 1, required), {@code tensors}
 *       (the tensors whose data is logged; default all), {@code drop} (tensors never logged),
 *       {@code max_file_kb} (default 65536), {@code max_files} (default 10). See {@link
 *       PayloadLogSettings}.
 *   <li>{@code drift}: a mapping: {@code sample_rate} (0 to 1, required), {@code reference}
 *       ({@code golden} or {@code requests}; default golden when the model has a golden set),
 *       {@code reference_requests} (default 1000), {@code window} ({@code 1m}, {@code 5m} or {@code
 *       15m}; default 5m), {@code ks_threshold} (default 0.2), {@code psi_threshold} (default 0.2),
 *       {@code max_features} (default 32), {@code min_samples} (default 100). See {@link
 *       DriftSettings}.
 * </ul>
 *
 * Unknown keys are errors, so that a misspelt key is not silently ignored.
 */
public final class ModelConfigFile {
  public static final String FILE_NAME = "model.yaml";

  static final Set<String> KEYS =
      Set.of(
          "max_batch_size",
          "max_queue_delay_us",
          "preferred_batch_sizes",
          "batch_axes",
          "queue_capacity",
          "instances",
          "reserved_instances",
          "execution_provider",
          "device_id",
          "allow_cpu_fallback",
          "cuda_tf32",
          "intra_op_threads",
          "inter_op_threads",
          "large_batch_rows",
          "large_batch_intra_op_threads",
          "payload_log",
          "drift");

  static final Set<String> DRIFT_KEYS = Set.of("sample_rate", "reference", "reference_requests", "window",
      "ks_threshold", "psi_threshold", "max_features", "min_samples");

  static final Set<String> PAYLOAD_LOG_KEYS = Set.of("sample_rate", "tensors", "drop", "max_file_kb", "max_files");

  private ModelConfigFile() {}

  /**
   * The settings for the model in {@code modelDir}: its {@code model.yaml} over {@code defaults},
   * or {@code defaults} when there is no file.
   *
   * @throws InvalidConfigException with a message naming the file, the key, the value and what was
   *     expected
   */
  public static ModelSettings read(Path modelDir, ModelSettings defaults)
      throws InvalidConfigException {
    Path file = modelDir.resolve(FILE_NAME);
    if (!Files.exists(file)) {
      return defaults;
    }
    Object document;
    try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      document = new Yaml(new SafeConstructor(new LoaderOptions())).load(reader);
    } catch (IOException | YAMLException e) {
      throw new InvalidConfigException(FILE_NAME + ": cannot be read as YAML: " + e.getMessage());
    }
    if (document == null) {
      return defaults;
    }
    if (!(document instanceof Map)) {
      throw new InvalidConfigException(
          FILE_NAME + ": expected a mapping of keys to values, got " + describe(document));
    }
    return parse((Map<?, ?>) document, defaults);
  }

  static ModelSettings parse(Map<?, ?> values, ModelSettings defaults)
      throws InvalidConfigException {
    for (Object key : values.keySet()) {
      if (!KEYS.contains(String.valueOf(key))) {
        throw new InvalidConfigException(
            FILE_NAME + ": unknown key '" + key + "' (expected one of: " + new TreeSet<>(KEYS) + ")");
      }
    }
    try {
      Integer maxBatchSize =
          values.containsKey("max_batch_size")
              ? Integer.valueOf(integer(values, "max_batch_size", 0))
              : defaults.maxBatchSize();
      SessionSettings base = defaults.session();
      SessionSettings session =
          new SessionSettings(
              integerOr(values, "intra_op_threads", 0, base.intraOpThreads()),
              integerOr(values, "inter_op_threads", 0, base.interOpThreads()),
              values.containsKey("execution_provider") ? provider(values) : base.provider(),
              integerOr(values, "device_id", 0, base.deviceId()),
              values.containsKey("allow_cpu_fallback")
                  ? bool(values, "allow_cpu_fallback")
                  : base.allowCpuFallback(),
              integerOr(values, "large_batch_rows", 0, base.largeBatchRows()),
              integerOr(values, "large_batch_intra_op_threads", 0, base.largeBatchIntraOpThreads()),
              values.containsKey("cuda_tf32") ? bool(values, "cuda_tf32") : base.cudaTf32());
      SchedulerSettings scheduler =
          new SchedulerSettings(
              integerOr(values, "queue_capacity", 1, defaults.scheduler().queueCapacity()),
              integerOr(values, "instances", 1, defaults.scheduler().instances()),
              values.containsKey("max_queue_delay_us")
                  ? integer(values, "max_queue_delay_us", 0)
                  : defaults.scheduler().maxQueueDelayMicros(),
              values.containsKey("preferred_batch_sizes")
                  ? integers(values, "preferred_batch_sizes")
                  : defaults.scheduler().preferredBatchSizes(),
              integerOr(values, "reserved_instances", 0, defaults.scheduler().reservedInstances()));
      Map<String, Integer> axes =
          values.containsKey("batch_axes") ? axes(values) : defaults.batchAxes();
      PayloadLogSettings payloadLog =
          values.containsKey("payload_log") ? payloadLog(values.get("payload_log")) : defaults.payloadLog();
      DriftSettings drift = values.containsKey("drift") ? drift(values.get("drift")) : defaults.drift();
      return new ModelSettings(maxBatchSize, session, scheduler, axes, payloadLog, drift);
    } catch (IllegalArgumentException e) {
      throw new InvalidConfigException(FILE_NAME + ": " + e.getMessage());
    }
  }

  private static ExecutionProvider provider(Map<?, ?> values) throws InvalidConfigException {
    Object value = values.get("execution_provider");
    return ExecutionProvider.fromConfigName(String.valueOf(value))
        .orElseThrow(
            () ->
                new InvalidConfigException(
                    FILE_NAME
                        + ": execution_provider: "
                        + describe(value)
                        + " (expected: cpu or cuda)"));
  }

  private static PayloadLogSettings payloadLog(Object value) throws InvalidConfigException {
    if (!(value instanceof Map<?, ?> map)) {
      throw new InvalidConfigException(FILE_NAME + ": payload_log: expected a mapping, got " + describe(value));
    }
    for (Object key : map.keySet()) {
      if (!PAYLOAD_LOG_KEYS.contains(String.valueOf(key))) {
        throw new InvalidConfigException(FILE_NAME + ": payload_log: unknown key '" + key + "' (expected one of: "
            + new TreeSet<>(PAYLOAD_LOG_KEYS) + ")");
      }
    }
    Object rate = map.get("sample_rate");
    if (!(rate instanceof Number)) {
      throw new InvalidConfigException(FILE_NAME + ": payload_log.sample_rate: expected a number from 0 to 1, got "
          + (rate == null ? "nothing" : describe(rate)));
    }
    return new PayloadLogSettings(
        ((Number) rate).doubleValue(),
        names(map, "tensors"),
        names(map, "drop"),
        map.containsKey("max_file_kb") ? 1024L * integer(map, "max_file_kb", 1) : PayloadLogSettings.DEFAULT_MAX_FILE_BYTES,
        map.containsKey("max_files") ? integer(map, "max_files", 1) : PayloadLogSettings.DEFAULT_MAX_FILES);
  }

  private static DriftSettings drift(Object value) throws InvalidConfigException {
    if (!(value instanceof Map<?, ?> map)) {
      throw new InvalidConfigException(FILE_NAME + ": drift: expected a mapping, got " + describe(value));
    }
    for (Object key : map.keySet()) {
      if (!DRIFT_KEYS.contains(String.valueOf(key))) {
        throw new InvalidConfigException(FILE_NAME + ": drift: unknown key '" + key + "' (expected one of: "
            + new TreeSet<>(DRIFT_KEYS) + ")");
      }
    }
    DriftSettings.Reference reference = null;
    if (map.containsKey("reference")) {
      Object named = map.get("reference");
      reference = java.util.Arrays.stream(DriftSettings.Reference.values())
          .filter(r -> r.configName().equals(String.valueOf(named)))
          .findFirst()
          .orElseThrow(() -> new InvalidConfigException(
              FILE_NAME + ": drift.reference: " + describe(named) + " (expected: golden or requests)"));
    }
    Object window = map.containsKey("window") ? map.get("window") : DriftSettings.DEFAULT_WINDOW;
    return new DriftSettings(
        number(map, "drift.sample_rate", "sample_rate", null),
        reference,
        map.containsKey("reference_requests") ? integer(map, "reference_requests", 1) : DriftSettings.DEFAULT_REFERENCE_REQUESTS,
        String.valueOf(window),
        number(map, "drift.ks_threshold", "ks_threshold", DriftSettings.DEFAULT_KS_THRESHOLD),
        number(map, "drift.psi_threshold", "psi_threshold", DriftSettings.DEFAULT_PSI_THRESHOLD),
        map.containsKey("max_features") ? integer(map, "max_features", 0) : DriftSettings.DEFAULT_MAX_FEATURES,
        map.containsKey("min_samples") ? integer(map, "min_samples", 1) : DriftSettings.DEFAULT_MIN_SAMPLES);
  }

  /** A number under {@code key}; {@code fallback} when absent (null: required). */
  private static double number(Map<?, ?> map, String label, String key, Double fallback) throws InvalidConfigException {
    Object value = map.get(key);
    if (value == null && fallback != null && !map.containsKey(key)) {
      return fallback;
    }
    if (!(value instanceof Number)) {
      throw new InvalidConfigException(FILE_NAME + ": " + label + ": expected a number, got "
          + (value == null ? "nothing" : describe(value)));
    }
    return ((Number) value).doubleValue();
  }

  private static List<String> names(Map<?, ?> values, String key) throws InvalidConfigException {
    Object value = values.get(key);
    if (value == null) {
      return List.of();
    }
    if (!(value instanceof List<?> list)) {
      throw new InvalidConfigException(FILE_NAME + ": payload_log." + key + ": expected a list of tensor names, got " + describe(value));
    }
    List<String> names = new ArrayList<>();
    for (Object name : list) {
      names.add(String.valueOf(name));
    }
    return names;
  }

  private static boolean bool(Map<?, ?> values, String key) throws InvalidConfigException {
    Object value = values.get(key);
    if (!(value instanceof Boolean)) {
      throw new InvalidConfigException(
          FILE_NAME + ": " + key + ": " + describe(value) + " (expected: true or false)");
    }
    return (Boolean) value;
  }

  private static List<Integer> integers(Map<?, ?> values, String key)
      throws InvalidConfigException {
    Object value = values.get(key);
    if (value instanceof List) {
      List<Integer> sizes = new ArrayList<>();
      for (Object element : (List<?>) value) {
        if (!(element instanceof Integer)) {
          sizes = null;
          break;
        }
        sizes.add((Integer) element);
      }
      if (sizes != null) {
        return sizes;
      }
    }
    throw new InvalidConfigException(
        FILE_NAME + ": " + key + ": " + describe(value) + " (expected: a list of integers, e.g. [8, 16])");
  }

  private static Map<String, Integer> axes(Map<?, ?> values) throws InvalidConfigException {
    Object value = values.get("batch_axes");
    if (!(value instanceof Map)) {
      throw new InvalidConfigException(
          FILE_NAME
              + ": batch_axes: "
              + describe(value)
              + " (expected: a mapping of tensor names to an axis or none, e.g. {state: 1})");
    }
    Map<String, Integer> axes = new LinkedHashMap<>();
    for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
      Object axis = entry.getValue();
      if ("none".equals(axis)) {
        axes.put(String.valueOf(entry.getKey()), ModelSignature.NO_AXIS);
      } else if (axis instanceof Integer && (Integer) axis >= 0) {
        axes.put(String.valueOf(entry.getKey()), (Integer) axis);
      } else {
        throw new InvalidConfigException(
            FILE_NAME
                + ": batch_axes: "
                + entry.getKey()
                + ": "
                + describe(axis)
                + " (expected: an axis >= 0, or none)");
      }
    }
    return axes;
  }

  private static int integerOr(Map<?, ?> values, String key, int min, int fallback)
      throws InvalidConfigException {
    return values.containsKey(key) ? integer(values, key, min) : fallback;
  }

  private static int integer(Map<?, ?> values, String key, int min)
      throws InvalidConfigException {
    Object value = values.get(key);
    if (!(value instanceof Integer)) {
      throw new InvalidConfigException(
          FILE_NAME + ": " + key + ": " + describe(value) + " (expected: an integer >= " + min + ")");
    }
    return (Integer) value;
  }

  private static String describe(Object value) {
    if (value == null) {
      return "nothing";
    }
    if (value instanceof String) {
      return "'" + value + "'";
    }
    if (value instanceof List) {
      return "a list " + value;
    }
    if (value instanceof Map) {
      return "a mapping " + value;
    }
    return String.valueOf(value);
  }

  /** A {@code model.yaml} that cannot be used; the message says why. */
  public static final class InvalidConfigException extends Exception {
    private static final long serialVersionUID = 1L;

    public InvalidConfigException(String message) {
      super(message);
    }
  }
}

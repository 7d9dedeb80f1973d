package io.modelgate.runtime.repository;

import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import org.yaml.snakeyaml.error.YAMLException;

/**
 * Reads a model's optional {@code model.yaml}. Keys:
 *
 * <ul>
 *   <li>{@code max_batch_size}: 0 if the model does not batch; otherwise the most rows per
 *       request along the first dimension. Default: {@value ModelSettings#DEFAULT_MAX_BATCH_SIZE}
 *       when every input's first dimension is variable, else 0.
 *   <li>{@code queue_capacity}: requests that may wait per version; more are refused with
 *       RESOURCE_EXHAUSTED. Rounded up to a power of two. Default from the server.
 *   <li>{@code instances}: executor threads per version. Default from the server.
 *   <li>{@code intra_op_threads}, {@code inter_op_threads}: ONNX Runtime threads per session.
 *       Default from the server.
 * </ul>
 *
 * Unknown keys are errors, so that a misspelt key is not silently ignored.
 */
public final class ModelConfigFile {
  public static final String FILE_NAME = "model.yaml";

  static final Set<String> KEYS =
      Set.of(
          "max_batch_size", "queue_capacity", "instances", "intra_op_threads", "inter_op_threads");

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
      SessionSettings session =
          new SessionSettings(
              integerOr(values, "intra_op_threads", 0, defaults.session().intraOpThreads()),
              integerOr(values, "inter_op_threads", 0, defaults.session().interOpThreads()));
      SchedulerSettings scheduler =
          new SchedulerSettings(
              integerOr(values, "queue_capacity", 1, defaults.scheduler().queueCapacity()),
              integerOr(values, "instances", 1, defaults.scheduler().instances()));
      return new ModelSettings(maxBatchSize, session, scheduler);
    } catch (IllegalArgumentException e) {
      throw new InvalidConfigException(FILE_NAME + ": " + e.getMessage());
    }
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

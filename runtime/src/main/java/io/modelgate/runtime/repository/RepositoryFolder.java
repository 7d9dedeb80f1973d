package io.modelgate.runtime.repository;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.error.ModelLoadException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The repository folder as it is on disk, read whenever asked (nothing is kept): its layout —
 * {@code <root>/<model>/<version>/model.onnx}, an optional {@code <root>/<model>/model.yaml}
 * ({@link ModelConfigFile}) and a model's golden set in {@code <root>/<model>/golden/} — which
 * model and version folders it holds now, the settings a model's {@code model.yaml} gives over
 * the server's defaults, and what the files hash to. What a load reads, and what the repository
 * poll and a fleet's replicas compare with what serves; {@link ModelRepository} holds what was
 * loaded from it.
 *
 * <p>Immutable; any thread. The names' checks are pure; every other method reads the disk, so
 * none is for the request path.
 */
public final class RepositoryFolder {
  /** A version's model file. */
  public static final String MODEL_FILE = "model.onnx";
  /** Folders of a model that are not versions: its golden set. */
  public static final Set<String> MODEL_FOLDERS = Set.of("golden");
  /** What {@link #configSha256} answers for a model without a {@code model.yaml}. */
  public static final String NO_CONFIG = "none";

  private static final Pattern MODEL_NAME = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.-]*");
  private static final Pattern VERSION = Pattern.compile("[1-9][0-9]{0,17}");

  private final Path root;
  private final ModelSettings defaults;

  /** The folder {@code root}, whose models' settings are their {@code model.yaml} over {@code defaults}. */
  public RepositoryFolder(Path root, ModelSettings defaults) {
    this.root = root;
    this.defaults = defaults;
  }

  public Path root() {
    return root;
  }

  /**
   * Whether {@code name} may name a model: letters, digits, '_', '.' and '-', not starting with a
   * dot — which keeps it one folder below the root (no separator, no hidden folder).
   */
  public static boolean isModelName(String name) {
    return MODEL_NAME.matcher(name).matches();
  }

  /** Whether {@code folder} names a version: a positive integer without leading zeros, of at most 18 digits. */
  static boolean isVersionName(String folder) {
    return VERSION.matcher(folder).matches();
  }

  /** The folder of {@code model} (there or not). */
  public Path modelFolder(String model) {
    return root.resolve(model);
  }

  /** The folder of version {@code number} of {@code model} (there or not). */
  public Path versionFolder(String model, long number) {
    return root.resolve(model).resolve(Long.toString(number));
  }

  /** The entries of {@code dir}, in name order. */
  static List<Path> list(Path dir) throws IOException {
    try (Stream<Path> entries = Files.list(dir)) {
      return entries.sorted().toList();
    }
  }

  /**
   * The numbers of {@code model}'s version folders now, lowest first.
   *
   * @throws IOException where its folder cannot be listed (or has gone: {@link java.nio.file.NoSuchFileException})
   */
  public List<Long> versions(String model) throws IOException {
    return versionFolders(modelFolder(model));
  }

  private static List<Long> versionFolders(Path modelDir) throws IOException {
    List<Long> numbers = new ArrayList<>();
    for (Path dir : list(modelDir)) {
      String folder = dir.getFileName().toString();
      if (Files.isDirectory(dir) && isVersionName(folder)) {
        numbers.add(Long.parseLong(folder));
      }
    }
    numbers.sort(null);
    return numbers;
  }

  /**
   * Every model folder now (a name that is not a model's left out), each with the numbers of its
   * version folders, lowest first: what a poll of the disk compares from one look to the next.
   *
   * @throws IOException when the folder, or a model folder in it, cannot be listed (a model folder
   *     gone between the two looks is left out)
   */
  public SortedMap<String, List<Long>> onDisk() throws IOException {
    return onDisk(root);
  }

  /** As {@link #onDisk()}, of the repository folder {@code root}. */
  public static SortedMap<String, List<Long>> onDisk(Path root) throws IOException {
    SortedMap<String, List<Long>> found = new TreeMap<>();
    for (Path dir : list(root)) {
      String name = dir.getFileName().toString();
      if (!Files.isDirectory(dir) || !isModelName(name)) {
        continue;
      }
      try {
        found.put(name, versionFolders(dir));
      } catch (java.nio.file.NoSuchFileException gone) {
        // Removed since the root was listed: as if it had not been there.
      }
    }
    return found;
  }

  /** Whether {@code model} has no folder now. */
  public boolean modelFolderGone(String model) {
    return !Files.isDirectory(modelFolder(model));
  }

  /**
   * The SHA-256 (hex) of version {@code number}'s model file now, as a load would find it. Reads
   * the whole file.
   *
   * @throws InferenceException UNAVAILABLE where the file is missing or cannot be read
   */
  public String fileSha256(String model, long number) {
    try {
      return VersionLoader.sha256(versionFolder(model, number).resolve(MODEL_FILE));
    } catch (ModelLoadException e) {
      throw InferenceException.unavailable("model '" + model + "' version " + number + ": " + MODEL_FILE
          + " cannot be read");
    }
  }

  /**
   * The SHA-256 (hex) of {@code model}'s {@code model.yaml} now, or {@link #NO_CONFIG} where it
   * has none.
   *
   * @throws InferenceException UNAVAILABLE where the file is there but cannot be read
   */
  public String configSha256(String model) {
    Path file = modelFolder(model).resolve(ModelConfigFile.FILE_NAME);
    if (!Files.exists(file)) {
      return NO_CONFIG;
    }
    try {
      return VersionLoader.sha256(file);
    } catch (ModelLoadException e) {
      throw InferenceException.unavailable("model '" + model + "': " + ModelConfigFile.FILE_NAME + " cannot be read");
    }
  }

  /**
   * The settings a load of {@code model} runs under now: its {@code model.yaml} as it is, over the
   * server's defaults.
   *
   * @throws ModelConfigFile.InvalidConfigException where its {@code model.yaml} cannot be read or used
   */
  public ModelSettings settings(String model) throws ModelConfigFile.InvalidConfigException {
    return ModelConfigFile.read(modelFolder(model), defaults);
  }
}

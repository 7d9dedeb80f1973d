package io.modelgate.gateway.routing;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import java.util.List;
import java.util.stream.Collectors;

/**
 * The protocol's default policy: a named version serves when it is READY, and an empty version
 * means the highest-numbered READY version. Reads only immutable repository snapshots.
 */
public final class LatestReadyVersionSelector implements VersionSelector {
  private static final int NAMES_IN_MESSAGES = 10;

  private final ModelRepository repository;

  public LatestReadyVersionSelector(ModelRepository repository) {
    this.repository = repository;
  }

  @Override
  public ModelVersion select(String modelName, String version) {
    Model model = model(repository, modelName);
    if (version.isEmpty()) {
      return model
          .latestReady()
          .orElseThrow(
              () ->
                  InferenceException.unavailable(
                      "model '"
                          + model.name()
                          + "' has no READY version ("
                          + model.describeVersions()
                          + ")"));
    }
    ModelVersion selected = version(model, version);
    if (!selected.isReady()) {
      // serving() names the state and its reason.
      selected.serving();
    }
    return selected;
  }

  /** The named model. */
  public static Model model(ModelRepository repository, String modelName) {
    if (modelName.isEmpty()) {
      throw InferenceException.invalidArgument("model_name is empty (expected: a model name)");
    }
    return repository
        .model(modelName)
        .orElseThrow(
            () ->
                InferenceException.notFound(
                    "unknown model " + InferenceException.quote(modelName) + " (available: " + names(repository) + ")"));
  }

  /** The numbered version of {@code model}, whatever its state. */
  public static ModelVersion version(Model model, String version) {
    long number = parseVersion(version);
    return model
        .version(number)
        .orElseThrow(
            () ->
                InferenceException.notFound(
                    "model '"
                        + model.name()
                        + "' has no version "
                        + number
                        + " (versions: "
                        + model.versions().stream()
                            .map(v -> v.numberText())
                            .collect(Collectors.joining(", "))
                        + ")"));
  }

  /** A version string as a number, or INVALID_ARGUMENT. On the request path: no regex, no allocation. */
  public static long parseVersion(String version) {
    int length = version.length();
    boolean valid = length > 0 && length <= 18 && version.charAt(0) != '0';
    long number = 0;
    for (int i = 0; valid && i < length; i++) {
      char c = version.charAt(i);
      valid = c >= '0' && c <= '9';
      number = number * 10 + (c - '0');
    }
    if (!valid) {
      throw InferenceException.invalidArgument(
          "model_version "
              + InferenceException.quote(version)
              + " (expected: a positive integer, or empty for the latest READY version)");
    }
    return number;
  }

  private static String names(ModelRepository repository) {
    List<Model> models = repository.models();
    if (models.isEmpty()) {
      return "none";
    }
    String names =
        models.stream()
            .limit(NAMES_IN_MESSAGES)
            .map(Model::name)
            .collect(Collectors.joining(", "));
    return models.size() > NAMES_IN_MESSAGES ? names + ", ..." : names;
  }
}

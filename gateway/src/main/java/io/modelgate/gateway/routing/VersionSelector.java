package io.modelgate.gateway.routing;

import io.modelgate.runtime.repository.ModelVersion;

/**
 * Decides which version of a model serves a request. The one place version selection happens;
 * weighted and sticky routing replace this implementation, not its callers.
 *
 * <p>Implementations never block and are safe to call from any number of threads.
 */
public interface VersionSelector {
  /**
   * The version that serves a request for {@code model} that asked for {@code version} (empty:
   * the server's choice).
   *
   * @throws io.modelgate.runtime.error.InferenceException INVALID_ARGUMENT for a malformed version
   *     or empty model name, NOT_FOUND for an unknown model or version, UNAVAILABLE when the
   *     version (or every version) is not READY
   */
  ModelVersion select(String model, String version);
}

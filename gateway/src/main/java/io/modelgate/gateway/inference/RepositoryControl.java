package io.modelgate.gateway.inference;

import io.modelgate.proto.inference.RepositoryIndexRequest;
import io.modelgate.proto.inference.RepositoryIndexResponse;
import java.util.concurrent.CompletableFuture;

/**
 * The model repository extension's operations, as the inference service offers them on the
 * inference port. Implemented by the admin side, which owns loading, unloading and their audit;
 * the inference service knows only this interface.
 */
public interface RepositoryControl {
  /** The repository's models and their versions' states. Never blocks. */
  RepositoryIndexResponse index(RepositoryIndexRequest request);

  /**
   * Loads every version folder of {@code model} that is not READY, off the calling thread.
   *
   * @param caller who asked, for the audit log
   * @return completes when done, or exceptionally with an {@link
   *     io.modelgate.runtime.error.InferenceException} naming what failed
   */
  CompletableFuture<Void> load(String model, String caller);

  /** Drains and unloads every READY version of {@code model}, off the calling thread. */
  CompletableFuture<Void> unload(String model, String caller);
}

package io.modelgate.runtime.execution;

import io.modelgate.runtime.error.InferenceException;

/**
 * Receives the one answer to one {@link InferenceRequest}. Exactly one method is called, exactly
 * once, on an executor or batcher thread (or, for a refusal at admission, on the caller's thread).
 * Implementations must not block: they hand the answer to the transport and return.
 */
public interface InferenceCallback {
  void onSuccess(InferenceResult result);

  void onFailure(InferenceException error);

  /**
   * As {@link #onFailure(InferenceException)}, for a request that cost the model {@code
   * computeNanos} though it failed: its share, by rows, of runs that failed because of it (its
   * values refused, the batch run again in parts to find it), so that usage counts what each
   * caller's requests made the model do. By default the time is not used.
   */
  default void onFailure(InferenceException error, long computeNanos) {
    onFailure(error);
  }

  /** A callback that completes {@code answer} with the result, or exceptionally with the failure. */
  static InferenceCallback completing(java.util.concurrent.CompletableFuture<InferenceResult> answer) {
    return new InferenceCallback() {
      @Override
      public void onSuccess(InferenceResult result) {
        answer.complete(result);
      }

      @Override
      public void onFailure(InferenceException error) {
        answer.completeExceptionally(error);
      }
    };
  }
}

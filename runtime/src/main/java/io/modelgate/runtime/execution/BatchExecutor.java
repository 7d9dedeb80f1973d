package io.modelgate.runtime.execution;

/**
 * Runs batches for one model version. A scheduler creates one executor per executor thread, so an
 * implementation may keep per-thread state (buffers) without locking; everything it shares with
 * other executors (the ONNX Runtime session) must be thread-safe.
 */
public interface BatchExecutor extends AutoCloseable {
  /**
   * Runs {@code batch} and answers each of its requests through {@link InferenceRequest#succeed}
   * or {@link InferenceRequest#fail}. Requests it leaves unanswered, or all of them when it throws,
   * are answered {@code INTERNAL} by the scheduler. Called by one thread at a time.
   */
  void execute(Batch batch);

  /** Releases per-thread resources. Called once, after the last {@link #execute}. */
  @Override
  void close();
}

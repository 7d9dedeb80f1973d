package io.modelgate.runtime.execution;

/**
 * Receives the per-stage timings of one version's scheduler. Implementations are created once per
 * version at load time and must not allocate or block: they run on the executor threads, between
 * an execution and the next. With several instances, several executor threads call it at once.
 */
public interface StageRecorder {
  /**
   * One caller's request that was executed (the gateway's own, {@link
   * InferenceRequest#ofTheGateway}, are not recorded, nor an execution of them alone).
   *
   * @param queueNanos from its arrival to the start of its execution
   * @param computeNanos the model's run of the batch it was part of (ONNX Runtime's call alone,
   *     without input copies or answers), as the executor measured it ({@link Batch#computeNanos})
   */
  void recordRequest(long queueNanos, long computeNanos);

  /**
   * One execution.
   *
   * @param requests requests merged into it
   * @param rows rows along the batch axis over all of them (requests when the model does not batch)
   * @param computeNanos the whole execution: input copies, the model's run, splitting and
   *     answering
   */
  void recordBatch(int requests, int rows, long computeNanos);

  /**
   * One execution, by phase; what the scheduler calls. By default, {@link #recordBatch} with the
   * three phases added up.
   *
   * @param inputNanos from the start of the execution to the model's run (input copies)
   * @param inferNanos the model's run
   * @param outputNanos from the end of the model's run to the end of the execution (splitting the
   *     outputs, answering each request)
   */
  default void recordExecution(int requests, int rows, long inputNanos, long inferNanos, long outputNanos) {
    recordBatch(requests, rows, inputNanos + inferNanos + outputNanos);
  }

  /**
   * An execution that ran the model more than once: its batch failed and was run again in parts, to
   * find the requests at fault (or each was answered alone, the requests failing only together).
   *
   * @param runs runs of the model beyond the first
   */
  default void recordReruns(int runs) {}

  /** Creates the recorder of each version when it loads. */
  @FunctionalInterface
  interface Factory {
    StageRecorder create(String model, long version);

    /** Recorders that record nothing. */
    Factory NONE = (model, version) -> StageRecorder.NONE;
  }

  /** Records nothing. */
  StageRecorder NONE =
      new StageRecorder() {
        @Override
        public void recordRequest(long queueNanos, long computeNanos) {}

        @Override
        public void recordBatch(int requests, int rows, long computeNanos) {}
      };
}

package io.modelgate.runtime.onnx;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferRequestedOutputTensor;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.testing.Requests;
import io.modelgate.runtime.testing.Requests.Answer;
import io.modelgate.runtime.testing.TestModels;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class OnnxBatchExecutorTest {
  @TempDir Path dir;
  private OnnxModel model;

  @AfterEach
  void close() {
    if (model != null) {
      model.close();
    }
  }

  private ModelSignature open(byte[] bytes, int maxBatchSize) throws Exception {
    Path file = Files.write(dir.resolve("model.onnx"), bytes);
    model = OnnxModel.open(file, SessionSettings.DEFAULTS);
    return new ModelSignature(model.inputs(), model.outputs(), maxBatchSize);
  }

  private static InferenceRequest request(ModelInferRequest proto, ModelSignature sig, Answer a) {
    return InferenceRequest.of(RequestDecoder.decode(proto, sig), System.nanoTime(), null, a);
  }

  @Test
  void batchOfSeveralRequests_isConcatenatedAndSplitBackByRows() throws Exception {
    ModelSignature sig = open(TestModels.affine(), 8);
    Answer one = new Answer();
    Answer two = new Answer();
    Answer three = new Answer();
    Batch batch =
        Batch.of(
            request(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), sig, one),
            request(Requests.fp32Raw("x", new long[] {2, 3}, 10, 20, 30, 40, 50, 60), sig, two),
            request(
                ModelInferRequest.newBuilder(Requests.fp32("x", new long[] {1, 3}, -1, 0, 1))
                    .addOutputs(InferRequestedOutputTensor.newBuilder().setName("z"))
                    .build(),
                sig,
                three));
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "affine")) {
      executor.execute(batch);
    }

    InferenceResult first = one.result.get(5, TimeUnit.SECONDS);
    assertThat(first.outputs()).extracting(OutputTensor::name).containsExactly("y", "z");
    assertThat(first.outputs()[0].shape()).containsExactly(1, 3);
    assertThat(Requests.floats(first.outputs()[0].data())).containsExactly(3, 5, 7);
    assertThat(Requests.floats(first.outputs()[1].data())).containsExactly(2, 4, 6);
    assertThat(first.batchRows()).isEqualTo(4);

    InferenceResult second = two.result.get(5, TimeUnit.SECONDS);
    assertThat(second.outputs()[0].shape()).containsExactly(2, 3);
    assertThat(Requests.floats(second.outputs()[0].data()))
        .containsExactly(21, 41, 61, 81, 101, 121);

    InferenceResult third = three.result.get(5, TimeUnit.SECONDS);
    assertThat(third.outputs()).extracting(OutputTensor::name).containsExactly("z");
    assertThat(Requests.floats(third.outputs()[0].data())).containsExactly(-2, 0, 2);
  }

  @Test
  void largeBatches_runOnTheSecondSession_smallOnesOnTheFirst_withTheSameAnswers() throws Exception {
    Path file = Files.write(dir.resolve("model.onnx"), TestModels.affine());
    model = OnnxModel.open(file, SessionSettings.DEFAULTS.withLargeBatches(3, 2));
    ModelSignature sig = new ModelSignature(model.inputs(), model.outputs(), 8);
    assertThat(model.largeBatchRows()).isEqualTo(3);
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "affine")) {
      // Two rows: the first session.
      Answer small = new Answer();
      executor.execute(Batch.of(request(Requests.fp32("x", new long[] {2, 3}, 1, 2, 3, 4, 5, 6), sig, small)));
      assertThat(Requests.floats(small.result.get(5, TimeUnit.SECONDS).outputs()[0].data()))
          .containsExactly(3, 5, 7, 9, 11, 13);
      assertThat(model.largeBatchRuns()).isZero();

      // Three rows from two requests: the second session, each answer its own rows.
      Answer one = new Answer();
      Answer two = new Answer();
      executor.execute(
          Batch.of(
              request(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), sig, one),
              request(Requests.fp32Raw("x", new long[] {2, 3}, 10, 20, 30, 40, 50, 60), sig, two)));
      assertThat(model.largeBatchRuns()).isEqualTo(1);
      assertThat(Requests.floats(one.result.get(5, TimeUnit.SECONDS).outputs()[0].data()))
          .containsExactly(3, 5, 7);
      assertThat(Requests.floats(two.result.get(5, TimeUnit.SECONDS).outputs()[0].data()))
          .containsExactly(21, 41, 61, 81, 101, 121);
    }
  }

  @Test
  void largeBatches_alsoRunOnTheFirstSession_fourInSixtyFour_withTheSameAnswers() throws Exception {
    Path file = Files.write(dir.resolve("model.onnx"), TestModels.affine());
    model = OnnxModel.open(file, SessionSettings.DEFAULTS.withLargeBatches(3, 2));
    ModelSignature sig = new ModelSignature(model.inputs(), model.outputs(), 8);
    int batches = 2 * SessionChoice.EXPLORE_PERIOD;
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "affine")) {
      for (int i = 0; i < batches; i++) {
        Answer answer = new Answer();
        executor.execute(Batch.of(request(Requests.fp32("x", new long[] {3, 3}, i, 1, 2, 3, 4, 5, 6, 7, 8), sig, answer)));
        assertThat(Requests.floats(answer.result.get(5, TimeUnit.SECONDS).outputs()[0].data()))
            .containsExactly(2 * i + 1, 3, 5, 7, 9, 11, 13, 15, 17);
      }
    }
    // Too few runs to compare the sessions: the second keeps them, but for those that try the first.
    assertThat(model.largeBatchRunsOnFirst()).isEqualTo(2 * SessionChoice.EXPLORE_RUNS);
    assertThat(model.largeBatchRuns()).isEqualTo(batches - 2 * SessionChoice.EXPLORE_RUNS);
  }

  @Test
  void withoutLargeBatches_everyBatchRunsOnTheOneSession() throws Exception {
    ModelSignature sig = open(TestModels.affine(), 64);
    assertThat(model.largeBatchRows()).isZero();
    Answer answer = new Answer();
    float[] rows = new float[64 * 3];
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "affine")) {
      executor.execute(Batch.of(request(Requests.fp32("x", new long[] {64, 3}, rows), sig, answer)));
    }
    assertThat(answer.result.get(5, TimeUnit.SECONDS).outputs()[0].shape()).containsExactly(64, 3);
    assertThat(model.largeBatchRuns()).isZero();
  }

  @Test
  void onnxRuntimeFailure_isInternalWithItsMessage_andTheExecutorKeepsWorking() throws Exception {
    ModelSignature sig = open(TestModels.reshapeToTwoByTwo(), 8);
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "model 'r' version 1")) {
      Answer bad = new Answer();
      executor.execute(
          Batch.of(request(Requests.fp32("x", new long[] {2, 4}, new float[8]), sig, bad)));
      assertThatThrownBy(() -> bad.result.get(5, TimeUnit.SECONDS))
          .isInstanceOf(ExecutionException.class)
          .cause()
          .isInstanceOfSatisfying(
              InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.INTERNAL))
          .hasMessageStartingWith("ONNX Runtime failed running model 'r' version 1: ")
          .hasMessageContaining("Reshape");

      Answer good = new Answer();
      executor.execute(
          Batch.of(request(Requests.fp32("x", new long[] {1, 4}, 1, 2, 3, 4), sig, good)));
      OutputTensor y = good.result.get(5, TimeUnit.SECONDS).outputs()[0];
      assertThat(y.shape()).containsExactly(2, 2);
      assertThat(Requests.floats(y.data())).containsExactly(1, 2, 3, 4);
    }
  }

  /** A request for ids, INT64 [n,1]. */
  private static ModelInferRequest ids(long... ids) {
    ModelInferRequest.InferInputTensor.Builder input = Requests.input("ids", "INT64", ids.length, 1);
    io.modelgate.proto.inference.InferTensorContents.Builder contents = io.modelgate.proto.inference.InferTensorContents.newBuilder();
    for (long id : ids) {
      contents.addInt64Contents(id);
    }
    return ModelInferRequest.newBuilder().addInputs(input.setContents(contents)).build();
  }

  /**
   * One request whose values the model refuses (an id past the end of its table) fails alone,
   * {@code INVALID_ARGUMENT} as ONNX Runtime calls it, with its message: the requests batched with
   * it are answered, each with its own rows.
   */
  @Test
  void aRequestWhoseValuesFailTheModel_failsAlone_andTheOthersOfItsBatchAreAnswered() throws Exception {
    ModelSignature sig = open(TestModels.lookup(), 8);
    Answer first = new Answer();
    Answer bad = new Answer();
    Answer last = new Answer();
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "model 'lookup' version 1")) {
      executor.execute(Batch.of(request(ids(1, 2), sig, first), request(ids(99), sig, bad), request(ids(3), sig, last)));
    }
    assertThat(Requests.floats(first.result.get(5, TimeUnit.SECONDS).outputs()[0].data())).containsExactly(1, 10, 2, 20);
    InferenceResult lastResult = last.result.get(5, TimeUnit.SECONDS);
    assertThat(lastResult.outputs()[0].shape()).containsExactly(1, 1, 2);
    assertThat(Requests.floats(lastResult.outputs()[0].data())).containsExactly(3, 30);
    assertThat(lastResult.batchRows()).as("it ran alone").isEqualTo(1);
    assertThatThrownBy(() -> bad.result.get(5, TimeUnit.SECONDS))
        .cause()
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_ARGUMENT))
        .hasMessageStartingWith("ONNX Runtime refused the inputs of model 'lookup' version 1: ")
        .hasMessageContaining("99");
    for (Answer answer : new Answer[] {first, bad, last}) {
      assertThat(answer.answers()).isEqualTo(1);
    }

    // Eight requests, the sixth bad: run again in halves, the good half answered in one run.
    Answer[] eight = new Answer[8];
    InferenceRequest[] requests = new InferenceRequest[8];
    for (int i = 0; i < 8; i++) {
      eight[i] = new Answer();
      requests[i] = request(ids(i == 5 ? -100 : i), sig, eight[i]);
    }
    Batch batch = Batch.of(requests);
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "model 'lookup' version 1")) {
      executor.execute(batch);
    }
    // The model's time over the runs adds up to what the requests are charged: the bad one pays for
    // the runs that failed because of it (the whole batch's, then 4-7's, then 4-5's, then its own).
    double charged = 0;
    for (Answer answer : eight) {
      charged += answer.charged(1);
    }
    assertThat(eight[5].charged(1)).as("the bad request's charge").isPositive();
    assertThat(batch.computeNanos()).isPositive();
    // All 8 (failed), 0-3, 4-7 (failed), 4-5 (failed), 4, 5 (failed), 6-7.
    assertThat(batch.runs()).as("runs of the model").isEqualTo(7);
    assertThat(charged).isCloseTo(batch.computeNanos(), org.assertj.core.api.Assertions.within(8.0));
    for (int i = 0; i < 8; i++) {
      if (i == 5) {
        assertThat(eight[i].result).isCompletedExceptionally();
        continue;
      }
      InferenceResult result = eight[i].result.get(5, TimeUnit.SECONDS);
      assertThat(Requests.floats(result.outputs()[0].data())).as("request %d", i).containsExactly(i, 10 * i);
      // The halves: 0-3 together; then 4-5 fails, 6-7 together; then 4 alone.
      assertThat(result.batchRows()).as("rows of the run that answered request %d", i).isEqualTo(i < 4 ? 4 : i == 4 ? 1 : 2);
    }
  }

  /**
   * Bad values in bursts — batches whose every request fails alone as an invalid argument, again
   * and again — never make the executor fail batches whole: a good request batched with a bad one
   * right after is still answered.
   */
  @Test
  void burstsOfBadValues_neverPause_theGoodRequestBatchedWithThemIsAnswered() throws Exception {
    ModelSignature sig = open(TestModels.lookup(), 8);
    java.util.concurrent.atomic.AtomicLong now = new java.util.concurrent.atomic.AtomicLong();
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "model 'lookup' version 1", now::get)) {
      for (int round = 0; round < OnnxBatchExecutor.WHOLE_FAILURES_AFTER + 1; round++) {
        Answer a = new Answer();
        Answer b = new Answer();
        executor.execute(Batch.of(request(ids(99), sig, a), request(ids(-50), sig, b)));
        for (Answer answer : new Answer[] {a, b}) {
          assertThatThrownBy(() -> answer.result.get(5, TimeUnit.SECONDS))
              .cause()
              .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_ARGUMENT));
        }
      }
      Answer good = new Answer();
      Answer bad = new Answer();
      executor.execute(Batch.of(request(ids(4), sig, good), request(ids(77), sig, bad)));
      InferenceResult result = good.result.get(5, TimeUnit.SECONDS);
      assertThat(Requests.floats(result.outputs()[0].data())).containsExactly(4, 40);
      assertThat(result.batchRows()).as("it ran alone").isEqualTo(1);
      assertThat(bad.result).isCompletedExceptionally();
    }
  }

  /**
   * Requests a model takes alone but not together (its batch axis is not one) are each answered;
   * and where every request of two failing batches in a row fails alone too, failing batches then
   * fail whole, without being run again, until a request is answered or the pause is over.
   */
  @Test
  void requestsThatFailOnlyTogether_areAnswered_andBatchesThatFailRequestByRequest_thenFailWhole() throws Exception {
    ModelSignature sig = open(TestModels.reshapeToTwoByTwo(), 8);
    java.util.concurrent.atomic.AtomicLong now = new java.util.concurrent.atomic.AtomicLong();
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "r", now::get)) {
      Answer one = new Answer();
      Answer two = new Answer();
      executor.execute(Batch.of(request(Requests.fp32("x", new long[] {1, 4}, 1, 2, 3, 4), sig, one),
          request(Requests.fp32("x", new long[] {1, 4}, 5, 6, 7, 8), sig, two)));
      assertThat(Requests.floats(one.result.get(5, TimeUnit.SECONDS).outputs()[0].data())).containsExactly(1, 2, 3, 4);
      assertThat(Requests.floats(two.result.get(5, TimeUnit.SECONDS).outputs()[0].data())).containsExactly(5, 6, 7, 8);

      // Two requests of two rows each: each fails alone too. Once is not enough to pause.
      for (Answer answer : runTwoRowPairs(executor, sig)) {
        assertThat(answer.result).isCompletedExceptionally();
      }
      assertFailingBatchIsRunRequestByRequest(executor, sig);
      // Twice in a row, no request answered between: the pause.
      runTwoRowPairs(executor, sig);
      runTwoRowPairs(executor, sig);
      // Within the pause a batch that fails fails whole: two rows and one row, the one-row request not run alone.
      now.addAndGet(java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(OnnxBatchExecutor.WHOLE_FAILURES_MILLIS - 1));
      Answer wouldPassAlone = new Answer();
      Answer twoRows = new Answer();
      Batch paused = Batch.of(request(Requests.fp32("x", new long[] {1, 4}, 1, 2, 3, 4), sig, wouldPassAlone),
          request(Requests.fp32("x", new long[] {2, 4}, new float[8]), sig, twoRows));
      executor.execute(paused);
      assertThat(wouldPassAlone.result).as("failed with its batch").isCompletedExceptionally();
      assertThat(twoRows.result).isCompletedExceptionally();
      // One run, its time shared by rows between the two.
      assertThat(paused.runs()).isEqualTo(1);
      assertThat(wouldPassAlone.charged(1) + twoRows.charged(2)).isEqualTo(paused.computeNanos());
      assertThat(twoRows.charged(2)).isCloseTo(2 * wouldPassAlone.charged(1), org.assertj.core.api.Assertions.within(2.0));
      // After it, request by request again.
      now.addAndGet(java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(1));
      assertFailingBatchIsRunRequestByRequest(executor, sig);

      // A request answered ends the pause at once.
      runTwoRowPairs(executor, sig);
      runTwoRowPairs(executor, sig);
      Answer served = new Answer();
      executor.execute(Batch.of(request(Requests.fp32("x", new long[] {1, 4}, 1, 2, 3, 4), sig, served)));
      assertThat(served.result.get(5, TimeUnit.SECONDS).outputs()[0].shape()).containsExactly(2, 2);
      assertFailingBatchIsRunRequestByRequest(executor, sig);
    }
  }

  private void assertFailingBatchIsRunRequestByRequest(OnnxBatchExecutor executor, ModelSignature sig) throws Exception {
    Answer passesAlone = new Answer();
    Answer failsAlone = new Answer();
    executor.execute(Batch.of(request(Requests.fp32("x", new long[] {1, 4}, 1, 2, 3, 4), sig, passesAlone),
        request(Requests.fp32("x", new long[] {2, 4}, new float[8]), sig, failsAlone)));
    assertThat(passesAlone.result.get(5, TimeUnit.SECONDS).outputs()[0].shape()).containsExactly(2, 2);
    assertThat(failsAlone.result).isCompletedExceptionally();
  }

  private Answer[] runTwoRowPairs(OnnxBatchExecutor executor, ModelSignature sig) {
    Answer a = new Answer();
    Answer b = new Answer();
    executor.execute(Batch.of(request(Requests.fp32("x", new long[] {2, 4}, new float[8]), sig, a),
        request(Requests.fp32("x", new long[] {2, 4}, new float[8]), sig, b)));
    return new Answer[] {a, b};
  }

  @Test
  void declaredOutputShapesAreNotTrusted_theRealOnesAreReturned() throws Exception {
    // The model declares its output [2,2]; it really returns the reshape of the input.
    ModelSignature sig = open(TestModels.reshapeToTwoByTwo(), 0);
    assertThat(sig.outputs().get(0).shapeText()).isEqualTo("[2,2]");
    Answer answer = new Answer();
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, sig, "r")) {
      executor.execute(
          Batch.of(request(Requests.fp32("x", new long[] {1, 4}, 4, 3, 2, 1), sig, answer)));
    }
    assertThat(answer.result.get(5, TimeUnit.SECONDS).outputs()[0].dataType())
        .isEqualTo(DataType.FP32);
  }
}

package io.modelgate.runtime.onnx;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.BatchPolicy;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.execution.RingScheduler;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.testing.Requests;
import io.modelgate.runtime.testing.Requests.Answer;
import io.modelgate.runtime.testing.TestModels;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Batches merged for real on ONNX Runtime: every caller gets exactly what running its own input
 * alone gives, whatever it was merged with.
 */
class BatchedExecutionTest {
  @TempDir Path root;
  private ModelRepository repository;
  private final List<OnnxModel> models = new ArrayList<>();

  @AfterEach
  void close() {
    if (repository != null) {
      repository.close(Duration.ofSeconds(10));
    }
    models.forEach(OnnxModel::close);
  }

  private OnnxModel open(byte[] bytes) throws Exception {
    Path file = Files.createTempFile(root, "model", ".onnx");
    Files.write(file, bytes);
    OnnxModel model = OnnxModel.open(file, SessionSettings.DEFAULTS);
    models.add(model);
    return model;
  }

  private static OutputTensor[] alone(OnnxModel model, ModelSignature signature, DecodedRequest request)
      throws Exception {
    Answer answer = new Answer();
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, signature, "alone")) {
      executor.execute(Batch.of(InferenceRequest.of(request, System.nanoTime(), null, answer)));
    }
    return answer.result.get(10, TimeUnit.SECONDS).outputs();
  }

  private static void assertSame(OutputTensor[] actual, OutputTensor[] expected, double tolerance) {
    assertThat(actual).hasSameSizeAs(expected);
    for (int i = 0; i < actual.length; i++) {
      assertThat(actual[i].name()).isEqualTo(expected[i].name());
      assertThat(actual[i].shape()).isEqualTo(expected[i].shape());
      float[] a = Requests.floats(actual[i].data());
      float[] e = Requests.floats(expected[i].data());
      assertThat(a).hasSameSizeAs(e);
      for (int j = 0; j < a.length; j++) {
        assertThat((double) a[j]).isCloseTo(e[j], within(tolerance + Math.abs(e[j]) * tolerance));
      }
    }
  }

  private static ModelInferRequest state(int rows, float scale, Random random) {
    float[] state = new float[2 * rows * 3];
    for (int i = 0; i < state.length; i++) {
      state[i] = random.nextInt(100) - 50;
    }
    return ModelInferRequest.newBuilder()
        .addInputs(Requests.input("state", "FP32", 2, rows, 3))
        .addInputs(Requests.input("scale", "FP32"))
        .addRawInputContents(Requests.rawFloats(state))
        .addRawInputContents(Requests.rawFloats(scale))
        .build();
  }

  @Test
  void axisOneInput_withARankZeroInput_isConcatenatedAndSplitOnItsAxis() throws Exception {
    TestModels.write(root, "state", 1, TestModels.stateWithScale());
    Files.writeString(
        root.resolve("state/model.yaml"),
        "max_batch_size: 8\nbatch_axes: {state: 1, scaled: 1, scale: none}\n");
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
    LoadedVersion loaded = repository.model("state").orElseThrow().version(1).orElseThrow().serving();
    ModelSignature signature = loaded.signature();
    assertThat(signature.maxBatchSize()).isEqualTo(8);
    assertThat(signature.inputAxis(0)).isEqualTo(1);
    assertThat(signature.inputAxis(1)).isEqualTo(ModelSignature.NO_AXIS);
    assertThat(signature.batchesOnFirstAxisOnly()).isFalse();

    Random random = new Random(7);
    OnnxModel model = open(TestModels.stateWithScale());
    ModelSignature standalone =
        new ModelSignature(model.inputs(), model.outputs(), 8, new int[] {1, -1}, new int[] {1, 0});
    List<DecodedRequest> requests = new ArrayList<>();
    for (int rows : new int[] {1, 3, 2}) {
      requests.add(RequestDecoder.decode(state(rows, 0.5f, random), standalone));
    }
    assertThat(requests.get(0).canShareBatchWith(requests.get(1))).isTrue();
    assertThat(
            requests.get(0).canShareBatchWith(RequestDecoder.decode(state(1, 2f, random), standalone)))
        .isFalse();

    List<Answer> answers = new ArrayList<>();
    List<InferenceRequest> batch = new ArrayList<>();
    for (DecodedRequest request : requests) {
      Answer answer = new Answer();
      answers.add(answer);
      batch.add(InferenceRequest.of(request, System.nanoTime(), null, answer));
    }
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, standalone, "state")) {
      executor.execute(Batch.of(batch.toArray(new InferenceRequest[0])));
    }
    for (int i = 0; i < requests.size(); i++) {
      InferenceResult merged = answers.get(i).result.get(10, TimeUnit.SECONDS);
      assertThat(merged.batchRows()).isEqualTo(6);
      OutputTensor[] expected = alone(model, standalone, requests.get(i));
      assertThat(merged.outputs()[0].shape()).containsExactly(2, requests.get(i).rows(), 3);
      assertThat(merged.outputs()[1].shape()).containsExactly(requests.get(i).rows());
      assertSame(merged.outputs(), expected, 0);
    }
  }

  @Test
  void bytesInputs_areConcatenatedAndSplit() throws Exception {
    OnnxModel model = open(TestModels.identity(io.modelgate.runtime.tensor.DataType.BYTES));
    ModelSignature signature = new ModelSignature(model.inputs(), model.outputs(), 8);
    String[][] texts = {{"a", "bb"}, {"ccc", "", "δδ", "e"}};
    List<Answer> answers = new ArrayList<>();
    List<InferenceRequest> batch = new ArrayList<>();
    for (String[] row : texts) {
      InferTensorContents.Builder contents = InferTensorContents.newBuilder();
      for (String text : row) {
        contents.addBytesContents(ByteString.copyFromUtf8(text));
      }
      DecodedRequest decoded =
          RequestDecoder.decode(
              ModelInferRequest.newBuilder()
                  .addInputs(Requests.input("x", "BYTES", row.length / 2, 2).setContents(contents))
                  .build(),
              signature);
      Answer answer = new Answer();
      answers.add(answer);
      batch.add(InferenceRequest.of(decoded, System.nanoTime(), null, answer));
    }
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, signature, "strings")) {
      executor.execute(Batch.of(batch.toArray(new InferenceRequest[0])));
    }
    for (int i = 0; i < texts.length; i++) {
      OutputTensor y = answers.get(i).result.get(10, TimeUnit.SECONDS).outputs()[0];
      assertThat(y.shape()).containsExactly(texts[i].length / 2, 2);
      ByteBuffer expected = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
      for (String text : texts[i]) {
        byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
        expected.putInt(utf8.length).put(utf8);
      }
      expected.flip();
      assertThat(y.data()).isEqualTo(ByteString.copyFrom(expected));
    }
  }

  @Test
  void concurrentCallersWithRandomRowsAndShapes_eachGetTheirOwnAnswer() throws Exception {
    OnnxModel mlp = open(TestModels.mlp(42));
    OnnxModel sums = open(TestModels.rowSums());
    ModelSignature mlpSignature = new ModelSignature(mlp.inputs(), mlp.outputs(), 16);
    ModelSignature sumsSignature = new ModelSignature(sums.inputs(), sums.outputs(), 16);
    BatchPolicy policy = new BatchPolicy(16, Duration.ofMillis(1).toNanos(), List.of());
    AtomicInteger largest = new AtomicInteger();
    AtomicInteger merged = new AtomicInteger();
    StageRecorder recorder =
        new StageRecorder() {
          @Override
          public void recordRequest(long queueNanos, long computeNanos) {}

          @Override
          public void recordBatch(int requests, int rows, long computeNanos) {
            largest.accumulateAndGet(rows, Math::max);
            if (requests > 1) {
              merged.incrementAndGet();
            }
          }
        };
    RingScheduler mlpScheduler =
        new RingScheduler("mlp", new SchedulerSettings(256, 2), policy,
            () -> new OnnxBatchExecutor(mlp, mlpSignature, "mlp"), recorder);
    RingScheduler sumsScheduler =
        new RingScheduler("sums", new SchedulerSettings(256, 1), policy,
            () -> new OnnxBatchExecutor(sums, sumsSignature, "sums"), recorder);

    record Call(boolean mlp, DecodedRequest request, Answer answer) {}
    ConcurrentLinkedQueue<Call> calls = new ConcurrentLinkedQueue<>();
    List<Thread> threads = new ArrayList<>();
    for (int t = 0; t < 8; t++) {
      long seed = t;
      Thread thread =
          new Thread(
              () -> {
                Random random = new Random(seed);
                for (int i = 0; i < 150; i++) {
                  boolean useMlp = random.nextBoolean();
                  int rows = 1 + random.nextInt(4);
                  int width = useMlp ? 8 : 1 + random.nextInt(3);
                  float[] values = new float[rows * width];
                  for (int v = 0; v < values.length; v++) {
                    values[v] = (float) random.nextGaussian();
                  }
                  ModelInferRequest proto =
                      random.nextBoolean()
                          ? Requests.fp32("x", new long[] {rows, width}, values)
                          : Requests.fp32Raw("x", new long[] {rows, width}, values);
                  DecodedRequest decoded =
                      RequestDecoder.decode(proto, useMlp ? mlpSignature : sumsSignature);
                  Answer answer = new Answer();
                  RingScheduler target = useMlp ? mlpScheduler : sumsScheduler;
                  while (true) {
                    try {
                      target.submit(InferenceRequest.of(decoded, System.nanoTime(), null, answer));
                      break;
                    } catch (io.modelgate.runtime.error.InferenceException e) {
                      // A full queue refuses at once; a real client backs off and retries.
                      assertThat(e.code())
                          .isEqualTo(io.modelgate.runtime.error.ErrorCode.RESOURCE_EXHAUSTED);
                      Thread.yield();
                    }
                  }
                  calls.add(new Call(useMlp, decoded, answer));
                }
              });
      threads.add(thread);
      thread.start();
    }
    for (Thread thread : threads) {
      thread.join();
    }
    for (Call call : calls) {
      InferenceResult result = call.answer().result.get(30, TimeUnit.SECONDS);
      assertThat(call.answer().answers()).isEqualTo(1);
      OutputTensor[] expected =
          call.mlp()
              ? alone(mlp, mlpSignature, call.request())
              : alone(sums, sumsSignature, call.request());
      // A GEMM over more rows may take another kernel path: allow float rounding, nothing more.
      assertSame(result.outputs(), expected, call.mlp() ? 1e-5 : 0);
    }
    mlpScheduler.drain(Duration.ofSeconds(10));
    sumsScheduler.drain(Duration.ofSeconds(10));
    assertThat(calls).hasSize(1200);
    assertThat(largest.get()).isLessThanOrEqualTo(16);
    System.out.printf(
        "concurrent batching: %d executions merged several requests; largest %d rows%n",
        merged.get(), largest.get());
  }
}

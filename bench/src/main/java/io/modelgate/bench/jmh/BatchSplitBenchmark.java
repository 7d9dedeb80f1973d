package io.modelgate.bench.jmh;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtSession;
import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.onnx.OnnxBatchExecutor;
import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.RequestDecoder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What the executor adds to a model run for a batch of many single-row requests — joining their
 * inputs, splitting the output back, answering each — on a model that computes almost nothing (a
 * ReLU over 1024 FP32 a row), against the same run of ONNX Runtime on one tensor of those rows with
 * its output read ({@code bareRun}): the baseline in the same run. Large batches of small requests
 * are what a GPU version forms.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1)
public class BatchSplitBenchmark {
  private static final int WIDTH = 1024;

  @Param({"64", "512"})
  public int requests;

  private Path file;
  private OnnxModel model;
  private OnnxBatchExecutor executor;
  private DecodedRequest decoded;
  private OrtSession bare;
  private OnnxTensor rows;

  private static final InferenceCallback IGNORE =
      new InferenceCallback() {
        @Override
        public void onSuccess(InferenceResult result) {}

        @Override
        public void onFailure(InferenceException error) {
          throw error;
        }
      };

  @Setup
  public void setUp() throws Exception {
    OnnxGraphBuilder graph =
        OnnxGraphBuilder.create("relu", 17)
            .input("x", OnnxGraphBuilder.FLOAT, -1, WIDTH)
            .output("y", OnnxGraphBuilder.FLOAT, -1, WIDTH);
    graph.node("Relu", List.of("x"), List.of("y"));
    file = Files.createTempFile("modelgate-bench-split-", ".onnx");
    Files.write(file, graph.build());
    model = OnnxModel.open(file, SessionSettings.DEFAULTS);
    ModelSignature signature = new ModelSignature(model.inputs(), model.outputs(), 512);
    executor = new OnnxBatchExecutor(model, signature, "bench");
    ModelInferRequest request =
        ModelInferRequest.newBuilder()
            .setModelName("relu")
            .addInputs(
                ModelInferRequest.InferInputTensor.newBuilder()
                    .setName("x")
                    .setDatatype("FP32")
                    .addShape(1)
                    .addShape(WIDTH))
            .addRawInputContents(ByteString.copyFrom(new byte[WIDTH * 4]))
            .build();
    decoded = RequestDecoder.decode(request, signature);
    try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
      options.setIntraOpNumThreads(1);
      bare = OnnxModel.environment().createSession(file.toString(), options);
    }
    rows =
        OnnxTensor.createTensor(
            OnnxModel.environment(), FloatBuffer.wrap(new float[requests * WIDTH]), new long[] {requests, WIDTH});
  }

  @TearDown
  public void tearDown() throws Exception {
    rows.close();
    bare.close();
    executor.close();
    model.close();
    Files.deleteIfExists(file);
  }

  /** The executor on {@code requests} single-row requests: join, run, split, answer. */
  @Benchmark
  public void executor() {
    InferenceRequest[] parts = new InferenceRequest[requests];
    for (int r = 0; r < parts.length; r++) {
      parts[r] = InferenceRequest.of(decoded, 0, null, IGNORE);
    }
    executor.execute(Batch.of(parts));
  }

  /** The baseline: ONNX Runtime on one tensor of as many rows, its output read into the heap. */
  @Benchmark
  public Object bareRun() throws Exception {
    try (OrtSession.Result result = bare.run(Map.of("x", rows))) {
      return ((OnnxTensor) result.get(0)).getByteBuffer();
    }
  }
}

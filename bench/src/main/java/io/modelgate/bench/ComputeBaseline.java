package io.modelgate.bench;

import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.onnx.OnnxBatchExecutor;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.RequestDecoder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * ONNX Runtime in-process, through the same executor the gateway uses (input copy, run, output
 * split), without gRPC or queueing: the compute ceiling the gateway is compared with.
 */
final class ComputeBaseline {
  private ComputeBaseline() {}

  /** Median microseconds of one execution of {@code rows} rows, over {@code iterations} runs. */
  static double medianMicros(
      BenchModels.BenchModel model, SessionSettings settings, int rows, int iterations)
      throws Exception {
    return medianMicros(model.onnx(), model.batchRequest(model.name(), rows), rows, settings, iterations);
  }

  /** Median microseconds of one execution of {@code request} ({@code rows} rows). */
  static double medianMicros(
      byte[] model, io.modelgate.proto.inference.ModelInferRequest request, int rows, SessionSettings settings,
      int iterations) throws Exception {
    Path file = Files.createTempFile("modelgate-bench-", ".onnx");
    try {
      Files.write(file, model);
      try (OnnxModel onnx = OnnxModel.open(file, settings)) {
        ModelSignature signature = new ModelSignature(onnx.inputs(), onnx.outputs(), Math.max(rows, 1));
        DecodedRequest decoded = RequestDecoder.decode(request, signature);
        InferenceCallback ignore =
            new InferenceCallback() {
              @Override
              public void onSuccess(InferenceResult result) {}

              @Override
              public void onFailure(InferenceException error) {
                throw error;
              }
            };
        try (OnnxBatchExecutor executor = new OnnxBatchExecutor(onnx, signature, "baseline")) {
          for (int i = 0; i < Math.max(20, iterations / 5); i++) {
            executor.execute(Batch.of(InferenceRequest.of(decoded, System.nanoTime(), null, ignore)));
          }
          long[] nanos = new long[iterations];
          for (int i = 0; i < iterations; i++) {
            long start = System.nanoTime();
            executor.execute(Batch.of(InferenceRequest.of(decoded, start, null, ignore)));
            nanos[i] = System.nanoTime() - start;
          }
          Arrays.sort(nanos);
          return nanos[iterations / 2] / 1000.0;
        }
      }
    } finally {
      Files.deleteIfExists(file);
    }
  }
}

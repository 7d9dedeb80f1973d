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
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

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
      try (Session session = new Session(file, request, rows, settings)) {
        session.warm(Math.max(20, iterations / 5));
        long[] nanos = new long[iterations];
        for (int i = 0; i < iterations; i++) {
          nanos[i] = session.execute();
        }
        Arrays.sort(nanos);
        return nanos[iterations / 2] / 1000.0;
      }
    } finally {
      Files.deleteIfExists(file);
    }
  }

  /**
   * Mean microseconds per row of executions of {@code request} ({@code rows} rows) while
   * {@code threads} threads, each with a session of its own, run them for the same {@code
   * measured} time after {@code warmup} of unmeasured runs. The mean, not the median: throughput
   * is paid by the mean, slow runs included. With one thread, the compute a row costs on an
   * otherwise idle machine; with one per core, what it costs when every core is busy, as the
   * transport's CPU per call in the suite's bound is measured. Where cores share execution units
   * (SMT siblings, which a virtual machine's "cores" may be) the second is the larger.
   */
  static double meanMicrosPerRow(
      byte[] model, io.modelgate.proto.inference.ModelInferRequest request, int rows, SessionSettings settings,
      int threads, Duration warmup, Duration measured) throws Exception {
    Path file = Files.createTempFile("modelgate-bench-", ".onnx");
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    try {
      Files.write(file, model);
      CyclicBarrier start = new CyclicBarrier(threads);
      List<Future<Double>> runs = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        runs.add(pool.submit(() -> {
          try (Session session = new Session(file, request, rows, settings)) {
            for (long end = System.nanoTime() + warmup.toNanos(); System.nanoTime() < end; ) {
              session.execute();
            }
            // A thread that failed to open its session never arrives: the others give up.
            start.await(warmup.toSeconds() + 60, TimeUnit.SECONDS);
            long end = System.nanoTime() + measured.toNanos();
            long nanos = 0;
            long executions = 0;
            do {
              nanos += session.execute();
              executions++;
            } while (System.nanoTime() < end);
            return nanos / 1000.0 / executions / rows;
          }
        }));
      }
      double sum = 0;
      for (Future<Double> run : runs) {
        sum += run.get();
      }
      return sum / threads;
    } finally {
      pool.shutdownNow();
      Files.deleteIfExists(file);
    }
  }

  /** One session of the model, one request, through the gateway's executor; one thread. */
  private static final class Session implements AutoCloseable {
    private static final InferenceCallback IGNORE =
        new InferenceCallback() {
          @Override
          public void onSuccess(InferenceResult result) {}

          @Override
          public void onFailure(InferenceException error) {
            throw error;
          }
        };

    private final OnnxModel onnx;
    private final OnnxBatchExecutor executor;
    private final DecodedRequest decoded;

    Session(Path file, io.modelgate.proto.inference.ModelInferRequest request, int rows, SessionSettings settings)
        throws Exception {
      onnx = OnnxModel.open(file, settings);
      try {
        ModelSignature signature = new ModelSignature(onnx.inputs(), onnx.outputs(), Math.max(rows, 1));
        decoded = RequestDecoder.decode(request, signature);
        executor = new OnnxBatchExecutor(onnx, signature, "baseline");
      } catch (Exception | Error e) {
        onnx.close();
        throw e;
      }
    }

    /** Runs {@code executions} executions unmeasured. */
    void warm(int executions) {
      for (int i = 0; i < executions; i++) {
        execute();
      }
    }

    /** Nanoseconds of one execution. */
    long execute() {
      long begin = System.nanoTime();
      executor.execute(Batch.of(InferenceRequest.of(decoded, begin, null, IGNORE)));
      return System.nanoTime() - begin;
    }

    @Override
    public void close() {
      try {
        executor.close();
      } finally {
        onnx.close();
      }
    }
  }
}

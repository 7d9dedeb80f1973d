package io.modelgate.bench.jmh;

import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.BatchExecutor;
import io.modelgate.runtime.execution.BatchPolicy;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.execution.RingScheduler;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.tensor.TensorSpec;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The scheduler alone: publish requests into a version's ring, let the batcher form batches and an
 * executor that computes nothing complete them, and wait for every answer. Measures the cost per
 * request of the ring, the batcher and the hand-offs, with batching off and on, and with the
 * requests in tenants' lanes (each burst's requests dealt out among {@code lanes} of them; 0: no
 * lanes, as without a callers file).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class RingBenchmark {
  static final int BURST = 256;

  @Param({"0", "64"})
  public int maxBatchSize;

  @Param({"0"})
  public int lanes;

  private String[] laneNames;

  private RingScheduler scheduler;
  private DecodedRequest decoded;

  /** One row of x FP32 [-1, 4], decoded. */
  static DecodedRequest oneRow() {
    ModelSignature signature =
        new ModelSignature(
            List.of(new TensorSpec("x", DataType.FP32, new long[] {-1, 4})),
            List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, 4})),
            64);
    return RequestDecoder.decode(
        ModelInferRequest.newBuilder()
            .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("x").setDatatype("FP32").addShape(1).addShape(4)
                .setContents(InferTensorContents.newBuilder().addFp32Contents(1).addFp32Contents(2).addFp32Contents(3).addFp32Contents(4)))
            .build(),
        signature);
  }

  @Setup
  public void setUp() {
    decoded = oneRow();
    laneNames = new String[Math.max(1, lanes)];
    for (int i = 0; i < laneNames.length; i++) {
      laneNames[i] = lanes == 0 ? null : "tenant-" + i;
    }
    OutputTensor[] none = new OutputTensor[0];
    scheduler =
        new RingScheduler(
            "bench",
            new SchedulerSettings(1024, 1),
            new BatchPolicy(maxBatchSize, 0, List.of()),
            () ->
                new BatchExecutor() {
                  @Override
                  public void execute(Batch batch) {
                    for (int i = 0; i < batch.size(); i++) {
                      batch.get(i).succeed(new InferenceResult(none, batch.rows()));
                    }
                  }

                  @Override
                  public void close() {}
                },
            StageRecorder.NONE);
  }

  @TearDown
  public void tearDown() {
    scheduler.drain(Duration.ofSeconds(5));
  }

  @Benchmark
  @OperationsPerInvocation(BURST)
  public void publishBatchComplete() throws InterruptedException {
    CountDownLatch done = new CountDownLatch(BURST);
    InferenceCallback callback =
        new InferenceCallback() {
          @Override
          public void onSuccess(InferenceResult result) {
            done.countDown();
          }

          @Override
          public void onFailure(InferenceException error) {
            done.countDown();
          }
        };
    for (int i = 0; i < BURST; i++) {
      scheduler.submit(lanes == 0 ? InferenceRequest.of(decoded, System.nanoTime(), null, callback)
          : InferenceRequest.inLane(laneNames[i % lanes], decoded, System.nanoTime(), Long.MAX_VALUE, null, callback));
    }
    done.await();
  }

  /** A version whose only executor is held and whose one queue place is taken: every submit is refused. */
  @State(Scope.Benchmark)
  public static class FullQueue {
    final java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
    RingScheduler scheduler;
    InferenceRequest request;

    @Setup
    public void setUp() throws InterruptedException {
      DecodedRequest decoded = oneRow();
      CountDownLatch running = new CountDownLatch(1);
      OutputTensor[] none = new OutputTensor[0];
      scheduler =
          new RingScheduler(
              "bench-full",
              new SchedulerSettings(1, 1),
              BatchPolicy.UNBATCHED,
              () ->
                  new BatchExecutor() {
                    @Override
                    public void execute(Batch batch) {
                      running.countDown();
                      try {
                        release.await();
                      } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                      }
                      for (int i = 0; i < batch.size(); i++) {
                        batch.get(i).succeed(new InferenceResult(none, batch.rows()));
                      }
                    }

                    @Override
                    public void close() {}
                  },
              StageRecorder.NONE);
      InferenceCallback ignore =
          new InferenceCallback() {
            @Override
            public void onSuccess(InferenceResult result) {}

            @Override
            public void onFailure(InferenceException error) {}
          };
      scheduler.submit(InferenceRequest.of(decoded, System.nanoTime(), null, ignore));
      running.await();
      scheduler.submit(InferenceRequest.of(decoded, System.nanoTime(), null, ignore));
      request = InferenceRequest.of(decoded, System.nanoTime(), null, ignore);
    }

    @TearDown
    public void tearDown() {
      release.countDown();
      scheduler.drain(Duration.ofSeconds(5));
    }
  }

  /** What a refusal costs the request thread when the version's queue is full. */
  @Benchmark
  public Object refuseWhenFull(FullQueue full) {
    try {
      full.scheduler.refuseIfFull();
      full.scheduler.submit(full.request);
      return full.request;
    } catch (InferenceException e) {
      return e;
    }
  }
}

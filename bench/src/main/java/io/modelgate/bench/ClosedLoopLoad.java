package io.modelgate.bench;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * A closed loop of {@code concurrency} callers, each sending its next ModelInfer as soon as the
 * previous one is answered, spread over the given channels. Latency is recorded per call in
 * microseconds; a closed loop measures the service time under that concurrency (an open loop,
 * which counts queueing stalls from the intended send time, is the load generator's job).
 */
final class ClosedLoopLoad {
  /** What one run measured. */
  record Result(long calls, double seconds, Histogram latencyMicros, Map<Status.Code, Long> errors) {
    double throughput() {
      return calls / seconds;
    }
  }

  private final List<ManagedChannel> channels;
  private final ModelInferRequest request;
  private final int concurrency;

  ClosedLoopLoad(List<ManagedChannel> channels, ModelInferRequest request, int concurrency) {
    this.channels = channels;
    this.request = request;
    this.concurrency = concurrency;
  }

  /**
   * Runs for {@code warmupNanos} unrecorded, then for {@code durationNanos} recorded; {@code
   * onMeasure} and {@code onMeasured} run as the recorded window opens and closes.
   */
  Result run(long warmupNanos, long durationNanos, Runnable onMeasure, Runnable onMeasured)
      throws InterruptedException {
    Recorder recorder = new Recorder(3);
    LongAdder calls = new LongAdder();
    Map<Status.Code, LongAdder> errors = new ConcurrentHashMap<>();
    AtomicLong phase = new AtomicLong(0); // 0 warm-up, 1 measuring, 2 stopping
    CountDownLatch done = new CountDownLatch(concurrency);
    for (int i = 0; i < concurrency; i++) {
      new Caller(
              GRPCInferenceServiceGrpc.newStub(channels.get(i % channels.size())),
              recorder,
              calls,
              errors,
              phase,
              done)
          .next();
    }
    TimeUnit.NANOSECONDS.sleep(warmupNanos);
    recorder.reset();
    calls.reset();
    errors.clear();
    onMeasure.run();
    phase.set(1);
    long start = System.nanoTime();
    TimeUnit.NANOSECONDS.sleep(durationNanos);
    Histogram histogram = recorder.getIntervalHistogram();
    long count = calls.sum();
    double seconds = (System.nanoTime() - start) / 1e9;
    onMeasured.run();
    phase.set(2);
    done.await(60, TimeUnit.SECONDS);
    Map<Status.Code, Long> errorCounts = new java.util.TreeMap<>();
    errors.forEach((code, n) -> errorCounts.put(code, n.sum()));
    return new Result(count, seconds, histogram, errorCounts);
  }

  private final class Caller implements StreamObserver<ModelInferResponse> {
    private final GRPCInferenceServiceGrpc.GRPCInferenceServiceStub stub;
    private final Recorder recorder;
    private final LongAdder calls;
    private final Map<Status.Code, LongAdder> errors;
    private final AtomicLong phase;
    private final CountDownLatch done;
    private long sent;

    Caller(
        GRPCInferenceServiceGrpc.GRPCInferenceServiceStub stub,
        Recorder recorder,
        LongAdder calls,
        Map<Status.Code, LongAdder> errors,
        AtomicLong phase,
        CountDownLatch done) {
      this.stub = stub;
      this.recorder = recorder;
      this.calls = calls;
      this.errors = errors;
      this.phase = phase;
      this.done = done;
    }

    void next() {
      if (phase.get() == 2) {
        done.countDown();
        return;
      }
      sent = System.nanoTime();
      stub.modelInfer(request, this);
    }

    @Override
    public void onNext(ModelInferResponse value) {}

    @Override
    public void onError(Throwable t) {
      errors.computeIfAbsent(Status.fromThrowable(t).getCode(), c -> new LongAdder()).increment();
      next();
    }

    @Override
    public void onCompleted() {
      recorder.recordValue(Math.max(1, (System.nanoTime() - sent) / 1000));
      calls.increment();
      next();
    }
  }
}

package io.modelgate.runtime.execution;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.tensor.TensorSpec;
import io.modelgate.runtime.testing.Requests;
import io.modelgate.runtime.testing.Requests.Answer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * How the batcher forms batches, on a real Disruptor ring, with an executor the test holds and
 * releases: what is merged, what is not, and when a batch runs. Decided by latches, not by timing.
 */
class BatchingTest {
  /** x FP32 [-1,-1]: any width, batched on axis 0; y the same. */
  private static final ModelSignature WIDE =
      new ModelSignature(
          List.of(new TensorSpec("x", DataType.FP32, new long[] {-1, -1})),
          List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, -1})),
          64);

  /** scale FP32 [] (no batch axis) and x FP32 [-1,2]. */
  private static final ModelSignature SCALED =
      new ModelSignature(
          List.of(
              new TensorSpec("scale", DataType.FP32, new long[] {}),
              new TensorSpec("x", DataType.FP32, new long[] {-1, 2})),
          List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, 2})),
          64);

  private final List<RingScheduler> schedulers = new ArrayList<>();

  @AfterEach
  void drainAll() {
    schedulers.forEach(s -> s.drain(Duration.ofSeconds(5)));
  }

  /** Records the batches it runs (as lists of request ids); runs each when the test releases it. */
  static final class RecordingExecutor implements BatchExecutor {
    final BlockingQueue<List<String>> batches = new LinkedBlockingQueue<>();
    final BlockingQueue<CountDownLatch> gates = new LinkedBlockingQueue<>();
    volatile boolean gated;
    volatile RuntimeException failure;

    @Override
    public void execute(Batch batch) {
      CountDownLatch gate = null;
      if (gated) {
        gate = new CountDownLatch(1);
        gates.add(gate);
      }
      List<String> ids = new ArrayList<>();
      for (int i = 0; i < batch.size(); i++) {
        ids.add(idOf(batch.get(i)));
      }
      batches.add(ids);
      if (gate != null) {
        try {
          gate.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return;
        }
      }
      if (failure != null) {
        throw failure;
      }
      for (int i = 0; i < batch.size(); i++) {
        batch.get(i).succeed(new InferenceResult(new OutputTensor[0], batch.rows()));
      }
    }

    List<String> next() throws InterruptedException {
      List<String> batch = batches.poll(10, TimeUnit.SECONDS);
      assertThat(batch).as("a batch within 10 s").isNotNull();
      return batch;
    }

    void release() throws InterruptedException {
      CountDownLatch gate = gates.poll(10, TimeUnit.SECONDS);
      assertThat(gate).as("a held batch").isNotNull();
      gate.countDown();
    }

    @Override
    public void close() {}
  }

  /** The id each submitted request was given by the test. */
  private static final java.util.Map<InferenceRequest, String> IDS =
      java.util.Collections.synchronizedMap(new java.util.IdentityHashMap<>());

  private static String idOf(InferenceRequest request) {
    return IDS.get(request);
  }

  static final class Named extends Answer {
    final String id;

    Named(String id) {
      this.id = id;
    }
  }

  private static final class Recorder implements StageRecorder {
    final AtomicLong maxQueueNanos = new AtomicLong();
    final BlockingQueue<Integer> batchRows = new LinkedBlockingQueue<>();

    @Override
    public void recordRequest(long queueNanos, long computeNanos) {
      maxQueueNanos.accumulateAndGet(queueNanos, Math::max);
    }

    @Override
    public void recordBatch(int requests, int rows, long computeNanos) {
      batchRows.add(rows);
    }
  }

  private RingScheduler scheduler(
      BatchPolicy policy, RecordingExecutor executor, StageRecorder recorder) {
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1", new SchedulerSettings(64, 1), policy, () -> executor, recorder);
    schedulers.add(scheduler);
    return scheduler;
  }

  private static BatchPolicy policy(int max, Duration delay, Integer... preferred) {
    return new BatchPolicy(max, delay.toNanos(), List.of(preferred));
  }

  private static DecodedRequest wide(int rows, int width) {
    float[] values = new float[rows * width];
    return RequestDecoder.decode(Requests.fp32Raw("x", new long[] {rows, width}, values), WIDE);
  }

  private static DecodedRequest scaled(float scale) {
    ModelInferRequest request =
        ModelInferRequest.newBuilder()
            .addInputs(
                Requests.input("scale", "FP32")
                    .setContents(InferTensorContents.newBuilder().addFp32Contents(scale)))
            .addInputs(
                Requests.input("x", "FP32", 1, 2)
                    .setContents(InferTensorContents.newBuilder().addFp32Contents(1).addFp32Contents(2)))
            .build();
    return RequestDecoder.decode(request, SCALED);
  }

  private static Named submit(RingScheduler scheduler, String id, DecodedRequest decoded) {
    return submit(scheduler, id, decoded, 0);
  }

  private static Named submit(
      RingScheduler scheduler, String id, DecodedRequest decoded, long timeoutNanos) {
    Named answer = new Named(id);
    long now = System.nanoTime();
    InferenceRequest request =
        timeoutNanos > 0
            ? InferenceRequest.withDeadline(decoded, now, now + timeoutNanos, null, answer)
            : InferenceRequest.of(decoded, now, null, answer);
    IDS.put(request, id);
    scheduler.submit(request);
    return answer;
  }

  /** Holds the only executor with a first batch, so that what follows queues. */
  private static void occupy(RingScheduler scheduler, RecordingExecutor executor, DecodedRequest first)
      throws InterruptedException {
    executor.gated = true;
    submit(scheduler, "first", first);
    assertThat(executor.next()).containsExactly("first");
  }

  @Test
  void naturalBatching_takesEverythingQueued_whenTheDelayIsZero() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(16, Duration.ZERO), executor, StageRecorder.NONE);
    occupy(scheduler, executor, wide(1, 3));
    for (int i = 0; i < 5; i++) {
      submit(scheduler, "r" + i, wide(1, 3));
    }
    executor.gated = false;
    executor.release();
    assertThat(executor.next()).containsExactly("r0", "r1", "r2", "r3", "r4");
  }

  @Test
  void maxBatchSize_isNeverExceeded_inRows() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    Recorder recorder = new Recorder();
    RingScheduler scheduler = scheduler(policy(4, Duration.ZERO), executor, recorder);
    occupy(scheduler, executor, wide(1, 3));
    for (int i = 0; i < 10; i++) {
      submit(scheduler, "r" + i, wide(1, 3));
    }
    submit(scheduler, "three-a", wide(3, 3));
    submit(scheduler, "three-b", wide(3, 3));
    executor.gated = false;
    executor.release();
    assertThat(executor.next()).containsExactly("r0", "r1", "r2", "r3");
    assertThat(executor.next()).containsExactly("r4", "r5", "r6", "r7");
    // r8 and r9 (2 rows) leave no room for a 3-row request under max 4.
    assertThat(executor.next()).containsExactly("r8", "r9");
    assertThat(executor.next()).containsExactly("three-a");
    assertThat(executor.next()).containsExactly("three-b");
    List<Integer> rows = new ArrayList<>();
    recorder.batchRows.drainTo(rows);
    while (rows.size() < 6) {
      rows.add(recorder.batchRows.poll(10, TimeUnit.SECONDS));
    }
    assertThat(rows).containsExactly(1, 4, 4, 2, 3, 3).allSatisfy(r -> assertThat(r).isLessThanOrEqualTo(4));
  }

  @Test
  void preferredSizes_runAsSoonAsTheyForm_andTheRestWaitsForItsDelay() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    // An hour's delay: anything that runs before it did so because a preferred size formed.
    RingScheduler scheduler = scheduler(policy(8, Duration.ofHours(1), 2, 4), executor, StageRecorder.NONE);
    executor.gated = true;
    submit(scheduler, "a", wide(1, 3));
    submit(scheduler, "b", wide(1, 3));
    assertThat(executor.next()).containsExactly("a", "b");
    for (int i = 0; i < 5; i++) {
      submit(scheduler, "r" + i, wide(1, 3));
    }
    executor.gated = false;
    executor.release();
    // Five queued: the largest preferred size that can be formed is 4.
    assertThat(executor.next()).containsExactly("r0", "r1", "r2", "r3");
    // r4 alone is no preferred size; it waits for its delay, or, here, for the drain.
    Thread drainer = new Thread(() -> scheduler.drain(Duration.ofSeconds(10)));
    drainer.start();
    assertThat(executor.next()).containsExactly("r4");
    drainer.join(10_000);
  }

  @Test
  void aLoneRequest_runsOnceTheDelayHasPassed() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    Recorder recorder = new Recorder();
    Duration delay = Duration.ofMillis(30);
    RingScheduler scheduler = scheduler(policy(8, delay), executor, recorder);
    Named lone = submit(scheduler, "lone", wide(1, 3));
    assertThat(executor.next()).containsExactly("lone");
    lone.result.get(10, TimeUnit.SECONDS);
    // The batch is recorded after its requests; wait for it.
    assertThat(recorder.batchRows.poll(10, TimeUnit.SECONDS)).isEqualTo(1);
    // It waited for company for the whole delay (counted from its arrival), then ran.
    assertThat(recorder.maxQueueNanos.get()).isGreaterThanOrEqualTo(delay.toNanos());
  }

  @Test
  void aLoneRequest_runsAtOnce_whenTheDelayIsZero() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(8, Duration.ZERO), executor, StageRecorder.NONE);
    Named lone = submit(scheduler, "lone", wide(1, 3));
    assertThat(executor.next()).containsExactly("lone");
    assertThat(lone.result.get(10, TimeUnit.SECONDS)).isNotNull();
  }

  @Test
  void differentNonBatchDimensions_areNotMerged() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(16, Duration.ZERO), executor, StageRecorder.NONE);
    occupy(scheduler, executor, wide(1, 3));
    submit(scheduler, "w3-a", wide(1, 3));
    submit(scheduler, "w5", wide(2, 5));
    submit(scheduler, "w3-b", wide(2, 3));
    executor.gated = false;
    executor.release();
    assertThat(executor.next()).containsExactly("w3-a", "w3-b");
    assertThat(executor.next()).containsExactly("w5");
  }

  @Test
  void inputsWithoutABatchAxis_mustBeEqualToShareABatch() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(16, Duration.ZERO), executor, StageRecorder.NONE);
    occupy(scheduler, executor, scaled(1f));
    submit(scheduler, "one-a", scaled(1f));
    submit(scheduler, "two", scaled(2f));
    submit(scheduler, "one-b", scaled(1f));
    executor.gated = false;
    executor.release();
    assertThat(executor.next()).containsExactly("one-a", "one-b");
    assertThat(executor.next()).containsExactly("two");
  }

  @Test
  void aModelThatDoesNotBatch_runsEveryRequestAlone() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(BatchPolicy.UNBATCHED, executor, StageRecorder.NONE);
    occupy(scheduler, executor, wide(1, 3));
    for (int i = 0; i < 4; i++) {
      submit(scheduler, "r" + i, wide(1, 3));
    }
    executor.gated = false;
    executor.release();
    for (int i = 0; i < 4; i++) {
      assertThat(executor.next()).containsExactly("r" + i);
    }
  }

  @Test
  void aDeadlineThatPassesWhileWaitingForABatch_isAnsweredAndNeverRun() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(8, Duration.ofHours(1)), executor, StageRecorder.NONE);
    Named hurried = submit(scheduler, "hurried", wide(1, 3), Duration.ofMillis(20).toNanos());
    assertThatThrownBy(() -> hurried.result.get(10, TimeUnit.SECONDS))
        .isInstanceOf(ExecutionException.class)
        .cause()
        .isInstanceOfSatisfying(
            InferenceException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.DEADLINE_EXCEEDED));
    assertThat(executor.batches).isEmpty();
  }

  @Test
  void aFailedBatch_answersEveryMember() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(8, Duration.ZERO), executor, StageRecorder.NONE);
    occupy(scheduler, executor, wide(1, 3));
    List<Named> members = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      members.add(submit(scheduler, "r" + i, wide(1, 3)));
    }
    executor.failure = new IllegalStateException("kernel exploded");
    executor.gated = false;
    executor.release();
    assertThat(executor.next()).hasSize(3);
    for (Named member : members) {
      assertThatThrownBy(() -> member.result.get(10, TimeUnit.SECONDS))
          .cause()
          .isInstanceOfSatisfying(
              InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.INTERNAL))
          .hasMessageContaining("kernel exploded");
      assertThat(member.answers()).isEqualTo(1);
    }
  }

  @Test
  void drain_runsRequestsThatWereWaitingForTheirDelay() throws Exception {
    RecordingExecutor executor = new RecordingExecutor();
    RingScheduler scheduler = scheduler(policy(8, Duration.ofHours(1)), executor, StageRecorder.NONE);
    Named waiting = submit(scheduler, "waiting", wide(1, 3));
    scheduler.drain(Duration.ofSeconds(10));
    assertThat(waiting.result).isCompleted();
    assertThat(waiting.answers()).isEqualTo(1);
  }

  @Test
  void computeTime_isTheModelRunTheExecutorMeasured_recordedForEveryRequest() throws Exception {
    BlockingQueue<Long> computes = new LinkedBlockingQueue<>();
    StageRecorder recorder =
        new StageRecorder() {
          @Override
          public void recordRequest(long queueNanos, long computeNanos) {
            computes.add(computeNanos);
          }

          @Override
          public void recordBatch(int requests, int rows, long computeNanos) {}
        };
    RecordingExecutor inner = new RecordingExecutor();
    BatchExecutor measuring =
        new BatchExecutor() {
          @Override
          public void execute(Batch batch) {
            long now = System.nanoTime();
            batch.ran(now, now + 4_242);
            inner.execute(batch);
          }

          @Override
          public void close() {}
        };
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(64, 1),
            policy(16, Duration.ZERO),
            () -> measuring,
            recorder);
    schedulers.add(scheduler);
    inner.gated = true;
    submit(scheduler, "first", wide(1, 3));
    assertThat(inner.next()).containsExactly("first");
    submit(scheduler, "a", wide(1, 3));
    submit(scheduler, "b", wide(1, 3));
    inner.gated = false;
    inner.release();
    assertThat(inner.next()).containsExactly("a", "b");
    // Once per request (three), each with the model's run alone, not the whole execution.
    for (int i = 0; i < 3; i++) {
      assertThat(computes.poll(10, TimeUnit.SECONDS)).isEqualTo(4_242L);
    }
  }
}

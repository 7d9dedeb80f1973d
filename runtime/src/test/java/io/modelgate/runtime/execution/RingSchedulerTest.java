package io.modelgate.runtime.execution;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

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
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The scheduler on a real Disruptor ring, with an executor that the test holds and releases, so
 * every admission, deadline, cancellation and drain case is decided by latches, not by timing.
 */
class RingSchedulerTest {
  private static final ModelSignature SIGNATURE =
      new ModelSignature(
          List.of(new TensorSpec("x", DataType.FP32, new long[] {-1, 1})),
          List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, 1})),
          8);

  private final List<RingScheduler> schedulers = new ArrayList<>();

  /** Every gated executor made, so that a failed test's held batches are let go before draining. */
  private static final List<GatedExecutor> EXECUTORS = new java.util.concurrent.CopyOnWriteArrayList<>();

  /** Gates a test took out of an executor's queue to release one batch of several. */
  private final List<CountDownLatch> heldGates = new ArrayList<>();

  @AfterEach
  void drainAll() {
    heldGates.forEach(CountDownLatch::countDown);
    for (GatedExecutor executor : EXECUTORS) {
      executor.gated = false;
      executor.gates.forEach(CountDownLatch::countDown);
    }
    EXECUTORS.clear();
    schedulers.forEach(s -> s.drain(Duration.ofSeconds(5)));
  }

  /** Records each batch it is given and runs it only when the test releases one. */
  static final class GatedExecutor implements BatchExecutor {
    final BlockingQueue<CountDownLatch> gates = new LinkedBlockingQueue<>();
    final BlockingQueue<Integer> started = new LinkedBlockingQueue<>();
    /** The lane of each started batch's first request ("null" for none), in start order. */
    final BlockingQueue<String> startedLanes = new LinkedBlockingQueue<>();
    /** The name of the thread each started batch runs on, in start order. */
    final BlockingQueue<String> startedThreads = new LinkedBlockingQueue<>();
    final AtomicInteger executed = new AtomicInteger();
    final AtomicBoolean closed = new AtomicBoolean();
    volatile boolean gated = true;
    volatile RuntimeException failure;

    GatedExecutor() {
      EXECUTORS.add(this);
    }

    @Override
    public void execute(Batch batch) {
      CountDownLatch gate = null;
      if (gated) {
        gate = new CountDownLatch(1);
        gates.add(gate);
      }
      startedLanes.add(String.valueOf(batch.get(0).lane()));
      startedThreads.add(Thread.currentThread().getName());
      started.add(batch.size());
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
        executed.incrementAndGet();
        batch
            .get(i)
            .succeed(new InferenceResult(new OutputTensor[0], batch.rows()));
      }
    }

    /** Lets every batch waiting run, and every later one run at once. */
    void ungateAndRunAll() throws InterruptedException {
      gated = false;
      while (!gates.isEmpty()) {
        release();
      }
    }

    /** Lets the batch that is waiting (or the next one) run. */
    void release() throws InterruptedException {
      gates.take().countDown();
    }

    @Override
    public void close() {
      closed.set(true);
    }
  }

  private RingScheduler scheduler(int capacity, GatedExecutor executor) {
    RingScheduler scheduler =
        new RingScheduler("model 'm' version 1", new SchedulerSettings(capacity, 1), () -> executor);
    schedulers.add(scheduler);
    return scheduler;
  }

  private static DecodedRequest decoded() {
    return RequestDecoder.decode(Requests.fp32("x", new long[] {1, 1}, 1f), SIGNATURE);
  }

  private static InferenceRequest request(Answer answer) {
    return InferenceRequest.of(decoded(), System.nanoTime(), null, answer);
  }

  private static ErrorCode errorCode(CompletableFuture<?> future) throws InterruptedException {
    try {
      future.get(10, TimeUnit.SECONDS);
      throw new AssertionError("expected a failure, got a result");
    } catch (ExecutionException e) {
      return ((InferenceException) e.getCause()).code();
    } catch (java.util.concurrent.TimeoutException e) {
      throw new AssertionError("no answer within 10 s", e);
    }
  }

  @Test
  void fullRing_refusesAtOnceWithResourceExhausted() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(2, executor);
    Answer running = new Answer();
    scheduler.submit(request(running));
    assertThat(executor.started.poll(10, TimeUnit.SECONDS)).isEqualTo(1);
    // The executor is held; the batcher waits for it, so the ring fills.
    List<Answer> queued = List.of(new Answer(), new Answer());
    for (Answer answer : queued) {
      scheduler.submit(request(answer));
    }
    Answer refused = new Answer();
    assertThatThrownBy(() -> scheduler.submit(request(refused)))
        .isInstanceOfSatisfying(
            InferenceException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.RESOURCE_EXHAUSTED))
        .hasMessage(
            "model 'm' version 1 is overloaded: its queue of 2 requests is full; retry later or"
                + " with less concurrency")
        // No batch has ended: the pace is the running batch's so far, the hint within its bounds.
        .satisfies(e -> assertThat(((InferenceException) e).retryAfter())
            .isBetween(Duration.ofMillis(VersionScheduler.MIN_RETRY_MS), Duration.ofMillis(VersionScheduler.MAX_RETRY_MS)));
    assertThat(refused.answers()).isZero();

    executor.gated = false;
    executor.release();
    running.result.get(10, TimeUnit.SECONDS);
    for (Answer answer : queued) {
      answer.result.get(10, TimeUnit.SECONDS);
      assertThat(answer.answers()).isEqualTo(1);
    }
  }

  @Test
  void fullRing_asksARetryAfterTheTimeItsQueueTakes_atTheVersionsRecentPace() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(3, executor);
    assertThat(scheduler.nanosPerRequest()).as("before any batch").isZero();
    // One batch of one request held for at least 30 ms: the pace is then at least 30 ms a request.
    Answer first = new Answer();
    scheduler.submit(request(first));
    assertThat(executor.started.poll(10, TimeUnit.SECONDS)).isEqualTo(1);
    Thread.sleep(30);
    executor.release();
    first.result.get(10, TimeUnit.SECONDS);
    long paced = Duration.ofMillis(30).toNanos();
    // The pace is recorded after the answer: wait for it rather than for a time.
    for (int i = 0; i < 1_000 && scheduler.nanosPerRequest() == 0; i++) {
      Thread.sleep(10);
    }
    assertThat(scheduler.nanosPerRequest()).isGreaterThanOrEqualTo(paced);

    Answer running = new Answer();
    scheduler.submit(request(running));
    assertThat(executor.started.poll(10, TimeUnit.SECONDS)).isEqualTo(1);
    for (int i = 0; i < 3; i++) {
      scheduler.submit(request(new Answer()));
    }
    // Three waiting at 30 ms or more each: retry in 90 ms or more, never past the longest hint.
    for (Runnable refusal : List.<Runnable>of(() -> scheduler.submit(request(new Answer())), scheduler::refuseIfFull)) {
      assertThatThrownBy(refusal::run).isInstanceOfSatisfying(InferenceException.class, e -> {
        assertThat(e.code()).isEqualTo(ErrorCode.RESOURCE_EXHAUSTED);
        assertThat(e.retryAfter()).isBetween(Duration.ofNanos(3 * paced), Duration.ofMillis(VersionScheduler.MAX_RETRY_MS));
      });
    }
    executor.ungateAndRunAll();
  }

  @Test
  void aBatchRunningLongerThanThePace_slowsTheHint() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(2, executor);
    Answer running = new Answer();
    scheduler.submit(request(running));
    assertThat(executor.started.poll(10, TimeUnit.SECONDS)).isEqualTo(1);
    // A model stuck on its first batch: the pace is at least the time it has run so far.
    Thread.sleep(50);
    for (int i = 0; i < 2; i++) {
      scheduler.submit(request(new Answer()));
    }
    assertThatThrownBy(scheduler::refuseIfFull).isInstanceOfSatisfying(InferenceException.class,
        e -> assertThat(e.retryAfter()).isGreaterThanOrEqualTo(Duration.ofMillis(2 * 50)));
    executor.ungateAndRunAll();
    running.result.get(10, TimeUnit.SECONDS);
  }

  @Test
  void retryHint_isTheTimeToServeTheRequestsAtThePace_withinItsBounds() {
    VersionScheduler paced = atPace(25_000);
    assertThat(paced.retryAfter(1024)).isEqualTo(Duration.ofNanos(1024 * 25_000L));
    assertThat(paced.retryAfter(1)).as("at least").isEqualTo(Duration.ofMillis(VersionScheduler.MIN_RETRY_MS));
    assertThat(paced.retryAfter(1L << 40)).as("at most").isEqualTo(Duration.ofMillis(VersionScheduler.MAX_RETRY_MS));
    assertThat(atPace(0).retryAfter(1024)).as("before any batch")
        .isEqualTo(Duration.ofMillis(VersionScheduler.UNKNOWN_PACE_RETRY_MS));
  }

  /** A scheduler whose only behaviour is its pace, {@code nanos} per request (0: unknown). */
  private static VersionScheduler atPace(long nanos) {
    return new VersionScheduler() {
      @Override
      public void submit(InferenceRequest request) {}

      @Override
      public long queuedCount() {
        return 0;
      }

      @Override
      public void drain(Duration timeout) {}

      @Override
      public long nanosPerRequest() {
        return nanos;
      }
    };
  }

  @Test
  void pace_isAWeightedMeanOfRecentBatches_andTheExecutorsRatesAdd() {
    assertThat(ExecutorPool.smoothed(0, 800)).as("the first batch taken whole").isEqualTo(800);
    assertThat(ExecutorPool.smoothed(800, 1_600)).isEqualTo(800 + 800 / ExecutorPool.SMOOTHING);
    long pace = 0;
    for (int i = 0; i < 200; i++) {
      pace = ExecutorPool.smoothed(pace, 40_000);
    }
    assertThat(pace).as("settles on a steady pace").isBetween(39_000L, 40_000L);
    assertThat(ExecutorPool.smoothed(5, 0)).as("never 0 once a batch ran").isPositive();
  }

  @Test
  void expiredWhileQueued_isAnsweredDeadlineExceeded_andNotExecuted() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(8, executor);
    Answer running = new Answer();
    scheduler.submit(request(running));
    executor.started.poll(10, TimeUnit.SECONDS);

    Answer expired = new Answer();
    long now = System.nanoTime();
    // Its deadline is already behind it when the batcher takes it.
    scheduler.submit(InferenceRequest.withDeadline(decoded(), now, now - 1, null, expired));
    executor.gated = false;
    executor.release();

    assertThat(errorCode(expired.result)).isEqualTo(ErrorCode.DEADLINE_EXCEEDED);
    assertThatThrownBy(() -> expired.result.get())
        .hasMessageContaining("deadline passed after")
        .hasMessageContaining("the request was not executed");
    running.result.get(10, TimeUnit.SECONDS);
    assertThat(executor.executed.get()).isEqualTo(1);
  }

  @Test
  void cancelledWhileQueued_isDroppedBeforeExecution() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(8, executor);
    Answer running = new Answer();
    scheduler.submit(request(running));
    executor.started.poll(10, TimeUnit.SECONDS);

    AtomicBoolean cancelled = new AtomicBoolean();
    Answer dropped = new Answer();
    scheduler.submit(InferenceRequest.of(decoded(), System.nanoTime(), cancelled::get, dropped));
    cancelled.set(true);
    executor.gated = false;
    executor.release();

    assertThat(errorCode(dropped.result)).isEqualTo(ErrorCode.CANCELLED);
    running.result.get(10, TimeUnit.SECONDS);
    assertThat(executor.executed.get()).isEqualTo(1);
  }

  @Test
  void executorThatThrows_failsEveryRequestOfTheBatch_andKeepsServing() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    executor.gated = false;
    executor.failure = new IllegalStateException("boom");
    RingScheduler scheduler = scheduler(8, executor);
    Answer failed = new Answer();
    scheduler.submit(request(failed));
    assertThat(errorCode(failed.result)).isEqualTo(ErrorCode.INTERNAL);
    assertThatThrownBy(() -> failed.result.get()).hasMessageContaining("boom");

    executor.failure = null;
    Answer next = new Answer();
    scheduler.submit(request(next));
    next.result.get(10, TimeUnit.SECONDS);
    assertThat(next.answers()).isEqualTo(1);
  }

  @Test
  void executorThatForgetsARequest_isAnsweredInternal() throws Exception {
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(8, 1),
            () ->
                new BatchExecutor() {
                  @Override
                  public void execute(Batch batch) {}

                  @Override
                  public void close() {}
                });
    schedulers.add(scheduler);
    Answer forgotten = new Answer();
    scheduler.submit(request(forgotten));
    assertThat(errorCode(forgotten.result)).isEqualTo(ErrorCode.INTERNAL);
    assertThat(forgotten.answers()).isEqualTo(1);
  }

  @Test
  void drain_completesEverythingQueued_thenRefusesNewRequests() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(16, executor);
    List<Answer> answers = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      Answer answer = new Answer();
      answers.add(answer);
      scheduler.submit(request(answer));
    }
    executor.started.poll(10, TimeUnit.SECONDS);
    Thread releaser =
        new Thread(
            () -> {
              executor.gated = false;
              try {
                executor.release();
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            });
    releaser.start();
    scheduler.drain(Duration.ofSeconds(30));
    releaser.join();

    for (Answer answer : answers) {
      assertThat(answer.result).isCompleted();
      answer.result.get();
      assertThat(answer.answers()).isEqualTo(1);
    }
    assertThat(executor.executed.get()).isEqualTo(10);
    assertThat(executor.closed).isTrue();
    assertThatThrownBy(() -> scheduler.submit(request(new Answer())))
        .isInstanceOfSatisfying(
            InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE))
        .hasMessage("model 'm' version 1 is unloading and accepts no new requests");
  }

  @Test
  void drainTimeout_answersWhatIsStillQueuedUnavailable_atOnce_withExecutorThreads() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler =
        new RingScheduler("model 'm' version 1", new SchedulerSettings(16, 2), () -> executor);
    schedulers.add(scheduler);
    List<Answer> running = List.of(new Answer(), new Answer());
    for (Answer answer : running) {
      scheduler.submit(request(answer));
      executor.started.poll(10, TimeUnit.SECONDS);
    }
    List<Answer> queued = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      Answer answer = new Answer();
      queued.add(answer);
      scheduler.submit(request(answer));
    }
    // Both executors are held past the drain timeout: the queued requests are answered at once.
    Thread drainer = new Thread(() -> scheduler.drain(Duration.ZERO));
    drainer.start();
    for (Answer answer : queued) {
      assertThat(errorCode(answer.result)).isEqualTo(ErrorCode.UNAVAILABLE);
    }
    executor.gated = false;
    executor.release();
    executor.release();
    drainer.join(10_000);
    assertThat(drainer.isAlive()).isFalse();
    for (Answer answer : running) {
      answer.result.get(10, TimeUnit.SECONDS);
      assertThat(answer.answers()).isEqualTo(1);
    }
    assertThat(executor.executed.get()).isEqualTo(2);
  }

  /** What {@link RingScheduler} logs from its making until closed. */
  private static final class CapturedLog implements AutoCloseable {
    private final ch.qos.logback.classic.Logger logger =
        (ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(RingScheduler.class);
    private final ch.qos.logback.core.read.ListAppender<ch.qos.logback.classic.spi.ILoggingEvent> appender =
        new ch.qos.logback.core.read.ListAppender<>();

    CapturedLog() {
      appender.start();
      logger.addAppender(appender);
    }

    List<String> lines() {
      return appender.list.stream().map(ch.qos.logback.classic.spi.ILoggingEvent::getFormattedMessage).toList();
    }

    @Override
    public void close() {
      logger.detachAppender(appender);
    }
  }

  @Test
  void drainTimeout_withNothingQueued_saysNothing() {
    // A load closed unserved (a reload refused): no time to drain, nothing queued, nothing said.
    GatedExecutor idle = new GatedExecutor();
    idle.gated = false;
    RingScheduler unserved = scheduler(16, idle);
    try (CapturedLog log = new CapturedLog()) {
      unserved.drain(Duration.ZERO);
      assertThat(log.lines()).noneMatch(line -> line.contains("drain timeout"));
    }
  }

  @Test
  void drainTimeout_withOneInstance_answersTheQueueUnavailableWhenTheRunningBatchEnds()
      throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = scheduler(16, executor);
    Answer running = new Answer();
    scheduler.submit(request(running));
    executor.started.poll(10, TimeUnit.SECONDS);
    List<Answer> queued = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      Answer answer = new Answer();
      queued.add(answer);
      scheduler.submit(request(answer));
    }
    try (CapturedLog log = new CapturedLog()) {
      Thread drainer = new Thread(() -> scheduler.drain(Duration.ZERO));
      drainer.start();
      // The drain gives up at once and waits for the batcher, which runs the held batch itself.
      while (drainer.getState() != Thread.State.WAITING) {
        Thread.onSpinWait();
      }
      executor.gated = false;
      executor.release();
      drainer.join(10_000);
      assertThat(drainer.isAlive()).isFalse();
      // Said once, with how many it failed.
      assertThat(log.lines()).containsOnlyOnce(
          "model 'm' version 1: drain timeout of 0 ms passed; 5 queued requests were answered UNAVAILABLE");
    }
    running.result.get(10, TimeUnit.SECONDS);
    for (Answer answer : queued) {
      assertThat(errorCode(answer.result)).isEqualTo(ErrorCode.UNAVAILABLE);
    }
    assertThat(executor.executed.get()).isEqualTo(1);
  }

  @Test
  void manyProducers_everyRequestAnsweredExactlyOnce() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    executor.gated = false;
    RingScheduler scheduler =
        new RingScheduler("model 'm' version 1", new SchedulerSettings(64, 3), () -> executor);
    schedulers.add(scheduler);
    int threads = 8;
    int perThread = 500;
    AtomicInteger refused = new AtomicInteger();
    List<Answer> answers = java.util.Collections.synchronizedList(new ArrayList<>());
    List<Thread> producers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      Thread producer =
          new Thread(
              () -> {
                for (int i = 0; i < perThread; i++) {
                  Answer answer = new Answer();
                  try {
                    scheduler.submit(request(answer));
                    answers.add(answer);
                  } catch (InferenceException e) {
                    assertThat(e.code()).isEqualTo(ErrorCode.RESOURCE_EXHAUSTED);
                    refused.incrementAndGet();
                  }
                }
              });
      producers.add(producer);
      producer.start();
    }
    for (Thread producer : producers) {
      producer.join();
    }
    scheduler.drain(Duration.ofSeconds(30));
    for (Answer answer : answers) {
      answer.result.get(10, TimeUnit.SECONDS);
      assertThat(answer.answers()).isEqualTo(1);
    }
    assertThat(answers.size() + refused.get()).isEqualTo(threads * perThread);
  }

  @Test
  void queueCapacity_boundsEveryWaitingRequest_andAFullQueueRunsWithoutWaitingForCompany()
      throws Exception {
    GatedExecutor executor = new GatedExecutor();
    // Batches wait an hour for company; a capacity of 5 (ring of 8) must still admit exactly 5.
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(5, 1),
            new BatchPolicy(8, Duration.ofHours(1).toNanos(), List.of()),
            () -> executor,
            StageRecorder.NONE);
    schedulers.add(scheduler);
    List<Answer> accepted = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      Answer answer = new Answer();
      scheduler.submit(request(answer));
      accepted.add(answer);
    }
    // With the whole queue pending nothing more can join: the batch runs now, not in an hour.
    assertThat(executor.started.take()).isEqualTo(5);
    // While it runs, five more wait (in the ring or the pending list) and the rest are refused.
    int refused = 0;
    for (int i = 0; i < 300; i++) {
      Answer answer = new Answer();
      try {
        scheduler.submit(request(answer));
        accepted.add(answer);
      } catch (InferenceException e) {
        assertThat(e.code()).isEqualTo(ErrorCode.RESOURCE_EXHAUSTED);
        assertThat(e.getMessage()).contains("queue of 5 requests is full");
        refused++;
      }
      Thread.yield();
    }
    assertThat(accepted).hasSize(10);
    assertThat(refused).isEqualTo(295);
    assertThat(scheduler.queuedCount()).isEqualTo(5);
    executor.release();
    assertThat(executor.started.take()).isEqualTo(5);
    executor.release();
    for (Answer answer : accepted) {
      assertThat(answer.result.get(10, TimeUnit.SECONDS)).isNotNull();
    }
    assertThat(scheduler.queuedCount()).isZero();
  }

  /** Lets every batch run, now and later, and waits for each of {@code answers}. */
  private static void runAll(GatedExecutor executor, List<Answer> answers) throws Exception {
    executor.ungateAndRunAll();
    for (Answer answer : answers) {
      assertThat(answer.result.get(10, TimeUnit.SECONDS)).isNotNull();
    }
  }

  /** Submits {@code count} one-row requests in {@code lane}; returns their answers. */
  private static List<Answer> submit(RingScheduler scheduler, String lane, int count) {
    return submit(scheduler, lane, 1, count);
  }

  private static InferenceRequest request(String lane, Answer answer) {
    return request(lane, 1, answer);
  }

  private static InferenceRequest request(String lane, int weight, Answer answer) {
    return InferenceRequest.inLane(lane, weight, decoded(), System.nanoTime(), Long.MAX_VALUE, null, answer);
  }

  /** Submits {@code count} one-row requests in {@code lane} of {@code weight}; returns their answers. */
  private static List<Answer> submit(RingScheduler scheduler, String lane, int weight, int count) {
    List<Answer> answers = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      Answer answer = new Answer();
      scheduler.submit(request(lane, weight, answer));
      answers.add(answer);
    }
    return answers;
  }

  private static long done(List<Answer> answers) {
    return answers.stream().filter(a -> a.result.isDone()).count();
  }

  /** A scheduler of one executor, a queue of 64 and batches of up to 8 rows, run at once. */
  private RingScheduler batchesOf8(GatedExecutor executor) {
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1", new SchedulerSettings(64, 1), new BatchPolicy(8, 0, List.of()), () -> executor,
            StageRecorder.NONE);
    schedulers.add(scheduler);
    return scheduler;
  }

  @Test
  void lanes_withBacklogs_shareEachBatchInProportionToTheirWeights() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = batchesOf8(executor);
    List<Answer> first = submit(scheduler, "bronze", 1, 1);
    assertThat(executor.started.take()).isEqualTo(1);
    // While that batch runs, both lanes queue a backlog: gold (weight 3) and bronze (weight 1).
    List<Answer> gold = submit(scheduler, "gold", 3, 20);
    List<Answer> bronze = submit(scheduler, "bronze", 1, 20);
    executor.release();
    // Each batch of 8 rows: gold places 8 * 3/4 = 6, bronze 8 * 1/4 = 2.
    assertThat(executor.started.take()).isEqualTo(8);
    assertThat(executor.startedLanes.poll(10, TimeUnit.SECONDS)).isEqualTo("bronze");
    assertThat(executor.startedLanes.poll(10, TimeUnit.SECONDS)).isEqualTo("gold");
    executor.release();
    assertThat(executor.started.take()).isEqualTo(8);
    assertThat(first.get(0).result.get(10, TimeUnit.SECONDS)).isNotNull();
    assertThat(done(gold)).isEqualTo(6);
    assertThat(done(bronze)).isEqualTo(2);
    // The next batch starts with bronze's turn and shares the same way (both lanes still beyond
    // their shares: a lane within its share would run on its own first).
    assertThat(executor.startedLanes.poll(10, TimeUnit.SECONDS)).isEqualTo("bronze");
    executor.release();
    assertThat(executor.started.take()).isEqualTo(8);
    assertThat(done(gold)).isEqualTo(12);
    assertThat(done(bronze)).isEqualTo(4);
    runAll(executor, bronze);
  }

  @Test
  void lanes_aLaneIsLightWithinItsWeightedShare_andRunsAheadOfTheBacklog() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = batchesOf8(executor);
    submit(scheduler, "flood", 1, 1);
    assertThat(executor.started.take()).isEqualTo(1);
    submit(scheduler, "flood", 1, 20);
    // Five rows pending: beyond an equal share of a batch of 8 (4), within gold's weighted one (6).
    List<Answer> gold = submit(scheduler, "gold", 3, 5);
    executor.release();
    assertThat(executor.started.take()).isEqualTo(5);
    assertThat(executor.startedLanes.poll(10, TimeUnit.SECONDS)).isEqualTo("flood");
    assertThat(executor.startedLanes.poll(10, TimeUnit.SECONDS)).isEqualTo("gold");
    executor.release();
    // Then the flood gets a whole batch.
    assertThat(executor.started.take()).isEqualTo(8);
    for (Answer answer : gold) {
      assertThat(answer.result.get(10, TimeUnit.SECONDS)).isNotNull();
    }
    executor.ungateAndRunAll();
  }

  @Test
  void lanes_aQuietLaneRunsAheadOfAFlood_andBackloggedLanesShareEachBatch() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(64, 1),
            new BatchPolicy(4, 0, List.of()),
            () -> executor,
            StageRecorder.NONE);
    schedulers.add(scheduler);
    Answer first = new Answer();
    scheduler.submit(request("flood", first));
    assertThat(executor.started.take()).isEqualTo(1);
    // While that batch runs, the flood queues 20 and then a quiet tenant sends one.
    List<Answer> flood = submit(scheduler, "flood", 20);
    Answer quiet = new Answer();
    scheduler.submit(request("quiet", quiet));
    executor.release();
    // The quiet lane is within its share of a batch, the flood beyond: the quiet one runs on its own.
    assertThat(executor.started.take()).isEqualTo(1);
    executor.release();
    // Then the flood gets a full batch: a light lane never starves a backlog.
    assertThat(executor.started.take()).isEqualTo(4);
    assertThat(quiet.result.get(10, TimeUnit.SECONDS)).isNotNull();
    assertThat(flood.stream().filter(a -> a.result.isDone()).count()).isZero();
    // Two lanes with a backlog each share every batch, half its rows each.
    List<Answer> second = submit(scheduler, "second", 8);
    executor.release();
    assertThat(executor.started.take()).isEqualTo(4);
    assertThat(flood.stream().filter(a -> a.result.isDone()).count()).isEqualTo(4);
    executor.release();
    assertThat(executor.started.take()).isEqualTo(4);
    assertThat(flood.stream().filter(a -> a.result.isDone()).count()).isEqualTo(6);
    assertThat(second.stream().filter(a -> a.result.isDone()).count()).isEqualTo(2);
    runAll(executor, flood);
  }

  @Test
  void reservedExecutor_servesALaneWithoutBacklog_whileTheBacklogsBatchRunsOnTheOther() throws Exception {
    GatedExecutor executor = new GatedExecutor(); // both executors: batches start and wait here
    RingScheduler scheduler = reservedScheduler(executor);
    // One flood request runs on one executor (unrestricted); a quiet one on the other (reserved).
    scheduler.submit(request("flood", new Answer()));
    assertThat(executor.started.take()).isEqualTo(1);
    CountDownLatch floodGate = executor.gates.take();
    scheduler.submit(request("quiet", new Answer()));
    assertThat(executor.started.take()).isEqualTo(1);
    CountDownLatch quietGate = executor.gates.take();
    // Gates taken out of the queue: let go by the drain after a failure too.
    heldGates.add(floodGate);
    heldGates.add(quietGate);
    assertThat(executor.startedLanes).containsExactly("flood", "quiet");
    executor.startedLanes.clear();
    // The flood's batch on an executor's thread; the quiet one on the batcher's, which its
    // request woke (no second thread to wake).
    assertThat(executor.startedThreads.take()).endsWith("-exec-0");
    assertThat(executor.startedThreads.take()).endsWith("-batcher");
    // Both busy: the flood queues a backlog of 20 rows, five batches.
    List<Answer> flood = submit(scheduler, "flood", 20);
    // The quiet batch ends while the flood's runs: that executor is kept for lanes without a
    // backlog, so the batcher waits for requests with the backlog pending (it would otherwise have
    // handed the executor a flood batch and waited for an idle executor instead)...
    quietGate.countDown();
    long giveUp = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!scheduler.batcherWaitsForRequests()) {
      assertThat(System.nanoTime() - giveUp).as("the batcher never waited with an executor free").isNegative();
      Thread.onSpinWait();
    }
    assertThat(executor.started).as("no flood batch took the reserved executor").isEmpty();
    // ...and the quiet tenant's next request runs on it at once, on the batcher's thread.
    Answer quiet = new Answer();
    scheduler.submit(request("quiet", quiet));
    assertThat(executor.started.take()).isEqualTo(1);
    assertThat(executor.startedLanes.take()).isEqualTo("quiet");
    assertThat(executor.startedThreads.take()).endsWith("-batcher");
    executor.release(); // the quiet batch
    assertThat(quiet.result.get(10, TimeUnit.SECONDS)).isNotNull();
    // The flood's batch ending lets the backlog's next batch run, on an executor's thread.
    floodGate.countDown();
    assertThat(executor.started.take()).isEqualTo(4);
    assertThat(executor.startedLanes.take()).isEqualTo("flood");
    assertThat(executor.startedThreads.take()).contains("-exec-");
    runAll(executor, flood);
  }

  @Test
  void aBacklogsPace_countsOnlyTheExecutorsThatMayServeIt_notTheOneReservedForOthers() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler = reservedScheduler(executor);
    assertThat(scheduler.backlogNanosPerRequest()).as("before any batch").isZero();
    // The flood's request on one executor (unrestricted), the quiet one on the reserved one.
    Answer flood = new Answer();
    scheduler.submit(request("flood", flood));
    assertThat(executor.started.take()).isEqualTo(1);
    CountDownLatch floodGate = executor.gates.take();
    heldGates.add(floodGate);
    Answer quiet = new Answer();
    scheduler.submit(request("quiet", quiet));
    assertThat(executor.started.take()).isEqualTo(1);
    CountDownLatch quietGate = executor.gates.take();
    heldGates.add(quietGate);
    assertThat(executor.startedLanes).containsExactly("flood", "quiet");
    // The quiet batch ends at once, and its pace is recorded before the batcher (which ran it) waits.
    quietGate.countDown();
    assertThat(quiet.result.get(10, TimeUnit.SECONDS)).isNotNull();
    long giveUp = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!scheduler.batcherWaitsForRequests()) {
      assertThat(System.nanoTime() - giveUp).as("the batcher never went back to waiting").isNegative();
      Thread.onSpinWait();
    }
    // The flood's batch takes at least 40 ms for its one request.
    Thread.sleep(40);
    floodGate.countDown();
    assertThat(flood.result.get(10, TimeUnit.SECONDS)).isNotNull();
    long paced = Duration.ofMillis(40).toNanos();
    // Running or recorded, the flood's batch counts at 40 ms or more a request; the pool's pace adds
    // the reserved executor's quick batch, which a backlog does not get.
    long backlog = scheduler.backlogNanosPerRequest();
    assertThat(backlog).isGreaterThanOrEqualTo(paced);
    assertThat(scheduler.nanosPerRequest()).isPositive().isLessThan(paced);
    assertThat(scheduler.backlogRetryAfter(3)).isGreaterThanOrEqualTo(Duration.ofNanos(3 * paced))
        .isGreaterThan(scheduler.retryAfter(3));
  }

  /** Two executors running {@code executor}, one reserved for lanes without a backlog; batches of 4 rows. */
  private RingScheduler reservedScheduler(GatedExecutor executor) {
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(64, 2, 0, List.of(), 1),
            new BatchPolicy(4, 0, List.of()),
            () -> executor,
            StageRecorder.NONE);
    schedulers.add(scheduler);
    return scheduler;
  }

  @Test
  void reservedInstances_mustLeaveAnExecutorForTheBacklog() {
    assertThatThrownBy(() -> new SchedulerSettings(64, 2, 0, List.of(), 2))
        .hasMessage("reserved_instances: 2 (expected: 0 to instances - 1 = 1; at least one executor must be free to"
            + " serve a tenant with a backlog)");
    assertThatThrownBy(() -> new SchedulerSettings(64, 2, 0, List.of(), -1)).hasMessageStartingWith("reserved_instances: -1");
  }

  @Test
  void lanes_withoutLanes_theSameQueueIsFirstInFirstOut() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(64, 1),
            new BatchPolicy(4, 0, List.of()),
            () -> executor,
            StageRecorder.NONE);
    schedulers.add(scheduler);
    scheduler.submit(request(new Answer()));
    assertThat(executor.started.take()).isEqualTo(1);
    for (int i = 0; i < 20; i++) {
      scheduler.submit(request(new Answer()));
    }
    Answer last = new Answer();
    scheduler.submit(request(last));
    executor.release();
    assertThat(executor.started.take()).isEqualTo(4);
    executor.release();
    assertThat(executor.started.take()).isEqualTo(4);
    assertThat(last.result).isNotDone();
    executor.gated = false;
    while (!executor.gates.isEmpty()) {
      executor.release();
    }
    assertThat(last.result.get(10, TimeUnit.SECONDS)).isNotNull();
  }

  @org.junit.jupiter.params.ParameterizedTest(name = "max batch size {0}")
  @org.junit.jupiter.params.provider.ValueSource(ints = {0, 1})
  void lanes_takeTurnsWhenEveryRequestRunsAlone(int maxBatchSize) throws Exception {
    GatedExecutor executor = new GatedExecutor();
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(64, 1),
            new BatchPolicy(maxBatchSize, 0, List.of()),
            () -> executor,
            StageRecorder.NONE);
    schedulers.add(scheduler);
    scheduler.submit(request("flood", new Answer()));
    assertThat(executor.started.take()).isEqualTo(1);
    List<Answer> flood = submit(scheduler, "flood", 5);
    Answer quiet = new Answer();
    scheduler.submit(request("quiet", quiet));
    executor.release();
    assertThat(executor.started.take()).isEqualTo(1);
    executor.release();
    assertThat(executor.started.take()).isEqualTo(1);
    // The flood was served last, so the quiet lane's request ran second, ahead of five older ones.
    assertThat(quiet.result.get(10, TimeUnit.SECONDS)).isNotNull();
    assertThat(flood.stream().filter(a -> a.result.isDone()).count()).isZero();
    runAll(executor, flood);
  }

  @Test
  void aFailingBatcher_answersItsQueue_refusesWhatFollows_andTellsItsListener() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    CompletableFuture<Throwable> told = new CompletableFuture<>();
    RingScheduler scheduler =
        new RingScheduler(
            "model 'm' version 1",
            new SchedulerSettings(16, 1),
            BatchPolicy.UNBATCHED,
            () -> executor,
            StageRecorder.NONE,
            told::complete);
    schedulers.add(scheduler);
    Answer running = new Answer();
    scheduler.submit(request(running));
    assertThat(executor.started.poll(10, TimeUnit.SECONDS)).isEqualTo(1);
    // Queued behind the running batch: one whose cancellation check throws (a defect the batcher
    // meets when it looks at the queue), and two ordinary requests.
    Answer poisoned = new Answer();
    scheduler.submit(
        InferenceRequest.of(
            decoded(),
            System.nanoTime(),
            () -> {
              throw new IllegalStateException("broken cancellation check");
            },
            poisoned));
    Answer queuedA = new Answer();
    Answer queuedB = new Answer();
    scheduler.submit(request(queuedA));
    scheduler.submit(request(queuedB));
    executor.release();
    assertThat(running.result.get(10, TimeUnit.SECONDS)).isNotNull();
    assertThat(told.get(10, TimeUnit.SECONDS)).hasMessage("broken cancellation check");
    for (Answer answer : List.of(poisoned, queuedA, queuedB)) {
      assertThat(errorCode(answer.result)).isEqualTo(ErrorCode.UNAVAILABLE);
      assertThat(answer.answers()).isEqualTo(1);
    }
    assertThat(scheduler.failure()).contains("batcher failed").contains("broken cancellation check");
    Answer later = new Answer();
    assertThatThrownBy(() -> scheduler.submit(request(later)))
        .isInstanceOfSatisfying(
            InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE))
        .hasMessageContaining("batcher failed");
    assertThat(scheduler.queuedCount()).isZero();
  }

  @Test
  void theGatewaysOwnRequests_areExecutedButNotRecorded_withTheCallers() throws Exception {
    GatedExecutor executor = new GatedExecutor();
    executor.gated = false;
    BlockingQueue<String> recorded = new LinkedBlockingQueue<>();
    StageRecorder recorder = new StageRecorder() {
      @Override
      public void recordRequest(long queueNanos, long computeNanos) {
        recorded.add("request");
      }

      @Override
      public void recordBatch(int requests, int rows, long computeNanos) {
        recorded.add("execution of " + requests);
      }
    };
    RingScheduler scheduler = new RingScheduler(
        "model 'm' version 1", new SchedulerSettings(64, 1), new BatchPolicy(8, 0, List.of()), () -> executor, recorder);
    schedulers.add(scheduler);
    Answer own = new Answer();
    scheduler.submit(InferenceRequest.ofTheGateway(decoded(), own));
    assertThat(own.result.get(10, TimeUnit.SECONDS)).isNotNull();
    Answer caller = new Answer();
    scheduler.submit(request(caller));
    assertThat(caller.result.get(10, TimeUnit.SECONDS)).isNotNull();
    // One executor thread: the caller's records come after the first execution has ended.
    assertThat(recorded.poll(10, TimeUnit.SECONDS)).isEqualTo("request");
    assertThat(recorded.poll(10, TimeUnit.SECONDS)).isEqualTo("execution of 1");
    assertThat(recorded).isEmpty();
    assertThat(executor.executed).hasValue(2);
  }
}

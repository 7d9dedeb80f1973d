package io.modelgate.gateway.stats;

import io.grpc.Status;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.modelgate.runtime.execution.StageRecorder;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.DoubleAccumulator;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * The statistics of one model version: end-to-end, queue and compute latency, rows per
 * execution, answers by status code, shadow comparisons, and recent latency samples for rollout
 * decisions. One instance per (model, version), created the first time the version loads and kept
 * across reloads.
 *
 * <p>Recording ({@link #recordRequest}, {@link #recordBatch}, {@link #recordAnswer}, {@link
 * #recordShadow}) is called from executor and event-loop threads, concurrently, and allocates
 * nothing: HdrHistogram {@link Recorder}s, {@link LongAdder}s, Micrometer meters created at load
 * time, and fixed rings of samples. Latencies are kept in microseconds.
 *
 * <p>Windows: {@link StatsRegistry}'s rotator thread calls {@link #rotate} at a fixed interval;
 * each call closes one interval. Window queries add up the last intervals, so a window's figures
 * are at most one interval old.
 */
public final class VersionStats implements StageRecorder {
  static final long MAX_MICROS = TimeUnit.HOURS.toMicros(1);
  static final long MAX_ROWS = 1 << 20;
  /** Two significant digits: every value and percentile within 1% (fixed memory, see {@link Windows}). */
  static final int DIGITS = 2;
  /** The most batch sizes reported one by one in {@link #statistics()}. */
  static final int MAX_BATCH_SIZES = 1024;
  private static final int CODES = Status.Code.values().length;
  /**
   * The counts each statistics interval keeps: answers by status code (indexed by {@link
   * Status.Code#value()}), then, recorded on a shadow version, its comparisons, those whose argmax
   * agreed, and the copies that failed.
   */
  static final int COUNTS = CODES + 3;
  static final int SHADOW_COMPARED = CODES;
  static final int SHADOW_AGREED = CODES + 1;
  static final int SHADOW_FAILED = CODES + 2;

  private final String model;
  private final long version;
  private final long epochMillis;

  private final Recorder endToEnd = new Recorder(1, MAX_MICROS, DIGITS);
  private final Recorder queue = new Recorder(1, MAX_MICROS, DIGITS);
  private final Recorder compute = new Recorder(1, MAX_MICROS, DIGITS);
  private final Recorder rows = new Recorder(1, MAX_ROWS, DIGITS);
  private final LongAdder[] answers = new LongAdder[CODES];

  private final LongAdder shadowCompared = new LongAdder();
  private final MeterRegistry registry;
  /** The meters registered for this version, removed when it is retired. */
  private final List<io.micrometer.core.instrument.Meter> owned = new java.util.concurrent.CopyOnWriteArrayList<>();
  /** Per primary version: (agreed, disagreed, failed) counters for Prometheus. */
  private final java.util.concurrent.ConcurrentHashMap<Long, Counter[]> pairs = new java.util.concurrent.ConcurrentHashMap<>();
  /** Recent shadow comparisons: (ms since {@code epochMillis}) << 1 | agreed. */
  private static final int SHADOW_SAMPLES = 1 << 12;
  private final AtomicLongArray shadowSamples = new AtomicLongArray(SHADOW_SAMPLES);
  private final AtomicLong shadowCursor = new AtomicLong();
  private final LongAdder shadowAgreed = new LongAdder();
  private final LongAdder shadowFailed = new LongAdder();
  private final DoubleAccumulator shadowMaxDiff = new DoubleAccumulator(Math::max, 0);

  /** Live answers for rollout decisions, at several rates. */
  private final SampleLevels samples = new SampleLevels();

  private final Timer endToEndTimer;
  private final Timer queueTimer;
  private final Timer computeTimer;
  private final DistributionSummary rowsSummary;
  private final Counter[] answerCounters = new Counter[CODES];
  /** Runs of the model beyond the first, for executions run again in parts. */
  private final Counter rerunsCounter;

  private final Windows windows;

  // Cumulative since the version first loaded, as Triton's statistics extension reports them.
  private final Total success = new Total();
  private final Total fail = new Total();
  private final Total queueTotal = new Total();
  private final Total computeInput = new Total();
  private final Total computeInfer = new Total();
  private final Total computeOutput = new Total();
  private final LongAdder inferenceCount = new LongAdder();
  private final LongAdder executionCount = new LongAdder();
  private volatile long lastInferenceMillis;
  /**
   * By rows per execution; one entry per batch size seen, at most {@link #MAX_BATCH_SIZES} (sizes
   * seen after that are counted in the totals only), about 200 bytes each.
   */
  private final java.util.concurrent.ConcurrentHashMap<Integer, BatchSize> batchSizes =
      new java.util.concurrent.ConcurrentHashMap<>();

  /** A count and a total duration, added to from any thread. */
  private static final class Total {
    final LongAdder count = new LongAdder();
    final LongAdder nanos = new LongAdder();

    void add(long times, long totalNanos) {
      count.add(times);
      nanos.add(totalNanos);
    }

    io.modelgate.proto.inference.StatisticDuration proto() {
      return io.modelgate.proto.inference.StatisticDuration.newBuilder()
          .setCount(count.sum())
          .setNs(nanos.sum())
          .build();
    }
  }

  /** The executions of one batch size, by phase. */
  private static final class BatchSize {
    final Total input = new Total();
    final Total infer = new Total();
    final Total output = new Total();
  }

  VersionStats(String model, long version, MeterRegistry registry, int intervalsPerMinute, long nowMillis) {
    this.model = model;
    this.version = version;
    this.epochMillis = nowMillis;
    for (int i = 0; i < CODES; i++) {
      answers[i] = new LongAdder();
    }
    String v = Long.toString(version);
    this.endToEndTimer = timer(registry, model, v, "end_to_end");
    this.queueTimer = timer(registry, model, v, "queue");
    this.computeTimer = timer(registry, model, v, "compute");
    this.rowsSummary =
        DistributionSummary.builder("modelgate.batch.rows")
            .description("Rows per ONNX Runtime execution")
            .tags("model", model, "version", v)
            .serviceLevelObjectives(ROWS_BUCKETS)
            .register(registry);
    for (Status.Code code : Status.Code.values()) {
      answerCounters[code.value()] =
          Counter.builder("modelgate.requests")
              .description("Inference requests answered, by gRPC status code")
              .tags("model", model, "version", v, "code", code.name())
              .register(registry);
    }
    this.rerunsCounter =
        Counter.builder("modelgate.batch.reruns")
            .description("Runs of the model beyond the first for batches that failed and were run again in parts,"
                + " to find the requests at fault")
            .tags("model", model, "version", v)
            .register(registry);
    this.windows = new Windows(intervalsPerMinute, COUNTS, nowMillis);
    this.registry = registry;
    owned.addAll(List.of(endToEndTimer, queueTimer, computeTimer, rowsSummary, rerunsCounter));
    owned.addAll(List.of(answerCounters));
    for (int i = 0; i < SHADOW_SAMPLES; i++) {
      shadowSamples.setPlain(i, Long.MIN_VALUE);
    }
  }

  /** Latency buckets exported to Prometheus, from 100 µs to 10 s (about 2.5 per decade). */
  static final Duration[] LATENCY_BUCKETS = {
    Duration.ofNanos(100_000), Duration.ofNanos(250_000), Duration.ofNanos(500_000),
    Duration.ofMillis(1), Duration.ofNanos(2_500_000), Duration.ofMillis(5),
    Duration.ofMillis(10), Duration.ofMillis(25), Duration.ofMillis(50),
    Duration.ofMillis(100), Duration.ofMillis(250), Duration.ofMillis(500),
    Duration.ofSeconds(1), Duration.ofMillis(2_500), Duration.ofSeconds(5), Duration.ofSeconds(10)
  };

  /** Rows-per-execution buckets exported to Prometheus: powers of two to 1024. */
  static final double[] ROWS_BUCKETS = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

  private static Timer timer(MeterRegistry registry, String model, String version, String stage) {
    return Timer.builder("modelgate.request.duration")
        .description(
            "Inference latency by stage: end_to_end (arrival to answer), queue (arrival to the start"
                + " of its execution), compute (ONNX Runtime's run of the request's batch)")
        .tags("model", model, "version", version, "stage", stage)
        .serviceLevelObjectives(LATENCY_BUCKETS)
        .register(registry);
  }

  public String model() {
    return model;
  }

  /** Counts {@code meter} among this version's, to be taken from the registry with them. */
  void own(io.micrometer.core.instrument.Meter meter) {
    owned.add(meter);
  }

  /**
   * Takes from the registry the comparison counters of this shadow with {@code primary}, a version
   * that has been forgotten; a comparison with it later makes them again.
   */
  void forgetPrimary(long primary) {
    Counter[] counters = pairs.remove(primary);
    if (counters != null) {
      for (Counter counter : counters) {
        owned.remove(counter);
        registry.remove(counter);
      }
    }
  }

  /**
   * Takes every meter of this version from the registry: it has been retired ({@link
   * StatsRegistry#retire}). Recording afterwards still works but is exported nowhere.
   */
  void removeMeters() {
    for (io.micrometer.core.instrument.Meter meter : owned) {
      registry.remove(meter);
    }
    owned.clear();
  }

  public long version() {
    return version;
  }

  // ---- recording (hot path) ----

  @Override
  public void recordRequest(long queueNanos, long computeNanos) {
    queueTotal.add(1, queueNanos);
    queue.recordValue(clamp(queueNanos / 1000));
    queueTimer.record(queueNanos, TimeUnit.NANOSECONDS);
    compute.recordValue(clamp(computeNanos / 1000));
    computeTimer.record(computeNanos, TimeUnit.NANOSECONDS);
  }

  @Override
  public void recordReruns(int runs) {
    rerunsCounter.increment(runs);
  }

  @Override
  public void recordBatch(int requests, int batchRows, long computeNanos) {
    rows.recordValue(Math.min(Math.max(batchRows, 1), MAX_ROWS));
    rowsSummary.record(batchRows);
  }

  /**
   * One execution by phase: rows per execution, and the cumulative figures of {@link
   * #statistics()} — each request of the batch accrues the batch's phase times, as in Triton.
   */
  @Override
  public void recordExecution(int requests, int batchRows, long inputNanos, long inferNanos, long outputNanos) {
    recordBatch(requests, batchRows, inputNanos + inferNanos + outputNanos);
    executionCount.increment();
    inferenceCount.add(batchRows);
    computeInput.add(requests, requests * inputNanos);
    computeInfer.add(requests, requests * inferNanos);
    computeOutput.add(requests, requests * outputNanos);
    BatchSize size = batchSizes.get(batchRows);
    if (size == null && batchSizes.size() < MAX_BATCH_SIZES) {
      // Once per batch size, and never more than MAX_BATCH_SIZES of them.
      size = batchSizes.computeIfAbsent(batchRows, r -> new BatchSize());
    }
    if (size != null) {
      size.input.add(1, inputNanos);
      size.infer.add(1, inferNanos);
      size.output.add(1, outputNanos);
    }
    lastInferenceMillis = System.currentTimeMillis();
  }

  /**
   * This version's cumulative statistics in the form of Triton's statistics extension: successful
   * and failed requests with their total time in the gateway, queue time, the input, infer and
   * output phases of their executions, rows inferred ({@code inference_count}), executions, and
   * the same phases per batch size.
   */
  public io.modelgate.proto.inference.ModelStatistics statistics() {
    io.modelgate.proto.inference.ModelStatistics.Builder out =
        io.modelgate.proto.inference.ModelStatistics.newBuilder()
            .setName(model)
            .setVersion(Long.toString(version))
            .setLastInference(lastInferenceMillis)
            .setInferenceCount(inferenceCount.sum())
            .setExecutionCount(executionCount.sum())
            .setInferenceStats(
                io.modelgate.proto.inference.InferStatistics.newBuilder()
                    .setSuccess(success.proto())
                    .setFail(fail.proto())
                    .setQueue(queueTotal.proto())
                    .setComputeInput(computeInput.proto())
                    .setComputeInfer(computeInfer.proto())
                    .setComputeOutput(computeOutput.proto()));
    new java.util.TreeMap<>(batchSizes)
        .forEach(
            (rowsPerExecution, size) ->
                out.addBatchStats(
                    io.modelgate.proto.inference.InferBatchStatistics.newBuilder()
                        .setBatchSize(rowsPerExecution)
                        .setComputeInput(size.input.proto())
                        .setComputeInfer(size.infer.proto())
                        .setComputeOutput(size.output.proto())));
    return out.build();
  }

  /**
   * One answered request: its status code and, for OK, its end-to-end latency (from arrival at the
   * gateway to the response handed to the transport).
   *
   * @param shadowCopy a copy sent to this version as a shadow: counted and timed here, but never a
   *     sample for rollout decisions ({@link #samplesSince}), which judge live traffic only
   */
  public void recordAnswer(Status.Code code, long endToEndNanos, long nowMillis, boolean shadowCopy) {
    answers[code.value()].increment();
    answerCounters[code.value()].increment();
    (code == Status.Code.OK ? success : fail).add(1, endToEndNanos);
    long micros = clamp(endToEndNanos / 1000);
    if (code == Status.Code.OK) {
      endToEnd.recordValue(micros);
      endToEndTimer.record(endToEndNanos, TimeUnit.NANOSECONDS);
    }
    if (!shadowCopy) {
      long at = (nowMillis - epochMillis) << 32;
      samples.record(code == Status.Code.OK ? at | micros : at | SampleLevels.ERROR);
    }
  }

  /** {@link #recordAnswer(Status.Code, long, long, boolean)} for a live (not shadow) request. */
  public void recordAnswer(Status.Code code, long endToEndNanos, long nowMillis) {
    recordAnswer(code, endToEndNanos, nowMillis, false);
  }

  /**
   * A shadow answer of this version compared with the answer of {@code primary}: whether their
   * argmax agreed, and their largest difference. Counted per (primary, shadow) pair for
   * Prometheus, in this version's windows, and kept with its time for rollouts ({@link
   * #shadowSince}).
   */
  public void recordShadow(long primary, boolean argmaxAgreed, double maxAbsDiff, long nowMillis) {
    shadowCompared.increment();
    if (argmaxAgreed) {
      shadowAgreed.increment();
    }
    shadowMaxDiff.accumulate(maxAbsDiff);
    pair(primary)[argmaxAgreed ? 0 : 1].increment();
    long at = (nowMillis - epochMillis) << 1;
    shadowSamples.setRelease((int) (shadowCursor.getAndIncrement() & (SHADOW_SAMPLES - 1)), argmaxAgreed ? at | 1 : at);
  }

  /** A shadow copy of a request to {@code primary} that failed or could not be compared. */
  public void recordShadowFailure(long primary) {
    shadowFailed.increment();
    pair(primary)[2].increment();
  }

  /** The pair's counters (agreed, disagreed, failed), made on its first comparison. */
  private Counter[] pair(long primary) {
    Counter[] counters = pairs.get(primary);
    if (counters == null) {
      counters = pairs.computeIfAbsent(primary, p -> {
        Counter[] made = new Counter[3];
        String[] outcomes = {"agreed", "disagreed", "failed"};
        for (int i = 0; i < 3; i++) {
          made[i] = Counter.builder("modelgate.shadow.comparisons")
              .description("Shadow copies compared with their primary answer, by (primary, shadow) pair and outcome"
                  + " (agreed: the same argmax)")
              .tags("model", model, "primary", Long.toString(p), "shadow", Long.toString(version), "outcome", outcomes[i])
              .register(registry);
          owned.add(made[i]);
        }
        return made;
      });
    }
    return counters;
  }

  /** Shadow comparisons of this version since {@code sinceMillis}: how many, and how many agreed. */
  public record ShadowAgreement(long compared, long agreed) {
    public double rate() {
      return compared == 0 ? 0 : agreed / (double) compared;
    }
  }

  /**
   * The most recent shadow comparisons (up to {@value #SHADOW_SAMPLES}) since {@code sinceMillis}:
   * what a rollout's shadow phase is judged on.
   */
  public ShadowAgreement shadowSince(long sinceMillis) {
    long since = sinceMillis - epochMillis;
    long end = shadowCursor.get();
    long start = Math.max(0, end - SHADOW_SAMPLES);
    long compared = 0;
    long agreed = 0;
    for (long i = end - 1; i >= start; i--) {
      long sample = shadowSamples.getAcquire((int) (i & (SHADOW_SAMPLES - 1)));
      if (sample == Long.MIN_VALUE || (sample >> 1) < since) {
        continue;
      }
      compared++;
      agreed += sample & 1;
    }
    return new ShadowAgreement(compared, agreed);
  }

  private static long clamp(long micros) {
    return Math.min(Math.max(micros, 1), MAX_MICROS);
  }

  // ---- reading (admin and rotator threads) ----

  /** Answers by status code since the version first loaded, indexed by {@link Status.Code#value()}. */
  long[] answerCounts() {
    long[] counts = new long[COUNTS];
    counts[SHADOW_COMPARED] = shadowCompared.sum();
    counts[SHADOW_AGREED] = shadowAgreed.sum();
    counts[SHADOW_FAILED] = shadowFailed.sum();
    for (int i = 0; i < CODES; i++) {
      counts[i] = answers[i].sum();
    }
    return counts;
  }

  /**
   * Latencies (µs) and errors of live answers recorded at or after {@code sinceMillis}: every
   * answer where the last {@value SampleLevels#FINE} reach back that far, otherwise a uniform
   * random sample of them (one in 16, 256 or 4,096: {@link Samples#answers} says how many answers
   * they stand for). Where not even the sparsest reaches back to {@code sinceMillis} (hours at
   * thousands of answers a second), the samples are complete only from a later time, which {@link
   * Samples#fromMillis} says.
   */
  public Samples samplesSince(long sinceMillis) {
    SampleLevels.Read read = samples.since(sinceMillis - epochMillis, epochMillis);
    long kept = read.latenciesMicros().length + read.errors();
    return new Samples(read.latenciesMicros(), read.errors(), read.fromMillis(), kept * read.oneIn());
  }

  /**
   * Two versions' samples over the same span (a rollout's baseline and candidate): since {@code
   * sinceMillis}, or, where either's samples do not reach back that far, since the later of the
   * times from which each is complete — so that neither is judged on a period the other's
   * samples leave out. Either may be null (no statistics: no samples).
   */
  public static Samples[] alignedSince(VersionStats first, VersionStats second, long sinceMillis) {
    Samples a = first == null ? Samples.none(sinceMillis) : first.samplesSince(sinceMillis);
    Samples b = second == null ? Samples.none(sinceMillis) : second.samplesSince(sinceMillis);
    long common = Math.max(a.fromMillis(), b.fromMillis());
    if (common > sinceMillis) {
      a = first == null ? Samples.none(common) : first.samplesSince(common);
      b = second == null ? Samples.none(common) : second.samplesSince(common);
    }
    return new Samples[] {a, b};
  }

  /**
   * Recent latencies in µs of successful requests, and how many failed, in a time range: every
   * answer, or a uniform random sample of them.
   *
   * @param fromMillis the time from which these sample every answer recorded (ms since the epoch):
   *     the range's start, or later where the samples kept did not reach back to it
   * @param answers how many answers these samples stand for: {@link #total} where they are every
   *     answer, an estimate (samples times the rate they were taken at) otherwise
   */
  public record Samples(long[] latenciesMicros, long errors, long fromMillis, long answers) {
    /** Every answer of the range: each sample stands for one. */
    public Samples(long[] latenciesMicros, long errors, long fromMillis) {
      this(latenciesMicros, errors, fromMillis, latenciesMicros.length + errors);
    }

    /** Every answer of a range whose start is not known (made by hand). */
    public Samples(long[] latenciesMicros, long errors) {
      this(latenciesMicros, errors, 0);
    }

    static Samples none(long fromMillis) {
      return new Samples(new long[0], 0, fromMillis);
    }

    /** How many samples these are. */
    public long total() {
      return latenciesMicros.length + errors;
    }

    /**
     * Samples of one range from several sources (a fleet's replicas, {@code sources.get(0)} this
     * one), pooled so that every sample stands for as many answers as every other: each source
     * keeps the share of its samples that the sparsest source's rate allows — an evenly spaced
     * part of its latencies in sorted order (its distribution's shape kept) and its errors in the
     * same proportion. Put side by side as they are, a quiet replica's every answer would weigh
     * as much as one sampled answer of a busy one, and where the two serve at different speeds,
     * the pool's latencies would be the quiet one's more than its answers are: a candidate whose
     * share of the quiet replica's answers is larger would look slower than it is.
     *
     * @return the pooled samples: from the first source's {@code fromMillis}, standing for the
     *     sum of the sources' answers
     */
    public static Samples pooled(List<Samples> sources) {
      if (sources.size() == 1) {
        return sources.get(0);
      }
      double sparsest = 1;
      long answers = 0;
      for (Samples source : sources) {
        sparsest = Math.max(sparsest, answersPerSample(source));
        answers += source.answers();
      }
      long[][] kept = new long[sources.size()][];
      long errors = 0;
      int length = 0;
      for (int i = 0; i < kept.length; i++) {
        Samples source = sources.get(i);
        double share = answersPerSample(source) / sparsest;
        kept[i] = evenlySpaced(source.latenciesMicros(), (int) Math.round(source.latenciesMicros().length * share));
        errors += Math.round(source.errors() * share);
        length += kept[i].length;
      }
      long[] latencies = new long[length];
      int at = 0;
      for (long[] part : kept) {
        System.arraycopy(part, 0, latencies, at, part.length);
        at += part.length;
      }
      return new Samples(latencies, errors, sources.get(0).fromMillis(), answers);
    }

    private static double answersPerSample(Samples samples) {
      return samples.total() == 0 ? 1 : Math.max(1, samples.answers() / (double) samples.total());
    }

    /** {@code count} of {@code values}, evenly spaced in their sorted order: the middle of each of {@code count} equal parts. */
    private static long[] evenlySpaced(long[] values, int count) {
      if (count >= values.length) {
        return values;
      }
      long[] sorted = values.clone();
      java.util.Arrays.sort(sorted);
      long[] out = new long[count];
      for (int j = 0; j < count; j++) {
        out[j] = sorted[(int) ((j + 0.5) * sorted.length / count)];
      }
      return out;
    }
  }

  /** Closes the current interval. Rotator thread only. */
  void rotate(long nowMillis) {
    windows.close(nowMillis, this::takeInterval, answerCounts());
  }

  private Windows.Interval takeInterval(Windows.Interval recycle) {
    if (recycle == null) {
      return new Windows.Interval(
          endToEnd.getIntervalHistogram(),
          queue.getIntervalHistogram(),
          compute.getIntervalHistogram(),
          rows.getIntervalHistogram(),
          COUNTS);
    }
    recycle.endToEnd = endToEnd.getIntervalHistogram(recycle.endToEnd);
    recycle.queue = queue.getIntervalHistogram(recycle.queue);
    recycle.compute = compute.getIntervalHistogram(recycle.compute);
    recycle.rows = rows.getIntervalHistogram(recycle.rows);
    return recycle;
  }

  /**
   * The bytes this version's statistics hold once every window is full: the windows, the four
   * recorders (two histograms each) and the samples. Fixed at creation; it never grows.
   */
  public long footprintBytes() {
    long recorders = 2L * (3 * latencyHistogram().getEstimatedFootprintInBytes()
        + rowsHistogram().getEstimatedFootprintInBytes());
    return windows.footprintBytes() + recorders + SampleLevels.footprintBytes() + 8L * SHADOW_SAMPLES;
  }

  Windows.Window window(int intervals) {
    return windows.last(intervals);
  }

  /** The fine intervals closed in the last minute that began at or after {@code sinceMillis}. */
  Windows.Window closedSince(long sinceMillis) {
    return windows.since(sinceMillis);
  }

  Windows.Window sinceStart() {
    return windows.total();
  }

  long shadowCompared() {
    return shadowCompared.sum();
  }

  long shadowAgreed() {
    return shadowAgreed.sum();
  }

  long shadowFailed() {
    return shadowFailed.sum();
  }

  double shadowMaxDiff() {
    return shadowMaxDiff.get();
  }

  /** An empty histogram with this class's range, for sums. */
  static Histogram latencyHistogram() {
    return new Histogram(1, MAX_MICROS, DIGITS);
  }

  /** An empty rows-per-execution histogram with this class's range, for sums. */
  static Histogram rowsHistogram() {
    return new Histogram(1, MAX_ROWS, DIGITS);
  }
}

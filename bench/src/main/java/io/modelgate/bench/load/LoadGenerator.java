package io.modelgate.bench.load;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.ModelInferRequest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * A gRPC load generator for KServe v2 ModelInfer (unary) and ModelStreamInfer (streaming), against
 * any server.
 *
 * <ul>
 *   <li><b>Open loop</b> at a constant rate: request {@code i} is due at {@code start + i / rate};
 *       its latency runs from that intended time, not from when it was actually sent, so a stall
 *       of the server (or of this client) is counted in full rather than hidden (coordinated
 *       omission corrected, as wrk2 and HdrHistogram prescribe). Requests beyond {@code
 *       maxOutstanding} in flight are not sent and are counted as {@code CLIENT_BACKLOG}.
 *   <li><b>Closed loop</b> at a concurrency: each caller sends its next request when the previous
 *       one is answered; latency runs from the send.
 * </ul>
 *
 * Latencies are recorded in microseconds, overall and per answering version ({@code
 * model_version} of each response).
 */
public final class LoadGenerator {
  public enum Mode {
    OPEN,
    CLOSED
  }

  /** How to load. Immutable. */
  public record Options(
      Mode mode,
      double rate,
      int concurrency,
      boolean streaming,
      Duration warmup,
      Duration duration,
      int maxOutstanding,
      boolean backOff) {
    public Options {
      if (mode == Mode.OPEN && !(rate > 0)) {
        throw new IllegalArgumentException("rate: " + rate + " (expected: > 0 requests/s)");
      }
      if (mode == Mode.CLOSED && concurrency < 1) {
        throw new IllegalArgumentException("concurrency: " + concurrency + " (expected: >= 1)");
      }
      if (maxOutstanding < 1) {
        throw new IllegalArgumentException("max outstanding: " + maxOutstanding + " (expected: >= 1)");
      }
    }

    public static Options open(double rate, boolean streaming, Duration warmup, Duration duration) {
      return new Options(Mode.OPEN, rate, 0, streaming, warmup, duration, 1 << 16, false);
    }

    public static Options closed(int concurrency, boolean streaming, Duration warmup, Duration duration) {
      return new Options(Mode.CLOSED, 0, concurrency, streaming, warmup, duration, 1 << 16, false);
    }

    /**
     * Closed-loop callers that wait, after a RESOURCE_EXHAUSTED answer carrying a {@code
     * google.rpc.RetryInfo}, the delay it asks before their next request (as a well-behaved client
     * does); unary calls only.
     */
    public Options backingOff() {
      return new Options(mode, rate, concurrency, streaming, warmup, duration, maxOutstanding, true);
    }

    public String describe() {
      return (mode == Mode.OPEN ? String.format("open loop %.0f req/s", rate) : "closed loop " + concurrency + " callers")
          + (streaming ? ", streaming" : ", unary");
    }
  }

  /**
   * What one run measured.
   *
   * @param errorLatencyMicros by status code, how long the failed calls took to be answered (a
   *     refusal under overload must be fast); from each call's intended send time, as for successes
   * @param processCpuMicrosPerCall this process's CPU time over the measured period divided by the
   *     calls sent in it: the client's own cost per call when the server runs in another process
   *     (in the suite, client and servers share the process, and this is their sum)
   */
  public record Result(
      long sent,
      long completed,
      double seconds,
      Histogram latencyMicros,
      Map<String, Histogram> byVersion,
      Map<String, Long> errors,
      Map<String, Histogram> errorLatencyMicros,
      double processCpuMicrosPerCall) {
    public Result(
        long sent,
        long completed,
        double seconds,
        Histogram latencyMicros,
        Map<String, Histogram> byVersion,
        Map<String, Long> errors) {
      this(sent, completed, seconds, latencyMicros, byVersion, errors, Map.of(), 0);
    }

    public double throughput() {
      return completed / seconds;
    }

    public long errorCount() {
      return errors.values().stream().mapToLong(Long::longValue).sum();
    }

    /** This run and {@code other} as one: counts, seconds and histograms added. */
    public Result plus(Result other) {
      Histogram latency = latencyMicros.copy();
      latency.add(other.latencyMicros);
      Map<String, Histogram> versions = new TreeMap<>();
      byVersion.forEach((v, h) -> versions.put(v, h.copy()));
      other.byVersion.forEach((v, h) -> versions.merge(v, h.copy(), (a, b) -> {
        a.add(b);
        return a;
      }));
      Map<String, Long> errorCounts = new TreeMap<>(errors);
      other.errors.forEach((code, n) -> errorCounts.merge(code, n, Long::sum));
      Map<String, Histogram> errorLatency = new TreeMap<>();
      errorLatencyMicros.forEach((c, h) -> errorLatency.put(c, h.copy()));
      other.errorLatencyMicros.forEach((c, h) -> errorLatency.merge(c, h.copy(), (a, b) -> {
        a.add(b);
        return a;
      }));
      double cpu = sent + other.sent == 0 ? 0
          : (processCpuMicrosPerCall * sent + other.processCpuMicrosPerCall * other.sent) / (sent + other.sent);
      return new Result(sent + other.sent, completed + other.completed, seconds + other.seconds, latency,
          versions, errorCounts, errorLatency, cpu);
    }
  }

  private final List<ManagedChannel> channels;
  private final ModelInferRequest request;
  /** Lean (the answering version only) or checked (the whole answer parsed and checked). */
  private final io.grpc.MethodDescriptor<byte[], String> method;
  /** The request serialized once; every unary call writes these bytes. */
  private final byte[] requestBytes;
  /** The request without its id, serialized once; each streamed request appends its own id. */
  private final byte[] streamPrefix;

  public LoadGenerator(List<ManagedChannel> channels, ModelInferRequest request) {
    this(channels, request, false);
  }

  /**
   * @param check parse every unary answer whole and check it against the request (the checking
   *     mode: failures count as {@code CHECK_FAILED}; it costs the client CPU, so not for peak
   *     figures)
   */
  public LoadGenerator(List<ManagedChannel> channels, ModelInferRequest request, boolean check) {
    if (channels.isEmpty()) {
      throw new IllegalArgumentException("at least one channel");
    }
    this.channels = channels;
    this.request = request;
    this.method = check ? LeanUnary.checked(request) : LeanUnary.METHOD;
    this.requestBytes = request.toByteArray();
    this.streamPrefix = request.toBuilder().clearId().build().toByteArray();
  }

  /** This process's CPU time in nanoseconds, or 0 where the JVM cannot tell. */
  static long processCpuNanos() {
    java.lang.management.OperatingSystemMXBean os = java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    return os instanceof com.sun.management.OperatingSystemMXBean sun ? Math.max(0, sun.getProcessCpuTime()) : 0;
  }

  /** Sends one unary call on {@code channel}: the pre-serialized request, the answer read lean. */
  private void send(ManagedChannel channel, UnaryObserver observer) {
    io.grpc.stub.ClientCalls.asyncUnaryCall(
        channel.newCall(method, io.grpc.CallOptions.DEFAULT), requestBytes, observer);
  }

  /** Runs the warm-up (not recorded) and then the measured period; reports progress each second. */
  public Result run(Options options, Consumer<String> progress) throws InterruptedException {
    return run(options, progress, () -> {}, () -> {});
  }

  /**
   * As {@link #run(Options, Consumer)}, and calls {@code onMeasure} as the measured period opens
   * and {@code onMeasured} as it closes (before the calls still in flight are drained), on the
   * sending thread: for snapshotting server-side statistics over the same window.
   */
  public Result run(Options options, Consumer<String> progress, Runnable onMeasure, Runnable onMeasured)
      throws InterruptedException {
    Run run = new Run(options, onMeasure, onMeasured);
    Thread reporter = new Thread(() -> run.report(progress), "modelgate-bench-progress");
    reporter.setDaemon(true);
    reporter.start();
    try {
      if (options.mode() == Mode.OPEN) {
        run.open();
      } else {
        run.closed();
      }
    } finally {
      reporter.interrupt();
    }
    return run.result();
  }

  /** The state of one run, shared by the sender and the response threads. */
  private final class Run {
    final Options options;
    final Recorder all = new Recorder(3);
    final Map<String, Recorder> versions = new ConcurrentHashMap<>();
    final Map<String, LongAdder> errors = new ConcurrentHashMap<>();
    final Map<String, Recorder> errorLatency = new ConcurrentHashMap<>();
    final LongAdder sent = new LongAdder();
    final LongAdder completed = new LongAdder();
    final AtomicInteger outstanding = new AtomicInteger();
    final long startNanos;
    final long measureFrom;
    final long endNanos;

    final Runnable onMeasure;
    final Runnable onMeasured;
    /** This process's CPU time (ns) as the measured period opened and closed. */
    volatile long cpuStart;
    volatile long cpuEnd;

    void measureOpens() {
      cpuStart = processCpuNanos();
      onMeasure.run();
    }

    void measureCloses() {
      cpuEnd = processCpuNanos();
      onMeasured.run();
    }

    Run(Options options, Runnable onMeasure, Runnable onMeasured) {
      this.options = options;
      this.onMeasure = onMeasure;
      this.onMeasured = onMeasured;
      this.startNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(20);
      this.measureFrom = startNanos + options.warmup().toNanos();
      this.endNanos = measureFrom + options.duration().toNanos();
    }

    boolean measuring(long intendedNanos) {
      return intendedNanos >= measureFrom && intendedNanos < endNanos;
    }

    void succeeded(long intendedNanos, String version) {
      outstanding.decrementAndGet();
      if (!measuring(intendedNanos)) {
        return;
      }
      long micros = Math.max(1, (System.nanoTime() - intendedNanos) / 1000);
      all.recordValue(micros);
      versions.computeIfAbsent(version, v -> new Recorder(3)).recordValue(micros);
      completed.increment();
    }

    void failed(long intendedNanos, String code) {
      outstanding.decrementAndGet();
      if (measuring(intendedNanos)) {
        errors.computeIfAbsent(code, c -> new LongAdder()).increment();
        long micros = Math.max(1, (System.nanoTime() - intendedNanos) / 1000);
        errorLatency.computeIfAbsent(code, c -> new Recorder(3)).recordValue(micros);
      }
    }

    // ---- open loop ----

    void open() throws InterruptedException {
      double interval = 1e9 / options.rate();
      List<StreamSender> streams = new ArrayList<>();
      if (options.streaming()) {
        for (ManagedChannel channel : channels) {
          streams.add(new StreamSender(channel, this));
        }
      }
      boolean opened = false;
      for (long i = 0; ; i++) {
        long intended = startNanos + (long) (i * interval);
        if (intended >= endNanos) {
          break;
        }
        if (!opened && intended >= measureFrom) {
          measureOpens();
          opened = true;
        }
        // Sleep until the call is due; never spin. A spinning sender burns a core that, on a small
        // machine, the server under test needs. The OS wakes the thread a little late (tens of
        // µs); every call that fell due meanwhile goes at once, and each one's latency still runs
        // from its intended time, so the lateness is counted, not hidden.
        long wait = intended - System.nanoTime();
        if (wait > 0) {
          LockSupport.parkNanos(wait);
        }
        if (outstanding.get() >= options.maxOutstanding()) {
          if (measuring(intended)) {
            errors.computeIfAbsent("CLIENT_BACKLOG", c -> new LongAdder()).increment();
          }
          continue;
        }
        outstanding.incrementAndGet();
        if (measuring(intended)) {
          sent.increment();
        }
        int connection = (int) (i % channels.size());
        if (options.streaming()) {
          streams.get(connection).send(intended);
        } else {
          send(channels.get(connection), new UnaryObserver(this, intended, null));
        }
      }
      if (!opened) {
        measureOpens();
      }
      sleepUntil(endNanos);
      measureCloses();
      awaitDrain();
      for (StreamSender stream : streams) {
        stream.close();
      }
    }

    // ---- closed loop ----

    void closed() throws InterruptedException {
      CountDownLatch stopped = new CountDownLatch(options.concurrency());
      List<StreamSender> streams = new ArrayList<>();
      if (options.streaming()) {
        for (ManagedChannel channel : channels) {
          streams.add(new StreamSender(channel, this));
        }
      }
      while (System.nanoTime() < startNanos) {
        Thread.onSpinWait();
      }
      for (int c = 0; c < options.concurrency(); c++) {
        int connection = c % channels.size();
        Caller caller =
            new Caller(this, channels.get(connection),
                options.streaming() ? streams.get(connection) : null, stopped);
        caller.next();
      }
      sleepUntil(measureFrom);
      measureOpens();
      sleepUntil(endNanos);
      measureCloses();
      stopped.await(60, TimeUnit.SECONDS);
      for (StreamSender stream : streams) {
        stream.close();
      }
    }

    void sleepUntil(long nanos) throws InterruptedException {
      long sleep = nanos - System.nanoTime();
      if (sleep > 0) {
        TimeUnit.NANOSECONDS.sleep(sleep);
      }
    }

    void awaitDrain() throws InterruptedException {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (outstanding.get() > 0 && System.nanoTime() < deadline) {
        TimeUnit.MILLISECONDS.sleep(5);
      }
    }

    /** The first failed check of the run (checking mode), until it is reported. */
    private final java.util.concurrent.atomic.AtomicReference<String> checkFailure = new java.util.concurrent.atomic.AtomicReference<>();
    private volatile boolean checkFailureReported;

    void checkFailed(String reason) {
      checkFailure.compareAndSet(null, reason);
    }

    void report(Consumer<String> progress) {
      long last = 0;
      try {
        while (true) {
          TimeUnit.SECONDS.sleep(1);
          String failure = checkFailure.get();
          if (failure != null && !checkFailureReported) {
            checkFailureReported = true;
            progress.accept("  check failed: " + failure + " (the first; every failed check counts as CHECK_FAILED)");
          }
          long now = System.nanoTime();
          String phase = now < measureFrom ? "warm-up" : now < endNanos ? "measuring" : "draining";
          long done = completed.sum();
          progress.accept(String.format(
              "  %-9s %5.1f s  completed %d (+%d)  in flight %d  errors %d",
              phase, (now - startNanos) / 1e9, done, done - last, outstanding.get(),
              errors.values().stream().mapToLong(LongAdder::sum).sum()));
          last = done;
        }
      } catch (InterruptedException e) {
        // The run is over.
      }
    }

    Result result() {
      Map<String, Histogram> byVersion = new TreeMap<>();
      versions.forEach((version, recorder) -> byVersion.put(version, recorder.getIntervalHistogram()));
      Map<String, Long> errorCounts = new TreeMap<>();
      errors.forEach((code, n) -> errorCounts.put(code, n.sum()));
      Map<String, Histogram> errorLatencies = new TreeMap<>();
      errorLatency.forEach((code, recorder) -> errorLatencies.put(code, recorder.getIntervalHistogram()));
      long calls = sent.sum();
      double cpuPerCall = calls == 0 || cpuEnd <= cpuStart ? 0 : (cpuEnd - cpuStart) / 1000.0 / calls;
      return new Result(
          calls, completed.sum(), options.duration().toNanos() / 1e9, all.getIntervalHistogram(),
          byVersion, errorCounts, errorLatencies, cpuPerCall);
    }
  }

  /** The answer of one unary call: the answering version, or the status it failed with. */
  private static final class UnaryObserver implements StreamObserver<String> {
    private final Run run;
    private final long intended;
    private final Caller caller;
    private String version = "";

    UnaryObserver(Run run, long intended, Caller caller) {
      this.run = run;
      this.intended = intended;
      this.caller = caller;
    }

    @Override
    public void onNext(String answeringVersion) {
      version = answeringVersion;
    }

    @Override
    public void onError(Throwable t) {
      Status.Code code = Status.fromThrowable(t).getCode();
      run.failed(intended, code.name());
      if (caller != null) {
        long delay = code == Status.Code.RESOURCE_EXHAUSTED && run.options.backOff() ? retryDelayNanos(t) : 0;
        if (delay > 0) {
          BACKOFF.schedule(caller::next, delay, TimeUnit.NANOSECONDS);
        } else {
          caller.next();
        }
      }
    }

    @Override
    public void onCompleted() {
      if (version.startsWith(LeanUnary.CHECK_FAILED)) {
        run.failed(intended, "CHECK_FAILED");
        run.checkFailed(version.substring(LeanUnary.CHECK_FAILED.length()));
      } else {
        run.succeeded(intended, version);
      }
      if (caller != null) {
        caller.next();
      }
    }
  }

  /** Runs the next request of a caller that backs off. */
  private static final java.util.concurrent.ScheduledExecutorService BACKOFF =
      java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
        Thread thread = new Thread(r, "load-backoff");
        thread.setDaemon(true);
        return thread;
      });

  /** The delay a refusal's {@code google.rpc.RetryInfo} asks, in nanoseconds; 0 without one. */
  static long retryDelayNanos(Throwable t) {
    com.google.rpc.Status status = io.grpc.protobuf.StatusProto.fromThrowable(t);
    if (status != null) {
      for (com.google.protobuf.Any detail : status.getDetailsList()) {
        if (detail.is(com.google.rpc.RetryInfo.class)) {
          try {
            com.google.protobuf.Duration delay = detail.unpack(com.google.rpc.RetryInfo.class).getRetryDelay();
            return delay.getSeconds() * 1_000_000_000L + delay.getNanos();
          } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            return 0;
          }
        }
      }
    }
    return 0;
  }

  /** One closed-loop caller: sends the next request when the previous one is answered. */
  private final class Caller {
    private final Run run;
    private final ManagedChannel channel;
    private final StreamSender stream;
    private final CountDownLatch stopped;

    Caller(Run run, ManagedChannel channel, StreamSender stream, CountDownLatch stopped) {
      this.run = run;
      this.channel = channel;
      this.stream = stream;
      this.stopped = stopped;
    }

    void next() {
      long now = System.nanoTime();
      if (now >= run.endNanos) {
        stopped.countDown();
        return;
      }
      run.outstanding.incrementAndGet();
      if (run.measuring(now)) {
        run.sent.increment();
      }
      if (stream != null) {
        stream.send(now, this);
      } else {
        send(channel, new UnaryObserver(run, now, this));
      }
    }
  }

  /** A streamed request awaiting its answer: when it was meant to go, and who sends the next. */
  private record Pending(long intended, Caller caller) {}

  /**
   * One ModelStreamInfer stream: requests carry their sequence number as id, and answers are
   * matched back to their intended send time through it.
   */
  private final class StreamSender implements ClientResponseObserver<LeanStream.Numbered, LeanStream.Answer> {
    private final Run run;
    private final Map<Long, Pending> pending = new ConcurrentHashMap<>();
    private final AtomicLong sequence = new AtomicLong();
    private final StreamObserver<LeanStream.Numbered> requests;
    private final CountDownLatch closed = new CountDownLatch(1);

    StreamSender(ManagedChannel channel, Run run) {
      this.run = run;
      this.requests =
          io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
              channel.newCall(LeanStream.METHOD, io.grpc.CallOptions.DEFAULT), this);
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<LeanStream.Numbered> stream) {}

    void send(long intended) {
      send(intended, null);
    }

    void send(long intended, Caller caller) {
      long id = sequence.getAndIncrement();
      pending.put(id, new Pending(intended, caller));
      synchronized (this) {
        requests.onNext(new LeanStream.Numbered(streamPrefix, id));
      }
    }

    @Override
    public void onNext(LeanStream.Answer answer) {
      Pending entry = pending.remove(answer.id());
      if (entry == null) {
        return;
      }
      long intended = entry.intended();
      if (answer.errorCode() == null) {
        run.succeeded(intended, answer.version());
      } else {
        run.failed(intended, answer.errorCode());
      }
      if (entry.caller() != null) {
        entry.caller().next();
      }
    }

    @Override
    public void onError(Throwable t) {
      String code = Status.fromThrowable(t).getCode().name();
      for (Pending entry : pending.values()) {
        run.failed(entry.intended(), code);
      }
      pending.clear();
      closed.countDown();
    }

    @Override
    public void onCompleted() {
      closed.countDown();
    }

    void close() throws InterruptedException {
      synchronized (this) {
        requests.onCompleted();
      }
      closed.await(30, TimeUnit.SECONDS);
    }
  }
}

package io.modelgate.bench.load;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.threads.DaemonThreads;
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
 *   <li><b>Open loop</b> at a constant rate: request {@code i} is due at {@code start + i / rate}
 *       (after a warm-up whose first half climbs to the rate: {@link #dueSeconds}); its latency
 *       runs from that intended time, not from when it was actually sent, so a stall
 *       of the server (or of this client) is counted in full rather than hidden (coordinated
 *       omission corrected, as wrk2 and HdrHistogram prescribe). Requests beyond {@code
 *       maxOutstanding} in flight are not sent and are counted as {@code CLIENT_BACKLOG}.
 *   <li><b>Closed loop</b> at a concurrency: each caller sends its next request when the previous
 *       one is answered; latency runs from the send.
 * </ul>
 *
 * Latencies are recorded in microseconds, overall and per answering version ({@code
 * model_version} of each response).
 *
 * <p>Unary calls go over {@link WireConnection}s (no grpc-java on the client's hot path; the
 * request serialized once; answers read for their version only, or whole in the checking mode),
 * streams over grpc-java channels with lean marshallers ({@link LeanStream}). Calls are paced,
 * sent and answered on the client's event loops; every result carries the process's CPU per
 * call, so a client that is itself the limit shows it.
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

    /** The same load over other times: for unrecorded slices of it ({@code duration} may be zero). */
    public Options timed(Duration warmup, Duration duration) {
      return new Options(mode, rate, concurrency, streaming, warmup, duration, maxOutstanding, backOff);
    }

    public String describe() {
      return (mode == Mode.OPEN ? String.format("open loop %.0f req/s", rate) : "closed loop " + concurrency + " callers")
          + (streaming ? ", streaming" : ", unary") + (backOff ? ", backing off" : "");
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
   * @param processHeapBytesPerCall the heap this process's threads allocated over the measured
   *     period divided by the calls sent in it (threads that ended meanwhile are not counted; 0
   *     where the JVM cannot tell): like the CPU figure, the client's alone or, in the suite,
   *     client and server together
   * @param sendLagMicros open loop: how late each measured call was sent after its intended time
   *     (µs; 0 on time, recorded as 1): the client's own lateness, which its latencies include.
   *     A lag near the latencies says the client, not the server, was the limit. Empty in a
   *     closed loop.
   * @param hiccupMicros open loop: over the measured period, how late a thread of this JVM that
   *     asks to sleep 1 ms at a time woke, each time (µs; {@link Hiccups}): the platform's stalls,
   *     which every latency measured meanwhile includes. Empty in a closed loop.
   * @param stallWaitMicros open loop: for each of those wakes at least {@value Hiccups#STALL_MICROS}
   *     µs late, how long of it the thread was runnable and waiting for a core, by the kernel's
   *     count (µs; {@link Hiccups.Interval#waitingForCore}): the part of the stalls the machine's
   *     other threads made. Empty in a closed loop, and where the kernel does not say.
   */
  public record Result(
      long sent,
      long completed,
      double seconds,
      Histogram latencyMicros,
      Map<String, Histogram> byVersion,
      Map<String, Long> errors,
      Map<String, Histogram> errorLatencyMicros,
      double processCpuMicrosPerCall,
      double processHeapBytesPerCall,
      Histogram sendLagMicros,
      Histogram hiccupMicros,
      Histogram stallWaitMicros) {
    public Result(
        long sent,
        long completed,
        double seconds,
        Histogram latencyMicros,
        Map<String, Histogram> byVersion,
        Map<String, Long> errors) {
      this(sent, completed, seconds, latencyMicros, byVersion, errors, Map.of(), 0, 0, new Histogram(3), new Histogram(3),
          new Histogram(3));
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
      double heap = sent + other.sent == 0 ? 0
          : (processHeapBytesPerCall * sent + other.processHeapBytesPerCall * other.sent) / (sent + other.sent);
      Histogram lag = sendLagMicros.copy();
      lag.add(other.sendLagMicros);
      Histogram hiccups = hiccupMicros.copy();
      hiccups.add(other.hiccupMicros);
      Histogram stallWait = stallWaitMicros.copy();
      stallWait.add(other.stallWaitMicros);
      return new Result(sent + other.sent, completed + other.completed, seconds + other.seconds, latency,
          versions, errorCounts, errorLatency, cpu, heap, lag, hiccups, stallWait);
    }
  }

  private final Connections connections;
  private final ModelInferRequest request;
  /** The request as one gRPC message, serialized once; every unary call sends it. */
  private final io.netty.buffer.ByteBuf message;
  /** Lean (the answering version only) or checked (the whole answer parsed and checked). */
  private final WireConnection.Reader reader;
  /** The request without its id, serialized once; each streamed request appends its own id. */
  private final byte[] streamPrefix;

  public LoadGenerator(Connections connections, ModelInferRequest request) {
    this(connections, request, false);
  }

  /**
   * @param check parse every unary answer whole and check it against the request (the checking
   *     mode: failures count as {@code CHECK_FAILED}; it costs the client CPU, so not for peak
   *     figures)
   */
  public LoadGenerator(Connections connections, ModelInferRequest request, boolean check) {
    this.connections = connections;
    this.request = request;
    this.message = WireConnection.message(request.toByteArray());
    this.reader = check ? LeanUnary.checked(request) : LeanUnary.version();
    this.streamPrefix = request.toBuilder().clearId().build().toByteArray();
  }

  /** This process's CPU time in nanoseconds, or 0 where the JVM cannot tell. */
  static long processCpuNanos() {
    java.lang.management.OperatingSystemMXBean os = java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    return os instanceof com.sun.management.OperatingSystemMXBean sun ? Math.max(0, sun.getProcessCpuTime()) : 0;
  }

  /**
   * The heap bytes each live thread of this process has allocated so far, by thread id, or null
   * where the JVM cannot tell (HotSpot can).
   */
  static Map<Long, Long> threadHeapBytes() {
    java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
    if (!(threads instanceof com.sun.management.ThreadMXBean sun)
        || !sun.isThreadAllocatedMemorySupported() || !sun.isThreadAllocatedMemoryEnabled()) {
      return null;
    }
    long[] ids = sun.getAllThreadIds();
    long[] bytes = sun.getThreadAllocatedBytes(ids);
    Map<Long, Long> byThread = new java.util.HashMap<>();
    for (int i = 0; i < ids.length; i++) {
      if (bytes[i] >= 0) {
        byThread.put(ids[i], bytes[i]);
      }
    }
    return byThread;
  }

  /** The heap allocated between two {@link #threadHeapBytes} readings by the threads alive at the second. */
  static long heapBytesBetween(Map<Long, Long> start, Map<Long, Long> end) {
    if (start == null || end == null) {
      return 0;
    }
    long total = 0;
    for (Map.Entry<Long, Long> thread : end.entrySet()) {
      total += thread.getValue() - start.getOrDefault(thread.getKey(), 0L);
    }
    return total;
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
    try (Hiccups hiccups = options.mode() == Mode.OPEN ? new Hiccups() : null) {
      Run run = new Run(options, hiccups, onMeasure, onMeasured);
      Thread reporter = DaemonThreads.thread("modelgate-bench-progress", () -> run.report(progress));
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
  }

  /** The state of one run, shared by the sender and the response threads. */
  private final class Run {
    final Options options;
    final Recorder all = new Recorder(3);
    final Recorder sendLag = new Recorder(3);
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
    /**
     * The platform's stalls (open loop only; null in a closed loop): the interval taken as the
     * measured period closes is the result's.
     */
    final Hiccups hiccups;
    volatile Hiccups.Interval measuredHiccups;
    /** This process's CPU time (ns) as the measured period opened and closed. */
    volatile long cpuStart;
    volatile long cpuEnd;
    /** The heap each thread had allocated as the measured period opened and closed. */
    volatile Map<Long, Long> heapStart;
    volatile Map<Long, Long> heapEnd;

    void measureOpens() {
      if (hiccups != null) {
        hiccups.interval(); // outside the heap's window: the histograms it returns are the meter's, not a call's
      }
      heapStart = threadHeapBytes();
      cpuStart = processCpuNanos();
      onMeasure.run();
    }

    void measureCloses() {
      cpuEnd = processCpuNanos();
      heapEnd = threadHeapBytes();
      measuredHiccups = hiccups == null ? null : hiccups.interval();
      onMeasured.run();
    }

    Run(Options options, Hiccups hiccups, Runnable onMeasure, Runnable onMeasured) {
      this.options = options;
      this.hiccups = hiccups;
      this.onMeasure = onMeasure;
      this.onMeasured = onMeasured;
      this.startNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(20);
      this.measureFrom = startNanos + options.warmup().toNanos();
      this.endNanos = measureFrom + options.duration().toNanos();
    }

    /** Open loop: when call {@code i} of the schedule is due, in System.nanoTime() terms. */
    long due(long i) {
      return startNanos + (long) (dueSeconds(i, options.rate(), options.warmup().toNanos() / 2e9) * 1e9);
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

    /**
     * The schedule is paced on the client's event loops, as wrk2 does: one pacer per loop, taking
     * every P-th call of the schedule (P loops), sending each call on the loop that owns its
     * connection, so no sending thread hands calls over and a call's answer comes back on the
     * thread that sent it. This thread only opens and closes the measured window.
     */
    void open() throws InterruptedException {
      List<StreamSender> streams = new ArrayList<>();
      if (options.streaming()) {
        for (ManagedChannel channel : connections.channels()) {
          streams.add(new StreamSender(channel, this));
        }
      }
      Map<io.netty.channel.EventLoop, List<Integer>> byLoop = new java.util.LinkedHashMap<>();
      for (int k = 0; k < connections.count(); k++) {
        byLoop.computeIfAbsent(connections.loop(k), loop -> new ArrayList<>()).add(k);
      }
      CountDownLatch paced = new CountDownLatch(byLoop.size());
      int p = 0;
      for (Map.Entry<io.netty.channel.EventLoop, List<Integer>> loop : byLoop.entrySet()) {
        new Pacer(this, loop.getKey(), loop.getValue(), p++, byLoop.size(), streams, paced).schedule();
      }
      sleepUntil(measureFrom);
      measureOpens();
      sleepUntil(endNanos);
      measureCloses();
      paced.await(60, TimeUnit.SECONDS);
      awaitDrain();
      for (StreamSender stream : streams) {
        stream.close();
      }
    }

    /**
     * Sends the call due at {@code intended} on connection {@code k} (at {@code now}, by the
     * pacer's clock), unless over the backlog.
     */
    void sendScheduled(long intended, long now, int k, StreamSender stream) {
      if (outstanding.get() >= options.maxOutstanding()) {
        if (measuring(intended)) {
          errors.computeIfAbsent("CLIENT_BACKLOG", c -> new LongAdder()).increment();
        }
        return;
      }
      outstanding.incrementAndGet();
      if (measuring(intended)) {
        sent.increment();
        sendLag.recordValue(Math.max(1, (now - intended) / 1000));
      }
      if (stream != null) {
        stream.send(intended);
      } else {
        connections.unary(k).write(new UnaryCall(this, intended, null, k));
      }
    }

    // ---- closed loop ----

    void closed() throws InterruptedException {
      CountDownLatch stopped = new CountDownLatch(options.concurrency());
      List<StreamSender> streams = new ArrayList<>();
      if (options.streaming()) {
        for (ManagedChannel channel : connections.channels()) {
          streams.add(new StreamSender(channel, this));
        }
      }
      sleepUntil(startNanos);
      for (int c = 0; c < options.concurrency(); c++) {
        int connection = c % connections.count();
        Caller caller = new Caller(this, connection, options.streaming() ? streams.get(connection) : null, stopped);
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
              "  %-9s %5.1f s  completed %d (+%d)  in flight %d  errors %d%s",
              phase, (now - startNanos) / 1e9, done, done - last, outstanding.get(),
              errors.values().stream().mapToLong(LongAdder::sum).sum(),
              hiccups == null ? "" : String.format("  longest stall %.1f ms", hiccups.takeLongest() / 1000.0)));
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
      double heapPerCall = calls == 0 ? 0 : Math.max(0, heapBytesBetween(heapStart, heapEnd)) / (double) calls;
      return new Result(
          calls, completed.sum(), options.duration().toNanos() / 1e9, all.getIntervalHistogram(),
          byVersion, errorCounts, errorLatencies, cpuPerCall, heapPerCall, sendLag.getIntervalHistogram(),
          measuredHiccups == null ? new Histogram(3) : measuredHiccups.late(),
          measuredHiccups == null ? new Histogram(3) : measuredHiccups.waitingForCore());
    }
  }

  /**
   * Paces one event loop's share of an open-loop schedule (every {@code pacers}-th call, from
   * call {@code first}). Each time it runs it sends every call that has fallen due, all on one of
   * the loop's connections (the next one each time, so that calls due together go out in one write
   * and every connection is used), flushes once, and sleeps until the next call is due. The
   * loop's timer wakes it a little late at times; the calls that fell due meanwhile go at once, and
   * each one's latency still runs from its intended time, so the lateness is counted, not hidden.
   * Event loop only.
   */
  private final class Pacer implements Runnable {
    private final Run run;
    private final io.netty.channel.EventLoop loop;
    private final int[] owned;
    private final int pacers;
    private final List<StreamSender> streams;
    private final CountDownLatch done;
    private long i;
    private int turn;

    Pacer(Run run, io.netty.channel.EventLoop loop, List<Integer> owned, int first, int pacers,
        List<StreamSender> streams, CountDownLatch done) {
      this.run = run;
      this.loop = loop;
      this.owned = owned.stream().mapToInt(Integer::intValue).toArray();
      this.pacers = pacers;
      this.streams = streams;
      this.done = done;
      this.i = first;
    }

    private long due() {
      return run.due(i);
    }

    void schedule() {
      loop.schedule(this, Math.max(0, due() - System.nanoTime()), TimeUnit.NANOSECONDS);
    }

    @Override
    public void run() {
      long now = System.nanoTime();
      long intended = due();
      int k = owned[turn++ % owned.length];
      StreamSender stream = streams.isEmpty() ? null : streams.get(k);
      while (intended <= now && intended < run.endNanos) {
        run.sendScheduled(intended, now, k, stream);
        i += pacers;
        intended = due();
      }
      if (stream == null) {
        connections.unary(k).flush();
      }
      if (intended >= run.endNanos) {
        done.countDown();
      } else {
        loop.schedule(this, intended - now, TimeUnit.NANOSECONDS);
      }
    }
  }

  /**
   * When call {@code i} (from 0) of an open-loop schedule at {@code rate} calls/s is due, in
   * seconds from its start: over the first {@code rampSeconds} the rate climbs linearly from a
   * tenth of {@code rate} to {@code rate}, then holds. A cold client and server (JIT, caches)
   * warm up on the climb instead of building a backlog at the full rate that would spill into the
   * measured period; the warm-up's second half runs at the full rate, so the measured period
   * starts from a steady state. No ramp when {@code rampSeconds} is 0.
   */
  static double dueSeconds(long i, double rate, double rampSeconds) {
    if (rampSeconds <= 0) {
      return i / rate;
    }
    double from = rate / 10;
    double inRamp = (from + rate) / 2 * rampSeconds;
    if (i >= inRamp) {
      return rampSeconds + (i - inRamp) / rate;
    }
    // i = from t + a t^2 / 2, with a = (rate - from) / rampSeconds, solved for t.
    double a = (rate - from) / rampSeconds;
    return (-from + Math.sqrt(from * from + 2 * a * i)) / a;
  }

  /** One unary call: answered with the answering version, or the status it failed with. */
  private final class UnaryCall extends WireConnection.Call {
    private final Run run;
    private final long intended;
    private final Caller caller;
    private final int connection;

    UnaryCall(Run run, long intended, Caller caller, int connection) {
      super(message, reader);
      this.run = run;
      this.intended = intended;
      this.caller = caller;
      this.connection = connection;
    }

    @Override
    void answered(int code, Object read, io.netty.handler.codec.http2.Http2Headers trailers) {
      if (code == 0) {
        String version = (String) read;
        if (version.startsWith(LeanUnary.CHECK_FAILED)) {
          run.failed(intended, "CHECK_FAILED");
          run.checkFailed(version.substring(LeanUnary.CHECK_FAILED.length()));
        } else {
          run.succeeded(intended, version);
        }
        if (caller != null) {
          caller.next();
        }
        return;
      }
      run.failed(intended, switch (code) {
        case WireConnection.UNREADABLE -> "UNREADABLE_ANSWER";
        case WireConnection.STREAM_LIMIT -> "CLIENT_STREAM_LIMIT";
        default -> Status.fromCodeValue(code).getCode().name();
      });
      if (caller == null) {
        return;
      }
      long delay = code == WireConnection.RESOURCE_EXHAUSTED && run.options.backOff()
          ? retryDelayNanos(WireConnection.details(trailers)) : 0;
      // Later on the loop, not from inside this answer: a call that fails as it is sent (no
      // connection) answers at once, and the next one must not recurse into it.
      connections.loop(connection).schedule(caller::next, delay, TimeUnit.NANOSECONDS);
    }
  }

  /** The delay a refusal's {@code google.rpc.RetryInfo} asks, in nanoseconds; 0 without one. */
  static long retryDelayNanos(com.google.rpc.Status status) {
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
    private final int connection;
    private final StreamSender stream;
    private final CountDownLatch stopped;

    Caller(Run run, int connection, StreamSender stream, CountDownLatch stopped) {
      this.run = run;
      this.connection = connection;
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
        connections.unary(connection).send(new UnaryCall(run, now, this, connection));
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

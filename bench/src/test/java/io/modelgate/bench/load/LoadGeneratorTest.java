package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The load generator against a scripted in-process server: answers alternate between versions 1
 * and 2, every {@code failEvery}-th call fails with RESOURCE_EXHAUSTED, and call number {@code
 * stallAt} holds the server for {@code stallMillis}.
 */
class LoadGeneratorTest {
  @TempDir Path dir;

  private Server server;
  private Connections channel;

  /**
   * The scripted server on a loopback port, answering on its event loop (a stall holds every
   * call of the connection, as a pause of a real server does), and one connection to it.
   */
  private LoadGenerator start(long failEvery, long stallAt, long stallMillis) throws Exception {
    server = io.grpc.netty.NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", 0)).directExecutor()
        .addService(new ScriptedService(failEvery, stallAt, stallMillis)).build().start();
    channel = Connections.open("127.0.0.1:" + server.getPort(), 1);
    return new LoadGenerator(channel, ModelInferRequest.newBuilder().setModelName("m").build());
  }

  @AfterEach
  void stop() throws InterruptedException {
    if (channel != null) {
      channel.close();
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void openLoop_sendsOnScheduleAndBreaksDownByVersion() throws Exception {
    LoadGenerator generator = start(0, -1, 0);

    LoadGenerator.Result r = generator.run(
        LoadGenerator.Options.open(400, false, Duration.ZERO, Duration.ofSeconds(1)), s -> {});

    // The schedule, not the clock, decides how many calls fall in the measured second.
    assertThat((double) r.sent()).isCloseTo(400, within(1.0));
    assertThat(r.completed()).isEqualTo(r.sent());
    assertThat(r.errors()).isEmpty();
    assertThat(r.latencyMicros().getTotalCount()).isEqualTo(r.completed());
    assertThat(r.byVersion()).containsOnlyKeys("1", "2");
    assertThat(r.byVersion().values().stream().mapToLong(Histogram::getTotalCount).sum())
        .isEqualTo(r.completed());
    // The platform's stalls, sampled while measuring: a sleep of at least 1 ms each, in one second.
    assertThat(r.hiccupMicros().getTotalCount()).isBetween(1L, 1000L);
    // The split of each stall, one value a stall at most.
    assertThat(r.stallWaitMicros().getTotalCount()).isLessThanOrEqualTo(Reports.stalls(r.hiccupMicros()));

    Path hgrm = dir.resolve("run.hgrm");
    Reports.writeHgrm(hgrm, r.latencyMicros());
    assertThat(Files.readString(hgrm)).contains("Value     Percentile TotalCount").contains("#[Max");
    Path json = dir.resolve("run.json");
    Reports.writeJson(json, Reports.summarize("label", "load", r));
    assertThat(Files.readString(json)).contains("\"label\" : \"label\"").contains("\"byVersion\"");
  }

  @Test
  void openLoop_countsAStallAgainstEveryCallMeantToGoDuringIt() throws Exception {
    // Call 50 (about 250 ms in at 200/s) holds the server for 300 ms. A generator timing from the actual send would see one slow call;
    // timing from the intended send, every call scheduled in the stall waits out its remainder.
    LoadGenerator generator = start(0, 50, 300);

    LoadGenerator.Result r = generator.run(
        LoadGenerator.Options.open(200, false, Duration.ZERO, Duration.ofSeconds(1)), s -> {});

    Histogram h = r.latencyMicros();
    long atLeast100Ms = h.getTotalCount() - h.getCountBetweenValues(0, 99_999);
    // Calls meant for the first 200 ms of the stall (40 at 200/s) each waited at least 100 ms.
    assertThat(atLeast100Ms).isGreaterThanOrEqualTo(35);
    assertThat(h.getMaxValue()).isGreaterThanOrEqualTo(290_000);
    assertThat(r.completed()).isEqualTo(r.sent());
  }

  /**
   * A target of several servers (a fleet): the connections go round the addresses, so every
   * server gets calls, and the streams' channels (metadata, --streaming) go round them too.
   */
  @Test
  void aTargetOfSeveralServers_spreadsTheConnectionsOverThemAll() throws Exception {
    ScriptedService first = new ScriptedService(0, -1, 0);
    ScriptedService second = new ScriptedService(0, -1, 0);
    Server other = io.grpc.netty.NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", 0)).directExecutor()
        .addService(second).build().start();
    server = io.grpc.netty.NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", 0)).directExecutor()
        .addService(first).build().start();
    try {
      channel = Connections.open("127.0.0.1:" + server.getPort() + ", 127.0.0.1:" + other.getPort(), 4);
      assertThat(channel.addresses()).extracting(java.net.InetSocketAddress::getPort).containsExactly(server.getPort(), other.getPort());
      LoadGenerator.Result r = new LoadGenerator(channel, ModelInferRequest.newBuilder().setModelName("m").build())
          .run(LoadGenerator.Options.closed(4, false, Duration.ZERO, Duration.ofMillis(500)), s -> {});
      assertThat(r.errors()).isEmpty();
      assertThat(first.calls.get()).as("calls on the first server").isPositive();
      assertThat(channel.channels()).hasSize(4);
      assertThat(channel.channels().get(1).authority()).isEqualTo("127.0.0.1:" + other.getPort());
      assertThat(channel.channels().get(2).authority()).isEqualTo("127.0.0.1:" + server.getPort());
      assertThat(second.calls.get()).as("calls on the second server").isPositive();
    } finally {
      other.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /**
   * A scale-out seen as gRPC clients see it: the target resolves to one server, then to two; the
   * servers end connections after a second (as --max-connection-age does), and each connection
   * made again looks the target up again, so the second server gets calls and no call fails.
   */
  @Test
  void aConnectionMadeAgain_looksTheTargetUpAgain_andFindsAServerAddedSince() throws Exception {
    ScriptedService first = new ScriptedService(0, -1, 0);
    ScriptedService second = new ScriptedService(0, -1, 0);
    server = io.grpc.netty.NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", 0)).directExecutor()
        .maxConnectionAge(1, TimeUnit.SECONDS).addService(first).build().start();
    Server other = io.grpc.netty.NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", 0)).directExecutor()
        .maxConnectionAge(1, TimeUnit.SECONDS).addService(second).build().start();
    java.net.InetSocketAddress one = new java.net.InetSocketAddress("127.0.0.1", server.getPort());
    java.net.InetSocketAddress two = new java.net.InetSocketAddress("127.0.0.1", other.getPort());
    java.util.concurrent.atomic.AtomicReference<List<java.net.InetSocketAddress>> dns =
        new java.util.concurrent.atomic.AtomicReference<>(List.of(one));
    try {
      channel = Connections.open("fleet.example:8001", 2, null, null, name -> dns.get());
      LoadGenerator generator = new LoadGenerator(channel, ModelInferRequest.newBuilder().setModelName("m").build());
      LoadGenerator.Result before = generator.run(LoadGenerator.Options.closed(4, false, Duration.ZERO, Duration.ofMillis(300)), s -> {});
      assertThat(before.errors()).isEmpty();
      assertThat(second.calls.get()).isZero();

      dns.set(List.of(one, two));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (second.calls.get() == 0 && System.nanoTime() < deadline) {
        LoadGenerator.Result r = generator.run(LoadGenerator.Options.closed(4, false, Duration.ZERO, Duration.ofMillis(500)), s -> {});
        assertThat(r.errors()).as("calls through the servers' GOAWAYs").isEmpty();
      }
      assertThat(second.calls.get()).as("calls on the server added since").isPositive();
      // Connection 1 goes to address 1 of the two.
      assertThat(channel.current()).element(1).isEqualTo(two);
    } finally {
      other.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void aTargetThatIsNotHostAndPort_isRefusedClearly() {
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Connections.resolve("127.0.0.1"))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("expected: host:port");
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Connections.resolve("127.0.0.1:1,no-such-host.invalid:2"))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("does not resolve");
  }

  @Test
  void closedLoop_reportsErrorsByStatus() throws Exception {
    LoadGenerator generator = start(5, -1, 0);

    LoadGenerator.Result r = generator.run(
        LoadGenerator.Options.closed(4, false, Duration.ZERO, Duration.ofMillis(500)), s -> {});

    assertThat(r.errors()).containsOnlyKeys("RESOURCE_EXHAUSTED");
    // Each failure's latency is kept by status, apart from the successes'.
    assertThat(r.errorLatencyMicros()).containsOnlyKeys("RESOURCE_EXHAUSTED");
    assertThat(r.errorLatencyMicros().get("RESOURCE_EXHAUSTED").getTotalCount()).isEqualTo(r.errorCount());
    long failed = r.errorCount();
    assertThat(r.completed()).isPositive();
    // One call in five fails; the window's edges may shift the share by a few calls.
    assertThat((double) failed / (failed + r.completed())).isCloseTo(0.2, within(0.05));
  }

  @Test
  void streaming_matchesAnswersToRequestsAndReadsInBandErrors() throws Exception {
    LoadGenerator generator = start(4, -1, 0);

    LoadGenerator.Result r = generator.run(
        LoadGenerator.Options.open(400, true, Duration.ZERO, Duration.ofSeconds(1)), s -> {});

    assertThat((double) r.sent()).isCloseTo(400, within(1.0));
    assertThat(r.completed() + r.errorCount()).isEqualTo(r.sent());
    assertThat(r.errors()).containsOnlyKeys("RESOURCE_EXHAUSTED");
    assertThat((double) r.errorCount()).isCloseTo(100, within(2.0));
    assertThat(r.byVersion()).containsOnlyKeys("1", "2");
  }

  @Test
  void windowHooks_runOnceEachAroundTheMeasuredPeriod() throws Exception {
    LoadGenerator generator = start(0, -1, 0);
    for (LoadGenerator.Options options : List.of(
        LoadGenerator.Options.open(200, false, Duration.ofMillis(200), Duration.ofMillis(300)),
        LoadGenerator.Options.closed(2, false, Duration.ofMillis(200), Duration.ofMillis(300)))) {
      List<String> events = new java.util.concurrent.CopyOnWriteArrayList<>();

      LoadGenerator.Result r = generator.run(options, s -> {}, () -> events.add("open"), () -> events.add("close"));

      assertThat(events).as(options.describe()).containsExactly("open", "close");
      assertThat(r.completed()).as(options.describe()).isPositive();
    }
  }

  @Test
  void openLoop_theWarmUpClimbsToTheRate_thenHoldsIt() {
    double rate = 1000;
    // Without a warm-up: evenly spaced from the start.
    assertThat(LoadGenerator.dueSeconds(500, rate, 0)).isEqualTo(0.5);
    // A 2 s warm-up ramps over its first second from 100/s to 1000/s: 550 calls in that second.
    assertThat(LoadGenerator.dueSeconds(0, rate, 1)).isZero();
    assertThat(LoadGenerator.dueSeconds(550, rate, 1)).isCloseTo(1.0, within(1e-9));
    // The first calls go at about a tenth of the rate, the last of the climb at about the rate.
    assertThat(LoadGenerator.dueSeconds(1, rate, 1)).isCloseTo(0.01, within(0.0005));
    assertThat(LoadGenerator.dueSeconds(550, rate, 1) - LoadGenerator.dueSeconds(549, rate, 1)).isCloseTo(0.001, within(0.00002));
    // Then exactly the rate: the measured period (from 2 s) holds 1000 calls a second.
    assertThat(LoadGenerator.dueSeconds(1550, rate, 1)).isCloseTo(2.0, within(1e-9));
    assertThat(LoadGenerator.dueSeconds(2550, rate, 1)).isCloseTo(3.0, within(1e-9));
    for (long i = 1; i < 3000; i++) {
      assertThat(LoadGenerator.dueSeconds(i, rate, 1)).isGreaterThan(LoadGenerator.dueSeconds(i - 1, rate, 1));
    }
  }

  @Test
  void results_addUpAcrossRounds() {
    Histogram a = new Histogram(3);
    a.recordValue(100);
    Histogram a1 = a.copy();
    Histogram b = new Histogram(3);
    b.recordValue(300);
    b.recordValue(500);
    LoadGenerator.Result first = new LoadGenerator.Result(1, 1, 1.0, a, java.util.Map.of("1", a1),
        java.util.Map.of("UNAVAILABLE", 2L));
    LoadGenerator.Result second = new LoadGenerator.Result(3, 2, 2.0, b, java.util.Map.of("2", b.copy()),
        java.util.Map.of("UNAVAILABLE", 1L, "INTERNAL", 1L));

    LoadGenerator.Result both = first.plus(second);

    assertThat(both.sent()).isEqualTo(4);
    assertThat(both.throughput()).isEqualTo(1.0);
    assertThat(both.latencyMicros().getTotalCount()).isEqualTo(3);
    assertThat(both.latencyMicros().getMaxValue()).isEqualTo(b.getMaxValue());
    assertThat(both.byVersion()).containsOnlyKeys("1", "2");
    assertThat(both.errors()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of("UNAVAILABLE", 3L, "INTERNAL", 1L));
    assertThat(first.latencyMicros().getTotalCount()).as("the parts are left alone").isEqualTo(1);
  }

  @Test
  void checkingMode_parsesEveryAnswerWhole_andCountsWrongOnesAsCheckFailed() throws Exception {
    // The scripted server's answers carry no outputs: the lean reader counts them as answered,
    // the checking mode as CHECK_FAILED, and says why once.
    start(0, -1, 0);
    ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("m").build();
    LoadGenerator.Options options = LoadGenerator.Options.closed(2, false, Duration.ZERO, Duration.ofMillis(1200));
    LoadGenerator.Result lean = new LoadGenerator(channel, request).run(options, s -> {});
    assertThat(lean.errors()).isEmpty();
    assertThat(lean.completed()).isPositive();
    assertThat(lean.hiccupMicros().getTotalCount()).as("no stall meter in a closed loop: its wakes cost a full machine").isZero();
    List<String> progress = new java.util.concurrent.CopyOnWriteArrayList<>();
    LoadGenerator.Result checked = new LoadGenerator(channel, request, true).run(options, progress::add);
    assertThat(checked.errors()).containsOnlyKeys("CHECK_FAILED");
    assertThat(checked.completed()).isZero();
    assertThat(progress).anyMatch(line -> line.contains("check failed: no outputs"));

    // A right answer passes: the transport ceiling answers a canned response with a real output.
    ModelInferResponse canned = ModelInferResponse.newBuilder().setModelName("m").setModelVersion("1")
        .addOutputs(ModelInferResponse.InferOutputTensor.newBuilder().setName("y").setDatatype("FP32").addShape(1).addShape(3))
        .addRawOutputContents(com.google.protobuf.ByteString.copyFrom(new byte[12]))
        .build();
    TransportCeiling bare = new TransportCeiling(canned, 1);
    Connections toBare = Connections.open("127.0.0.1:" + bare.port(), 1);
    try {
      LoadGenerator.Result right = new LoadGenerator(toBare, request, true).run(options, s -> {});
      assertThat(right.errors()).isEmpty();
      assertThat(right.completed()).isPositive();
      // and a wrong size does not.
      assertThat(LeanUnary.problem(request, canned.toBuilder().setRawOutputContents(0, com.google.protobuf.ByteString.copyFrom(new byte[8])).build()))
          .isEqualTo("output 'y' FP32 [1, 3] has 8 bytes, expected 12");
      assertThat(LeanUnary.problem(request, canned.toBuilder().setModelName("other").build()))
          .isEqualTo("answered for model 'other', asked 'm'");
    } finally {
      toBare.close();
      bare.close();
    }
  }

  @Test
  void sweep_climbsUntilAMissThenTriesHalfway() throws Exception {
    Sweep.Outcome outcome = Sweep.search(200, 1.5, 10,
        rate -> new Sweep.Point(rate, rate, rate / 1000, rate / 500, 0, rate <= 1000));

    double middle = (675.0 + 1012.5) / 2;
    assertThat(outcome.points()).extracting(Sweep.Point::rate)
        .containsExactly(200.0, 300.0, 450.0, 675.0, 1012.5, 1012.5, middle);
    assertThat(outcome.highestSustainable()).isEqualTo(middle);
    assertThat(outcome.bounded()).isTrue();
  }

  @Test
  void sweep_thatNeverMeetsFindsNothing() throws Exception {
    Sweep.Outcome outcome = Sweep.search(200, 2, 10, rate -> new Sweep.Point(rate, 0, 9, 9, 3, false));

    assertThat(outcome.points()).hasSize(2);
    assertThat(outcome.highestSustainable()).isZero();
  }

  @Test
  void sweep_aMissThatDoesNotRepeatIsAStallNotTheLimit() throws Exception {
    int[] probes = {0};
    // The third probe (at 400/s) misses once; its repeat meets, and the sweep climbs on to 800/s.
    Sweep.Outcome outcome = Sweep.search(100, 2, 10, rate -> {
      int n = ++probes[0];
      boolean meets = n != 3 && rate < 800;
      return new Sweep.Point(rate, rate, 1, 1, 0, meets);
    });

    assertThat(outcome.points()).extracting(Sweep.Point::rate)
        .containsExactly(100.0, 200.0, 400.0, 400.0, 800.0, 800.0, 600.0);
    assertThat(outcome.highestSustainable()).isEqualTo(600.0);
  }

  @Test
  void sweep_stopsAtTheClientsOwnLimit_andSaysSo() throws Exception {
    // The client holds up to 400/s against the bare server; at 800/s it cannot: the server is not
    // measured there, and no higher rate is tried.
    Sweep.Outcome outcome = Sweep.search(100, 2, 10,
        rate -> rate >= 800 ? new Sweep.Point(rate, 610, 9, 9, 0, false, true) : new Sweep.Point(rate, rate, 1, 1, 0, true));

    assertThat(outcome.points()).extracting(Sweep.Point::rate).containsExactly(100.0, 200.0, 400.0, 800.0);
    assertThat(outcome.points().get(3).clientBound()).isTrue();
    assertThat(outcome.highestSustainable()).isEqualTo(400.0);
    assertThat(outcome.clientLimit()).isEqualTo(800.0);
    assertThat(outcome.bounded()).as("no rate of the server missed").isFalse();
  }

  @Test
  void sweep_calibratesEachRateAgainstTheBareServer_andStopsWhereTheClientCannotHoldIt() throws Exception {
    io.modelgate.proto.inference.ModelInferResponse canned =
        io.modelgate.proto.inference.ModelInferResponse.newBuilder().setModelName("m").setModelVersion("1").build();
    TransportCeiling bare = new TransportCeiling(canned, 1);
    Connections toBare = Connections.open("127.0.0.1:" + bare.port(), 1);
    // A calibration the client can never pass: nothing listens there, every call fails.
    int closed;
    try (java.net.ServerSocket socket = new java.net.ServerSocket(0)) {
      closed = socket.getLocalPort();
    }
    Connections toNothing = Connections.open("127.0.0.1:" + closed, 1);
    try {
      io.modelgate.proto.inference.ModelInferRequest request =
          io.modelgate.proto.inference.ModelInferRequest.newBuilder().setModelName("m").build();
      LoadGenerator server = new LoadGenerator(toBare, request);
      java.util.List<String> lines = new java.util.ArrayList<>();

      // The client fails against its calibration at the first rate: the server is not measured.
      Sweep.Outcome stopped = Sweep.run(server, new LoadGenerator(toNothing, request), 200, 2, 1000, false,
          java.time.Duration.ZERO, java.time.Duration.ofMillis(300), 4, lines::add);
      assertThat(stopped.points()).extracting(Sweep.Point::clientBound).containsExactly(true);
      assertThat(stopped.clientLimit()).isEqualTo(200.0);
      assertThat(stopped.highestSustainable()).isZero();
      assertThat(lines).singleElement().asString().contains("the client itself cannot hold it against the bare server");

      // Calibrated against the bare server itself at 200/s (a lenient 1 s p99): it holds, and the
      // server is measured.
      Sweep.Outcome measured = Sweep.run(server, server, 200, 2, 1000, false,
          java.time.Duration.ZERO, java.time.Duration.ofMillis(300), 1, line -> {});
      assertThat(measured.points()).extracting(Sweep.Point::clientBound).containsExactly(false);
      assertThat(measured.clientLimit()).isZero();
    } finally {
      toBare.close();
      toNothing.close();
      bare.close();
    }
  }

  @Test
  void sweep_outOfStepsSaysTheHighestIsOnlyALowerBound() throws Exception {
    Sweep.Outcome outcome = Sweep.search(100, 2, 3, rate -> new Sweep.Point(rate, rate, 1, 1, 0, true));

    assertThat(outcome.points()).extracting(Sweep.Point::rate).containsExactly(100.0, 200.0, 400.0);
    assertThat(outcome.highestSustainable()).isEqualTo(400.0);
    assertThat(outcome.bounded()).isFalse();
  }

  /** Answers versions 1 and 2 in turn; fails and stalls as scripted. */
  private static final class ScriptedService extends GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase {
    private final long failEvery;
    private final long stallAt;
    private final long stallMillis;
    private final AtomicLong calls = new AtomicLong();

    ScriptedService(long failEvery, long stallAt, long stallMillis) {
      this.failEvery = failEvery;
      this.stallAt = stallAt;
      this.stallMillis = stallMillis;
    }

    /** The next call's number (from 1), after any scripted stall. */
    private long next() {
      long n = calls.incrementAndGet();
      if (n == stallAt) {
        try {
          Thread.sleep(stallMillis);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      return n;
    }

    private boolean fails(long n) {
      return failEvery > 0 && n % failEvery == 0;
    }

    private static ModelInferResponse answer(long n, String id) {
      return ModelInferResponse.newBuilder().setModelName("m").setModelVersion(n % 2 == 0 ? "2" : "1")
          .setId(id).build();
    }

    @Override
    public void modelInfer(ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
      long n = next();
      if (fails(n)) {
        observer.onError(Status.RESOURCE_EXHAUSTED.withDescription("scripted").asRuntimeException());
        return;
      }
      observer.onNext(answer(n, request.getId()));
      observer.onCompleted();
    }

    @Override
    public StreamObserver<ModelInferRequest> modelStreamInfer(StreamObserver<ModelStreamInferResponse> observer) {
      return new StreamObserver<>() {
        @Override
        public void onNext(ModelInferRequest request) {
          long n = next();
          ModelStreamInferResponse.Builder out = ModelStreamInferResponse.newBuilder();
          if (fails(n)) {
            out.setErrorMessage("scripted").setInferResponse(ModelInferResponse.newBuilder().setId(request.getId())
                .putParameters("error_code", InferParameter.newBuilder().setStringParam("RESOURCE_EXHAUSTED").build()));
          } else {
            out.setInferResponse(answer(n, request.getId()));
          }
          synchronized (observer) {
            observer.onNext(out.build());
          }
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          synchronized (observer) {
            observer.onCompleted();
          }
        }
      };
    }
  }
}

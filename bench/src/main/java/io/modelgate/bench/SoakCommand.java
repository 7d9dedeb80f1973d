package io.modelgate.bench;

import io.grpc.CallCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.modelgate.bench.load.Connections;
import io.modelgate.bench.load.Inputs;
import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetQuotaRequest;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelMetadataRequest;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * A long run against the demo served by {@code modelgate serve} in a JVM of its own, under the
 * load and the changes a production server sees: a tenant at a steady rate (the measured probe), a
 * streaming tenant whose connections are made anew every window, a flooding tenant every other
 * window (refused at its fair share and its quota), and at the start of each window a routing
 * change, a quota set or cleared through the admin API and the callers file rewritten (read again).
 * After each window, with the load stopped, it forces a full collection in the server and reads
 * what the server holds: the heap after it, the process's resident memory, direct buffers,
 * threads, open files and the request memory still counted as held (0 when every request was
 * answered and released). Whether a long-running server degrades is then the slope of those over
 * the run, and the probe's latency window by window. Connections that end without a call (health
 * checks, clients that fail TLS) come every window too, and calls whose client goes away before
 * their answer: what a server keeps of either would show as a heap growing window by window, or as
 * request memory still held. With {@code --tls} all of it runs over TLS.
 *
 * <p>Threads: the command's thread drives the windows; each window's three loads run on threads
 * of their own and are joined before the window is sampled.
 */
@Command(
    name = "soak",
    mixinStandardHelpOptions = true,
    description = "The demo in a server JVM of its own, under steady, streaming and flooding tenants and admin changes for a"
        + " long run: whether its memory, threads, open files and latency stay level.")
final class SoakCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--duration", defaultValue = "600", description = "Seconds of load in all. Default: ${DEFAULT-VALUE}.")
  int durationSeconds;
  @Option(names = "--window", defaultValue = "60", description = "Seconds a window; the server is sampled after each. Default: ${DEFAULT-VALUE}.")
  int windowSeconds;
  @Option(names = "--settle-windows", defaultValue = "1",
      description = "First windows left out of the slopes (JIT compilation, pools and caches filling). Default: ${DEFAULT-VALUE}.")
  int settleWindows;
  @Option(names = "--rate", defaultValue = "500", description = "The probe tenant's calls a second (open loop). Default: ${DEFAULT-VALUE}.")
  double rate;
  @Option(names = "--stream-rate", defaultValue = "2000",
      description = "The streaming tenant's calls a second (open loop, on connections made anew each window). Default: ${DEFAULT-VALUE}.")
  double streamRate;
  @Option(names = "--flood-callers", defaultValue = "256",
      description = "The flooding tenant's closed-loop callers, every other window for a third of it. Default: ${DEFAULT-VALUE}.")
  int floodCallers;
  @Option(names = "--server-heap", defaultValue = "512m", description = "The server's -Xms and -Xmx. Default: ${DEFAULT-VALUE}.")
  String serverHeap;
  @Option(names = "--native-memory",
      description = "Run the server with the JVM's native memory tracking (-XX:NativeMemoryTracking=summary, a few per cent"
          + " of its CPU) and read it after each window: the JVM's own native memory by category, and the resident memory"
          + " beyond it (ONNX Runtime's, the C allocator's arenas).")
  boolean nativeMemory;
  @Option(names = "--server-java-option", paramLabel = "OPTION",
      description = "A further option for the server's JVM (repeatable), after the command's own.")
  List<String> serverJavaOptions = new ArrayList<>();
  @Option(names = "--tls",
      description = "Serve the inference port over TLS (a certificate made for the run by keytool, signed by itself) and"
          + " make every client's connections over TLS, as a production port is.")
  boolean tls;
  @Option(names = "--failed-connections", defaultValue = "20",
      description = "Connections a window that end without a call, spread over it: half closed as soon as made (a load"
          + " balancer's TCP health check), half sending a plaintext HTTP/2 preface and closing (on a TLS port, a"
          + " handshake that fails). Default: ${DEFAULT-VALUE}.")
  int failedConnections;
  @Option(names = "--abandoned-calls", defaultValue = "50",
      description = "Calls a window whose client goes away before the answer: sent on a connection of their own, which is"
          + " closed at once (the server answers into a connection that is gone). Default: ${DEFAULT-VALUE}.")
  int abandonedCalls;
  @Option(names = "--etcd",
      description = "Run the server as a replica of a fleet whose control store is a real etcd (the etcd on the PATH),"
          + " started by the soak: the routing and quota changes go through it, and every --etcd-outage-every windows"
          + " etcd is stopped in the middle of the window and started again.")
  boolean etcd;
  @Option(names = "--etcd-outage-every", defaultValue = "2",
      description = "With --etcd: every this many windows, an outage of etcd (0: none). Default: ${DEFAULT-VALUE}.")
  int etcdOutageEvery;
  @Option(names = "--etcd-outage-seconds", defaultValue = "5",
      description = "With --etcd: how long each outage lasts. Default: ${DEFAULT-VALUE}.")
  int etcdOutageSeconds;

  /**
   * What the server holds after a window, with its load stopped and a full collection done.
   *
   * @param nativeMiB the JVM's native memory tracking, committed MiB by category (in its order,
   *     "Total" first); empty without {@code --native-memory}
   * @param cpuSeconds the server's CPU time since it started (every thread, user and system)
   * @param served the inference requests it answered OK since it started
   * @param eventLoopCpuSeconds its event loops' CPU time since it started ({@code
   *     modelgate_threads_cpu_seconds_total}; 0 where it exports none)
   * @param eventLoopWaitSeconds their time waiting for a core since it started
   */
  record Sample(double heapMiB, double rssMiB, double directMiB, int threads, int openFiles, int connections,
      double heldBytes, Map<String, Double> nativeMiB, double cpuSeconds, double served, double eventLoopCpuSeconds,
      double eventLoopWaitSeconds) {
    /** The JVM's native memory beyond the heap (MiB); NaN without tracking. */
    double jvmNativeMiB() {
      return nativeMiB.isEmpty() ? Double.NaN : nativeMiB.get(TOTAL) - nativeMiB.getOrDefault("Java Heap", 0.0);
    }

    /** Resident memory the JVM does not track (MiB): ONNX Runtime's, the C allocator's; NaN without tracking. */
    double untrackedMiB() {
      return nativeMiB.isEmpty() ? Double.NaN : rssMiB - nativeMiB.get(TOTAL);
    }
  }

  /** The native memory tracking's name for the sum of its categories. */
  static final String TOTAL = "Total";

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    if (etcd && (etcdOutageEvery < 0 || etcdOutageSeconds < 1 || etcdOutageSeconds > windowSeconds / 2)) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--etcd-outage-every " + etcdOutageEvery
          + ", --etcd-outage-seconds " + etcdOutageSeconds + " (expected: 0 or more windows, and an outage of 1 s to half a"
          + " window)");
    }
    if (windowSeconds < 3 || durationSeconds < windowSeconds || settleWindows < 0) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--window " + windowSeconds + ", --duration "
          + durationSeconds + ", --settle-windows " + settleWindows
          + " (expected: a window of 3 s or more, a duration of a window or more, settle windows 0 or more)");
    }
    int windows = durationSeconds / windowSeconds;
    Path root = Files.createTempDirectory("modelgate-bench-soak-");
    String probeKey = "mgk_soak-probe-" + java.util.UUID.randomUUID();
    String streamKey = "mgk_soak-stream-" + java.util.UUID.randomUUID();
    String floodKey = "mgk_soak-flood-" + java.util.UUID.randomUUID();
    Path callers = root.resolve("callers.yaml");
    String callersText = "tenants:\n"
        + "  probe:\n    api_keys: [" + CallerPolicy.hash(probeKey) + "]\n"
        + "  stream:\n    api_keys: [" + CallerPolicy.hash(streamKey) + "]\n"
        + "  flood:\n    api_keys: [" + CallerPolicy.hash(floodKey) + "]\n    quota: {in_flight: " + Math.max(1, floodCallers / 2) + "}\n";
    Files.writeString(callers, callersText);

    List<String> javaOptions = new ArrayList<>(serverJavaOptions);
    if (nativeMemory) {
      javaOptions.add(0, "-XX:NativeMemoryTracking=summary");
    }
    List<String> serveOptions = new ArrayList<>();
    io.netty.handler.ssl.SslContext clientTls = null;
    if (tls) {
      Keytool.selfSigned(root, "server", "CN=localhost", "SAN=dns:localhost,ip:127.0.0.1");
      Path[] pem = Keytool.pem(root, "server");
      serveOptions.addAll(List.of("--tls-cert", pem[0].toString(), "--tls-key", pem[1].toString()));
      clientTls = io.modelgate.gateway.tls.ClientTls.context(pem[0], null, null);
    }
    EtcdProcess store = etcd ? EtcdProcess.start(root.resolve("etcd")) : null;
    if (store != null) {
      serveOptions.addAll(List.of("--control-store", "etcd://" + store.endpoint(), "--replica", "soak"));
    }
    try (store; ServerProcess server = ServerProcess.start(root, callers, serverHeap, javaOptions, serveOptions)) {
      if (store != null) {
        out.printf("soak: the server is replica 'soak' of a fleet whose control store is etcd %s (pid %d)%s%n", store.endpoint(),
            store.pid(), etcdOutageEvery == 0 ? "" : String.format(Locale.ROOT,
                "; every %d windows etcd stops a third into the window for %d s and starts again", etcdOutageEvery,
                etcdOutageSeconds));
      }
      out.printf("soak: the demo (cnn_mnist, versions 1 and 2) served by a JVM of its own (pid %d, -Xmx%s), %d windows of %d s;"
              + " probe %.0f calls/s, streams %.0f calls/s on new connections each window, a flood of %d callers every other"
              + " window, %d connections ending without a call, %d calls abandoned by their client; each window a routing"
              + " change, a quota change and the callers file rewritten; %s%n",
          server.pid(), serverHeap, windows, windowSeconds, rate, streamRate, floodCallers, failedConnections, abandonedCalls,
          tls ? "every connection over TLS" : "plaintext");
      out.println();
      out.println("| window | probe calls/s | p50 ms | p99 ms | p99.9 ms | probe errors | server p99 ms | streamed /s | flood served /s"
          + " | server CPU µs a served call | event loop waiting for a core | flood refused | heap after GC MiB | RSS MiB | direct MiB | threads | open files"
          + " | held at idle B" + (nativeMemory ? " | JVM native MiB | RSS beyond the JVM's MiB |" : " |"));
      out.println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + (nativeMemory ? "---|---|" : ""));
      out.flush();
      String target = "127.0.0.1:" + server.grpcPort;
      ManagedChannel admin = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.adminPort).usePlaintext().build();
      io.netty.handler.ssl.SslContext overTls = clientTls;
      Connections probeChannels = Connections.open(target, 1, probeKey, overTls);
      Connections floodChannels = Connections.open(target, 2, floodKey, overTls);
      List<Sample> samples = new ArrayList<>();
      List<Double> p99s = new ArrayList<>();
      List<Double> serverP99s = new ArrayList<>();
      List<Double> cpuPerCall = new ArrayList<>();
      double[] before = server.counters();
      int adminFailures = 0;
      List<Long> etcdBackMs = new ArrayList<>();
      try {
        var adminStub = AdminServiceGrpc.newBlockingStub(admin).withCallCredentials(bearer(server.adminToken()));
        ModelInferRequest request = Inputs.random(GRPCInferenceServiceGrpc.newBlockingStub(probeChannels.channels().get(0))
            .withDeadlineAfter(30, TimeUnit.SECONDS)
            .modelMetadata(ModelMetadataRequest.newBuilder().setName("cnn_mnist").build()), "", Map.of(), 1);
        LoadGenerator probe = new LoadGenerator(probeChannels, request);
        LoadGenerator flood = new LoadGenerator(floodChannels, request);
        Duration window = Duration.ofSeconds(windowSeconds);
        for (int w = 1; w <= windows; w++) {
          adminFailures += change(adminStub, callers, callersText, w);
          boolean flooding = w % 2 == 0;
          // Each on a thread of its own, beside the probe this thread runs (OwnThread says why).
          CompletableFuture<LoadGenerator.Result> streamed = OwnThread.supply("soak-stream", () -> {
            try (Connections fresh = Connections.open(target, 2, streamKey, overTls)) {
              return new LoadGenerator(fresh, request).run(LoadGenerator.Options.open(streamRate, true, Duration.ZERO, window), line -> {});
            }
          });
          CompletableFuture<LoadGenerator.Result> flooded = !flooding ? null : OwnThread.supply("soak-flood", () ->
              flood.run(LoadGenerator.Options.closed(floodCallers, false, Duration.ZERO,
                  Duration.ofSeconds(Math.max(1, windowSeconds / 3))).backingOff(), line -> {}));
          CompletableFuture<Void> failing = OwnThread.supply("soak-failing-connections", () -> {
            failConnections(server.grpcPort, window);
            return null;
          });
          CompletableFuture<Long> outage = store == null || etcdOutageEvery == 0 || w % etcdOutageEvery != 0 ? null
              : OwnThread.supply("soak-etcd-outage", () -> store.outage(window.dividedBy(3),
                  Duration.ofSeconds(etcdOutageSeconds), server));
          abandonCalls(server.grpcPort, overTls, streamKey, request);
          LoadGenerator.Result probed = probe.run(LoadGenerator.Options.open(rate, false, Duration.ZERO, window), line -> {});
          LoadGenerator.Result stream = streamed.get(windowSeconds + 60L, TimeUnit.SECONDS);
          LoadGenerator.Result floodResult = flooded == null ? null : flooded.get(windowSeconds + 60L, TimeUnit.SECONDS);
          failing.get(windowSeconds + 60L, TimeUnit.SECONDS);
          Long backMs = outage == null ? null : outage.get(windowSeconds + 60L, TimeUnit.SECONDS);
          if (backMs != null) {
            etcdBackMs.add(backMs);
          }
          Sample sample = server.sample(nativeMemory);
          samples.add(sample);
          double p99 = probed.latencyMicros().getValueAtPercentile(99) / 1000.0;
          p99s.add(p99);
          double serverP99 = serverP99(adminStub);
          serverP99s.add(serverP99);
          // The server's CPU over the window (its load, refusals and admin calls, the collection
          // forced after it) for each call it answered OK.
          double micros = (sample.cpuSeconds() - before[0]) * 1e6 / Math.max(1, sample.served() - before[1]);
          // Of the event loops' busy time over the window, the share spent waiting for a core.
          double loopCpu = sample.eventLoopCpuSeconds() - before[2];
          double loopWait = sample.eventLoopWaitSeconds() - before[3];
          String loopWaiting = loopCpu + loopWait <= 0 ? "–" : String.format(Locale.ROOT, "%.0f%%", 100 * loopWait / (loopCpu + loopWait));
          before = new double[] {sample.cpuSeconds(), sample.served(), sample.eventLoopCpuSeconds(), sample.eventLoopWaitSeconds()};
          cpuPerCall.add(micros);
          out.printf(Locale.ROOT, "| %d%s | %.0f | %.3f | %.3f | %.3f | %d | %.3f | %.0f | %s | %.1f | %s | %s | %.1f | %.1f | %.1f | %d | %d | %.0f |%s%n",
              w, (w <= settleWindows ? " (settling)" : "") + (backMs == null ? "" : String.format(Locale.ROOT,
                  " (etcd down %d s)", etcdOutageSeconds)), probed.throughput(),
              probed.latencyMicros().getValueAtPercentile(50) / 1000.0, p99,
              probed.latencyMicros().getValueAtPercentile(99.9) / 1000.0, probed.errorCount(), serverP99, stream.throughput(),
              floodResult == null ? "–" : String.format(Locale.ROOT, "%.0f", floodResult.throughput()), micros, loopWaiting,
              floodResult == null ? "–" : String.valueOf(floodResult.errorCount()),
              sample.heapMiB(), sample.rssMiB(), sample.directMiB(), sample.threads(), sample.openFiles(), sample.heldBytes(),
              nativeMemory ? String.format(Locale.ROOT, " %.1f | %.1f |", sample.jvmNativeMiB(), sample.untrackedMiB()) : "");
          out.flush();
        }
      } finally {
        probeChannels.close();
        floodChannels.close();
        admin.shutdownNow();
      }
      summarize(out, samples, p99s, serverP99s, cpuPerCall, adminFailures);
      if (store != null) {
        out.printf(Locale.ROOT, "etcd outages: %d; the replica found etcd back %s after its return%n", etcdBackMs.size(),
            etcdBackMs.isEmpty() ? "–" : etcdBackMs.stream().mapToLong(Long::longValue).min().orElse(0) + " to "
                + etcdBackMs.stream().mapToLong(Long::longValue).max().orElse(0) + " ms");
      }
      out.flush();
    }
    return 0;
  }

  /**
   * Sends {@link #abandonedCalls} calls on a connection of their own and closes it at once, before
   * their answers; the server must answer into a connection that is gone and keep nothing of them.
   */
  private void abandonCalls(int port, io.netty.handler.ssl.SslContext tls, String apiKey, ModelInferRequest request)
      throws InterruptedException {
    if (abandonedCalls == 0) {
      return;
    }
    io.grpc.netty.NettyChannelBuilder builder = io.grpc.netty.NettyChannelBuilder.forAddress("localhost", port);
    ManagedChannel channel = (tls == null ? builder.usePlaintext() : builder.sslContext(tls)).build();
    try {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER), apiKey);
      var stub = GRPCInferenceServiceGrpc.newStub(channel)
          .withInterceptors(io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(headers));
      // The connection first, so that the calls go out together and are in the server when it closes.
      channel.getState(true);
      for (int i = 0; i < 200 && channel.getState(false) != io.grpc.ConnectivityState.READY; i++) {
        Thread.sleep(10);
      }
      io.grpc.stub.StreamObserver<io.modelgate.proto.inference.ModelInferResponse> ignored = new io.grpc.stub.StreamObserver<>() {
        @Override public void onNext(io.modelgate.proto.inference.ModelInferResponse value) {}
        @Override public void onError(Throwable t) {}
        @Override public void onCompleted() {}
      };
      for (int i = 0; i < abandonedCalls; i++) {
        stub.modelInfer(request, ignored);
      }
    } finally {
      // At once: the calls are on their way or in the server, not answered.
      channel.shutdownNow();
    }
  }

  /**
   * {@link #failedConnections} connections to {@code port} spread over {@code window}, each ending
   * without a call: every other one closed as soon as it is made, the others after sending a
   * plaintext HTTP/2 preface (which a TLS port cannot read: its handshake fails).
   */
  private void failConnections(int port, Duration window) {
    byte[] preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    long pause = failedConnections == 0 ? 0 : window.toMillis() / (failedConnections + 1);
    try {
      for (int i = 0; i < failedConnections; i++) {
        Thread.sleep(pause);
        try (java.net.Socket socket = new java.net.Socket(java.net.InetAddress.getLoopbackAddress(), port)) {
          if (i % 2 == 1) {
            socket.setSoTimeout(500);
            socket.getOutputStream().write(preface);
            socket.getOutputStream().flush();
            // Until the server ends it (a TLS port, at once) or half a second (a plaintext port).
            while (socket.getInputStream().read(new byte[512]) >= 0) {
              // what the server sends is not looked at
            }
          }
        } catch (IOException e) {
          // A connection the server ended or refused is what this is for.
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * The server's own p99 over its last minute (every tenant's requests, from arrival to answer),
   * of the version that answered slower; with windows of a minute, the window just run.
   */
  private static double serverP99(AdminServiceGrpc.AdminServiceBlockingStub admin) {
    double p99 = 0;
    for (io.modelgate.proto.admin.v1.VersionStats version : admin.withDeadlineAfter(30, TimeUnit.SECONDS)
        .getStats(io.modelgate.proto.admin.v1.GetStatsRequest.newBuilder().setModel("cnn_mnist").build()).getVersionsList()) {
      for (io.modelgate.proto.admin.v1.WindowStats window : version.getWindowsList()) {
        if (window.getWindow().equals("1m") && window.getRequests() > 0) {
          p99 = Math.max(p99, window.getEndToEndMs().getP99());
        }
      }
    }
    return p99;
  }

  /** Bearer credentials for the admin API. */
  private static CallCredentials bearer(String token) {
    return new CallCredentials() {
      @Override
      public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
        Metadata headers = new Metadata();
        headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
        applier.apply(headers);
      }
    };
  }

  /**
   * Window {@code w}'s changes: routing between the two versions and all on version 2 in turn, the
   * streaming tenant's quota set and cleared in turn, the callers file rewritten (to be read again).
   *
   * @return the changes that failed (each said on the error stream)
   */
  private int change(AdminServiceGrpc.AdminServiceBlockingStub admin, Path callers, String callersText, int w) throws IOException {
    int failed = 0;
    RoutingPolicy.Builder policy = RoutingPolicy.newBuilder().setModel("cnn_mnist").setReason("soak window " + w);
    if (w % 2 == 1) {
      policy.putWeights(1, 50).putWeights(2, 50);
    } else {
      policy.putWeights(2, 1);
    }
    try {
      // Compare-and-swap on the revision in force, as an operator's tool would.
      long revision = admin.withDeadlineAfter(30, TimeUnit.SECONDS)
          .getRouting(io.modelgate.proto.admin.v1.GetRoutingRequest.newBuilder().setModel("cnn_mnist").build()).getRevision();
      admin.withDeadlineAfter(30, TimeUnit.SECONDS).setRouting(
          SetRoutingRequest.newBuilder().setPolicy(policy).setExpectedRevision(revision).build());
    } catch (io.grpc.StatusRuntimeException e) {
      failed++;
      spec.commandLine().getErr().println("soak: window " + w + ": routing change failed: " + e.getStatus());
    }
    SetQuotaRequest.Builder quota = SetQuotaRequest.newBuilder().setTenant("stream");
    if (w % 2 == 1) {
      quota.setRequestsPerSecond(streamRate * 10).setWeight(2);
    } else {
      quota.setClear(true);
    }
    try {
      admin.withDeadlineAfter(30, TimeUnit.SECONDS).setQuota(quota.build());
    } catch (io.grpc.StatusRuntimeException e) {
      failed++;
      spec.commandLine().getErr().println("soak: window " + w + ": quota change failed: " + e.getStatus());
    }
    Files.writeString(callers, callersText + "# window " + w + "\n");
    return failed;
  }

  /**
   * The run in a few lines: each measure from the first window after settling to the last, with
   * its least-squares slope an hour (one window's noise does not make a trend; a leak does).
   */
  private void summarize(PrintWriter out, List<Sample> samples, List<Double> p99s, List<Double> serverP99s,
      List<Double> cpuPerCall, int adminFailures) {
    out.println();
    int from = Math.min(settleWindows, samples.size());
    List<Sample> counted = samples.subList(from, samples.size());
    if (counted.size() < 2) {
      out.printf("too few windows after the %d settling one(s) for a trend: %d%n", settleWindows, counted.size());
    } else {
      double perHour = 3600.0 / windowSeconds;
      Sample first = counted.get(0);
      Sample last = counted.get(counted.size() - 1);
      out.printf(Locale.ROOT, "windows %d to %d (%d s):%n", from + 1, samples.size(), counted.size() * windowSeconds);
      trend(out, "heap after a full GC", "MiB", counted.stream().map(Sample::heapMiB).toList(), perHour);
      trend(out, "resident memory (RSS)", "MiB", counted.stream().map(Sample::rssMiB).toList(), perHour);
      trend(out, "direct buffers", "MiB", counted.stream().map(Sample::directMiB).toList(), perHour);
      if (!first.nativeMiB().isEmpty()) {
        trend(out, "the JVM's native memory (tracked, committed; heap left out)", "MiB",
            counted.stream().map(Sample::jvmNativeMiB).toList(), perHour);
        for (String category : first.nativeMiB().keySet()) {
          if (category.equals(TOTAL) || category.equals("Java Heap")) {
            continue;
          }
          List<Double> series = counted.stream().map(s -> s.nativeMiB().getOrDefault(category, 0.0)).toList();
          if (Math.abs(series.get(series.size() - 1) - series.get(0)) >= 0.5) {
            trend(out, "  of which " + category, "MiB", series, perHour);
          }
        }
        trend(out, "resident memory beyond the JVM's tracking (RSS minus tracked committed: ONNX Runtime, the C allocator)",
            "MiB", counted.stream().map(Sample::untrackedMiB).toList(), perHour);
      }
      out.printf(Locale.ROOT, "  threads %d -> %d, open files %d -> %d, connections the inference port holds %d -> %d%n",
          first.threads(), last.threads(), first.openFiles(), last.openFiles(), first.connections(), last.connections());
      // The flood comes every other window: latency is compared among windows alike.
      alike(out, "the probe's p99 at the client", "ms", p99s, from, perHour);
      alike(out, "the server's p99", "ms", serverP99s, from, perHour);
      // Work that grows with time (a list scanned per request, say) shows here before in latency.
      alike(out, "the server's CPU a served call", "µs", cpuPerCall, from, perHour);
    }
    out.printf(Locale.ROOT, "request memory held at idle, the most after any window: %.0f B%n",
        samples.stream().mapToDouble(Sample::heldBytes).max().orElse(0));
    out.printf(Locale.ROOT, "admin changes that failed: %d%n", adminFailures);
  }

  /** Trends of {@code values} among the windows without the flood (odd) and with it (even). */
  private static void alike(PrintWriter out, String what, String unit, List<Double> values, int from, double perHour) {
    List<Double> calm = new ArrayList<>();
    List<Double> flooded = new ArrayList<>();
    for (int i = from; i < values.size(); i++) {
      ((i + 1) % 2 == 0 ? flooded : calm).add(values.get(i));
    }
    if (calm.size() >= 2) {
      trend(out, what + " in the windows without the flood", unit, calm, perHour / 2);
    }
    if (flooded.size() >= 2) {
      trend(out, what + " in the windows with the flood", unit, flooded, perHour / 2);
    }
  }

  private static void trend(PrintWriter out, String what, String unit, List<Double> values, double stepsPerHour) {
    out.printf(Locale.ROOT, "  %s %.1f -> %.1f %s (%+.1f %s an hour, least squares)%n", what, values.get(0),
        values.get(values.size() - 1), unit, slope(values) * stepsPerHour, unit);
  }

  /** Least-squares slope of {@code values} over their index, per index step. */
  static double slope(List<Double> values) {
    int n = values.size();
    if (n < 2) {
      return 0;
    }
    double meanX = (n - 1) / 2.0;
    double meanY = values.stream().mapToDouble(Double::doubleValue).average().orElse(0);
    double num = 0;
    double den = 0;
    for (int i = 0; i < n; i++) {
      num += (i - meanX) * (values.get(i) - meanY);
      den += (i - meanX) * (i - meanX);
    }
    return num / den;
  }

  /**
   * {@code modelgate serve} on the embedded demo in a JVM of its own, on free ports, with a
   * callers file; sampled from outside as an operator would: {@code jcmd} for a full collection,
   * its {@code /metrics}, and {@code /proc} for the resident memory and open files.
   */
  static final class ServerProcess implements AutoCloseable {
    private final Process process;
    private final Path dir;
    private final Path log;
    final int grpcPort;
    final int adminPort;
    final int metricsPort;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    private ServerProcess(Process process, Path dir, Path log, int grpcPort, int adminPort, int metricsPort) {
      this.process = process;
      this.dir = dir;
      this.log = log;
      this.grpcPort = grpcPort;
      this.adminPort = adminPort;
      this.metricsPort = metricsPort;
    }

    static ServerProcess start(Path dir, Path callers, String heap, List<String> javaOptions, List<String> serveOptions)
        throws IOException, InterruptedException {
      int[] ports = freePorts(3);
      Path log = dir.resolve("server.log");
      List<String> command = ChildJvm.command();
      // Every page of the heap made resident at start: the resident memory's changes are then
      // the server's native memory, not G1 touching heap regions for the first time.
      command.addAll(List.of("-Xms" + heap, "-Xmx" + heap, "-XX:+AlwaysPreTouch", "-XX:MaxTenuringThreshold=2"));
      command.addAll(javaOptions);
      command.addAll(List.of("-cp", System.getProperty("java.class.path"),
          io.modelgate.gateway.cli.ModelgateCli.class.getName(), "serve",
          "--grpc-port", Integer.toString(ports[0]), "--admin-port", Integer.toString(ports[1]),
          "--metrics-port", Integer.toString(ports[2]), "--callers", callers.toString(),
          "--state-dir", dir.resolve("state").toString()));
      command.addAll(serveOptions);
      Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true)
          .redirectOutput(log.toFile()).start();
      ServerProcess server = new ServerProcess(process, dir, log, ports[0], ports[1], ports[2]);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
      while (!server.ready()) {
        if (!process.isAlive() || System.nanoTime() - deadline > 0) {
          server.close();
          throw new IllegalStateException("the server did not become ready: " + server.tail());
        }
        Thread.sleep(200);
      }
      return server;
    }

    static int[] freePorts(int n) throws IOException {
      int[] ports = new int[n];
      List<java.net.ServerSocket> sockets = new ArrayList<>();
      try {
        for (int i = 0; i < n; i++) {
          java.net.ServerSocket socket = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
          sockets.add(socket);
          ports[i] = socket.getLocalPort();
        }
      } finally {
        for (java.net.ServerSocket socket : sockets) {
          socket.close();
        }
      }
      return ports;
    }

    long pid() {
      return process.pid();
    }

    String adminToken() throws IOException {
      return Files.readString(dir.resolve("state").resolve("admin-token")).trim();
    }

    private boolean ready() {
      try {
        return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + metricsPort + "/readyz"))
            .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.discarding()).statusCode() == 200;
      } catch (IOException e) {
        return false;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }

    /** {@code jcmd PID COMMAND...}; its output. */
    private String jcmd(String... command) throws IOException, InterruptedException {
      Path jcmd = Path.of(ProcessHandle.current().info().command().orElse("java")).resolveSibling("jcmd");
      List<String> line = new ArrayList<>(List.of(Files.isExecutable(jcmd) ? jcmd.toString() : "jcmd", Long.toString(process.pid())));
      line.addAll(List.of(command));
      Process run = new ProcessBuilder(line).redirectErrorStream(true).start();
      // Read before waiting: a full pipe would stall jcmd.
      String output = new String(run.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
      if (!run.waitFor(60, TimeUnit.SECONDS) || run.exitValue() != 0) {
        run.destroyForcibly();
        throw new IllegalStateException("jcmd " + process.pid() + " " + String.join(" ", command) + " did not succeed: " + output);
      }
      return output;
    }

    /**
     * A full collection in the server, then what it holds.
     *
     * @param nativeMemory whether to read the server's native memory tracking (it must run with it)
     */
    Sample sample(boolean nativeMemory) throws IOException, InterruptedException {
      jcmd("GC.run");
      Map<String, Double> nativeMiB = nativeMemory ? nativeCommitted(jcmd("VM.native_memory", "summary")) : Map.of();
      String metrics = scrape();
      double heap = sum(metrics, "jvm_memory_used_bytes{area=\"heap\"");
      double direct = sum(metrics, "jvm_buffer_memory_used_bytes{id=\"direct\"");
      double held = sum(metrics, "modelgate_request_memory_held_bytes");
      Path proc = Path.of("/proc", Long.toString(process.pid()));
      double rss = Double.NaN;
      int threads = (int) sum(metrics, "jvm_threads_live_threads");
      int files = (int) sum(metrics, "process_files_open_files");
      int connections = (int) sum(metrics, "modelgate_connections_held{port=\"inference\"");
      if (Files.isReadable(proc.resolve("status"))) {
        for (String line : Files.readAllLines(proc.resolve("status"))) {
          if (line.startsWith("VmRSS:")) {
            rss = Double.parseDouble(line.replaceAll("[^0-9]", "")) / 1024.0;
          }
        }
      }
      return new Sample(heap / (1 << 20), rss, direct / (1 << 20), threads, files, connections, held, nativeMiB,
          sum(metrics, CPU) / 1e9, sum(metrics, SERVED), sum(metrics, LOOP_CPU), sum(metrics, LOOP_WAIT));
    }

    /** The server's CPU time a call and its calls answered OK are read from these series. */
    private static final String CPU = "process_cpu_time_ns_total";
    private static final String SERVED = "modelgate_requests_total{code=\"OK\"";
    /** Its event loops' CPU and waits for a core (seconds), from these. */
    private static final String LOOP_CPU = "modelgate_threads_cpu_seconds_total{threads=\"event_loop\"";
    private static final String LOOP_WAIT = "modelgate_threads_run_queue_wait_seconds_total{threads=\"event_loop\"";

    /** Whether the server finds its etcd control store up ({@code modelgate_control_store_up}). */
    boolean controlStoreUp() throws IOException, InterruptedException {
      return sum(scrape(), "modelgate_control_store_up{kind=\"etcd\"") == 1;
    }

    /** The server's CPU seconds, calls answered OK, and its event loops' CPU and waits so far, without a collection. */
    double[] counters() throws IOException, InterruptedException {
      String metrics = scrape();
      return new double[] {sum(metrics, CPU) / 1e9, sum(metrics, SERVED), sum(metrics, LOOP_CPU), sum(metrics, LOOP_WAIT)};
    }

    private String scrape() throws IOException, InterruptedException {
      return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + metricsPort + "/metrics"))
          .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString()).body();
    }

    private static final java.util.regex.Pattern NATIVE_TOTAL =
        java.util.regex.Pattern.compile("^Total: reserved=(\\d+)KB, committed=(\\d+)KB", java.util.regex.Pattern.MULTILINE);
    private static final java.util.regex.Pattern NATIVE_CATEGORY =
        java.util.regex.Pattern.compile("^-\\s+(.+?) \\(reserved=(\\d+)KB, committed=(\\d+)KB\\)", java.util.regex.Pattern.MULTILINE);

    /**
     * Committed MiB by category from {@code jcmd PID VM.native_memory summary}, "Total" first.
     *
     * @throws IllegalStateException when the output has no total (the JVM runs without tracking)
     */
    static Map<String, Double> nativeCommitted(String summary) {
      java.util.regex.Matcher total = NATIVE_TOTAL.matcher(summary);
      if (!total.find()) {
        throw new IllegalStateException("no native memory summary in the server's answer: "
            + summary.substring(0, Math.min(300, summary.length())));
      }
      Map<String, Double> committed = new java.util.LinkedHashMap<>();
      committed.put(TOTAL, Long.parseLong(total.group(2)) / 1024.0);
      java.util.regex.Matcher category = NATIVE_CATEGORY.matcher(summary);
      while (category.find()) {
        committed.put(category.group(1), Long.parseLong(category.group(3)) / 1024.0);
      }
      return committed;
    }

    /** The sum of the samples of the series whose line starts with {@code prefix} (a name, or a name and its first labels). */
    static double sum(String metrics, String prefix) {
      double total = 0;
      for (String line : metrics.split("\n")) {
        if (line.startsWith(prefix) && (line.charAt(prefix.length()) == ' ' || line.charAt(prefix.length()) == ','
            || line.charAt(prefix.length()) == '}' || line.charAt(prefix.length()) == '{')) {
          total += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
        }
      }
      return total;
    }

    String tail() throws IOException {
      String text = Files.exists(log) ? Files.readString(log) : "";
      return text.length() > 3000 ? text.substring(text.length() - 3000) : text;
    }

    /** Stops the server as an operator would (SIGTERM: it drains), forcibly after 60 s. */
    @Override
    public void close() {
      stop(process, Duration.ofSeconds(60));
    }
  }

  /** Stops {@code process} with SIGTERM, and forcibly where it has not ended within {@code patience}. */
  static void stop(Process process, Duration patience) {
    process.destroy();
    try {
      if (!process.waitFor(patience.toMillis(), TimeUnit.MILLISECONDS)) {
        process.destroyForcibly();
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }

  /**
   * One etcd member on loopback (the {@code etcd} on the PATH, Debian's {@code etcd-server}), its
   * data in a folder of its own, on free ports; stopped and started again on the same data for an
   * outage, as a restart of the control store's member would be.
   */
  static final class EtcdProcess implements AutoCloseable {
    private final Path dir;
    private final int clientPort;
    private final int peerPort;
    private Process process;

    private EtcdProcess(Path dir, int clientPort, int peerPort) {
      this.dir = dir;
      this.clientPort = clientPort;
      this.peerPort = peerPort;
    }

    static EtcdProcess start(Path dir) throws IOException, InterruptedException {
      Files.createDirectories(dir);
      int[] ports = ServerProcess.freePorts(2);
      EtcdProcess etcd = new EtcdProcess(dir, ports[0], ports[1]);
      etcd.run();
      return etcd;
    }

    String endpoint() {
      return "127.0.0.1:" + clientPort;
    }

    long pid() {
      return process.pid();
    }

    /** Starts the member on its data folder and waits until it answers its health check. */
    private void run() throws IOException, InterruptedException {
      String client = "http://" + endpoint();
      String peer = "http://127.0.0.1:" + peerPort;
      process = new ProcessBuilder("etcd", "--name", "soak", "--data-dir", dir.resolve("data").toString(),
          "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
          "--initial-advertise-peer-urls", peer, "--initial-cluster", "soak=" + peer, "--log-level", "error")
          .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("etcd.log").toFile()))
          .start();
      HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (true) {
        try {
          if (http.send(HttpRequest.newBuilder(URI.create(client + "/health")).timeout(Duration.ofSeconds(2)).build(),
              HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
            return;
          }
        } catch (IOException e) {
          // not yet listening
        }
        if (!process.isAlive() || System.nanoTime() - deadline > 0) {
          close();
          throw new IllegalStateException("etcd did not start: " + Files.readString(dir.resolve("etcd.log")));
        }
        Thread.sleep(100);
      }
    }

    /**
     * After {@code after}, stops etcd for {@code lasting} and starts it again; returns how long
     * after its return {@code server} found it up (ms).
     */
    long outage(Duration after, Duration lasting, ServerProcess server) throws Exception {
      Thread.sleep(after.toMillis());
      close();
      Thread.sleep(lasting.toMillis());
      run();
      long back = System.nanoTime();
      long deadline = back + TimeUnit.SECONDS.toNanos(30);
      while (!server.controlStoreUp()) {
        if (System.nanoTime() - deadline > 0) {
          throw new IllegalStateException("the server did not find etcd back within 30 s of its return");
        }
        Thread.sleep(20);
      }
      return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back);
    }

    /** Stops the member (SIGTERM), forcibly after 10 s. */
    @Override
    public void close() {
      if (process != null) {
        stop(process, Duration.ofSeconds(10));
      }
    }
  }
}

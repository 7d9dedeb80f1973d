package io.modelgate.gateway.server;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Compiles the serving path before the real server exists: a throwaway gateway on loopback serves
 * the embedded demo model (cnn_mnist version 1, batches up to 64) to a loopback client keeping
 * {@code inFlight} calls outstanding for a few seconds, then everything is closed and deleted. A
 * quarter of the calls go to a copy of the model behind a tiny queue, so that refusals are compiled
 * as well as answers.
 *
 * <p>Why it works: the JIT compiles code per class, not per instance. The throwaway runs the same
 * classes the real server will (Netty's event loop and HTTP/2 codec, gRPC's server, the inference
 * service, the version's ring and batcher, the answer's encoding), so the real server starts with
 * them compiled, and a replica that joins a busy fleet does not refuse its first seconds of
 * traffic while C2 catches up (BENCHMARKS.md). Nothing of it reaches the real server's statistics,
 * usage, access log or state: the throwaway has its own of each, in a temporary folder, and its
 * access log is off.
 *
 * <p>What it cannot do: the real models' own Java code paths where they differ from the demo's
 * (other datatypes, shapes, batch policies) are compiled under the first real traffic.
 *
 * <p>Threading: runs on the calling thread, once, before the real server starts.
 */
public final class InferenceWarmup {
  private static final Logger log = LoggerFactory.getLogger(InferenceWarmup.class);
  /** Most that {@link #run} accepts. */
  public static final Duration MAX_DURATION = Duration.ofMinutes(1);

  /**
   * The second model: the same ONNX file behind a queue of {@value #REFUSING_QUEUE}, which every
   * {@value #REFUSING_EVERY}th call goes to, so that refusing ({@code RESOURCE_EXHAUSTED}) is compiled
   * too and the first full queue of the real server does not send its serving path back to the
   * interpreter.
   */
  static final String REFUSING = DemoRepository.MODEL + "_small_queue";
  static final int REFUSING_QUEUE = 2;
  static final int REFUSING_EVERY = 4;

  /**
   * What a warm-up did: calls answered OK, calls refused {@code RESOURCE_EXHAUSTED} (meant to happen),
   * calls that failed otherwise, and how long it took in ms.
   */
  public record Summary(long answered, long refused, long failed, long millis) {}

  private InferenceWarmup() {}

  /**
   * Runs the throwaway gateway for {@code duration}.
   *
   * @param eventLoopThreads the real server's event loops, so that the throwaway's look the same
   * @param inFlight calls kept outstanding, 1 to 1024
   * @throws IOException when the throwaway cannot start (the caller decides whether to go on)
   */
  public static Summary run(Duration duration, int eventLoopThreads, int inFlight) throws IOException {
    return run(duration, eventLoopThreads, inFlight, Path.of(System.getProperty("java.io.tmpdir")));
  }

  /** As above, with the throwaway's temporary folder under {@code parent}. */
  static Summary run(Duration duration, int eventLoopThreads, int inFlight, Path parent) throws IOException {
    if (duration.isNegative() || duration.compareTo(MAX_DURATION) > 0) {
      throw new IllegalArgumentException("warm-up duration: " + io.modelgate.gateway.config.TimeSpans.format(duration)
          + " (expected: 0 to " + io.modelgate.gateway.config.TimeSpans.format(MAX_DURATION) + ")");
    }
    if (inFlight < 1 || inFlight > 1024) {
      throw new IllegalArgumentException("warm-up calls in flight: " + inFlight + " (expected: 1 to 1024)");
    }
    long start = System.nanoTime();
    log.info("inference warm-up: a throwaway gateway on loopback serves the demo model to itself for {} ms", duration.toMillis());
    Path folder = Files.createTempDirectory(parent, "modelgate-warmup-");
    StatsRegistry stats = null;
    ModelRepository repository = null;
    GatewayServer server = null;
    ManagedChannel channel = null;
    try {
      Path root = Files.createDirectories(folder.resolve("models"));
      write(root, DemoRepository.MODEL, "max_batch_size: 64\n");
      write(root, REFUSING, "max_batch_size: 64\nqueue_capacity: " + REFUSING_QUEUE + "\n");
      stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
      repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS), stats);
      String token = "warmup-" + java.util.UUID.randomUUID();
      server =
          GatewayServer.start(
              new ServerSettings("127.0.0.1", 0, ServerSettings.DEFAULT_MAX_INBOUND_MESSAGE_BYTES, eventLoopThreads,
                  Duration.ofSeconds(5)),
              new AdminSettings("127.0.0.1", 0, token, null, "127.0.0.1", -1, folder.resolve("state")).withAccessLog(0),
              repository,
              stats);
      channel = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
      long[] counts = drive(channel, duration, inFlight);
      return new Summary(counts[0], counts[1], counts[2], TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
    } finally {
      if (channel != null) {
        channel.shutdownNow();
      }
      if (server != null) {
        server.stop();
      }
      if (repository != null) {
        repository.close(Duration.ZERO);
      }
      if (stats != null) {
        stats.close();
      }
      delete(folder);
    }
  }

  private static void write(Path root, String name, String config) throws IOException {
    Path version = Files.createDirectories(root.resolve(name).resolve("1"));
    Files.write(version.resolve("model.onnx"), DemoRepository.original());
    Files.writeString(root.resolve(name).resolve("model.yaml"), config);
  }

  /** Keeps {@code inFlight} unary calls outstanding until {@code duration} has passed; returns (ok, refused, failed). */
  private static long[] drive(ManagedChannel channel, Duration duration, int inFlight) throws IOException {
    ModelInferRequest request =
        ModelInferRequest.newBuilder()
            .setModelName(DemoRepository.MODEL)
            .addInputs(
                ModelInferRequest.InferInputTensor.newBuilder()
                    .setName("input_image")
                    .setDatatype("FP32")
                    .addAllShape(List.of(1L, 1L, 28L, 28L)))
            .addRawInputContents(ByteString.copyFrom(new byte[28 * 28 * Float.BYTES]))
            .build();
    ModelInferRequest refusing = request.toBuilder().setModelName(REFUSING).build();
    GRPCInferenceServiceGrpc.GRPCInferenceServiceStub stub = GRPCInferenceServiceGrpc.newStub(channel);
    long sent = 0;
    Semaphore permits = new Semaphore(inFlight);
    AtomicLong answered = new AtomicLong();
    AtomicLong refused = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    long deadline = System.nanoTime() + duration.toNanos();
    try {
      while (System.nanoTime() - deadline < 0) {
        if (!permits.tryAcquire(1, TimeUnit.SECONDS)) {
          continue;
        }
        stub.withDeadlineAfter(10, TimeUnit.SECONDS).modelInfer(sent++ % REFUSING_EVERY == 0 ? refusing : request,
            new StreamObserver<ModelInferResponse>() {
          @Override
          public void onNext(ModelInferResponse response) {}

          @Override
          public void onError(Throwable t) {
            if (io.grpc.Status.fromThrowable(t).getCode() == io.grpc.Status.Code.RESOURCE_EXHAUSTED) {
              refused.incrementAndGet();
            } else if (failed.getAndIncrement() == 0) {
              log.warn("inference warm-up: a call failed: {}", t.toString());
            }
            permits.release();
          }

          @Override
          public void onCompleted() {
            answered.incrementAndGet();
            permits.release();
          }
        });
      }
      // Wait for the calls still out (each has a 10 s deadline).
      if (!permits.tryAcquire(inFlight, 15, TimeUnit.SECONDS)) {
        log.warn("inference warm-up: calls still unanswered after 15 s");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted during the inference warm-up", e);
    }
    return new long[] {answered.get(), refused.get(), failed.get()};
  }

  private static void delete(Path folder) {
    try (Stream<Path> paths = Files.walk(folder)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> {
        try {
          Files.deleteIfExists(p);
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
      });
    } catch (IOException | UncheckedIOException e) {
      log.warn("inference warm-up: could not delete {}: {}", folder, e.toString());
    }
  }
}

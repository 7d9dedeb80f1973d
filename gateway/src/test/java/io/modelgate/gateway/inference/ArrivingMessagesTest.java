package io.modelgate.gateway.inference;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Outcome;
import io.modelgate.gateway.testing.Tensors;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The request memory at both ends of a call, on a real Netty server: grpc-java gathers a message
 * whole before the service sees it, and those bytes count; an answer counts until the transport
 * has sent it. A proxy between client and server stops passing the client's bytes part way through
 * a message (the server holds a message still arriving), or the server's part way through an
 * answer (the server holds an answer its client does not read), as a slow or malicious client
 * would.
 */
class ArrivingMessagesTest {
  private static final int MIB = 1 << 20;

  private static final ServerSettings SETTINGS = new ServerSettings("127.0.0.1", 0, 128 * MIB, 1, Duration.ofSeconds(5));

  @TempDir Path root;
  private final StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
  /** Bytes the server's request memory holds now. */
  private final LongSupplier held = () -> (long) stats.prometheus().get("modelgate.request.memory.held").gauge().value();

  /** The gateway on Netty with {@code requestMemory} bytes of request memory. */
  private GatewayServer start(long requestMemory, ServerSettings settings) throws IOException {
    AdminSettings admin = Gateway.adminSettings(root.resolve(".state"), -1).withRequestMemory(requestMemory);
    return Gateway.server(root, stats, settings, admin);
  }

  @Test
  void aMessageStillArriving_countsInTheRequestMemory_andAnotherThatWouldPassItIsRefusedAsItArrives() throws Exception {
    Gateway.standardRepository(root);
    // 8 MiB of request memory: a message may fill 6 MiB of it while it arrives.
    GatewayServer server = start(8L * MIB, SETTINGS);
    try (StallingProxy proxy = new StallingProxy(server.port(), 3L * MIB)) {
      ManagedChannel slow = channel(proxy.port());
      ManagedChannel direct = channel(server.port());
      try {
        // 5 MiB, of which the proxy passes about 3: the server holds what it gathered.
        CompletableFuture<Status> first = call(slow, 5 * MIB);
        eventually("the first message's bytes gathered", () -> held.getAsLong() >= 2L * MIB);
        assertThat(held.getAsLong()).isLessThanOrEqualTo(3L * MIB);

        // 4 MiB more would pass 6 MiB: refused while it arrives, before any admission.
        Status second = call(direct, 4 * MIB).get(60, TimeUnit.SECONDS);
        assertThat(second.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
        assertThat(second.getDescription())
            .startsWith("the server holds ")
            .contains(" of requests arriving or not yet answered (this message's first ")
            .endsWith(" more would pass 6144 KiB, the part of its limit of 8192 KiB a message may fill while it arrives"
                + " (--request-memory); retry later or send smaller requests");
        assertThat(stats.prometheus().get("modelgate.request.memory.arriving.refused").functionCounter().count()).isEqualTo(1);
        assertThat(first).isNotDone();

        // The rest of the first message arrives: it is admitted (5 MiB of 8) and answered; a
        // small request on the refused client's connection is served.
        proxy.passEverything();
        Status firstStatus = first.get(60, TimeUnit.SECONDS);
        assertThat(firstStatus.getCode()).as("%s", firstStatus).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(firstStatus.getDescription()).doesNotContain("request-memory");
        ModelInferResponse answer = GRPCInferenceServiceGrpc.newBlockingStub(direct)
            .modelInfer(Tensors.affine(1, 2, 3).setModelName("affine").build());
        assertThat(answer.getModelName()).isEqualTo("affine");
        eventually("every byte let go once answered", () -> held.getAsLong() == 0);
      } finally {
        slow.shutdownNow();
        direct.shutdownNow();
      }
    } finally {
      server.stop();
    }
  }

  @Test
  void aConnectionLostPartWayThroughAMessage_letsGoOfWhatItGathered() throws Exception {
    Gateway.standardRepository(root);
    GatewayServer server = start(64L * MIB, SETTINGS);
    try {
      StallingProxy proxy = new StallingProxy(server.port(), 2L * MIB);
      ManagedChannel slow = channel(proxy.port());
      try {
        CompletableFuture<Status> call = call(slow, 5 * MIB);
        eventually("the message's bytes gathered", () -> held.getAsLong() >= MIB);
        proxy.close();
        // The client sees its connection fail (grpc-java says UNAVAILABLE, or UNKNOWN when the
        // reset comes while it writes).
        assertThat(call.get(60, TimeUnit.SECONDS).getCode()).isIn(Status.Code.UNAVAILABLE, Status.Code.UNKNOWN);
        eventually("the lost stream's bytes let go", () -> held.getAsLong() == 0);
      } finally {
        slow.shutdownNow();
      }
    } finally {
      server.stop();
    }
  }

  @Test
  void aClientThatStallsPartWayThroughAMessage_holdsItsBytesOnlyUntilItsConnectionsAgeAndGraceEnd() throws Exception {
    Gateway.standardRepository(root);
    // Connections asked to go after 1 s, closed 1 s later with whatever is still open on them.
    GatewayServer server = start(64L * MIB, SETTINGS.withConnections(new io.modelgate.gateway.server.ConnectionSettings(
            Duration.ofSeconds(1), Duration.ofSeconds(1), Duration.ofMinutes(1), Duration.ofSeconds(10))));
    try (StallingProxy proxy = new StallingProxy(server.port(), 2L * MIB)) {
      ManagedChannel slow = channel(proxy.port());
      try {
        // The proxy never passes the rest: the server closes the connection and lets go.
        CompletableFuture<Status> call = call(slow, 5 * MIB);
        eventually("the message's bytes gathered", () -> held.getAsLong() >= MIB);
        eventually("the stalled message's bytes let go when its connection closed", () -> held.getAsLong() == 0);
        assertThat(call.get(60, TimeUnit.SECONDS).getCode())
            .isIn(Status.Code.UNAVAILABLE, Status.Code.CANCELLED, Status.Code.UNKNOWN);
      } finally {
        slow.shutdownNow();
      }
    } finally {
      server.stop();
    }
  }

  @Test
  void aClientThatStallsPartWayThroughAMessage_hasItCancelledOnceItFallsBelowTheReceiveRate_andKeepsItsConnection()
      throws Exception {
    // No connection age: without the receive timeout the stalled message would be held for good.
    GatewayServer server = startWatching(Duration.ofSeconds(1));
    try (StallingProxy proxy = new StallingProxy(server.port(), 2L * MIB)) {
      ManagedChannel slow = channel(proxy.port());
      try {
        CompletableFuture<Status> call = call(slow, 5 * MIB);
        eventually("the message's bytes gathered", () -> held.getAsLong() >= MIB);
        eventually("the stalled message cancelled and its bytes let go", () -> held.getAsLong() == 0);
        assertThat(stats.prometheus().get("modelgate.request.receive.timeouts").functionCounter().count()).isEqualTo(1);
        // No byte came after it was given up: the server resets the stream, and the client learns
        // its call was cancelled.
        Status status = call.get(60, TimeUnit.SECONDS);
        assertThat(status.getCode()).as("%s", status).isEqualTo(Status.Code.CANCELLED);
        // Only the call ended: its connection serves the next one.
        proxy.passEverything();
        ModelInferResponse answer = GRPCInferenceServiceGrpc.newBlockingStub(slow)
            .modelInfer(Tensors.affine(1, 2, 3).setModelName("affine").build());
        assertThat(answer.getModelName()).isEqualTo("affine");
        assertThat(server.isReady()).isTrue();
      } finally {
        slow.shutdownNow();
      }
    } finally {
      server.stop();
    }
  }

  @Test
  void aClientSendingAMessageTooSlowly_isAnsweredDeadlineExceededWithTheReason_andKeepsItsConnection() throws Exception {
    // 2 s windows: a message must gain 128 KiB in each.
    GatewayServer server = startWatching(Duration.ofSeconds(2));
    try (StallingProxy proxy = new StallingProxy(server.port(), 2L * MIB)) {
      ManagedChannel slow = channel(proxy.port());
      try {
        CompletableFuture<Status> call = call(slow, 5 * MIB);
        eventually("the message's first bytes gathered", () -> held.getAsLong() >= MIB);
        // Then 3 KiB every 50 ms: 60 KiB a second at best (less on a busy machine, whose sleeps run
        // long), below the 64 KiB asked, so given up after a window; its next 16 KiB frame, due
        // about every 0.3 s, ends it within the next window with the reason.
        CompletableFuture<Void> trickle = CompletableFuture.runAsync(() -> {
          while (!call.isDone()) {
            proxy.allow(3 * 1024);
            try {
              Thread.sleep(50);
            } catch (InterruptedException e) {
              return;
            }
          }
        });
        Status status = call.get(60, TimeUnit.SECONDS);
        trickle.get(60, TimeUnit.SECONDS);
        assertThat(status.getCode()).as("%s", status).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
        assertThat(status.getDescription()).startsWith("the request message arrived too slowly: ")
            .contains(" in the last 2 s, against at least 65536 bytes a second (--receive-timeout, --receive-min-rate), with ")
            .endsWith(" of it gathered");
        assertThat(stats.prometheus().get("modelgate.request.receive.timeouts").functionCounter().count()).isEqualTo(1);
        eventually("the slow message's bytes let go", () -> held.getAsLong() == 0);
        // Only the call ended: its connection serves the next one, once the proxy passes the
        // rest of what the client had written.
        proxy.passEverything();
        ModelInferResponse answer = GRPCInferenceServiceGrpc.newBlockingStub(slow)
            .modelInfer(Tensors.affine(1, 2, 3).setModelName("affine").build());
        assertThat(answer.getModelName()).isEqualTo("affine");
      } finally {
        slow.shutdownNow();
      }
    } finally {
      server.stop();
    }
  }

  @Test
  void anAnswerTheClientDoesNotRead_staysInTheRequestMemoryUntilSent_andRequestsThatWouldPassItAreRefusedMeanwhile()
      throws Exception {
    Gateway.standardRepository(root);
    Gateway.write(root, "big", 1, Gateway.floatIdentity());
    // 32 MiB of request memory: 24 MiB for messages while they arrive.
    GatewayServer server = start(32L * MIB, SETTINGS);
    // The server's first 256 KiB reach the client, then nothing until the test lets them.
    try (StallingProxy proxy = new StallingProxy(server.port(), Long.MAX_VALUE, 256 * 1024)) {
      ManagedChannel slow = channel(proxy.port());
      ManagedChannel direct = channel(server.port());
      try {
        CompletableFuture<Status> unread = echo(slow, 8 * MIB);
        // Answered (counted before it is sent), and its 8 MiB held while the client does not read.
        eventually("the answer held while its client does not read it",
            () -> stats.scrape().contains("modelgate_requests_total{code=\"OK\",model=\"big\",version=\"1\"} 1.0")
                && held.getAsLong() >= 8L * MIB);

        // 20 MiB more would pass the 24 MiB a message may fill while it arrives.
        Status refused = echo(direct, 20 * MIB).get(60, TimeUnit.SECONDS);
        assertThat(refused.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
        assertThat(refused.getDescription()).contains("(--request-memory)");
        assertThat(unread).isNotDone();

        // Read at last: the answer is whole, its bytes let go, and the same request is served.
        proxy.passEverything();
        assertThat(unread.get(60, TimeUnit.SECONDS)).isEqualTo(Status.OK);
        eventually("the answer's bytes let go once sent", () -> held.getAsLong() == 0);
        assertThat(echo(direct, 20 * MIB).get(60, TimeUnit.SECONDS)).isEqualTo(Status.OK);
        eventually("every byte let go", () -> held.getAsLong() == 0);
      } finally {
        slow.shutdownNow();
        direct.shutdownNow();
      }
    } finally {
      server.stop();
    }
  }

  /** The standard repository on Netty, 64 MiB of request memory, messages to gain 64 KiB a second over each {@code window}. */
  private GatewayServer startWatching(Duration window) throws IOException {
    Gateway.standardRepository(root);
    AdminSettings admin = Gateway.adminSettings(root.resolve(".state"), -1).withRequestMemory(64L * MIB)
        .withReceiveTimeout(new ReceiveTimeout(window, 64 * 1024));
    return Gateway.server(root, stats, SETTINGS, admin);
  }

    private static ManagedChannel channel(int port) {
    return io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
        .maxInboundMessageSize(64 * MIB).build();
  }

  /** A request for {@code big}, which answers its input: {@code bytes} bytes each way. */
  private static CompletableFuture<Status> echo(ManagedChannel channel, int bytes) {
    ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("big")
        .addInputs(Tensors.input("x", "FP32", 1, bytes / 4)).addRawInputContents(ByteString.copyFrom(new byte[bytes])).build();
    return send(channel, request);
  }

  /** A request for {@code affine} whose input carries {@code bytes} bytes, too many for its shape. */
  private static CompletableFuture<Status> call(ManagedChannel channel, int bytes) {
    return send(channel, ModelInferRequest.newBuilder().setModelName("affine")
        .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(ByteString.copyFrom(new byte[bytes])).build());
  }

  private static CompletableFuture<Status> send(ManagedChannel channel, ModelInferRequest request) {
    Outcome<ModelInferResponse> outcome = new Outcome<>();
    GRPCInferenceServiceGrpc.newStub(channel).modelInfer(request, outcome);
    return outcome.status;
  }

  /**
   * One TCP connection passed between a client and a server, each direction up to a budget of
   * bytes and then held until {@link #passEverything}: the client's first {@code allowed}, the
   * server's first {@code allowedBack}.
   */
  private static final class StallingProxy implements AutoCloseable {
    private final ServerSocket listening;
    private final int target;
    private final Budget forward;
    private final Budget back;
    private volatile Socket client;
    private volatile Socket upstream;

    StallingProxy(int target, long allowed) throws IOException {
      this(target, allowed, Long.MAX_VALUE);
    }

    StallingProxy(int target, long allowed, long allowedBack) throws IOException {
      this.listening = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
      this.target = target;
      this.forward = new Budget(allowed);
      this.back = new Budget(allowedBack);
      Thread accept = new Thread(this::serve, "stalling-proxy");
      accept.setDaemon(true);
      accept.start();
    }

    int port() {
      return listening.getLocalPort();
    }

    void passEverything() {
      forward.open();
      back.open();
    }

    /** Lets {@code bytes} more of the client's pass. */
    void allow(long bytes) {
      forward.add(bytes);
    }

    private void serve() {
      try {
        client = listening.accept();
        upstream = new Socket(InetAddress.getLoopbackAddress(), target);
        Thread backward = new Thread(() -> pump(upstream, client, back), "stalling-proxy-back");
        backward.setDaemon(true);
        backward.start();
        pump(client, upstream, forward);
      } catch (IOException | RuntimeException e) {
        // closed
      }
    }

    private static void pump(Socket from, Socket to, Budget budget) {
      byte[] buffer = new byte[16 * 1024];
      try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
        while (true) {
          int n = in.read(buffer, 0, budget.await(buffer.length));
          if (n < 0) {
            return;
          }
          budget.spend(n);
          out.write(buffer, 0, n);
          out.flush();
        }
      } catch (IOException | InterruptedException e) {
        // closed
      } finally {
        closeQuietly(from);
        closeQuietly(to);
      }
    }

    @Override
    public void close() throws IOException {
      listening.close();
      closeQuietly(client);
      closeQuietly(upstream);
      passEverything();
    }

    private static void closeQuietly(Socket socket) {
      if (socket != null) {
        try {
          socket.close();
        } catch (IOException ignored) {
          // closing
        }
      }
    }
  }

  /** Bytes one direction of a {@link StallingProxy} may still pass. */
  private static final class Budget {
    private long allowed;

    Budget(long allowed) {
      this.allowed = allowed;
    }

    /** Waits until some bytes may pass; how many to read, at most {@code most}. */
    synchronized int await(int most) throws InterruptedException {
      while (allowed == 0) {
        wait();
      }
      return (int) Math.min(most, allowed);
    }

    synchronized void spend(int n) {
      allowed -= n;
    }

    synchronized void add(long bytes) {
      allowed = allowed > Long.MAX_VALUE - bytes ? Long.MAX_VALUE : allowed + bytes;
      notifyAll();
    }

    synchronized void open() {
      allowed = Long.MAX_VALUE;
      notifyAll();
    }
  }
}

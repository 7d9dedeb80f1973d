package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.netty.handler.codec.http2.Http2Headers;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiConsumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The lean unary client against a real grpc-java server: answers, refusals, resets, cut connections. */
class WireConnectionTest {
  private static final ModelInferRequest REQUEST = ModelInferRequest.newBuilder().setModelName("m").setId("7").build();

  private Server server;
  private WireConnection connection;

  @AfterEach
  void stop() throws InterruptedException {
    if (connection != null) {
      connection.close();
    }
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private WireConnection serve(BiConsumer<ModelInferRequest, StreamObserver<ModelInferResponse>> answer, NettyServerBuilder builder)
      throws Exception {
    server = builder.directExecutor()
        .addService(new GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase() {
          @Override
          public void modelInfer(ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
            answer.accept(request, observer);
          }
        })
        .build().start();
    connection = WireConnection.open(ClientChannels.group().next(),
        new InetSocketAddress("127.0.0.1", server.getPort()), Connections.MODEL_INFER, null, null);
    return connection;
  }

  private WireConnection serve(BiConsumer<ModelInferRequest, StreamObserver<ModelInferResponse>> answer) throws Exception {
    return serve(answer, NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)));
  }

  /** What one call was answered: code, what the reader made of it, the trailers. */
  private record Answer(int code, Object read, Http2Headers trailers) {}

  private static final class Recorded extends WireConnection.Call {
    final CompletableFuture<Answer> answer = new CompletableFuture<>();
    final AtomicInteger answers = new AtomicInteger();

    Recorded(WireConnection.Reader reader) {
      this(WireConnection.message(REQUEST.toByteArray()), reader);
    }

    Recorded(io.netty.buffer.ByteBuf message, WireConnection.Reader reader) {
      super(message, reader);
    }

    @Override
    void answered(int code, Object read, Http2Headers trailers) {
      answers.incrementAndGet();
      // The trailers are the connection's to reuse once this returns: kept as a copy.
      answer.complete(new Answer(code, read, trailers == null ? null : new io.netty.handler.codec.http2.DefaultHttp2Headers(false).add(trailers)));
    }
  }

  private static Answer call(WireConnection connection, WireConnection.Reader reader) throws Exception {
    Recorded call = new Recorded(reader);
    connection.send(call);
    return call.answer.get(10, TimeUnit.SECONDS);
  }

  /**
   * Over TLS (a server that asks for a client certificate), before and after the server listens:
   * calls fail UNAVAILABLE while nothing listens, and are answered once the server is up, as over
   * plaintext.
   */
  @Test
  void overMutualTls_aServerThatStartsLate_isReachedOnceItListens() throws Exception {
    java.nio.file.Path pki = java.nio.file.Files.createTempDirectory("wire-tls");
    io.modelgate.gateway.testing.TestCertificates certs = io.modelgate.gateway.testing.TestCertificates.create(pki);
    int port;
    try (java.net.ServerSocket probe = new java.net.ServerSocket(0)) {
      port = probe.getLocalPort();
    }
    io.netty.handler.ssl.SslContext client = io.modelgate.gateway.tls.ClientTls.context(certs.caCert, certs.clientChain, certs.clientKey);
    connection = WireConnection.open(ClientChannels.group().next(),
        new InetSocketAddress("127.0.0.1", port), Connections.MODEL_INFER, null, client);
    assertThat(call(connection, LeanUnary.version()).code()).isEqualTo(Status.Code.UNAVAILABLE.value());

    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port))
        .sslContext(io.grpc.netty.GrpcSslContexts.forServer(certs.serverChain.toFile(), certs.serverKey.toFile())
            .trustManager(certs.caCert.toFile()).clientAuth(io.netty.handler.ssl.ClientAuth.REQUIRE).build())
        .directExecutor()
        .addService(new GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase() {
          @Override
          public void modelInfer(ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
            observer.onNext(ModelInferResponse.newBuilder().setModelVersion("3").build());
            observer.onCompleted();
          }
        })
        .build().start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    Answer answer;
    do {
      assertThat(System.nanoTime()).as("no call answered since the server listens").isLessThan(deadline);
      Thread.sleep(20);
      answer = call(connection, LeanUnary.version());
    } while (answer.code() != 0);
    assertThat(answer.read()).isEqualTo("3");
    for (int i = 0; i < 20; i++) {
      assertThat(call(connection, LeanUnary.version()).read()).isEqualTo("3");
    }
  }

  @Test
  void anAnswerLargerThanOneFrame_isReadWhole() throws Exception {
    // 100 KB of output: several HTTP/2 DATA frames, put back together before the reader sees them.
    ModelInferResponse big = ModelInferResponse.newBuilder().setModelName("m").setModelVersion("4").setId("7")
        .addOutputs(ModelInferResponse.InferOutputTensor.newBuilder().setName("y").setDatatype("FP32").addShape(1).addShape(25_000))
        .addRawOutputContents(ByteString.copyFrom(new byte[100_000]))
        .build();
    WireConnection wire = serve((request, observer) -> {
      observer.onNext(big.toBuilder().setId(request.getId()).build());
      observer.onCompleted();
    });

    Answer checked = call(wire, LeanUnary.checked(REQUEST));
    assertThat(checked.code()).isZero();
    assertThat(checked.read()).isEqualTo("4");
    assertThat(call(wire, LeanUnary.version()).read()).isEqualTo("4");
  }

  @Test
  void requestsLargerThanTheServersWindows_goOutAsTheWindowsOpen_andArriveWhole() throws Exception {
    // The server grants 64 KB per stream and per connection; twenty 200 KB requests at once must
    // each wait for WINDOW_UPDATEs, and none may be cut or mixed with another.
    WireConnection wire = serve((request, observer) -> {
          byte[] bytes = request.getRawInputContents(0).toByteArray();
          boolean whole = bytes.length == 200_000;
          for (int i = 0; whole && i < bytes.length; i++) {
            whole = bytes[i] == (byte) (i * 31 + request.getId().hashCode());
          }
          observer.onNext(ModelInferResponse.newBuilder().setModelVersion(whole ? "whole" : "broken").build());
          observer.onCompleted();
        },
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)).flowControlWindow(65_535));
    List<Recorded> calls = new ArrayList<>();
    for (int k = 0; k < 20; k++) {
      String id = "big-" + k;
      byte[] bytes = new byte[200_000];
      for (int i = 0; i < bytes.length; i++) {
        bytes[i] = (byte) (i * 31 + id.hashCode());
      }
      ModelInferRequest big = REQUEST.toBuilder().setId(id).addRawInputContents(ByteString.copyFrom(bytes)).build();
      calls.add(new Recorded(WireConnection.message(big.toByteArray()), LeanUnary.version()));
    }
    wire.eventLoop().execute(() -> {
      calls.forEach(wire::write);
      wire.flush();
    });
    for (Recorded call : calls) {
      Answer answer = call.answer.get(20, TimeUnit.SECONDS);
      assertThat(answer.code()).isZero();
      assertThat(answer.read()).isEqualTo("whole");
    }
  }

  /** One HTTP/2 frame as a scripted server reads or writes it. */
  private record Frame(int type, int flags, int stream, byte[] payload) {}

  private static Frame readFrame(java.io.DataInputStream in) throws java.io.IOException {
    int length = (in.readUnsignedByte() << 16) | in.readUnsignedShort();
    int type = in.readUnsignedByte();
    int flags = in.readUnsignedByte();
    int stream = in.readInt() & 0x7fffffff;
    byte[] payload = new byte[length];
    in.readFully(payload);
    return new Frame(type, flags, stream, payload);
  }

  private static void writeFrame(java.io.OutputStream out, int type, int flags, int stream, byte[] payload) throws java.io.IOException {
    java.nio.ByteBuffer header = java.nio.ByteBuffer.allocate(9);
    header.put((byte) (payload.length >>> 16)).putShort((short) payload.length).put((byte) type).put((byte) flags).putInt(stream);
    out.write(header.array());
    out.write(payload);
    out.flush();
  }

  /** The next frame of {@code type} from the client, skipping others (WINDOW_UPDATE, SETTINGS ACK...) into {@code seen}. */
  private static Frame next(java.io.DataInputStream in, int type, List<Frame> seen) throws java.io.IOException {
    while (true) {
      Frame frame = readFrame(in);
      seen.add(frame);
      if (frame.type() == type) {
        return frame;
      }
    }
  }

  /** The frames the client sends until it closes the connection. */
  private static List<Frame> framesUntilClosed(java.io.DataInputStream in) throws java.io.IOException {
    List<Frame> frames = new ArrayList<>();
    while (true) {
      try {
        frames.add(readFrame(in));
      } catch (java.io.EOFException closed) {
        return frames;
      }
    }
  }

  private static byte[] encode(io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder encoder, Http2Headers headers) throws Exception {
    io.netty.buffer.ByteBuf buf = io.netty.buffer.Unpooled.buffer();
    encoder.encodeHeaders(1, headers, buf);
    byte[] bytes = new byte[buf.readableBytes()];
    buf.readBytes(bytes);
    return bytes;
  }

  @Test
  void theFramingDetails_againstAScriptedServer_pingsSettingsContinuationPaddingAndATableOfSizeZero() throws Exception {
    // A server written frame by frame: it shrinks the client's header table to nothing, pings,
    // and answers with headers split over CONTINUATION frames and a padded DATA frame.
    try (java.net.ServerSocket listening = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      connection = WireConnection.open(ClientChannels.group().next(),
          new InetSocketAddress("127.0.0.1", listening.getLocalPort()), Connections.MODEL_INFER, "k-9", null);
      try (java.net.Socket socket = listening.accept()) {
        socket.setSoTimeout(10_000);
        var in = new java.io.DataInputStream(new java.io.BufferedInputStream(socket.getInputStream()));
        var out = socket.getOutputStream();
        byte[] preface = new byte[24];
        in.readFully(preface);
        assertThat(new String(preface, java.nio.charset.StandardCharsets.US_ASCII)).isEqualTo("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        List<Frame> seen = new ArrayList<>();
        Frame settings = next(in, 4, seen);
        assertThat(settings.flags()).isZero();
        // SETTINGS_HEADER_TABLE_SIZE = 0, then a PING.
        writeFrame(out, 4, 0, 0, new byte[] {0, 1, 0, 0, 0, 0});
        writeFrame(out, 6, 0, 0, new byte[] {1, 2, 3, 4, 5, 6, 7, 8});
        Frame pong = next(in, 6, seen);
        assertThat(pong.flags()).isEqualTo(1);
        assertThat(pong.payload()).containsExactly(1, 2, 3, 4, 5, 6, 7, 8);
        assertThat(seen).anySatisfy(f -> assertThat(f.type() == 4 && f.flags() == 1).isTrue());

        // The server's decoder holds no dynamic table: the client's blocks must not index into one.
        var decoder = new io.netty.handler.codec.http2.DefaultHttp2HeadersDecoder(false);
        decoder.maxHeaderTableSize(0);
        var encoder = new io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder();
        for (int call = 1; call <= 4; call++) {
          Recorded recorded = new Recorded(LeanUnary.version());
          connection.send(recorded);
          Frame headers = next(in, 1, seen);
          assertThat(headers.flags() & 0x4).isEqualTo(0x4);
          Http2Headers request = decoder.decodeHeaders(headers.stream(), io.netty.buffer.Unpooled.wrappedBuffer(headers.payload()));
          assertThat(request.path().toString()).isEqualTo(Connections.MODEL_INFER);
          assertThat(request.get("authorization").toString()).isEqualTo("Bearer k-9");
          Frame data = next(in, 0, seen);
          assertThat(data.flags() & 1).isEqualTo(1);
          assertThat(data.stream()).isEqualTo(headers.stream());
          assertThat(ModelInferRequest.parseFrom(java.util.Arrays.copyOfRange(data.payload(), 5, data.payload().length))).isEqualTo(REQUEST);

          // Leading headers in a HEADERS frame and a CONTINUATION; the message in a padded DATA
          // frame; the trailers.
          byte[] leading = encode(encoder, new io.netty.handler.codec.http2.DefaultHttp2Headers().status("200").add("content-type", "application/grpc"));
          int half = leading.length / 2;
          writeFrame(out, 1, 0, headers.stream(), java.util.Arrays.copyOfRange(leading, 0, half));
          writeFrame(out, 9, 0x4, headers.stream(), java.util.Arrays.copyOfRange(leading, half, leading.length));
          byte[] answer = ModelInferResponse.newBuilder().setModelVersion("v" + call).build().toByteArray();
          java.nio.ByteBuffer padded = java.nio.ByteBuffer.allocate(1 + 5 + answer.length + 3);
          padded.put((byte) 3).put((byte) 0).putInt(answer.length).put(answer).put(new byte[] {9, 9, 9});
          writeFrame(out, 0, 0x8, headers.stream(), padded.array());
          writeFrame(out, 1, 0x5, headers.stream(), encode(encoder, new io.netty.handler.codec.http2.DefaultHttp2Headers().add("grpc-status", "0")));

          Answer got = recorded.answer.get(10, TimeUnit.SECONDS);
          assertThat(got.code()).isZero();
          assertThat(got.read()).isEqualTo("v" + call);
        }
      }
    }
  }

  @Test
  void aMessageBeyondTheStreamsWindow_waitsForItsWindowUpdate() throws Exception {
    // The scripted server gives each stream 1,000 bytes; a 5,000-byte request must stop there
    // until the server returns more.
    ModelInferRequest large = REQUEST.toBuilder().addRawInputContents(ByteString.copyFrom(new byte[5_000])).build();
    int size = 5 + large.getSerializedSize();
    try (java.net.ServerSocket listening = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      connection = WireConnection.open(ClientChannels.group().next(),
          new InetSocketAddress("127.0.0.1", listening.getLocalPort()), Connections.MODEL_INFER, null, null);
      try (java.net.Socket socket = listening.accept()) {
        socket.setSoTimeout(10_000);
        var in = new java.io.DataInputStream(new java.io.BufferedInputStream(socket.getInputStream()));
        var out = socket.getOutputStream();
        in.readFully(new byte[24]);
        List<Frame> seen = new ArrayList<>();
        next(in, 4, seen);
        // SETTINGS_INITIAL_WINDOW_SIZE = 1000; the client acknowledges it before anything else.
        writeFrame(out, 4, 0, 0, new byte[] {0, 4, 0, 0, 0x03, (byte) 0xe8});
        assertThat(next(in, 4, seen).flags()).isEqualTo(1);

        Recorded recorded = new Recorded(WireConnection.message(large.toByteArray()), LeanUnary.version());
        connection.send(recorded);
        int stream = next(in, 1, seen).stream();
        int received = 0;
        while (received < 1_000) {
          Frame data = next(in, 0, seen);
          assertThat(data.flags() & 1).as("no END_STREAM within the window").isZero();
          received += data.payload().length;
        }
        assertThat(received).isEqualTo(1_000);
        // Nothing more may come before the window opens: the next frame is the answer to a ping.
        writeFrame(out, 6, 0, 0, new byte[8]);
        Frame after = readFrame(in);
        while (after.type() == 8) {
          after = readFrame(in);
        }
        assertThat(after.type()).as("the frame after the window is spent").isEqualTo(6);

        writeFrame(out, 8, 0, stream, java.nio.ByteBuffer.allocate(4).putInt(size).array());
        java.io.ByteArrayOutputStream body = new java.io.ByteArrayOutputStream();
        while (received < size) {
          Frame data = next(in, 0, seen);
          received += data.payload().length;
          if (received == size) {
            assertThat(data.flags() & 1).isEqualTo(1);
          }
          body.write(data.payload());
        }
        assertThat(received).isEqualTo(size);
        var encoder = new io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder();
        writeFrame(out, 1, 0x5, stream, encode(encoder,
            new io.netty.handler.codec.http2.DefaultHttp2Headers().status("200").add("grpc-status", "8").add("grpc-message", "full")));
        Answer got = recorded.answer.get(10, TimeUnit.SECONDS);
        assertThat(got.code()).isEqualTo(WireConnection.RESOURCE_EXHAUSTED);
        assertThat(WireConnection.message(got.trailers())).isEqualTo("full");
      }
    }
  }

  @Test
  void aRefusal_carriesItsStatusMessageAndRetryDelay() throws Exception {
    com.google.rpc.Status refusal = com.google.rpc.Status.newBuilder()
        .setCode(Status.Code.RESOURCE_EXHAUSTED.value())
        .setMessage("quota: 10 requests/s, 50% used")
        .addDetails(com.google.protobuf.Any.pack(com.google.rpc.RetryInfo.newBuilder()
            .setRetryDelay(com.google.protobuf.Duration.newBuilder().setNanos(250_000_000)).build()))
        .build();
    WireConnection wire = serve((request, observer) -> observer.onError(io.grpc.protobuf.StatusProto.toStatusRuntimeException(refusal)));

    Answer answer = call(wire, LeanUnary.version());

    assertThat(answer.code()).isEqualTo(WireConnection.RESOURCE_EXHAUSTED);
    assertThat(answer.read()).isNull();
    assertThat(WireConnection.message(answer.trailers())).isEqualTo("quota: 10 requests/s, 50% used");
    assertThat(LoadGenerator.retryDelayNanos(WireConnection.details(answer.trailers()))).isEqualTo(250_000_000L);
  }

  @Test
  void anUnreadableAnswer_isItsOwnFailure() throws Exception {
    WireConnection wire = serve((request, observer) -> {
      observer.onNext(ModelInferResponse.newBuilder().setModelVersion("1").build());
      observer.onCompleted();
    });

    assertThat(call(wire, message -> {
      throw new IllegalArgumentException("not a ModelInferResponse");
    }).code()).isEqualTo(WireConnection.UNREADABLE);
    // and the connection goes on.
    assertThat(call(wire, LeanUnary.version()).read()).isEqualTo("1");
  }

  @Test
  void callsCutOffByTheServer_areEachAnsweredOnce_andTheConnectionComesBack() throws Exception {
    // The server never answers these; stopping it cuts the connection under them.
    List<StreamObserver<ModelInferResponse>> held = new ArrayList<>();
    WireConnection wire = serve((request, observer) -> {
      synchronized (held) {
        held.add(observer);
      }
    });
    List<Recorded> calls = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      Recorded call = new Recorded(LeanUnary.version());
      calls.add(call);
      wire.send(call);
    }
    while (true) {
      synchronized (held) {
        if (held.size() == 20) {
          break;
        }
      }
      Thread.sleep(5);
    }
    int port = server.getPort();
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);

    // grpc-java resets the streams it cancels (CANCELLED) and then closes the connection (any
    // stream left: UNAVAILABLE).
    for (Recorded call : calls) {
      assertThat(call.answer.get(10, TimeUnit.SECONDS).code()).isIn(WireConnection.CANCELLED, WireConnection.UNAVAILABLE);
    }
    Thread.sleep(200);
    assertThat(calls).allSatisfy(call -> assertThat(call.answers).hasValue(1));

    // A new server on the same port: after the pause between attempts, calls get through again.
    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port)).directExecutor()
        .addService(new GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase() {
          @Override
          public void modelInfer(ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
            observer.onNext(ModelInferResponse.newBuilder().setModelVersion("2").build());
            observer.onCompleted();
          }
        })
        .build().start();
    Answer answer = null;
    for (int attempt = 0; attempt < 100; attempt++) {
      answer = call(wire, LeanUnary.version());
      if (answer.code() == 0) {
        break;
      }
      Thread.sleep(50);
    }
    assertThat(answer.code()).isZero();
    assertThat(answer.read()).isEqualTo("2");
  }

  @Test
  void aServerThatClosesConnectionsByAge_isFollowedToTheNextConnection() throws Exception {
    WireConnection wire = serve((request, observer) -> {
          observer.onNext(ModelInferResponse.newBuilder().setModelVersion("3").build());
          observer.onCompleted();
        },
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
            .maxConnectionAge(100, TimeUnit.MILLISECONDS).maxConnectionAgeGrace(1, TimeUnit.SECONDS));

    // Over a second the server sends several GOAWAYs: as with a gRPC client, every call is answered
    // (the calls made while the next connection opens wait for it).
    int total = 0;
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(1);
    while (System.nanoTime() < end) {
      Answer answer = call(wire, LeanUnary.version());
      total++;
      assertThat(answer.code()).as("call %d", total).isZero();
      assertThat(answer.read()).isEqualTo("3");
    }
    assertThat(total).isGreaterThan(10);
  }

  @Test
  void aGoAway_sendsTheCallsTheServerNeverTook_againOnANewConnection_andTheRestAreAnsweredOnTheOld() throws Exception {
    try (java.net.ServerSocket listening = new java.net.ServerSocket(0, 2, java.net.InetAddress.getLoopbackAddress())) {
      listening.setSoTimeout(10_000);
      connection = WireConnection.open(ClientChannels.group().next(),
          new InetSocketAddress("127.0.0.1", listening.getLocalPort()), Connections.MODEL_INFER, null, null);
      var encoder = new io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder();
      try (java.net.Socket first = listening.accept()) {
        first.setSoTimeout(10_000);
        var in = new java.io.DataInputStream(new java.io.BufferedInputStream(first.getInputStream()));
        var out = first.getOutputStream();
        in.readFully(new byte[24]);
        List<Frame> seen = new ArrayList<>();
        next(in, 4, seen);
        writeFrame(out, 4, 0, 0, new byte[0]);
        Recorded taken = new Recorded(LeanUnary.version());
        Recorded notTaken = new Recorded(LeanUnary.version());
        connection.send(taken);
        connection.send(notTaken);
        assertThat(next(in, 0, seen).stream()).isEqualTo(1);
        assertThat(next(in, 0, seen).stream()).isEqualTo(3);
        // GOAWAY: stream 1 will be answered, stream 3 was never taken.
        writeFrame(out, 7, 0, 0, java.nio.ByteBuffer.allocate(8).putInt(1).putInt(0).array());
        try (java.net.Socket second = listening.accept()) {
          second.setSoTimeout(10_000);
          var in2 = new java.io.DataInputStream(new java.io.BufferedInputStream(second.getInputStream()));
          var out2 = second.getOutputStream();
          in2.readFully(new byte[24]);
          List<Frame> seen2 = new ArrayList<>();
          next(in2, 4, seen2);
          writeFrame(out2, 4, 0, 0, new byte[0]);
          // The call the server never took goes out again, first on the new connection; a new call follows it.
          Recorded later = new Recorded(LeanUnary.version());
          connection.send(later);
          Frame retried = next(in2, 0, seen2);
          Frame after = next(in2, 0, seen2);
          assertThat(List.of(retried.stream(), after.stream())).containsExactly(1, 3);
          // (Each connection has its own header table: its own encoder.)
          var encoder2 = new io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder();
          answer(out2, encoder2, retried.stream(), "retried on the new connection");
          answer(out2, encoder2, after.stream(), "sent after the GOAWAY");
          // The call the server took is answered on the old connection.
          answer(out, encoder, 1, "taken before the GOAWAY");
          assertThat(taken.answer.get(10, TimeUnit.SECONDS).read()).isEqualTo("taken before the GOAWAY");
          assertThat(notTaken.answer.get(10, TimeUnit.SECONDS).read()).isEqualTo("retried on the new connection");
          assertThat(later.answer.get(10, TimeUnit.SECONDS).read()).isEqualTo("sent after the GOAWAY");
          assertThat(List.of(taken, notTaken, later)).allSatisfy(call -> assertThat(call.answers).hasValue(1));
          // The old connection, drained, is closed by the client; what it sends before closing
          // (a SETTINGS ack, a WINDOW_UPDATE, its GOAWAY) starts no call.
          assertThat(framesUntilClosed(in)).noneMatch(frame -> frame.type() == 0 || frame.type() == 1);
        }
      }
    }
  }

  /** Writes an OK answer carrying {@code version} on {@code stream}: headers, message, trailers. */
  private static void answer(java.io.OutputStream out, io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder encoder,
      int stream, String version) throws Exception {
    writeFrame(out, 1, 0x4, stream, encode(encoder, new io.netty.handler.codec.http2.DefaultHttp2Headers().status("200").add("content-type", "application/grpc")));
    byte[] message = ModelInferResponse.newBuilder().setModelVersion(version).build().toByteArray();
    writeFrame(out, 0, 0, stream, java.nio.ByteBuffer.allocate(5 + message.length).put((byte) 0).putInt(message.length).put(message).array());
    writeFrame(out, 1, 0x5, stream, encode(encoder, new io.netty.handler.codec.http2.DefaultHttp2Headers().add("grpc-status", "0")));
  }

  @Test
  void aCallBeyondTheServersStreamLimit_isNotSent_andSaysSo() throws Exception {
    // The server allows 2 calls at once per connection; it answers the first call and holds the rest.
    AtomicInteger calls = new AtomicInteger();
    List<StreamObserver<ModelInferResponse>> held = new java.util.concurrent.CopyOnWriteArrayList<>();
    WireConnection wire = serve((request, observer) -> {
          if (calls.incrementAndGet() == 1) {
            observer.onNext(ModelInferResponse.newBuilder().setModelVersion("1").build());
            observer.onCompleted();
          } else {
            held.add(observer);
          }
        },
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)).maxConcurrentCallsPerConnection(2));
    // The first answer comes after the server's SETTINGS, so the client knows the limit.
    assertThat(call(wire, LeanUnary.version()).code()).isZero();
    Recorded second = new Recorded(LeanUnary.version());
    Recorded third = new Recorded(LeanUnary.version());
    wire.send(second);
    wire.send(third);
    Recorded fourth = new Recorded(LeanUnary.version());
    wire.send(fourth);

    assertThat(fourth.answer.get(10, TimeUnit.SECONDS).code()).isEqualTo(WireConnection.STREAM_LIMIT);
    assertThat(second.answer).isNotDone();
    assertThat(third.answer).isNotDone();
  }

  @Test
  void anApiKey_goesAsABearerToken_onEveryCall() throws Exception {
    List<String> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
    io.grpc.Metadata.Key<String> authorization = io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER);
    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)).directExecutor()
        .addService(io.grpc.ServerInterceptors.intercept(new GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase() {
          @Override
          public void modelInfer(ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
            observer.onNext(ModelInferResponse.newBuilder().setModelVersion("1").build());
            observer.onCompleted();
          }
        }, new io.grpc.ServerInterceptor() {
          @Override
          public <Q, A> io.grpc.ServerCall.Listener<Q> interceptCall(io.grpc.ServerCall<Q, A> call, io.grpc.Metadata headers,
              io.grpc.ServerCallHandler<Q, A> next) {
            seen.add(headers.get(authorization));
            return next.startCall(call, headers);
          }
        }))
        .build().start();
    connection = WireConnection.open(ClientChannels.group().next(),
        new InetSocketAddress("127.0.0.1", server.getPort()), Connections.MODEL_INFER, "k-123", null);

    // The first calls' header blocks are encoded; from the third on, the block that no longer
    // changes is sent as bytes: the server must read the same headers from both.
    for (int i = 0; i < 5; i++) {
      assertThat(call(connection, LeanUnary.version()).code()).isZero();
    }
    assertThat(seen).containsExactly("Bearer k-123", "Bearer k-123", "Bearer k-123", "Bearer k-123", "Bearer k-123");
  }

  @Test
  void httpStatusesWithoutAGrpcStatus_mapAsGrpcSays() {
    assertThat(WireConnection.statusOfHttp(401)).isEqualTo(WireConnection.UNAUTHENTICATED);
    assertThat(WireConnection.statusOfHttp(404)).isEqualTo(WireConnection.UNIMPLEMENTED);
    assertThat(WireConnection.statusOfHttp(503)).isEqualTo(WireConnection.UNAVAILABLE);
    assertThat(WireConnection.statusOfHttp(500)).isEqualTo(WireConnection.UNKNOWN);
  }
}

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
        new InetSocketAddress("127.0.0.1", server.getPort()), Connections.MODEL_INFER, null);
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
      super(WireConnection.message(REQUEST.toByteArray()), reader);
    }

    @Override
    void answered(int code, Object read, Http2Headers trailers) {
      answers.incrementAndGet();
      answer.complete(new Answer(code, read, trailers));
    }
  }

  private static Answer call(WireConnection connection, WireConnection.Reader reader) throws Exception {
    Recorded call = new Recorded(reader);
    connection.send(call);
    return call.answer.get(10, TimeUnit.SECONDS);
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

    // Over a second the server sends several GOAWAYs; no call may be lost, and most get through.
    int ok = 0;
    int total = 0;
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(1);
    while (System.nanoTime() < end) {
      Answer answer = call(wire, LeanUnary.version());
      total++;
      if (answer.code() == 0) {
        ok++;
      } else {
        assertThat(answer.code()).isEqualTo(WireConnection.UNAVAILABLE);
      }
    }
    assertThat(ok).isGreaterThan(total / 2);
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
        new InetSocketAddress("127.0.0.1", server.getPort()), Connections.MODEL_INFER, "k-123");

    assertThat(call(connection, LeanUnary.version()).code()).isZero();
    assertThat(call(connection, LeanUnary.version()).code()).isZero();
    assertThat(seen).containsExactly("Bearer k-123", "Bearer k-123");
  }

  @Test
  void httpStatusesWithoutAGrpcStatus_mapAsGrpcSays() {
    assertThat(WireConnection.statusOfHttp(401)).isEqualTo(WireConnection.UNAUTHENTICATED);
    assertThat(WireConnection.statusOfHttp(404)).isEqualTo(WireConnection.UNIMPLEMENTED);
    assertThat(WireConnection.statusOfHttp(503)).isEqualTo(WireConnection.UNAVAILABLE);
    assertThat(WireConnection.statusOfHttp(500)).isEqualTo(WireConnection.UNKNOWN);
  }
}

package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import inference.GrpcPredictV2;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The gateway over real Netty on loopback, including a client nobody here wrote. */
class NettyLoopbackTest {
  private static final int MAX_MESSAGE = 32 << 20;

  @TempDir static Path root;
  static Gateway gateway;

  @BeforeAll
  static void start() throws IOException {
    Gateway.standardRepository(root);
    Gateway.write(root, "big", 1, Gateway.floatIdentity());
    gateway = Gateway.netty(root, MAX_MESSAGE);
  }

  @AfterAll
  static void stop() {
    gateway.close();
  }

  @Test
  void golden_cnnMnistClassifiesAll62BundledDigits_onBothVersions() {
    assertThat(MnistDigits.all()).hasSize(62);
    for (String version : new String[] {"1", "2"}) {
      int correct = 0;
      for (MnistDigits.Digit digit : MnistDigits.all()) {
        ModelInferResponse response =
            gateway.blocking().modelInfer(Tensors.digit(digit).setModelVersion(version).build());
        assertThat(response.getModelVersion()).isEqualTo(version);
        if (Tensors.argmax(Tensors.floats(response.getRawOutputContents(0))) == digit.label()) {
          correct++;
        }
      }
      assertThat(correct).as("digits classified correctly by version " + version).isEqualTo(62);
    }
  }

  @Test
  void golden_aBatchOfAll62DigitsInOneRequest() {
    ByteBuffer pixels = ByteBuffer.allocate(62 * MnistDigits.PIXELS * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (MnistDigits.Digit digit : MnistDigits.all()) {
      for (float p : digit.pixels()) {
        pixels.putFloat(p);
      }
    }
    pixels.flip();
    ModelInferResponse response =
        gateway
            .blocking()
            .modelInfer(
                ModelInferRequest.newBuilder()
                    .setModelName("cnn_mnist")
                    .addInputs(Tensors.input("input_image", "FP32", 62, 1, 28, 28))
                    .addRawInputContents(ByteString.copyFrom(pixels))
                    .build());
    assertThat(response.getOutputs(0).getShapeList()).containsExactly(62L, 10L);
    float[] all = Tensors.floats(response.getRawOutputContents(0));
    for (int i = 0; i < 62; i++) {
      float[] row = java.util.Arrays.copyOfRange(all, i * 10, i * 10 + 10);
      assertThat(Tensors.argmax(row)).isEqualTo(MnistDigits.get(i).label());
    }
  }

  @Test
  void messagesAboveFourMebibytes_areAccepted_andAboveTheLimit_refused() {
    int n = 6 << 18; // 1.5 M floats: 6 MiB
    float[] values = new float[n];
    for (int i = 0; i < n; i++) {
      values[i] = i;
    }
    ModelInferResponse response =
        gateway
            .blocking()
            .modelInfer(
                ModelInferRequest.newBuilder()
                    .setModelName("big")
                    .addInputs(Tensors.input("x", "FP32", 1, n))
                    .addRawInputContents(Tensors.rawFloats(values))
                    .build());
    assertThat(response.getRawOutputContents(0).size()).isEqualTo(n * 4);
    assertThat(Tensors.floats(response.getRawOutputContents(0))[n - 1]).isEqualTo(n - 1);

    int tooMany = (MAX_MESSAGE / 4) + 1024;
    assertThatThrownBy(
            () ->
                gateway
                    .blocking()
                    .modelInfer(
                        ModelInferRequest.newBuilder()
                            .setModelName("big")
                            .addInputs(Tensors.input("x", "FP32", 1, tooMany))
                            .addRawInputContents(ByteString.copyFrom(new byte[tooMany * 4]))
                            .build()))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED));
    // The server is still up.
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).build()).getModelVersion()).isEqualTo("1");
  }

  /**
   * KServe's official grpc_predict_v2.proto, compiled by Apache Camel (camel-kserve on Maven
   * Central): a client that shares no code with modelgate reads metadata and classifies digits.
   */
  @Test
  void kserveClientCompiledFromTheOfficialProto_worksUnchanged() {
    inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub kserve =
        inference.GRPCInferenceServiceGrpc.newBlockingStub(gateway.channel)
            .withDeadlineAfter(30, TimeUnit.SECONDS);
    assertThat(kserve.serverLive(GrpcPredictV2.ServerLiveRequest.getDefaultInstance()).getLive()).isTrue();
    assertThat(kserve.serverReady(GrpcPredictV2.ServerReadyRequest.getDefaultInstance()).getReady()).isTrue();
    assertThat(
            kserve
                .modelReady(GrpcPredictV2.ModelReadyRequest.newBuilder().setName("cnn_mnist").build())
                .getReady())
        .isTrue();
    GrpcPredictV2.ServerMetadataResponse server =
        kserve.serverMetadata(GrpcPredictV2.ServerMetadataRequest.getDefaultInstance());
    assertThat(server.getName()).isEqualTo("modelgate");

    GrpcPredictV2.ModelMetadataResponse metadata =
        kserve.modelMetadata(GrpcPredictV2.ModelMetadataRequest.newBuilder().setName("cnn_mnist").build());
    assertThat(metadata.getVersionsList()).containsExactly("1", "2");
    assertThat(metadata.getInputs(0).getName()).isEqualTo("input_image");
    assertThat(metadata.getInputs(0).getDatatype()).isEqualTo("FP32");
    assertThat(metadata.getInputs(0).getShapeList()).containsExactly(-1L, 1L, 28L, 28L);

    for (int i = 0; i < 62; i += 7) {
      MnistDigits.Digit digit = MnistDigits.get(i);
      GrpcPredictV2.InferTensorContents.Builder contents = GrpcPredictV2.InferTensorContents.newBuilder();
      for (float p : digit.pixels()) {
        contents.addFp32Contents(p);
      }
      GrpcPredictV2.ModelInferResponse response =
          kserve.modelInfer(
              GrpcPredictV2.ModelInferRequest.newBuilder()
                  .setModelName("cnn_mnist")
                  .setId("kserve-" + i)
                  .addInputs(
                      GrpcPredictV2.ModelInferRequest.InferInputTensor.newBuilder()
                          .setName("input_image")
                          .setDatatype("FP32")
                          .addAllShape(java.util.List.of(1L, 1L, 28L, 28L))
                          .setContents(contents))
                  .build());
      assertThat(response.getId()).isEqualTo("kserve-" + i);
      assertThat(response.getModelVersion()).isEqualTo("2");
      assertThat(response.getOutputs(0).getShapeList()).containsExactly(1L, 10L);
      assertThat(Tensors.argmax(Tensors.floats(response.getRawOutputContents(0)))).isEqualTo(digit.label());
    }
  }

  /** Sends and receives raw bytes, so a test can send what no generated client would. */
  private static final io.grpc.MethodDescriptor.Marshaller<byte[]> BYTES =
      new io.grpc.MethodDescriptor.Marshaller<>() {
        @Override
        public java.io.InputStream stream(byte[] value) {
          return new java.io.ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(java.io.InputStream stream) {
          try {
            return stream.readAllBytes();
          } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }
      };

  private static io.grpc.MethodDescriptor<byte[], byte[]> raw(String method, io.grpc.MethodDescriptor.MethodType type) {
    return io.grpc.MethodDescriptor.<byte[], byte[]>newBuilder(BYTES, BYTES)
        .setFullMethodName("inference.GRPCInferenceService/" + method)
        .setType(type)
        .build();
  }

  /** 11 bytes that are not a protobuf message: a field 1 string whose length runs past the end. */
  private static final byte[] GARBAGE = {0x0a, 0x7f, 'n', 'o', 't', ' ', 'p', 'r', 'o', 't', 'o'};

  @Test
  void aMessageThatIsNotProtobuf_isInvalidArgument_andTheServerServesOn() {
    assertThatThrownBy(
            () ->
                io.grpc.stub.ClientCalls.blockingUnaryCall(
                    gateway.channel, raw("ModelInfer", io.grpc.MethodDescriptor.MethodType.UNARY),
                    io.grpc.CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS), GARBAGE))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
              assertThat(e.getStatus().getDescription())
                  .startsWith("the request is not a valid inference.ModelInferRequest message");
            });
    assertThat(gateway.blocking().modelInfer(Tensors.digit(MnistDigits.all().get(0)).build()).getModelName())
        .isEqualTo("cnn_mnist");
  }

  @Test
  void aMessageThatIsNotProtobuf_inAStream_endsOnlyThatRequest() throws Exception {
    io.grpc.ClientCall<byte[], byte[]> call =
        gateway.channel.newCall(
            raw("ModelStreamInfer", io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING),
            io.grpc.CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS));
    java.util.concurrent.BlockingQueue<Object> events = new java.util.concurrent.LinkedBlockingQueue<>();
    call.start(
        new io.grpc.ClientCall.Listener<>() {
          @Override
          public void onMessage(byte[] message) {
            events.add(message);
          }

          @Override
          public void onClose(Status status, io.grpc.Metadata trailers) {
            events.add(status);
          }
        },
        new io.grpc.Metadata());
    call.request(10);
    byte[] good = Tensors.digit(MnistDigits.all().get(0)).setId("good").build().toByteArray();
    call.sendMessage(good);
    call.sendMessage(GARBAGE);
    call.sendMessage(good);
    call.halfClose();
    int answered = 0;
    int refused = 0;
    for (int i = 0; i < 3; i++) {
      Object event = events.poll(10, TimeUnit.SECONDS);
      assertThat(event).as("three answers, then the end of the stream").isInstanceOf(byte[].class);
      io.modelgate.proto.inference.ModelStreamInferResponse response =
          io.modelgate.proto.inference.ModelStreamInferResponse.parseFrom((byte[]) event);
      if (response.getErrorMessage().isEmpty()) {
        // The encoded answer, whole: id, model, version, the output's header and its data.
        io.modelgate.proto.inference.ModelInferResponse answer = response.getInferResponse();
        assertThat(answer.getId()).isEqualTo("good");
        assertThat(answer.getModelName()).isEqualTo("cnn_mnist");
        assertThat(answer.getModelVersion()).isNotEmpty();
        assertThat(answer.getOutputs(0).getShapeList()).containsExactly(1L, 10L);
        assertThat(answer.getOutputs(0).getDatatype()).isEqualTo("FP32");
        assertThat(Tensors.argmax(Tensors.floats(answer.getRawOutputContents(0))))
            .isEqualTo(MnistDigits.all().get(0).label());
        answered++;
      } else {
        assertThat(response.getErrorMessage()).startsWith("the request is not a valid");
        assertThat(response.getInferResponse().getParametersMap().get("error_code").getStringParam())
            .isEqualTo("INVALID_ARGUMENT");
        refused++;
      }
    }
    assertThat(answered).isEqualTo(2);
    assertThat(refused).isEqualTo(1);
    assertThat(events.poll(10, TimeUnit.SECONDS)).isEqualTo(Status.OK);
  }

  @Test
  void overlongNamesVersionsAndShapes_getTheirOwnStatus_withTheEchoCut() {
    String longName = "m".repeat(20_000);
    assertThatThrownBy(() -> gateway.blocking().modelInfer(ModelInferRequest.newBuilder().setModelName(longName).build()))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND);
              assertThat(e.getStatus().getDescription()).contains("(20000 characters)").hasSizeLessThan(2_200);
            });
    assertThatThrownBy(
            () ->
                gateway.blocking().modelInfer(
                    Tensors.digit(MnistDigits.all().get(0)).setModelVersion("9".repeat(20_000)).build()))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT));
    ModelInferRequest.InferInputTensor.Builder input =
        ModelInferRequest.InferInputTensor.newBuilder().setName("input_image").setDatatype("FP32");
    for (int i = 0; i < 5_000; i++) {
      input.addShape(1);
    }
    assertThatThrownBy(
            () ->
                gateway.blocking().modelInfer(
                    ModelInferRequest.newBuilder().setModelName("cnn_mnist").addInputs(input).build()))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
              assertThat(e.getStatus().getDescription()).hasSizeLessThan(2_200);
            });
  }

  @SuppressWarnings("deprecation")
  @Test
  void reflection_speaksV1alphaAsWellAsV1() throws Exception {
    java.util.concurrent.CompletableFuture<java.util.List<String>> names = new java.util.concurrent.CompletableFuture<>();
    io.grpc.stub.StreamObserver<io.grpc.reflection.v1alpha.ServerReflectionRequest> requests =
        io.grpc.reflection.v1alpha.ServerReflectionGrpc.newStub(gateway.channel)
            .serverReflectionInfo(
                new io.grpc.stub.StreamObserver<>() {
                  @Override
                  public void onNext(io.grpc.reflection.v1alpha.ServerReflectionResponse response) {
                    names.complete(
                        response.getListServicesResponse().getServiceList().stream()
                            .map(io.grpc.reflection.v1alpha.ServiceResponse::getName)
                            .toList());
                  }

                  @Override
                  public void onError(Throwable t) {
                    names.completeExceptionally(t);
                  }

                  @Override
                  public void onCompleted() {}
                });
    requests.onNext(io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder().setListServices("").build());
    requests.onCompleted();
    assertThat(names.get(10, TimeUnit.SECONDS))
        .contains("inference.GRPCInferenceService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection");
  }
}

package io.modelgate.gateway.inference;

import static io.modelgate.gateway.testing.Tensors.input;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.reflection.v1.ServiceResponse;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.DataType;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelConfig;
import io.modelgate.proto.inference.ModelConfigRequest;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferRequestedOutputTensor;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelInstanceGroup;
import io.modelgate.proto.inference.ModelMetadataRequest;
import io.modelgate.proto.inference.ModelMetadataResponse;
import io.modelgate.proto.inference.ModelReadyRequest;
import io.modelgate.proto.inference.ServerLiveRequest;
import io.modelgate.proto.inference.ServerMetadataRequest;
import io.modelgate.proto.inference.ServerMetadataResponse;
import io.modelgate.proto.inference.ServerReadyRequest;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.assertj.core.api.AbstractThrowableAssert;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.function.Executable;

/** Every implemented RPC over the in-process transport, against real ONNX Runtime sessions. */
class InferenceServiceTest {
  @TempDir static Path root;
  static Gateway gateway;

  @BeforeAll
  static void start() throws IOException {
    gateway = Gateway.inProcess(Gateway.standardRepository(root));
  }

  @AfterAll
  static void stop() {
    gateway.close();
  }

  private static AbstractThrowableAssert<?, ?> failsWith(Status.Code code, Executable call) {
    return assertThatThrownBy(call::execute)
        .isInstanceOfSatisfying(
            StatusRuntimeException.class, e -> assertThat(e.getStatus().getCode()).isEqualTo(code));
  }

  // ---- health and server ----

  @Test
  void serverLive_andReady() {
    assertThat(gateway.blocking().serverLive(ServerLiveRequest.getDefaultInstance()).getLive()).isTrue();
    assertThat(gateway.blocking().serverReady(ServerReadyRequest.getDefaultInstance()).getReady()).isTrue();
  }

  @Test
  void serverMetadata_listsOnlyWhatIsImplemented() {
    ServerMetadataResponse metadata =
        gateway.blocking().serverMetadata(ServerMetadataRequest.getDefaultInstance());
    assertThat(metadata.getName()).isEqualTo("modelgate");
    assertThat(metadata.getVersion()).isNotBlank().isNotEqualTo("unknown");
    assertThat(metadata.getExtensionsList())
        .containsExactly("classification", "model_repository", "model_configuration", "statistics");
  }

  @Test
  void health_isServing_forTheServerAndTheInferenceService() {
    HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(gateway.channel);
    assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus())
        .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
    assertThat(
            health
                .check(HealthCheckRequest.newBuilder().setService("inference.GRPCInferenceService").build())
                .getStatus())
        .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
  }

  @Test
  void reflection_listsTheServices() throws Exception {
    CompletableFuture<List<String>> services = new CompletableFuture<>();
    StreamObserver<ServerReflectionRequest> requests =
        ServerReflectionGrpc.newStub(gateway.channel)
            .serverReflectionInfo(
                new StreamObserver<>() {
                  @Override
                  public void onNext(ServerReflectionResponse response) {
                    services.complete(
                        response.getListServicesResponse().getServiceList().stream()
                            .map(ServiceResponse::getName)
                            .toList());
                  }

                  @Override
                  public void onError(Throwable t) {
                    services.completeExceptionally(t);
                  }

                  @Override
                  public void onCompleted() {}
                });
    requests.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
    requests.onCompleted();
    assertThat(services.get(10, TimeUnit.SECONDS))
        .contains("inference.GRPCInferenceService", "grpc.health.v1.Health");
  }

  @Test
  void rpcsThatAreNotImplemented_answerUnimplemented() {
    MethodDescriptor<InputStream, InputStream> statistics =
        MethodDescriptor.<InputStream, InputStream>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY)
            .setFullMethodName("inference.GRPCInferenceService/SystemSharedMemoryStatus")
            .setRequestMarshaller(RawMarshaller.INSTANCE)
            .setResponseMarshaller(RawMarshaller.INSTANCE)
            .build();
    failsWith(
        Status.Code.UNIMPLEMENTED,
        () ->
            ClientCalls.blockingUnaryCall(
                gateway.channel, statistics, io.grpc.CallOptions.DEFAULT, new ByteArrayInputStream(new byte[0])));
  }

  private enum RawMarshaller implements MethodDescriptor.Marshaller<InputStream> {
    INSTANCE;

    @Override
    public InputStream stream(InputStream value) {
      return value;
    }

    @Override
    public InputStream parse(InputStream stream) {
      return stream;
    }
  }

  // ---- ModelReady ----

  @Test
  void modelReady() {
    assertThat(ready("cnn_mnist", "")).isTrue();
    assertThat(ready("cnn_mnist", "1")).isTrue();
    assertThat(ready("cnn_mnist", "2")).isTrue();
    assertThat(ready("cnn_mnist", "3")).isFalse();
    assertThat(ready("broken", "1")).isFalse();
    assertThat(ready("broken", "")).isTrue();
    assertThat(ready("zipmap", "")).isFalse();
    assertThat(ready("no_such_model", "")).isFalse();
    failsWith(Status.Code.INVALID_ARGUMENT, () -> ready("cnn_mnist", "latest"))
        .hasMessageContaining("model_version 'latest' (expected: a positive integer");
  }

  private static boolean ready(String name, String version) {
    return gateway
        .blocking()
        .modelReady(ModelReadyRequest.newBuilder().setName(name).setVersion(version).build())
        .getReady();
  }

  // ---- ModelMetadata and ModelConfig ----

  @Test
  void modelMetadata_describesTensorsWithVariableDimensions() {
    ModelMetadataResponse metadata =
        gateway.blocking().modelMetadata(ModelMetadataRequest.newBuilder().setName("cnn_mnist").build());
    assertThat(metadata.getName()).isEqualTo("cnn_mnist");
    assertThat(metadata.getVersionsList()).containsExactly("1", "2");
    assertThat(metadata.getPlatform()).isEqualTo("onnxruntime_onnx");
    assertThat(metadata.getInputsList()).hasSize(1);
    assertThat(metadata.getInputs(0).getName()).isEqualTo("input_image");
    assertThat(metadata.getInputs(0).getDatatype()).isEqualTo("FP32");
    assertThat(metadata.getInputs(0).getShapeList()).containsExactly(-1L, 1L, 28L, 28L);
    assertThat(metadata.getOutputs(0).getName()).isEqualTo("output_probs");
    assertThat(metadata.getOutputs(0).getShapeList()).containsExactly(-1L, 10L);
  }

  @Test
  void modelMetadata_ofANamedVersion_listsOnlyThatVersion() {
    ModelMetadataResponse metadata =
        gateway
            .blocking()
            .modelMetadata(ModelMetadataRequest.newBuilder().setName("cnn_mnist").setVersion("1").build());
    assertThat(metadata.getVersionsList()).containsExactly("1");
  }

  @Test
  void modelMetadata_bytesModel_reportsBytes() {
    ModelMetadataResponse metadata =
        gateway.blocking().modelMetadata(ModelMetadataRequest.newBuilder().setName("strings").build());
    assertThat(metadata.getInputs(0).getDatatype()).isEqualTo("BYTES");
  }

  @Test
  void modelMetadata_errors() {
    failsWith(
            Status.Code.NOT_FOUND,
            () -> gateway.blocking().modelMetadata(ModelMetadataRequest.newBuilder().setName("nope").build()))
        .hasMessageContaining("unknown model 'nope' (available: ")
        .hasMessageContaining("cnn_mnist");
    failsWith(
            Status.Code.UNAVAILABLE,
            () ->
                gateway
                    .blocking()
                    .modelMetadata(ModelMetadataRequest.newBuilder().setName("broken").setVersion("1").build()))
        .hasMessageContaining("model 'broken' version 1 is FAILED: ONNX Runtime could not load");
    failsWith(
            Status.Code.UNAVAILABLE,
            () -> gateway.blocking().modelMetadata(ModelMetadataRequest.newBuilder().setName("zipmap").build()))
        .hasMessageContaining("model 'zipmap' has no READY version")
        .hasMessageContaining("sequence of maps");
    failsWith(
            Status.Code.NOT_FOUND,
            () ->
                gateway
                    .blocking()
                    .modelMetadata(ModelMetadataRequest.newBuilder().setName("cnn_mnist").setVersion("9").build()))
        .hasMessageContaining("model 'cnn_mnist' has no version 9 (versions: 1, 2)");
  }

  @Test
  void modelConfig_isEnoughForPerfAnalyzer() {
    ModelConfig config =
        gateway.blocking().modelConfig(ModelConfigRequest.newBuilder().setName("cnn_mnist").build()).getConfig();
    assertThat(config.getName()).isEqualTo("cnn_mnist");
    assertThat(config.getPlatform()).isEqualTo("onnxruntime_onnx");
    assertThat(config.getBackend()).isEqualTo("onnxruntime");
    assertThat(config.getMaxBatchSize()).isEqualTo(64);
    assertThat(config.getInput(0).getName()).isEqualTo("input_image");
    assertThat(config.getInput(0).getDataType()).isEqualTo(DataType.TYPE_FP32);
    // Without the batch dimension, as the protocol specifies for max_batch_size >= 1.
    assertThat(config.getInput(0).getDimsList()).containsExactly(1L, 28L, 28L);
    assertThat(config.getOutput(0).getDimsList()).containsExactly(10L);
    assertThat(config.getInstanceGroup(0).getKind()).isEqualTo(ModelInstanceGroup.Kind.KIND_CPU);
    assertThat(config.getInstanceGroup(0).getCount()).isEqualTo(1);
    assertThat(config.getParametersMap().get("execution_provider").getStringValue()).isEqualTo("cpu");
    assertThat(config.hasDynamicBatching()).isTrue();
    assertThat(config.getDynamicBatching().getMaxQueueDelayMicroseconds()).isZero();
  }

  @Test
  void modelConfig_showsTheBatchingPolicyAndWhereTheVersionRuns() {
    ModelConfig tuned =
        gateway.blocking().modelConfig(ModelConfigRequest.newBuilder().setName("tuned").build()).getConfig();
    assertThat(tuned.getMaxBatchSize()).isEqualTo(8);
    assertThat(tuned.getDynamicBatching().getMaxQueueDelayMicroseconds()).isEqualTo(250);
    assertThat(tuned.getDynamicBatching().getPreferredBatchSizeList()).containsExactly(4, 8);
    assertThat(tuned.getInstanceGroup(0).getCount()).isEqualTo(2);

    ModelConfig unbatched =
        gateway.blocking().modelConfig(ModelConfigRequest.newBuilder().setName("unbatched").build()).getConfig();
    assertThat(unbatched.getMaxBatchSize()).isZero();
    assertThat(unbatched.hasDynamicBatching()).isFalse();
    assertThat(unbatched.getInput(0).getDimsList()).containsExactly(-1L, 3L);

    // Configured for CUDA with fallback allowed, on a CPU-only build: it says where it really runs.
    ModelConfig fallback =
        gateway.blocking().modelConfig(ModelConfigRequest.newBuilder().setName("fallback").build()).getConfig();
    String provider = fallback.getParametersMap().get("execution_provider").getStringValue();
    assertThat(provider).isIn("cpu", "cuda");
    assertThat(fallback.getInstanceGroup(0).getKind())
        .isEqualTo(provider.equals("cuda") ? ModelInstanceGroup.Kind.KIND_GPU : ModelInstanceGroup.Kind.KIND_CPU);
  }

  @Test
  void modelConfig_ofAModelBatchedOnAnotherAxis_reportsWhatTheBatcherDoes() {
    ModelConfig state =
        gateway.blocking().modelConfig(ModelConfigRequest.newBuilder().setName("state").build()).getConfig();
    // Full shapes (the protocol's max_batch_size would mean "first axis"), and the batching all the same.
    assertThat(state.getMaxBatchSize()).isZero();
    assertThat(state.getInput(0).getDimsList()).containsExactly(2L, -1L, 3L);
    assertThat(state.hasDynamicBatching()).isTrue();
    assertThat(state.getParametersMap().get("max_batch_rows").getStringValue()).isEqualTo("8");
    assertThat(state.getParametersMap().get("batch_axes").getStringValue()).isEqualTo("state:1,scale:none,scaled:1,total:0");
  }

  @Test
  void modelStatistics_reportsCumulativeFiguresAsTritonDoes() {
    ModelInferRequest request = Tensors.affine(1, 2, 3).setModelName("affine").build();
    io.modelgate.proto.inference.ModelStatisticsRequest query =
        io.modelgate.proto.inference.ModelStatisticsRequest.newBuilder().setName("affine").setVersion("1").build();
    io.modelgate.proto.inference.ModelStatistics before =
        gateway.blocking().modelStatistics(query).getModelStats(0);
    for (int i = 0; i < 5; i++) {
      gateway.blocking().modelInfer(request);
    }
    // An execution's phases (and the inferences it ran) are recorded once it has answered all its
    // requests: just after the last answer, on the executor thread. Wait for the fifth.
    io.modelgate.proto.inference.ModelStatistics after = gateway.blocking().modelStatistics(query).getModelStats(0);
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while ((after.getInferenceStats().getComputeInfer().getCount()
                - before.getInferenceStats().getComputeInfer().getCount() < 5
            || after.getInferenceCount() - before.getInferenceCount() < 5)
        && System.nanoTime() < until) {
      Thread.onSpinWait();
      after = gateway.blocking().modelStatistics(query).getModelStats(0);
    }
    assertThat(after.getName()).isEqualTo("affine");
    assertThat(after.getVersion()).isEqualTo("1");
    io.modelgate.proto.inference.InferStatistics s = after.getInferenceStats();
    io.modelgate.proto.inference.InferStatistics b = before.getInferenceStats();
    assertThat(s.getSuccess().getCount() - b.getSuccess().getCount()).isEqualTo(5);
    assertThat(s.getSuccess().getNs()).isGreaterThan(b.getSuccess().getNs());
    assertThat(s.getQueue().getCount() - b.getQueue().getCount()).isEqualTo(5);
    assertThat(s.getComputeInfer().getCount() - b.getComputeInfer().getCount()).isEqualTo(5);
    assertThat(s.getComputeInfer().getNs()).isGreaterThan(b.getComputeInfer().getNs());
    assertThat(after.getInferenceCount() - before.getInferenceCount()).isEqualTo(5);
    assertThat(after.getExecutionCount() - before.getExecutionCount()).isBetween(1L, 5L);
    assertThat(after.getLastInference()).isPositive();
    assertThat(after.getBatchStatsList()).isNotEmpty();
    long executionsBySize =
        after.getBatchStatsList().stream().mapToLong(x -> x.getComputeInfer().getCount()).sum();
    assertThat(executionsBySize).isEqualTo(after.getExecutionCount());
    // All models: an entry per loaded version; an unknown one is NOT_FOUND.
    assertThat(
            gateway.blocking()
                .modelStatistics(io.modelgate.proto.inference.ModelStatisticsRequest.getDefaultInstance())
                .getModelStatsList())
        .extracting(io.modelgate.proto.inference.ModelStatistics::getName)
        .contains("affine", "cnn_mnist");
    failsWith(
        Status.Code.NOT_FOUND,
        () ->
            gateway.blocking().modelStatistics(
                io.modelgate.proto.inference.ModelStatisticsRequest.newBuilder().setName("nowhere").build()));
  }

  @Test
  void repositoryIndex_listsEveryVersionWithItsState() {
    io.modelgate.proto.inference.RepositoryIndexResponse index =
        gateway.blocking().repositoryIndex(io.modelgate.proto.inference.RepositoryIndexRequest.getDefaultInstance());
    assertThat(index.getModelsList())
        .anySatisfy(m -> {
          assertThat(m.getName()).isEqualTo("broken");
          assertThat(m.getVersion()).isEqualTo("1");
          assertThat(m.getState()).isEqualTo("FAILED");
          assertThat(m.getReason()).contains("ONNX Runtime could not load");
        });
    io.modelgate.proto.inference.RepositoryIndexResponse ready =
        gateway.blocking().repositoryIndex(
            io.modelgate.proto.inference.RepositoryIndexRequest.newBuilder().setReady(true).build());
    assertThat(ready.getModelsList()).allSatisfy(m -> assertThat(m.getState()).isEqualTo("READY"));
  }

  @Test
  void repositoryLoadAndUnload_needTheAdminToken() {
    failsWith(
            Status.Code.UNAUTHENTICATED,
            () ->
                gateway.blocking().repositoryModelUnload(
                    io.modelgate.proto.inference.RepositoryModelUnloadRequest.newBuilder().setModelName("unbatched").build()))
        .hasMessageContaining("admin token");
    failsWith(
        Status.Code.UNAUTHENTICATED,
        () ->
            gateway.blocking().repositoryModelLoad(
                io.modelgate.proto.inference.RepositoryModelLoadRequest.newBuilder().setModelName("unbatched").build()));
  }

  @Test
  void repositoryUnloadThenLoad_takesAModelDownAndBringsItBack() {
    io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub operator =
        gateway.blocking().withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN));
    ModelInferRequest request = Tensors.affine(1, 2, 3).setModelName("unbatched").build();
    assertThat(gateway.blocking().modelInfer(request).getModelVersion()).isEqualTo("1");
    operator.repositoryModelUnload(
        io.modelgate.proto.inference.RepositoryModelUnloadRequest.newBuilder().setModelName("unbatched").build());
    failsWith(Status.Code.UNAVAILABLE, () -> gateway.blocking().modelInfer(request));
    operator.repositoryModelLoad(
        io.modelgate.proto.inference.RepositoryModelLoadRequest.newBuilder().setModelName("unbatched").build());
    assertThat(gateway.blocking().modelInfer(request).getModelVersion()).isEqualTo("1");
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () ->
                operator.repositoryModelLoad(
                    io.modelgate.proto.inference.RepositoryModelLoadRequest.newBuilder()
                        .setModelName("unbatched")
                        .putParameters("config", io.modelgate.proto.inference.ModelRepositoryParameter.newBuilder().setStringParam("{}").build())
                        .build()))
        .hasMessageContaining("expected: none");
  }

  @Test
  void modelConfig_bytesMapsToTypeString() {
    ModelConfig config =
        gateway.blocking().modelConfig(ModelConfigRequest.newBuilder().setName("strings").build()).getConfig();
    assertThat(config.getInput(0).getDataType()).isEqualTo(DataType.TYPE_STRING);
  }

  // ---- ModelInfer ----

  @Test
  void modelInfer_typedInput_echoesIdAndNamesTheVersion() {
    ModelInferResponse response =
        gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setId("req-42").build());
    assertThat(response.getId()).isEqualTo("req-42");
    assertThat(response.getModelName()).isEqualTo("affine");
    assertThat(response.getModelVersion()).isEqualTo("1");
    assertThat(response.getOutputsList()).extracting(o -> o.getName()).containsExactly("y", "z");
    assertThat(response.getOutputs(0).getDatatype()).isEqualTo("FP32");
    assertThat(response.getOutputs(0).getShapeList()).containsExactly(1L, 3L);
    assertThat(response.getOutputs(0).hasContents()).isFalse();
    assertThat(response.getRawOutputContentsCount()).isEqualTo(2);
    assertThat(Tensors.floats(response.getRawOutputContents(0))).containsExactly(3, 5, 7);
    assertThat(Tensors.floats(response.getRawOutputContents(1))).containsExactly(2, 4, 6);
  }

  @Test
  void modelInfer_requestedOutputs_comeBackInTheRequestedOrder() {
    ModelInferResponse response =
        gateway
            .blocking()
            .modelInfer(
                Tensors.affine(1, 1, 1)
                    .addOutputs(InferRequestedOutputTensor.newBuilder().setName("z"))
                    .addOutputs(InferRequestedOutputTensor.newBuilder().setName("y"))
                    .build());
    assertThat(response.getOutputsList()).extracting(o -> o.getName()).containsExactly("z", "y");
    assertThat(Tensors.floats(response.getRawOutputContents(0))).containsExactly(2, 2, 2);
    assertThat(Tensors.floats(response.getRawOutputContents(1))).containsExactly(3, 3, 3);
  }

  @Test
  void modelInfer_emptyVersion_isTheHighestReady_andANamedVersionIsUsed() {
    MnistDigits.Digit digit = MnistDigits.get(0);
    ModelInferResponse latest = gateway.blocking().modelInfer(Tensors.digit(digit).build());
    ModelInferResponse first = gateway.blocking().modelInfer(Tensors.digit(digit).setModelVersion("1").build());
    assertThat(latest.getModelVersion()).isEqualTo("2");
    assertThat(first.getModelVersion()).isEqualTo("1");
    float[] v2 = Tensors.floats(latest.getRawOutputContents(0));
    float[] v1 = Tensors.floats(first.getRawOutputContents(0));
    assertThat(v2).isNotEqualTo(v1);
    assertThat(Tensors.argmax(v2)).isEqualTo(Tensors.argmax(v1)).isEqualTo(digit.label());
  }

  @Test
  void modelInfer_bytesRoundTrip() {
    ByteBuffer raw = ByteBuffer.allocate(128).order(ByteOrder.LITTLE_ENDIAN);
    for (String s : List.of("héllo", "", "世界", "emoji 😀 outside the BMP")) {
      byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
      raw.putInt(utf8.length).put(utf8);
    }
    raw.flip();
    ByteString bytes = ByteString.copyFrom(raw);
    ModelInferResponse response =
        gateway
            .blocking()
            .modelInfer(
                ModelInferRequest.newBuilder()
                    .setModelName("strings")
                    .addInputs(input("text", "BYTES", 4))
                    .addRawInputContents(bytes)
                    .build());
    assertThat(response.getOutputs(0).getDatatype()).isEqualTo("BYTES");
    assertThat(response.getRawOutputContents(0)).isEqualTo(bytes);
  }

  @Test
  void modelInfer_unknownModel_isNotFound() {
    failsWith(
            Status.Code.NOT_FOUND,
            () -> gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("afine").build()))
        .hasMessageContaining("unknown model 'afine'");
  }

  @Test
  void modelInfer_versionNotReady_isUnavailableWithTheReason() {
    failsWith(
            Status.Code.UNAVAILABLE,
            () ->
                gateway
                    .blocking()
                    .modelInfer(Tensors.affine(1, 2, 3).setModelName("broken").setModelVersion("1").build()))
        .hasMessageContaining("model 'broken' version 1 is FAILED: ONNX Runtime could not load");
    // The broken model's good version still serves.
    assertThat(
            gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("broken").build()).getModelVersion())
        .isEqualTo("2");
  }

  @Test
  void modelInfer_nonNumericVersion_isInvalidArgument() {
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () -> gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelVersion("v1").build()))
        .hasMessageContaining("model_version 'v1' (expected: a positive integer");
  }

  @Test
  void modelInfer_invalidInputs_areInvalidArgumentNamingTheTensor() {
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () ->
                gateway
                    .blocking()
                    .modelInfer(
                        ModelInferRequest.newBuilder()
                            .setModelName("affine")
                            .addInputs(input("x", "FP32", 1, 4))
                            .addRawInputContents(Tensors.rawFloats(1, 2, 3, 4))
                            .build()))
        .hasMessageContaining("input 'x': shape [1,4] has 4 at dimension 1 (expected: 3, model shape [-1,3])");
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () ->
                gateway
                    .blocking()
                    .modelInfer(
                        ModelInferRequest.newBuilder()
                            .setModelName("affine")
                            .addInputs(input("x", "INT32", 1, 3).setContents(InferTensorContents.newBuilder().addIntContents(1)))
                            .build()))
        .hasMessageContaining("input 'x': datatype 'INT32' (expected: FP32)");
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () ->
                gateway
                    .blocking()
                    .modelInfer(
                        ModelInferRequest.newBuilder()
                            .setModelName("affine")
                            .addInputs(input("x", "FP32", 1, 3))
                            .addRawInputContents(Tensors.rawFloats(1, 2))
                            .build()))
        .hasMessageContaining("input 'x': 8 bytes of raw data for shape [1,3] of FP32 (expected: 12 bytes");
    failsWith(
            Status.Code.INVALID_ARGUMENT,
            () -> gateway.blocking().modelInfer(ModelInferRequest.newBuilder().setModelName("affine").build()))
        .hasMessageContaining("missing input 'x' (FP32 [-1,3])");
  }

  @Test
  void modelInfer_onnxRuntimeFailure_isInternal_andTheServerKeepsServing() {
    failsWith(
            Status.Code.INTERNAL,
            () ->
                gateway
                    .blocking()
                    .modelInfer(
                        ModelInferRequest.newBuilder()
                            .setModelName("reshape")
                            .addInputs(input("x", "FP32", 3, 4))
                            .addRawInputContents(Tensors.rawFloats(new float[12]))
                            .build()))
        .hasMessageContaining("ONNX Runtime failed running model 'reshape' version 1")
        .hasMessageContaining("Reshape");
    ModelInferResponse ok =
        gateway
            .blocking()
            .modelInfer(
                ModelInferRequest.newBuilder()
                    .setModelName("reshape")
                    .addInputs(input("x", "FP32", 1, 4))
                    .addRawInputContents(Tensors.rawFloats(1, 2, 3, 4))
                    .build());
    assertThat(ok.getOutputs(0).getShapeList()).containsExactly(2L, 2L);
  }

  @Test
  void modelInfer_manyConcurrentCalls_eachGetsItsOwnAnswer() throws Exception {
    List<CompletableFuture<ModelInferResponse>> futures = new ArrayList<>();
    for (int i = 0; i < 200; i++) {
      io.modelgate.gateway.testing.Outcome<ModelInferResponse> outcome = new io.modelgate.gateway.testing.Outcome<>();
      futures.add(outcome.answer);
      gateway.async().modelInfer(Tensors.affine(i, i + 1, i + 2).setId("call-" + i).build(), outcome);
    }
    for (int i = 0; i < futures.size(); i++) {
      ModelInferResponse response = futures.get(i).get(30, TimeUnit.SECONDS);
      assertThat(response.getId()).isEqualTo("call-" + i);
      assertThat(Tensors.floats(response.getRawOutputContents(1))).containsExactly(2f * i, 2f * (i + 1), 2f * (i + 2));
    }
  }

  private static java.util.List<String> strings(com.google.protobuf.ByteString raw) {
    java.nio.ByteBuffer buffer = raw.asReadOnlyByteBuffer().order(java.nio.ByteOrder.LITTLE_ENDIAN);
    java.util.List<String> out = new java.util.ArrayList<>();
    while (buffer.hasRemaining()) {
      byte[] text = new byte[buffer.getInt()];
      buffer.get(text);
      out.add(new String(text, java.nio.charset.StandardCharsets.UTF_8));
    }
    return out;
  }

  @Test
  void classification_returnsTheTopKClassesAsTritonDoes() {
    io.modelgate.gateway.demo.MnistDigits.Digit digit = io.modelgate.gateway.demo.MnistDigits.all().get(0);
    ModelInferRequest plain = io.modelgate.gateway.testing.Tensors.digit(digit).setModelVersion("1").build();
    float[] probabilities =
        io.modelgate.gateway.testing.Tensors.floats(gateway.blocking().modelInfer(plain).getRawOutputContents(0));
    ModelInferRequest classified =
        plain.toBuilder()
            .addOutputs(
                ModelInferRequest.InferRequestedOutputTensor.newBuilder()
                    .setName("output_probs")
                    .putParameters(
                        "classification", io.modelgate.proto.inference.InferParameter.newBuilder().setInt64Param(3).build()))
            .build();
    ModelInferResponse response = gateway.blocking().modelInfer(classified);
    assertThat(response.getOutputs(0).getDatatype()).isEqualTo("BYTES");
    assertThat(response.getOutputs(0).getShapeList()).containsExactly(1L, 3L);
    java.util.List<String> top = strings(response.getRawOutputContents(0));
    assertThat(top).hasSize(3);
    int best = io.modelgate.gateway.testing.Tensors.argmax(probabilities);
    assertThat(top.get(0))
        .isEqualTo(String.format(java.util.Locale.ROOT, "%f:%d", probabilities[best], best));
    assertThat(best).isEqualTo(digit.label());
    // Highest first.
    double previous = Double.MAX_VALUE;
    for (String entry : top) {
      double value = Double.parseDouble(entry.substring(0, entry.indexOf(':')));
      assertThat(value).isLessThanOrEqualTo(previous);
      previous = value;
    }
  }

  @Test
  void classification_withABadParameter_isInvalidArgument() {
    ModelInferRequest request =
        io.modelgate.gateway.testing.Tensors.digit(io.modelgate.gateway.demo.MnistDigits.all().get(0))
            .addOutputs(
                ModelInferRequest.InferRequestedOutputTensor.newBuilder()
                    .setName("output_probs")
                    .putParameters(
                        "classification", io.modelgate.proto.inference.InferParameter.newBuilder().setStringParam("three").build()))
            .build();
    failsWith(Status.Code.INVALID_ARGUMENT, () -> gateway.blocking().modelInfer(request))
        .hasMessageContaining("parameter 'classification'")
        .hasMessageContaining("expected: a positive int64");
  }
}

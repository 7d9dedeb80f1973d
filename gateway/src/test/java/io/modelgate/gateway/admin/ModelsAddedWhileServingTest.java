package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.ModelInfo;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.RepositoryIndexRequest;
import io.modelgate.proto.inference.RepositoryIndexResponse;
import io.modelgate.proto.inference.RepositoryModelLoadRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A model whose folder appears in the repository while the server runs: listed as loadable, loaded
 * by an operator without a restart, then served, routed, counted and watched as the models found
 * at the start are.
 */
class ModelsAddedWhileServingTest {
  @TempDir Path root;
  Gateway gateway;

  @AfterEach
  void stop() {
    if (gateway != null) {
      gateway.close();
    }
  }

  /** A gateway started with model m, then {@code versions} version folders of {@code model} written. */
  private void startThenAdd(String model, int versions) throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    gateway = Gateway.inProcess(root);
    for (int version = 1; version <= versions; version++) {
      Gateway.write(root, model, version, Gateway.affine());
    }
  }

  private GRPCInferenceServiceBlockingStub operator() {
    return gateway.blocking().withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN));
  }

  private ModelInfo listed(String model) {
    return gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsList().stream()
        .filter(m -> m.getName().equals(model)).findFirst().orElseThrow();
  }

  private static void failsWith(Status.Code code, String message, Runnable call) {
    assertThatThrownBy(call::run)
        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> assertThat(e.getStatus().getCode()).isEqualTo(code))
        .hasMessageContaining(message);
  }

  @Test
  void aModelFolderAddedWhileServing_isListedAsLoadable_thenLoadedByTheRepositoryExtension_andServed() throws Exception {
    startThenAdd("added", 2);
    ModelInferRequest request = Tensors.affine(1, 2, 3).setModelName("added").build();
    // Not served until an operator loads it; the index lists it as loadable.
    failsWith(Status.Code.NOT_FOUND, "unknown model 'added' (available: m)", () -> gateway.blocking().modelInfer(request));
    RepositoryIndexResponse index = gateway.blocking().repositoryIndex(RepositoryIndexRequest.getDefaultInstance());
    assertThat(index.getModelsList()).extracting(e -> e.getName() + "/" + e.getVersion() + "/" + e.getState())
        .containsExactly("m/1/READY", "added//UNAVAILABLE");
    assertThat(index.getModels(1).getReason()).isEqualTo(VersionControl.NOT_LOADED);
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsNotLoadedList())
        .containsExactly("added");
    assertThat(gateway.blocking().repositoryIndex(RepositoryIndexRequest.newBuilder().setReady(true).build())
        .getModelsList()).extracting(e -> e.getName()).containsExactly("m");

    operator().repositoryModelLoad(RepositoryModelLoadRequest.newBuilder().setModelName("added").build());
    assertThat(gateway.blocking().modelInfer(request).getModelVersion()).isEqualTo("2");
    assertThat(gateway.blocking().modelInfer(request.toBuilder().setModelVersion("1").build()).getOutputs(0).getShapeList())
        .containsExactly(1L, 3L);
    assertThat(listed("added").getVersionsList()).extracting(v -> v.getVersion() + "/" + v.getState())
        .containsExactly("1/READY", "2/READY");
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsNotLoadedList()).isEmpty();
    assertThat(gateway.blocking().repositoryIndex(RepositoryIndexRequest.getDefaultInstance()).getModelsList())
        .extracting(e -> e.getName() + "/" + e.getVersion() + "/" + e.getState())
        .containsExactly("added/1/READY", "added/2/READY", "m/1/READY");
    // Watched as any model: its health, its routing gauges, its versions' statistics.
    assertThat(HealthGrpc.newBlockingStub(gateway.channel).check(HealthCheckRequest.newBuilder().setService("added").build())
        .getStatus()).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
    assertThat(gateway.stats.prometheus().scrape())
        .contains("modelgate_routing_revision{model=\"added\"} 0.0")
        .contains("modelgate_version_model_file{model=\"added\",");
    // Routed by a policy like any model.
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("added").putWeights(1, 1)).build());
    assertThat(gateway.blocking().modelInfer(request).getModelVersion()).isEqualTo("1");

    // A name the repository has no folder of stays NOT_FOUND, and adds nothing.
    failsWith(Status.Code.NOT_FOUND, "unknown model 'nothing': the repository has no folder nothing",
        () -> operator().repositoryModelLoad(RepositoryModelLoadRequest.newBuilder().setModelName("nothing").build()));
    failsWith(Status.Code.NOT_FOUND, "unknown model '..': the repository has no folder ..",
        () -> operator().repositoryModelLoad(RepositoryModelLoadRequest.newBuilder().setModelName("..").build()));
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsList())
        .extracting(ModelInfo::getName).containsExactly("added", "m");
  }

  @Test
  void aModelAddedByLoadingOneVersion_loadsOnlyThatOne() throws Exception {
    startThenAdd("added", 2);

    assertThat(gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("added").setVersion(1).build())
        .getState()).isEqualTo("READY");
    assertThat(listed("added").getVersionsList()).extracting(v -> v.getVersion() + "/" + v.getState())
        .containsExactly("1/READY");
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("added").build()).getModelVersion())
        .isEqualTo("1");
  }

  @Test
  void aModelLoadedWhole_byTheAdminApi_answersItsVersions_andNamesTheOnesThatDidNotLoad() throws Exception {
    startThenAdd("whole", 2);
    ModelInfo loaded = gateway.admin().loadModel(
        io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel("whole").build());
    assertThat(loaded.getName()).isEqualTo("whole");
    assertThat(loaded.getVersionsList()).extracting(v -> v.getVersion() + "/" + v.getState())
        .containsExactly("1/READY", "2/READY");
    assertThat(loaded.getRouting().getRevision()).isZero();

    Gateway.write(root, "whole", 3, "not an ONNX model".getBytes(java.nio.charset.StandardCharsets.UTF_8));
    failsWith(Status.Code.FAILED_PRECONDITION, "model 'whole' did not load whole: version 3 is FAILED: ",
        () -> gateway.admin().loadModel(io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel("whole").build()));
    assertThat(listed("whole").getVersionsList()).extracting(v -> v.getVersion() + "/" + v.getState())
        .containsExactly("1/READY", "2/READY", "3/FAILED");
  }

  @Test
  void aModelsRoutingKeptFromBeforeARestartWithoutItsFolder_appliesWhenItIsAddedAgain() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "added", 1, Gateway.affine());
    Gateway.write(root, "added", 2, Gateway.affine());
    gateway = Gateway.inProcess(root);
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("added").putWeights(1, 1)).setExpectedRevision(0).build());
    gateway.close();
    // Restarted while the model's folder is away.
    Path aside = Files.createTempDirectory("aside").resolve("added");
    Files.move(root.resolve("added"), aside);
    gateway = Gateway.inProcess(root);
    assertThat(gateway.admin().listModels(ListModelsRequest.getDefaultInstance()).getModelsList())
        .extracting(ModelInfo::getName).containsExactly("m");

    Files.move(aside, root.resolve("added"));
    operator().repositoryModelLoad(RepositoryModelLoadRequest.newBuilder().setModelName("added").build());
    // The policy kept in the state directory, not the default (the latest READY version, 2).
    assertThat(listed("added").getRouting().getRevision()).isEqualTo(1);
    assertThat(listed("added").getRouting().getWeightsMap()).isEqualTo(Map.of(1L, 1));
    assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("added").build()).getModelVersion())
        .isEqualTo("1");
  }
}

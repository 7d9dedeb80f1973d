package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.ShadowRouting;
import io.modelgate.proto.admin.v1.WindowStats;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A shadow version sees a copy of traffic; nothing that happens to it reaches the caller. */
class ShadowTest {
  @TempDir Path root;
  Gateway gateway;

  /** x FP32 [-1,3]: fails inside ONNX Runtime for every input (reshape to 7 elements). */
  static byte[] failing() {
    return OnnxGraphBuilder.create("failing", 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, 3)
        .output("y", OnnxGraphBuilder.FLOAT, 7)
        .initializer("shape", new long[] {7}, 1)
        .node("Reshape", List.of("x", "shape"), List.of("y"))
        .build();
  }

  @BeforeEach
  void start() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Gateway.write(root, "m", 3, failing());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 0\n");
    // A model whose version 2 is slow and has a queue of 4: its shadow copies overflow.
    Gateway.write(root, "s", 1, Gateway.affine());
    Gateway.write(root, "s", 2, Gateway.slowAffine());
    Files.writeString(root.resolve("s/model.yaml"), "max_batch_size: 0\nqueue_capacity: 4\n");
    gateway = Gateway.inProcess(root);
  }

  @AfterEach
  void stop() {
    gateway.close();
  }

  private void shadow(long version) {
    shadow("m", version);
  }

  private void shadow(String model, long version) {
    gateway.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel(model).putWeights(1, 1)
            .setShadow(ShadowRouting.newBuilder().setVersion(version).setSampleRate(1.0)))
        .setExpectedRevision(0).build());
  }

  private WindowStats all(long version) {
    return all("m", version);
  }

  private WindowStats all(String model, long version) {
    gateway.stats.rotate();
    return gateway.stats.report(model, version).getVersions(0).getWindowsList().stream()
        .filter(w -> w.getWindow().equals("all")).findFirst().orElseThrow();
  }

  @Test
  void anEqualShadow_isComparedAndAgrees() {
    shadow(2);
    for (int i = 0; i < 20; i++) {
      ModelInferResponse response = gateway.blocking().modelInfer(Tensors.affine(i, 1, 2).setModelName("m").build());
      assertThat(response.getModelVersion()).isEqualTo("1");
    }
    VersionStats two = gateway.stats.find("m", 2);
    // Shadow answers arrive after their primaries; wait for all twenty to be compared.
    long deadline = System.nanoTime() + 30_000_000_000L;
    while (all(2).getShadow().getCompared() < 20 && System.nanoTime() < deadline) {
      Thread.onSpinWait();
    }
    WindowStats shadowSide = all(2);
    assertThat(two).isNotNull();
    assertThat(shadowSide.getShadow().getCompared()).isEqualTo(20);
    assertThat(shadowSide.getShadow().getArgmaxAgreed()).isEqualTo(20);
    assertThat(shadowSide.getShadow().getMaxAbsDiff()).isZero();
    assertThat(shadowSide.getRequests()).isEqualTo(20);
    // The same over the last minute (the interval just closed), and per (primary, shadow) pair on /metrics.
    WindowStats minute = gateway.stats.report("m", 2).getVersions(0).getWindowsList().stream()
        .filter(w -> w.getWindow().equals("1m")).findFirst().orElseThrow();
    assertThat(minute.getShadow().getCompared()).isEqualTo(20);
    assertThat(minute.getShadow().getArgmaxAgreed()).isEqualTo(20);
    assertThat(gateway.stats.scrape())
        .contains("modelgate_shadow_comparisons_total{model=\"m\",outcome=\"agreed\",primary=\"1\",shadow=\"2\"} 20.0")
        .contains("modelgate_shadow_comparisons_total{model=\"m\",outcome=\"disagreed\",primary=\"1\",shadow=\"2\"} 0.0");
    assertThat(two.shadowSince(0).compared()).isEqualTo(20);
  }

  @Test
  void aFailingShadow_neverFailsThePrimary() {
    shadow(3);
    for (int i = 0; i < 30; i++) {
      ModelInferResponse response = gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
      assertThat(response.getModelVersion()).isEqualTo("1");
      assertThat(Tensors.floats(response.getRawOutputContents(0))).containsExactly(3, 5, 7);
    }
    long deadline = System.nanoTime() + 30_000_000_000L;
    while (all(3).getShadow().getFailed() < 30 && System.nanoTime() < deadline) {
      Thread.onSpinWait();
    }
    assertThat(all(3).getShadow().getFailed()).isEqualTo(30);
    assertThat(all(1).getErrors()).isZero();
  }

  @Test
  void aSlowOverloadedShadow_neitherSlowsNorFailsThePrimary() {
    shadow("s", 2);
    // The shadow's queue holds 4 requests and each takes far longer than a primary: most copies
    // are refused or still queued when every primary has been answered.
    int n = 100;
    for (int i = 0; i < n; i++) {
      ModelInferResponse response = gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("s").build());
      assertThat(response.getModelVersion()).isEqualTo("1");
    }
    WindowStats primary = all("s", 1);
    assertThat(primary.getRequests()).isEqualTo(n);
    assertThat(primary.getErrors()).isZero();
    WindowStats shadowSide = all("s", 2);
    // Copies the shadow refused (queue full) count as shadow failures, on the shadow.
    assertThat(shadowSide.getShadow().getFailed() + shadowSide.getShadow().getCompared()).isLessThanOrEqualTo(n);
    assertThat(shadowSide.getErrorsByCodeMap()).containsKey("RESOURCE_EXHAUSTED");
  }
}

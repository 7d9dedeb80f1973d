package io.modelgate.gateway.routing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.grpc.Context;
import io.grpc.Metadata;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.ShadowRouting;
import io.modelgate.proto.admin.v1.StickyRouting;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.repository.ModelVersion;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.assertj.core.api.AbstractThrowableAssert;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RouterTest {
  @TempDir static Path root;
  static ModelRepository repository;

  @BeforeAll
  static void load() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Gateway.write(root, "m", 3, Gateway.affine());
    Gateway.write(root, "m", 4, "broken".getBytes());
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
  }

  @AfterAll
  static void close() {
    repository.close(Duration.ofSeconds(5));
  }

  private static RoutingPolicy policy(Map<Long, Integer> weights) {
    return RoutingPolicy.newBuilder().setModel("m").setRevision(1).putAllWeights(weights).build();
  }

  private static ModelInferRequest request() {
    return ModelInferRequest.newBuilder().setModelName("m").build();
  }

  private static ModelInferRequest keyed(String key) {
    return ModelInferRequest.newBuilder()
        .setModelName("m")
        .putParameters("user", InferParameter.newBuilder().setStringParam(key).build())
        .build();
  }

  private static AbstractThrowableAssert<?, ?> refused(ErrorCode code, Runnable action) {
    return assertThatThrownBy(action::run)
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(code));
  }

  @Test
  void defaultRoute_isTheHighestReadyVersion() {
    Router router = new Router(repository);
    assertThat(router.route("m").policy().getRevision()).isZero();
    assertThat(router.route("m").select(request()).number()).isEqualTo(3);
  }

  @Test
  void weightedChoice_matchesTheWeightsExactly_overAUniformGrid() {
    WeightedChoice choice = new WeightedChoice(new long[] {70, 25, 5, 0});
    int[] counts = new int[4];
    int steps = 10_000;
    for (int column = 0; column < 4; column++) {
      for (int k = 0; k < steps; k++) {
        counts[choice.pick(column, (k + 0.5) / steps)]++;
      }
    }
    double total = 4.0 * steps;
    assertThat(counts[0] / total).isCloseTo(0.70, within(1e-3));
    assertThat(counts[1] / total).isCloseTo(0.25, within(1e-3));
    assertThat(counts[2] / total).isCloseTo(0.05, within(1e-3));
    assertThat(counts[3]).isZero();
  }

  @Test
  void weightedRoute_splitsTrafficByTheWeights() {
    Router router = new Router(repository);
    router.install(router.compile(policy(Map.of(1L, 90, 2L, 10))), 0);
    Map<Long, Integer> counts = new HashMap<>();
    int n = 100_000;
    for (int i = 0; i < n; i++) {
      counts.merge(router.route("m").select(request()).number(), 1, Integer::sum);
    }
    // Chi-square with 1 degree of freedom: 19.51 is the 0.001% critical value, so a correct
    // router fails this once in 100 000 runs.
    double expected1 = 0.9 * n;
    double expected2 = 0.1 * n;
    double chi2 =
        Math.pow(counts.getOrDefault(1L, 0) - expected1, 2) / expected1
            + Math.pow(counts.getOrDefault(2L, 0) - expected2, 2) / expected2;
    assertThat(chi2).isLessThan(19.51);
    assertThat(counts).doesNotContainKey(3L);
  }

  @Test
  void aPinnedVersion_bypassesTheWeights() {
    Router router = new Router(repository);
    router.install(router.compile(policy(Map.of(1L, 100))), 0);
    ModelVersion pinned =
        router.route("m").select(ModelInferRequest.newBuilder().setModelName("m").setModelVersion("3").build());
    assertThat(pinned.number()).isEqualTo(3);
  }

  @Test
  void stickyKeys_keepTheirVersion_andASmallWeightChangeMovesFewKeys() {
    Router router = new Router(repository);
    RoutingPolicy sticky =
        policy(Map.of(1L, 90, 2L, 10)).toBuilder()
            .setSticky(StickyRouting.newBuilder().setParameter("user"))
            .build();
    router.install(router.compile(sticky), 0);
    int keys = 20_000;
    long[] before = new long[keys];
    int onTwo = 0;
    for (int k = 0; k < keys; k++) {
      before[k] = router.route("m").select(keyed("user-" + k)).number();
      for (int again = 0; again < 3; again++) {
        assertThat(router.route("m").select(keyed("user-" + k)).number()).isEqualTo(before[k]);
      }
      onTwo += before[k] == 2 ? 1 : 0;
    }
    assertThat(onTwo / (double) keys).isCloseTo(0.10, within(0.01));

    RoutingPolicy shifted =
        sticky.toBuilder().setRevision(2).clearWeights().putWeights(1, 85).putWeights(2, 15).build();
    router.install(router.compile(shifted), 1);
    int moved = 0;
    for (int k = 0; k < keys; k++) {
      long after = router.route("m").select(keyed("user-" + k)).number();
      if (after != before[k]) {
        moved++;
        // Only keys that had to move did: from the version that lost weight to the one that gained.
        assertThat(before[k]).isEqualTo(1);
        assertThat(after).isEqualTo(2);
      }
    }
    assertThat(moved / (double) keys).isCloseTo(0.05, within(0.01));
  }

  @Test
  void stickyByHeader_readsTheCallsHeaders() throws Exception {
    Router router = new Router(repository);
    router.install(
        router.compile(
            policy(Map.of(1L, 50, 2L, 50)).toBuilder()
                .setSticky(StickyRouting.newBuilder().setHeader("x-session"))
                .build()),
        0);
    assertThat(router.routesByHeader()).isTrue();
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("x-session", Metadata.ASCII_STRING_MARSHALLER), "abc");
    long first =
        Context.current().withValue(Router.HEADERS, headers).call(() -> router.route("m").select(request()).number());
    for (int i = 0; i < 50; i++) {
      long again =
          Context.current().withValue(Router.HEADERS, headers).call(() -> router.route("m").select(request()).number());
      assertThat(again).isEqualTo(first);
    }
  }

  @Test
  void invalidPolicies_areRefusedWithTheReason() {
    Router router = new Router(repository);
    refused(ErrorCode.INVALID_ARGUMENT, () -> router.compile(policy(Map.of(9L, 10))))
        .hasMessageContaining("weights name version 9, which model 'm' does not have");
    refused(ErrorCode.FAILED_PRECONDITION, () -> router.compile(policy(Map.of(4L, 10))))
        .hasMessageContaining("version 4 of model 'm', which is FAILED")
        .hasMessageContaining("(expected: a READY version)");
    refused(ErrorCode.INVALID_ARGUMENT, () -> router.compile(policy(Map.of(1L, 0, 2L, 0))))
        .hasMessageContaining("are all 0 (expected: at least one > 0)");
    refused(
            ErrorCode.INVALID_ARGUMENT,
            () ->
                router.compile(
                    policy(Map.of(1L, 1)).toBuilder()
                        .setSticky(StickyRouting.newBuilder().setParameter("a").setHeader("b"))
                        .build()))
        .hasMessageContaining("names both parameter 'a' and header 'b'");
    refused(
            ErrorCode.INVALID_ARGUMENT,
            () ->
                router.compile(
                    policy(Map.of(1L, 1)).toBuilder()
                        .setShadow(ShadowRouting.newBuilder().setVersion(2).setSampleRate(1.5))
                        .build()))
        .hasMessageContaining("shadow sample_rate 1.5");
    refused(
            ErrorCode.NOT_FOUND,
            () -> router.compile(RoutingPolicy.newBuilder().setModel("nope").putWeights(1, 1).build()))
        .hasMessageContaining("unknown model 'nope'");
  }

  @Test
  void installingOverAStaleRevision_isAborted() {
    Router router = new Router(repository);
    router.install(router.compile(policy(Map.of(1L, 1))), 0);
    refused(ErrorCode.ABORTED, () -> router.install(router.compile(policy(Map.of(2L, 1))), 0))
        .hasMessageContaining("is at revision 1, not 0");
  }

  @Test
  void emptyWeights_meanTheDefault() {
    Router router = new Router(repository);
    router.install(router.compile(RoutingPolicy.newBuilder().setModel("m").setRevision(1).build()), 0);
    assertThat(router.route("m").select(request()).number()).isEqualTo(3);
    assertThat(router.route("m").policy().getRevision()).isEqualTo(1);
  }
}

package io.modelgate.gateway.callers;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fair admission: a tenant flooding a slow version with more than its queue holds is refused once
 * it holds its share, and a tenant arriving afterwards still gets in (without fair shares the
 * flood fills the queue and refuses everyone).
 */
class FairShareTest {
  @TempDir Path root;

  private static final String BIG = "mgk_fair-big-0123456789abcdef0123";
  private static final String SMALL = "mgk_fair-small-0123456789abcdef01";

  @Test
  void aFloodGetsItsShare_andALaterTenantIsStillAdmitted() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Files.writeString(root.resolve("slow/model.yaml"), "max_batch_size: 1\nqueue_capacity: 16\n");
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n"
        + "  big:\n    api_keys: [" + CallerPolicy.hash(BIG) + "]\n"
        + "  small:\n    api_keys: [" + CallerPolicy.hash(SMALL) + "]\n");
    try (Gateway gateway = Gateway.inProcessWithCallers(root, root.resolve("callers.yaml"), Clock.systemUTC())) {
      ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("slow")
          .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3)).build();
      Map<String, List<Status>> answers = new ConcurrentHashMap<>();
      int flood = 40;
      CountDownLatch done = new CountDownLatch(flood + 2);
      for (int i = 0; i < flood; i++) {
        send(gateway, BIG, "big", request, answers, done);
      }
      for (int i = 0; i < 2; i++) {
        send(gateway, SMALL, "small", request, answers, done);
      }
      assertThat(done.await(120, TimeUnit.SECONDS)).isTrue();
      List<Status> big = answers.get("big");
      long bigServed = big.stream().filter(Status::isOk).count();
      List<Status> refused = big.stream().filter(s -> !s.isOk()).toList();
      System.out.printf("flood of %d: %d served, %d refused; small: %s%n", flood, bigServed, refused.size(), answers.get("small"));
      assertThat(answers.get("small")).hasSize(2).allMatch(Status::isOk);
      assertThat(bigServed).isGreaterThanOrEqualTo(12).isLessThan(flood);
      assertThat(refused).allSatisfy(s -> {
        assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
        assertThat(s.getDescription()).startsWith("tenant 'big' holds its fair share of model 'slow' version 1 (");
      });
      // Each refusal is counted with its reason, for the operator to tell a share from a full server.
      String scrape = gateway.stats.prometheus().scrape();
      assertThat(scrape).contains("modelgate_usage_refused_total{model=\"slow\",reason=\"fair_share\",tenant=\"big\",version=\"1\"} "
          + refused.size() + ".0");
      assertThat(scrape).contains("modelgate_usage_refused_total{model=\"slow\",reason=\"queue_full\",tenant=\"big\",version=\"1\"} 0.0");
    }
  }

  @Test
  void aWeightSetThroughTheAdminApi_isTheOneAdmissionUses() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine(5000));
    Files.writeString(root.resolve("slow/model.yaml"), "max_batch_size: 1\nqueue_capacity: 4\n");
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n  big:\n    api_keys: [" + CallerPolicy.hash(BIG) + "]\n");
    try (Gateway gateway = Gateway.inProcessWithCallers(root, root.resolve("callers.yaml"), Clock.systemUTC())) {
      gateway.admin().setQuota(io.modelgate.proto.admin.v1.SetQuotaRequest.newBuilder().setTenant("big").setWeight(7).build());
      ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("slow")
          .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3)).build();
      Map<String, List<Status>> answers = new ConcurrentHashMap<>();
      CountDownLatch done = new CountDownLatch(6);
      for (int i = 0; i < 6; i++) {
        send(gateway, BIG, "big", request, answers, done);
      }
      assertThat(done.await(120, TimeUnit.SECONDS)).isTrue();
      // Alone, the tenant holds the 3 places fair shares leave whatever its weight; the refusal
      // names the weight admission used: the API's 7, not the file's 1.
      assertThat(answers.get("big")).filteredOn(s -> !s.isOk()).isNotEmpty().allSatisfy(s ->
          assertThat(s.getDescription()).contains("(3 of 4 places: its weight 7 of 7,"));
    }
  }

  @Test
  void aTenantWithLargeRequestsWaiting_leavesAQuarterOfTheRequestMemory_forATenantWithNone() throws Exception {
    // Room for four and a half requests: three for a tenant with requests waiting, the rest kept.
    Map<String, List<Status>> answers = floodThenSmall(4.5, 7, 1);
    assertThat(answers.get("small")).containsExactly(Status.OK);
    List<Status> big = answers.get("big");
    assertThat(big.stream().filter(Status::isOk).count()).isEqualTo(3);
    assertThat(big.stream().filter(s -> !s.isOk()).toList()).hasSize(7).allSatisfy(s -> {
      assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
      assertThat(s.getDescription()).contains("not kept for tenants with nothing waiting or within their share (tenant 'big'");
    });
    assertThat(scrape).contains(
        "modelgate_usage_refused_total{model=\"slow\",reason=\"request_memory\",tenant=\"big\",version=\"1\"} 7.0");
    assertThat(scrape).contains(
        "modelgate_usage_refused_total{model=\"slow\",reason=\"fair_share\",tenant=\"big\",version=\"1\"} 0.0");
  }

  @Test
  void aTenantWithABacklog_holdingLittle_usesTheReserve_whileAnotherTenantsLargeRequestsFillTheRest() throws Exception {
    // Room for six and a half requests, 4.875 not kept: the flood holds four. The small tenant's
    // second has its first waiting, and is within its share (half of the 4.875), so it may use the
    // reserve.
    Map<String, List<Status>> answers = floodThenSmall(6.5, 6, 2);
    assertThat(answers.get("small")).containsExactly(Status.OK, Status.OK);
    assertThat(answers.get("big").stream().filter(Status::isOk).count()).isEqualTo(4);
  }

  /**
   * Ten requests of the tenant {@code big} at once to a version that runs one at a time for a
   * half a second or more, with request memory for {@code room} of them; once {@code refused} of
   * them are refused (while its first runs), {@code small} requests of the tenant {@code small} at
   * once (sent earlier, they could overtake the flood's last held ones).
   *
   * @return every answer, by tenant
   */
  private Map<String, List<Status>> floodThenSmall(double room, int refused, int small) throws Exception {
    // Half a second or more a run: the flood's ten are all admitted or refused while its first runs.
    Gateway.write(root, "slow", 1, Gateway.slowAffine(5000));
    Files.writeString(root.resolve("slow/model.yaml"), "max_batch_size: 1\nqueue_capacity: 64\n");
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n"
        + "  big:\n    api_keys: [" + CallerPolicy.hash(BIG) + "]\n"
        + "  small:\n    api_keys: [" + CallerPolicy.hash(SMALL) + "]\n");
    ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("slow")
        .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3)).build();
    io.modelgate.gateway.server.AdminSettings admin = Gateway.adminSettings(root.resolve(".state"), -1)
        .withCallers(root.resolve("callers.yaml")).withRequestMemory((long) (room * request.getSerializedSize()));
    try (Gateway gateway = Gateway.inProcess(root, java.time.Duration.ofSeconds(10), java.time.Duration.ZERO, admin,
        Clock.systemUTC())) {
      Map<String, List<Status>> answers = new ConcurrentHashMap<>();
      int flood = 10;
      CountDownLatch done = new CountDownLatch(flood + small);
      for (int i = 0; i < flood; i++) {
        send(gateway, BIG, "big", request, answers, done);
      }
      io.modelgate.gateway.testing.Eventually.eventually("the flood's refusals",
          () -> answers.getOrDefault("big", List.of()).stream().filter(s -> !s.isOk()).count() >= refused);
      for (int i = 0; i < small; i++) {
        send(gateway, SMALL, "small", request, answers, done);
      }
      assertThat(done.await(120, TimeUnit.SECONDS)).isTrue();
      scrape = gateway.stats.prometheus().scrape();
      return answers;
    }
  }

  /** The metrics of {@link #floodThenSmall}'s server once every answer came. */
  private String scrape;

  @Test
  void thousandsOfTenants_shareTheQueue_andTheActiveCountFollowsTheirPlaces() throws Exception {
    try (Gateway gateway = slowModel(4000)) {
      io.modelgate.runtime.repository.ModelVersion version = slowVersion(gateway);
      io.modelgate.runtime.repository.LoadedVersion loaded = version.serving();
      FairShare fair = new FairShare();
      List<FairShare.Place> places = new java.util.ArrayList<>();
      // 3,000 tenants with one request each: 3,000 places of the 3,000 that fair shares leave.
      for (int t = 0; t < 3000; t++) {
        places.add(admit(fair, caller("t" + t), version, loaded));
      }
      assertThat(fair.activeTenants(loaded)).isEqualTo(3000);
      // With 3,001 tenants waiting each may hold max(1, 3000 / 3001) = 1: a second request is refused.
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> admit(fair, caller("t7"), version, loaded))
          .hasMessageContaining("holds its fair share")
          .hasMessageContaining("(1 of 4000 places: its weight 1 of 3000, the weights of the tenants with requests waiting)");
      assertThat(fair.activeTenants(loaded)).isEqualTo(3000);
      // Half of them answered: the other half may now hold two each.
      for (int t = 0; t < 1500; t++) {
        places.get(t).release();
      }
      assertThat(fair.activeTenants(loaded)).isEqualTo(1500);
      places.add(admit(fair, caller("t2000"), version, loaded));
      assertThat(fair.activeTenants(loaded)).isEqualTo(1500);
      for (int t = 1500; t < places.size(); t++) {
        places.get(t).release();
      }
      assertThat(fair.activeTenants(loaded)).isZero();
    }
  }

  @Test
  void aRefusalAtTheShare_asksToRetryOnceTheVersionHasServedTheShare_atItsRecentPace() throws Exception {
    try (Gateway gateway = slowModel(16)) {
      ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("slow")
          .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3)).build();
      for (int i = 0; i < 3; i++) {
        gateway.blocking().modelInfer(request);
      }
      io.modelgate.runtime.repository.ModelVersion version = slowVersion(gateway);
      io.modelgate.runtime.repository.LoadedVersion loaded = version.serving();
      // The pace is recorded just after each answer, and moves while a batch runs: wait until it
      // holds still (the last batch recorded) rather than for a time.
      long pace = -1;
      for (int i = 0; i < 1_000 && (pace <= 0 || pace != loaded.scheduler().nanosPerRequest()); i++) {
        pace = loaded.scheduler().nanosPerRequest();
        Thread.sleep(10);
      }
      assertThat(pace).isPositive().isEqualTo(loaded.scheduler().nanosPerRequest());
      FairShare fair = new FairShare();
      // One tenant waiting: its share is 16 x 3/4 = 12 places; the 13th request is refused.
      for (int i = 0; i < 12; i++) {
        admit(fair, caller("a"), version, loaded);
      }
      io.modelgate.runtime.error.InferenceException refusal = org.junit.jupiter.api.Assertions.assertThrows(
          io.modelgate.runtime.error.InferenceException.class, () -> admit(fair, caller("a"), version, loaded));
      assertThat(refusal.getMessage()).contains("(12 of 16 places: its weight 1 of 1,");
      assertThat(refusal.retryAfter()).isEqualTo(loaded.scheduler().backlogRetryAfter(12))
          .isGreaterThanOrEqualTo(java.time.Duration.ofNanos(Math.min(12 * pace, 10_000_000_000L)));
    }
  }

  @Test
  void tenantsShareTheQueueInProportionToTheirWeights() throws Exception {
    try (Gateway gateway = slowModel(16)) {
      io.modelgate.runtime.repository.ModelVersion version = slowVersion(gateway);
      io.modelgate.runtime.repository.LoadedVersion loaded = version.serving();
      FairShare fair = new FairShare();
      List<FairShare.Place> places = new java.util.ArrayList<>();
      places.add(admit(fair, caller("bronze", 1), version, loaded));
      // Gold (weight 3) and bronze (1) waiting: of the 12 places fair shares leave, gold may hold
      // 12 x 3/4 = 9 (an equal share would be 6) and bronze 12 x 1/4 = 3.
      for (int i = 0; i < 9; i++) {
        places.add(admit(fair, caller("gold", 3), version, loaded));
      }
      assertThat(fair.activeTenants(loaded)).isEqualTo(4);
      io.modelgate.runtime.error.InferenceException refusal = org.junit.jupiter.api.Assertions.assertThrows(
          io.modelgate.runtime.error.InferenceException.class, () -> admit(fair, caller("gold", 3), version, loaded));
      assertThat(refusal.getMessage()).contains("tenant 'gold' holds its fair share of model 'slow' version 1 (9 of 16"
          + " places: its weight 3 of 4, the weights of the tenants with requests waiting)");
      // Its retry waits for one turn of every tenant's share: 9 x 4/3 = 12 requests served.
      assertThat(refusal.retryAfter()).isEqualTo(loaded.scheduler().backlogRetryAfter(12));
      places.add(admit(fair, caller("bronze", 1), version, loaded));
      places.add(admit(fair, caller("bronze", 1), version, loaded));
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> admit(fair, caller("bronze", 1), version, loaded))
          .hasMessageContaining("(3 of 16 places: its weight 1 of 4,");
      // The callers file read again with gold at weight 1: a new count beside the old one's 9
      // places, which still count at weight 3 until answered.
      places.add(admit(fair, caller("gold", 1), version, loaded));
      assertThat(fair.activeTenants(loaded)).isEqualTo(5);
      for (FairShare.Place place : places) {
        place.release();
      }
      assertThat(fair.activeTenants(loaded)).isZero();
    }
  }

  /** An in-process gateway serving model 'slow', one row a batch, with a queue of {@code capacity}. */
  private Gateway slowModel(int capacity) throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Files.writeString(root.resolve("slow/model.yaml"), "max_batch_size: 1\nqueue_capacity: " + capacity + "\n");
    return Gateway.inProcess(root);
  }

  private static io.modelgate.runtime.repository.ModelVersion slowVersion(Gateway gateway) {
    return gateway.repository.model("slow").orElseThrow().version(1).orElseThrow();
  }

  /** Admits at the weight of the caller's callers-file entry. */
  private static FairShare.Place admit(FairShare fair, CallerAuth.Caller caller, io.modelgate.runtime.repository.ModelVersion version,
      io.modelgate.runtime.repository.LoadedVersion loaded) {
    return fair.admit(caller, caller.entry().weight(), version, loaded);
  }

  private static CallerAuth.Caller caller(String tenant) {
    return caller(tenant, 1);
  }

  private static CallerAuth.Caller caller(String tenant, int weight) {
    return new CallerAuth.Caller(tenant, "api_key",
        new CallerPolicy.Tenant(tenant, List.of(), java.util.Set.of(), java.util.Set.of(), null, weight));
  }

  private static void send(Gateway gateway, String key, String tenant, ModelInferRequest request, Map<String, List<Status>> answers,
      CountDownLatch done) {
    gateway.async().withCallCredentials(Gateway.bearer(key)).modelInfer(request, new StreamObserver<>() {
      @Override
      public void onNext(ModelInferResponse value) {}

      @Override
      public void onError(Throwable t) {
        answers.computeIfAbsent(tenant, k -> new CopyOnWriteArrayList<>()).add(Status.fromThrowable(t));
        done.countDown();
      }

      @Override
      public void onCompleted() {
        answers.computeIfAbsent(tenant, k -> new CopyOnWriteArrayList<>()).add(Status.OK);
        done.countDown();
      }
    });
  }
}

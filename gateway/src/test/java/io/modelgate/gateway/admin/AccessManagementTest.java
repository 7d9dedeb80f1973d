package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.proto.admin.v1.AccessReport;
import io.modelgate.proto.admin.v1.AccessTenant;
import io.modelgate.proto.admin.v1.CreateTokenRequest;
import io.modelgate.proto.admin.v1.CreatedToken;
import io.modelgate.proto.admin.v1.GetAccessRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.QuotaMeasure;
import io.modelgate.proto.admin.v1.RevokeTokenRequest;
import io.modelgate.proto.admin.v1.SetQuotaRequest;
import io.modelgate.proto.inference.ModelInferRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tokens and quotas managed through the admin API: made, used, refused for their role, revoked,
 * audited, kept across a restart; a quota set through the API replaces the callers file's and
 * clearing it brings the file's back. Only admins may manage access.
 */
class AccessManagementTest {
  @TempDir Path root;

  private static final String KEY = "mgk_access-test-key-0123456789";
  private static final String FILE_VIEWER = "file-viewer-token-0123456789abcdef";

  private Gateway start(TestClock clock) throws Exception {
    return Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve(".state"), -1)
            .withCallers(root.resolve("callers.yaml"))
            .withAdminTokens(root.resolve("tokens.yaml")),
        clock);
  }

  private static void refused(Runnable call, Status.Code code, String message) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(message);
    });
  }

  private static ModelInferRequest request() {
    return Tensors.affine(1, 2, 3).setModelName("m").build();
  }

  @Test
  void tokensMadeThroughTheApi_work_forTheirRole_untilRevoked_andSurviveARestart() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n  team:\n    api_keys: [" + CallerPolicy.hash(KEY) + "]\n");
    Files.writeString(root.resolve("tokens.yaml"),
        "tokens:\n  grafana: {hash: " + CallerPolicy.hash(FILE_VIEWER) + ", role: viewer}\n");
    TestClock clock = new TestClock();
    String secret;
    try (Gateway gateway = start(clock)) {
      CreatedToken created = gateway.admin().createToken(
          CreateTokenRequest.newBuilder().setName("ci-bot").setRole("operator").build());
      secret = created.getToken();
      assertThat(secret).startsWith("mga_").hasSizeGreaterThan(40);
      var bot = gateway.adminAs(secret);
      assertThat(bot.listModels(ListModelsRequest.getDefaultInstance()).getModelsCount()).isEqualTo(1);
      refused(() -> bot.getAccess(GetAccessRequest.getDefaultInstance()), Status.Code.PERMISSION_DENIED,
          "GetAccess needs the role admin; token 'ci-bot' has operator");
      // Only an admin manages access: a viewer (from the file) may not make tokens.
      refused(() -> gateway.adminAs(FILE_VIEWER).createToken(
              CreateTokenRequest.newBuilder().setName("x").setRole("admin").build()),
          Status.Code.PERMISSION_DENIED, "CreateToken needs the role admin; token 'grafana' has viewer");

      // Names in use, bad names and roles are refused with what was expected.
      refused(() -> gateway.admin().createToken(CreateTokenRequest.newBuilder().setName("admin").setRole("viewer").build()),
          Status.Code.FAILED_PRECONDITION, "token 'admin' exists in the server (its own token)");
      refused(() -> gateway.admin().createToken(CreateTokenRequest.newBuilder().setName("grafana").setRole("viewer").build()),
          Status.Code.FAILED_PRECONDITION, "token 'grafana' exists in the tokens file");
      refused(() -> gateway.admin().createToken(CreateTokenRequest.newBuilder().setName("ci-bot").setRole("viewer").build()),
          Status.Code.FAILED_PRECONDITION, "token 'ci-bot' exists (made through the admin API)");
      refused(() -> gateway.admin().createToken(CreateTokenRequest.newBuilder().setName("a b").setRole("viewer").build()),
          Status.Code.INVALID_ARGUMENT, "name: 'a b' (expected 1 to 64 letters");
      refused(() -> gateway.admin().createToken(CreateTokenRequest.newBuilder().setName("x").setRole("root").build()),
          Status.Code.INVALID_ARGUMENT, "role: 'root' (expected: viewer, operator or admin)");

      AccessReport report = gateway.admin().getAccess(GetAccessRequest.getDefaultInstance());
      assertThat(report.getTokensList()).extracting(t -> t.getName() + ":" + t.getRole() + ":" + t.getSource())
          .containsExactly("admin:admin:server", "grafana:viewer:file", "ci-bot:operator:api");
      assertThat(report.toString()).doesNotContain(secret);
      // The store keeps the hash, never the secret; the change is audited.
      String state = Files.readString(root.resolve(".state/state.json"));
      assertThat(state).contains("ci-bot").doesNotContain(secret);
      assertThat(Files.readString(root.resolve(".state/audit.log"))).contains("CreateToken").contains("token ci-bot (operator)");
    }

    // A restart keeps it.
    try (Gateway gateway = start(clock)) {
      var bot = gateway.adminAs(secret);
      assertThat(bot.listModels(ListModelsRequest.getDefaultInstance()).getModelsCount()).isEqualTo(1);
      refused(() -> gateway.admin().revokeToken(RevokeTokenRequest.newBuilder().setName("grafana").build()),
          Status.Code.FAILED_PRECONDITION, "token 'grafana' is in the tokens file; remove it there");
      refused(() -> gateway.admin().revokeToken(RevokeTokenRequest.newBuilder().setName("nobody").build()),
          Status.Code.NOT_FOUND, "token 'nobody' (tokens made through the admin API: [ci-bot])");
      AccessReport after = gateway.admin().revokeToken(RevokeTokenRequest.newBuilder().setName("ci-bot").build());
      assertThat(after.getTokensList()).extracting(t -> t.getName()).containsExactly("admin", "grafana");
      refused(() -> bot.listModels(ListModelsRequest.getDefaultInstance()), Status.Code.UNAUTHENTICATED, "wrong admin token");
      assertThat(Files.readString(root.resolve(".state/audit.log"))).contains("RevokeToken");
    }
  }

  @Test
  void aQuotaSetThroughTheApi_replacesTheFilesUntilCleared() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    // The file gives the tenant 2 requests a second; the clock stands still, so buckets never refill.
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n  team:\n    api_keys: [" + CallerPolicy.hash(KEY) + "]\n"
        + "    quota: {requests_per_second: 2}\n    weight: 2\n");
    Files.writeString(root.resolve("tokens.yaml"), "tokens: {}\n");
    TestClock clock = new TestClock();
    try (Gateway gateway = start(clock)) {
      AccessReport report = gateway.admin().setQuota(
          SetQuotaRequest.newBuilder().setTenant("team").setRequestsPerSecond(1).build());
      AccessTenant team = report.getTenants(0);
      assertThat(team.getRequestsPerSecond()).isEqualTo(1);
      assertThat(team.getQuotaSource()).isEqualTo("api");
      assertThat(team.getWeight()).as("the file's weight, while the API's quota sets none").isEqualTo(2);
      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setWeight(1001).build()),
          Status.Code.INVALID_ARGUMENT, "weight: 1001 (expected: 1 to 1000, or 0 for the callers file's)");
      AccessTenant weighted = gateway.admin().setQuota(
          SetQuotaRequest.newBuilder().setTenant("team").setRequestsPerSecond(1).setWeight(5).build()).getTenants(0);
      assertThat(weighted.getWeight()).as("the API's weight, in place of the file's").isEqualTo(5);
      assertThat(Files.readString(root.resolve(".state/audit.log"))).contains("weight 5");
      gateway.blockingAs(KEY).modelInfer(request());
      refused(() -> gateway.blockingAs(KEY).modelInfer(request()), Status.Code.RESOURCE_EXHAUSTED,
          "tenant 'team' is over its quota of 1 requests a second");

      // Cleared: the file's 2 a second applies again, with buckets of its own.
      team = gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setClear(true).build()).getTenants(0);
      assertThat(team.getRequestsPerSecond()).isEqualTo(2);
      assertThat(team.getQuotaSource()).isEqualTo("file");
      assertThat(team.getWeight()).as("the file's again").isEqualTo(2);
      gateway.blockingAs(KEY).modelInfer(request());
      gateway.blockingAs(KEY).modelInfer(request());
      refused(() -> gateway.blockingAs(KEY).modelInfer(request()), Status.Code.RESOURCE_EXHAUSTED,
          "tenant 'team' is over its quota of 2 requests a second");

      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("ghost").setInFlight(1).build()),
          Status.Code.NOT_FOUND, "tenant 'ghost' (the callers file's: [team])");
      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setRowsPerSecond(-1).build()),
          Status.Code.INVALID_ARGUMENT, "rows_per_second: -1.0 (expected: 0 for no limit, up to 1000000)");
      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setClear(true).setInFlight(3).build()),
          Status.Code.INVALID_ARGUMENT, "clear: a quota to clear takes no limits");
      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setClear(true)
              .addFromFile(QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT).build()),
          Status.Code.INVALID_ARGUMENT, "clear: a quota to clear takes no limits, no weight and no from_file");
      assertThat(Files.readString(root.resolve(".state/audit.log")))
          .contains("SetQuota").contains("tenant team: requests/s 1, rows/s 0, in flight 0 (0: no limit), weight the callers file\\u0027s")
          .contains("tenant team: cleared (the callers file\\u0027s applies)");
    }
  }
  @Test
  void measuresLeftToTheFile_stayTheFiles_soAWeightAloneKeepsTheFilesLimits() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    // The file: 2 requests a second and 4 in flight, weight 2. The clock stands still.
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n  team:\n    api_keys: [" + CallerPolicy.hash(KEY) + "]\n"
        + "    quota: {requests_per_second: 2, in_flight: 4}\n    weight: 2\n");
    Files.writeString(root.resolve("tokens.yaml"), "tokens: {}\n");
    TestClock clock = new TestClock();
    List<QuotaMeasure> all = List.of(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND,
        QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND, QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT);
    try (Gateway gateway = start(clock)) {
      // A weight alone: every limit stays the file's.
      AccessTenant team = gateway.admin().setQuota(
          SetQuotaRequest.newBuilder().setTenant("team").setWeight(5).addAllFromFile(all).build()).getTenants(0);
      assertThat(team.getWeight()).isEqualTo(5);
      assertThat(team.getWeightSetThroughApi()).isTrue();
      assertThat(team.getRequestsPerSecond()).isEqualTo(2);
      assertThat(team.getInFlight()).isEqualTo(4);
      assertThat(team.getQuotaSource()).isEqualTo("file");
      assertThat(team.getSetThroughApiList()).isEmpty();
      gateway.blockingAs(KEY).modelInfer(request());
      gateway.blockingAs(KEY).modelInfer(request());
      refused(() -> gateway.blockingAs(KEY).modelInfer(request()), Status.Code.RESOURCE_EXHAUSTED,
          "tenant 'team' is over its quota of 2 requests a second");

      // No rate limit set through the API (0), in flight still the file's, weight the file's again.
      team = gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setRequestsPerSecond(0)
          .addFromFile(QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND)
          .addFromFile(QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT).build()).getTenants(0);
      assertThat(team.getRequestsPerSecond()).isZero();
      assertThat(team.getInFlight()).isEqualTo(4);
      assertThat(team.getQuotaSource()).isEqualTo("api");
      assertThat(team.getSetThroughApiList()).containsExactly(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND);
      assertThat(team.getWeight()).isEqualTo(2);
      assertThat(team.getWeightSetThroughApi()).isFalse();
      for (int i = 0; i < 5; i++) {
        gateway.blockingAs(KEY).modelInfer(request());
      }
      assertThat(Files.readString(root.resolve(".state/audit.log"))).contains(
          "tenant team: requests/s the callers file\\u0027s, rows/s the callers file\\u0027s, in flight the callers"
              + " file\\u0027s (0: no limit), weight 5",
          "tenant team: requests/s 0, rows/s the callers file\\u0027s, in flight the callers file\\u0027s (0: no limit),"
              + " weight the callers file\\u0027s");

      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").setRequestsPerSecond(3)
              .addFromFile(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND).build()),
          Status.Code.INVALID_ARGUMENT,
          "requests_per_second: 3, and QUOTA_MEASURE_REQUESTS_PER_SECOND in from_file (expected: one or the other)");
      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team").addAllFromFile(all).build()),
          Status.Code.INVALID_ARGUMENT, "nothing to set: every measure is left to the callers file and no weight is given");
      refused(() -> gateway.admin().setQuota(SetQuotaRequest.newBuilder().setTenant("team")
              .addFromFile(QuotaMeasure.QUOTA_MEASURE_UNSPECIFIED).build()),
          Status.Code.INVALID_ARGUMENT, "from_file: QUOTA_MEASURE_UNSPECIFIED (expected: QUOTA_MEASURE_REQUESTS_PER_SECOND");
    }
  }
}

package io.modelgate.gateway.callers;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.GetUsageRequest;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Tenants' quotas: requests and rows a second, requests in flight; refusals say when to retry. */
class QuotasTest {
  @TempDir Path root;

  private static final String KEY = "mgk_quota-key-0123456789abcdef0123";

  private static ModelInferRequest rows(int n) {
    float[] values = new float[n * 3];
    return ModelInferRequest.newBuilder().setModelName("batching")
        .addInputs(Tensors.input("x", "FP32", n, 3)).addRawInputContents(Tensors.rawFloats(values)).build();
  }

  private static long retryMillis(StatusRuntimeException e) {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    assertThat(status).isNotNull();
    for (com.google.protobuf.Any detail : status.getDetailsList()) {
      if (detail.is(RetryInfo.class)) {
        try {
          com.google.protobuf.Duration delay = detail.unpack(RetryInfo.class).getRetryDelay();
          return delay.getSeconds() * 1000 + delay.getNanos() / 1_000_000;
        } catch (com.google.protobuf.InvalidProtocolBufferException ex) {
          throw new AssertionError(ex);
        }
      }
    }
    throw new AssertionError("no RetryInfo in " + status);
  }

  @Test
  void aTenantOverItsRate_isRefusedAtOnce_withWhenToRetry_andOthersAreNotAffected() throws Exception {
    Gateway.write(root, "batching", 1, Gateway.slowAffine());
    Files.writeString(root.resolve("callers.yaml"), "tenants:\n"
        + "  limited:\n    api_keys: [" + CallerPolicy.hash(KEY) + "]\n    quota: {requests_per_second: 10, rows_per_second: 16}\n"
        + "  free:\n    api_keys: [" + CallerPolicy.hash(KEY + "-free") + "]\n");
    TestClock clock = new TestClock();
    try (Gateway gateway = Gateway.inProcessWithCallers(root, root.resolve("callers.yaml"), clock)) {
      // 16 rows a second: four requests of 4 rows, then the fifth is refused.
      for (int i = 0; i < 4; i++) {
        gateway.blockingAs(KEY).modelInfer(rows(4));
      }
      assertThatThrownBy(() -> gateway.blockingAs(KEY).modelInfer(rows(4)))
          .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
            assertThat(e.getStatus().getDescription()).startsWith("tenant 'limited' is over its quota of 16 rows a second; retry in ");
            // An empty bucket refills 4 rows in a quarter of a second.
            assertThat(retryMillis(e)).isEqualTo(250);
          });
      // Another tenant is not affected.
      for (int i = 0; i < 20; i++) {
        gateway.blockingAs(KEY + "-free").modelInfer(rows(4));
      }
      // A quarter of a second later the retry succeeds.
      clock.millis += 250;
      gateway.blockingAs(KEY).modelInfer(rows(4));

      // 10 requests a second: after a second's refill, 1-row requests run into that limit.
      clock.millis += 1000;
      int admitted = 0;
      for (int i = 0; i < 15; i++) {
        try {
          gateway.blockingAs(KEY).modelInfer(rows(1));
          admitted++;
        } catch (StatusRuntimeException e) {
          assertThat(e.getStatus().getDescription()).contains("over its quota of 10 requests a second");
          assertThat(retryMillis(e)).isEqualTo(100);
        }
      }
      assertThat(admitted).isEqualTo(10);

      // Refusals are counted for the tenant as RESOURCE_EXHAUSTED.
      var record = gateway.admin().getUsage(GetUsageRequest.newBuilder().setSince("2000-01-01").setTenant("limited").build())
          .getRecords(0);
      assertThat(record.getRequests()).isEqualTo(4 + 1 + 1 + 15);
      assertThat(record.getErrorsMap()).containsEntry("RESOURCE_EXHAUSTED", 6L);
    }
  }

  @Test
  void requestsInFlight_areCappedAndFreedWhenAnswered() {
    TestClock clock = new TestClock();
    Quotas quotas = new Quotas(clock);
    CallerPolicy.Tenant tenant = new CallerPolicy.Tenant("t", List.of(), Set.of(), Set.of(), new CallerPolicy.Quota(0, 0, 2));
    CallerAuth.Caller caller = new CallerAuth.Caller("t", "api_key", tenant);
    Quotas.Admission first = quotas.admit(caller, 1);
    Quotas.Admission second = quotas.admit(caller, 1);
    assertThatThrownBy(() -> quotas.admit(caller, 1)).isInstanceOfSatisfying(InferenceException.class, e -> {
      assertThat(e.code()).isEqualTo(ErrorCode.RESOURCE_EXHAUSTED);
      assertThat(e.getMessage()).isEqualTo("tenant 't' has 2 requests in flight, its quota; retry when one is answered");
      assertThat(e.retryAfter()).isNotNull();
    });
    first.release();
    Quotas.Admission third = quotas.admit(caller, 1);
    second.release();
    third.release();
    // Without a quota, nothing is counted.
    CallerAuth.Caller free = new CallerAuth.Caller("f", "api_key",
        new CallerPolicy.Tenant("f", List.of(), Set.of(), Set.of(), CallerPolicy.Quota.NONE));
    for (int i = 0; i < 1000; i++) {
      quotas.admit(free, 1);
    }
  }

  private static void overQuota(Quotas quotas, CallerAuth.Caller caller, String message) {
    assertThatThrownBy(() -> quotas.admit(caller, 1)).isInstanceOfSatisfying(InferenceException.class,
        e -> assertThat(e.getMessage()).startsWith(message));
  }

  @Test
  void theAdminApisQuota_replacesTheFilesMeasureByMeasure_andKeepsBucketsWhileTheLimitsStayTheSame() {
    java.util.Map<String, CallerPolicy.QuotaOverride> api = new java.util.concurrent.ConcurrentHashMap<>();
    // The clock stands still: buckets never refill.
    Quotas quotas = new Quotas(new TestClock(), api::get, tenant -> null);
    CallerPolicy.Tenant file = new CallerPolicy.Tenant("t", List.of(), Set.of(), Set.of(), new CallerPolicy.Quota(2, 0, 5));
    CallerAuth.Caller caller = new CallerAuth.Caller("t", "api_key", file);
    quotas.admit(caller, 1);
    quotas.admit(caller, 1);
    overQuota(quotas, caller, "tenant 't' is over its quota of 2 requests a second");

    // The API sets the same rate and leaves in flight to the file: the limits in force are the
    // same, so the emptied bucket is kept (a change that comes to the same quota grants nothing).
    api.put("t", new CallerPolicy.QuotaOverride(new CallerPolicy.Quota(2, 0, 0), false, true, true));
    overQuota(quotas, caller, "tenant 't' is over its quota of 2 requests a second");

    // No rate (0 set through the API) over the file's 2 a second; in flight stays the file's 5.
    api.put("t", new CallerPolicy.QuotaOverride(CallerPolicy.Quota.NONE, false, true, true));
    List<Quotas.Admission> held = new java.util.ArrayList<>();
    for (int i = 0; i < 5; i++) {
      held.add(quotas.admit(caller, 1));
    }
    overQuota(quotas, caller, "tenant 't' has 5 requests in flight, its quota");
    held.forEach(Quotas.Admission::release);

    // Every measure set through the API: in flight 0 is no limit, whatever the file says.
    api.put("t", CallerPolicy.QuotaOverride.of(new CallerPolicy.Quota(0, 3, 0)));
    for (int i = 0; i < 3; i++) {
      held.add(quotas.admit(caller, 1));
    }
    overQuota(quotas, caller, "tenant 't' is over its quota of 3 rows a second");

    // Cleared: the file's again, a new bucket of its own for its 2 a second.
    api.remove("t");
    quotas.admit(caller, 1);
    quotas.admit(caller, 1);
    overQuota(quotas, caller, "tenant 't' is over its quota of 2 requests a second");
  }

  @Test
  void tenantsTheCallersFileNoLongerNames_areLetGo_whenAQuotaIsFirstResolvedUnderTheNewFile() {
    CallerPolicy.Quota twoASecond = new CallerPolicy.Quota(2, 0, 0);
    CallerPolicy.Tenant a = new CallerPolicy.Tenant("a", List.of(), Set.of(), Set.of(), twoASecond);
    CallerPolicy.Tenant b = new CallerPolicy.Tenant("b", List.of(), Set.of(), Set.of(), twoASecond);
    java.util.concurrent.atomic.AtomicReference<java.util.Map<String, CallerPolicy.Tenant>> file =
        new java.util.concurrent.atomic.AtomicReference<>(java.util.Map.of("a", a, "b", b));
    Quotas quotas = new Quotas(new TestClock(), tenant -> null, tenant -> null, file::get);
    quotas.admit(new CallerAuth.Caller("a", "api_key", a), 1);
    quotas.admit(new CallerAuth.Caller("b", "api_key", b), 1);
    assertThat(quotas.tenantsKept()).isEqualTo(2);

    // Read again without "a", and "b" with a new entry (as every reading makes): b's first request
    // resolves its quota again, and a's entry goes.
    CallerPolicy.Tenant bAgain = new CallerPolicy.Tenant("b", List.of(), Set.of(), Set.of(), new CallerPolicy.Quota(2, 0, 0));
    file.set(java.util.Map.of("b", bAgain));
    CallerAuth.Caller caller = new CallerAuth.Caller("b", "api_key", bAgain);
    // The same limits: b keeps its bucket (one token left of two), and only b is kept.
    quotas.admit(caller, 1);
    assertThat(quotas.tenantsKept()).isEqualTo(1);
    overQuota(quotas, caller, "tenant 'b' is over its quota of 2 requests a second");

    // Without a callers file to go by, nothing is let go.
    Quotas unpruned = new Quotas(new TestClock(), tenant -> null, tenant -> null);
    unpruned.admit(new CallerAuth.Caller("a", "api_key", a), 1);
    unpruned.admit(new CallerAuth.Caller("b", "api_key", bAgain), 1);
    assertThat(unpruned.tenantsKept()).isEqualTo(2);
  }

  @Test
  void aTenantsWeight_isTheAdminApis_elseTheCallersFiles() {
    java.util.Map<String, Integer> api = new java.util.concurrent.ConcurrentHashMap<>();
    Quotas quotas = new Quotas(new TestClock(), tenant -> null, api::get);
    CallerAuth.Caller gold = new CallerAuth.Caller("gold", "api_key",
        new CallerPolicy.Tenant("gold", List.of(), Set.of(), Set.of(), CallerPolicy.Quota.NONE, 3));
    assertThat(quotas.weight(gold)).isEqualTo(3);
    api.put("gold", 5);
    assertThat(quotas.weight(gold)).isEqualTo(5);
    api.remove("gold");
    assertThat(quotas.weight(gold)).isEqualTo(3);
    assertThat(quotas.weight(CallerAuth.Caller.ANONYMOUS)).as("no callers file").isEqualTo(1);
  }
}

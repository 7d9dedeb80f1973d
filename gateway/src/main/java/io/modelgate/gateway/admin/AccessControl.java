package io.modelgate.gateway.admin;

import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.config.Secrets;
import io.modelgate.gateway.config.WatchedFile;
import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.control.ControlStore;
import io.modelgate.proto.admin.v1.AccessReport;
import io.modelgate.proto.admin.v1.AccessTenant;
import io.modelgate.proto.admin.v1.AccessToken;
import io.modelgate.proto.admin.v1.CreatedToken;
import io.modelgate.proto.admin.v1.ManagedAccess;
import io.modelgate.proto.admin.v1.ManagedQuota;
import io.modelgate.proto.admin.v1.ManagedToken;
import io.modelgate.proto.admin.v1.QuotaMeasure;
import io.modelgate.proto.admin.v1.SetQuotaRequest;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.threads.DaemonThreads;
import java.security.SecureRandom;
import java.time.Clock;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Who has access, in one place: the admin tokens (the server's own, the tokens file's, and those
 * made through the admin API), the callers file's tenants, and the quotas set through the admin
 * API in place of the file's.
 *
 * <p>What the admin API changes ({@link ManagedAccess}) lives in the control store, changed by
 * compare-and-swap and audited: the state directory of one process, or etcd, where every replica of
 * a fleet reads it again as soon as etcd's watch tells it of a change ({@link
 * ControlStore#follow}): a token revoked on one replica is refused by every other within moments.
 * The files stay the operator's: the server never writes them.
 *
 * <p>Threads: the admin executor changes access; request threads read {@link #tokens}, {@link
 * #quota} and {@link #weight}, which read a volatile snapshot and never block.
 */
public final class AccessControl implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(AccessControl.class);
  private static final Pattern TOKEN_NAME = Pattern.compile("[A-Za-z0-9._-]{1,64}");
  private static final int ATTEMPTS = 5;

  /** The managed access as last read, with what request threads need from it. */
  private record Snapshot(ControlStore.StoredAccess stored, List<AdminTokens.Token> tokens,
      Map<String, CallerPolicy.QuotaOverride> quotas, Map<String, Integer> weights) {
    static Snapshot of(ControlStore.StoredAccess stored) {
      List<AdminTokens.Token> tokens = new ArrayList<>();
      for (Map.Entry<String, ManagedToken> e : new TreeMap<>(stored.access().getTokensMap()).entrySet()) {
        AdminTokens.Role role = AdminTokens.Role.named(e.getValue().getRole());
        if (role != null) {
          tokens.add(new AdminTokens.Token(e.getKey(), e.getValue().getSha256().toByteArray(), role));
        }
      }
      Map<String, CallerPolicy.QuotaOverride> quotas = new HashMap<>();
      Map<String, Integer> weights = new HashMap<>();
      stored.access().getQuotasMap().forEach((tenant, q) -> {
        CallerPolicy.QuotaOverride override = override(q);
        if (override.setsAny()) {
          quotas.put(tenant, override);
        }
        if (q.getWeight() > 0) {
          weights.put(tenant, Math.min(q.getWeight(), CallerPolicy.MAX_WEIGHT));
        }
      });
      return new Snapshot(stored, List.copyOf(tokens), Map.copyOf(quotas), Map.copyOf(weights));
    }
  }

  private final WatchedFile<AdminTokens> tokensFile;
  private final WatchedFile<CallerPolicy> callers;
  private final ControlPlane control;
  private final Clock clock;
  private final SecureRandom random = new SecureRandom();
  private final AdminTokens primaryOnly;
  private volatile Snapshot current = Snapshot.of(ControlStore.StoredAccess.NONE);
  private java.util.concurrent.ExecutorService refresher;
  /** Whether the last read failed (once per outage it is logged); the refresher's. */
  private boolean failing;

  /**
   * @param primarySecret the server's own admin token
   * @param tokensFile the admin tokens file, or null
   * @param callers the callers file, or null (the inference port is open)
   */
  public AccessControl(String primarySecret, WatchedFile<AdminTokens> tokensFile, WatchedFile<CallerPolicy> callers,
      ControlPlane control, Clock clock) {
    this.tokensFile = tokensFile;
    this.callers = callers;
    this.control = control;
    this.clock = clock;
    this.primaryOnly = AdminTokens.primary(primarySecret);
  }

  /**
   * Reads the managed access from the store, and, when other replicas share it, again on a thread
   * of its own ({@code modelgate-access-refresh}) whenever the store says it may have changed.
   */
  public AccessControl start(boolean shared) {
    refresh();
    if (shared) {
      refresher = DaemonThreads.single("modelgate-access-refresh");
      control.store().follow(ControlStore.Topic.ACCESS, refresher, this::refreshQuietly);
    }
    return this;
  }

  /** Reads the managed access again, saying once per outage that it cannot. The refresher's. */
  private void refreshQuietly() {
    try {
      refresh();
      if (failing) {
        failing = false;
        log.info("managed access read again from the control store");
      }
    } catch (RuntimeException e) {
      if (Thread.currentThread().isInterrupted()) {
        return; // stopping: the read was cut short, not refused
      }
      if (!failing) {
        failing = true;
        log.warn("managed access cannot be read ({}); the last read stays in force until it can", e.getMessage());
      }
    }
  }

  /** Reads the managed access from the store now. */
  public void refresh() {
    ControlStore.StoredAccess stored = control.access();
    if (stored.revision() != current.stored().revision()) {
      current = Snapshot.of(stored);
    }
  }

  /** The server's own token and the tokens file's (the ones the admin API does not manage). */
  private AdminTokens fileTokens() {
    return tokensFile != null ? tokensFile.get() : primaryOnly;
  }

  /** Every admin token in force: the server's own, the tokens file's, the admin API's. */
  public AdminTokens tokens() {
    AdminTokens files = fileTokens();
    List<AdminTokens.Token> managed = current.tokens();
    return managed.isEmpty() ? files : files.with(managed);
  }

  /** A stored quota as request threads apply it. */
  private static CallerPolicy.QuotaOverride override(ManagedQuota q) {
    List<QuotaMeasure> fromFile = q.getFromFileList();
    return new CallerPolicy.QuotaOverride(
        new CallerPolicy.Quota(q.getRequestsPerSecond(), q.getRowsPerSecond(), q.getInFlight()),
        fromFile.contains(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND),
        fromFile.contains(QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND),
        fromFile.contains(QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT));
  }

  /**
   * The quota set through the admin API for {@code tenant}, measure by measure, or null where it
   * sets no measure (the callers file's quota applies).
   */
  public CallerPolicy.QuotaOverride quota(String tenant) {
    Map<String, CallerPolicy.QuotaOverride> quotas = current.quotas();
    return quotas.isEmpty() ? null : quotas.get(tenant);
  }

  /** The weight set through the admin API for {@code tenant}, or null (the callers file's applies). */
  public Integer weight(String tenant) {
    Map<String, Integer> weights = current.weights();
    return weights.isEmpty() ? null : weights.get(tenant);
  }

  // ---- changes (admin executor) ----

  /** Makes a token; returns its secret, which is not kept. */
  public CreatedToken createToken(String name, String roleName, String caller) {
    if (!TOKEN_NAME.matcher(name).matches()) {
      throw InferenceException.invalidArgument("name: " + InferenceException.quote(name)
          + " (expected 1 to 64 letters, digits, '.', '_' or '-')");
    }
    AdminTokens.Role role = AdminTokens.Role.named(roleName);
    if (role == null) {
      throw InferenceException.invalidArgument("role: " + InferenceException.quote(roleName)
          + " (expected: viewer, operator or admin)");
    }
    AdminTokens files = fileTokens();
    for (AdminTokens.Token token : files.tokens()) {
      if (token.name().equals(name)) {
        throw InferenceException.failedPrecondition("token '" + name + "' exists in "
            + (name.equals("admin") ? "the server (its own token)" : "the tokens file") + "; choose another name");
      }
    }
    byte[] bytes = new byte[32];
    random.nextBytes(bytes);
    String secret = "mga_" + Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
    change(caller, "CreateToken", "token " + name + " (" + role.configName() + ")", access -> {
      if (access.containsTokens(name)) {
        throw InferenceException.failedPrecondition("token '" + name + "' exists (made through the admin API);"
            + " revoke it first, or choose another name");
      }
      return access.toBuilder().putTokens(name, ManagedToken.newBuilder()
          .setSha256(com.google.protobuf.ByteString.copyFrom(Secrets.sha256(secret)))
          .setRole(role.configName())
          .setCreatedBy(caller)
          .setCreatedAtMs(clock.millis())
          .build()).build();
    });
    return CreatedToken.newBuilder().setName(name).setRole(role.configName()).setToken(secret).build();
  }

  /** Revokes a token made through the admin API. */
  public AccessReport revokeToken(String name, String caller) {
    change(caller, "RevokeToken", "token " + name, access -> {
      if (!access.containsTokens(name)) {
        AdminTokens files = fileTokens();
        for (AdminTokens.Token token : files.tokens()) {
          if (token.name().equals(name)) {
            throw InferenceException.failedPrecondition("token '" + name + "' is "
                + (name.equals("admin") ? "the server's own (change --admin-token-file)" : "in the tokens file; remove it there"));
          }
        }
        throw InferenceException.notFound("token " + InferenceException.quote(name)
            + " (tokens made through the admin API: " + new java.util.TreeSet<>(access.getTokensMap().keySet()) + ")");
      }
      return access.toBuilder().removeTokens(name).build();
    });
    return report();
  }

  /** Sets or clears a tenant's quota in place of the callers file's. */
  public AccessReport setQuota(SetQuotaRequest request, String caller) {
    if (callers == null) {
      throw InferenceException.failedPrecondition(
          "the inference port is open (no --callers file): quotas apply to the tenants of a callers file");
    }
    String tenant = request.getTenant();
    if (!callers.get().tenants().containsKey(tenant)) {
      throw InferenceException.notFound("tenant " + InferenceException.quote(tenant) + " (the callers file's: "
          + new java.util.TreeSet<>(callers.get().tenants().keySet()) + ")");
    }
    if (request.getClear()) {
      if (request.getRequestsPerSecond() != 0 || request.getRowsPerSecond() != 0 || request.getInFlight() != 0
          || request.getWeight() != 0 || request.getFromFileCount() != 0) {
        throw InferenceException.invalidArgument("clear: a quota to clear takes no limits, no weight and no from_file");
      }
      if (current.stored().access().containsQuotas(tenant) || control.access().access().containsQuotas(tenant)) {
        change(caller, "SetQuota", "tenant " + tenant + ": cleared (the callers file's applies)",
            access -> access.toBuilder().removeQuotas(tenant).build());
      }
      return report();
    }
    check(request.getRequestsPerSecond(), "requests_per_second");
    check(request.getRowsPerSecond(), "rows_per_second");
    if (request.getInFlight() < 0) {
      throw InferenceException.invalidArgument("in_flight: " + request.getInFlight() + " (expected: 0 for none, or more)");
    }
    if (request.getWeight() < 0 || request.getWeight() > CallerPolicy.MAX_WEIGHT) {
      throw InferenceException.invalidArgument("weight: " + request.getWeight() + " (expected: 1 to " + CallerPolicy.MAX_WEIGHT
          + ", or 0 for the callers file's)");
    }
    java.util.EnumSet<QuotaMeasure> fromFile = java.util.EnumSet.noneOf(QuotaMeasure.class);
    for (QuotaMeasure measure : request.getFromFileList()) {
      if (measure == QuotaMeasure.QUOTA_MEASURE_UNSPECIFIED || measure == QuotaMeasure.UNRECOGNIZED) {
        throw InferenceException.invalidArgument("from_file: " + measure
            + " (expected: QUOTA_MEASURE_REQUESTS_PER_SECOND, QUOTA_MEASURE_ROWS_PER_SECOND or QUOTA_MEASURE_IN_FLIGHT)");
      }
      fromFile.add(measure);
    }
    fromFileIsZero(fromFile, QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND, request.getRequestsPerSecond(), "requests_per_second");
    fromFileIsZero(fromFile, QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND, request.getRowsPerSecond(), "rows_per_second");
    fromFileIsZero(fromFile, QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT, request.getInFlight(), "in_flight");
    if (fromFile.size() == 3 && request.getWeight() == 0) {
      throw InferenceException.invalidArgument("nothing to set: every measure is left to the callers file and no weight"
          + " is given (to return to the callers file's quota and weight, clear the tenant's)");
    }
    ManagedQuota quota = ManagedQuota.newBuilder()
        .setRequestsPerSecond(request.getRequestsPerSecond())
        .setRowsPerSecond(request.getRowsPerSecond())
        .setInFlight(request.getInFlight())
        .setWeight(request.getWeight())
        .addAllFromFile(fromFile)
        .setSetBy(caller)
        .setSetAtMs(clock.millis())
        .build();
    String theFiles = "the callers file's";
    change(caller, "SetQuota", String.format(Locale.ROOT,
            "tenant %s: requests/s %s, rows/s %s, in flight %s (0: no limit), weight %s", tenant,
            fromFile.contains(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND) ? theFiles : trim(quota.getRequestsPerSecond()),
            fromFile.contains(QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND) ? theFiles : trim(quota.getRowsPerSecond()),
            fromFile.contains(QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT) ? theFiles : String.valueOf(quota.getInFlight()),
            quota.getWeight() == 0 ? theFiles : String.valueOf(quota.getWeight())),
        access -> access.toBuilder().putQuotas(tenant, quota).build());
    return report();
  }

  private static void fromFileIsZero(java.util.Set<QuotaMeasure> fromFile, QuotaMeasure measure, double value, String field) {
    if (value != 0 && fromFile.contains(measure)) {
      throw InferenceException.invalidArgument(field + ": " + trim(value) + ", and " + measure
          + " in from_file (expected: one or the other)");
    }
  }

  private static void check(double rate, String field) {
    if (!(rate >= 0) || rate > CallerPolicy.MAX_RATE) {
      throw InferenceException.invalidArgument(field + ": " + rate + " (expected: 0 for no limit, up to "
          + (long) CallerPolicy.MAX_RATE + ")");
    }
  }

  private static String trim(double value) {
    return value == Math.rint(value) ? String.valueOf((long) value) : String.valueOf(value);
  }

  /**
   * Applies {@code edit} to the stored access by compare-and-swap, reading again and retrying when
   * another replica changed it first; installs the result here at once.
   */
  private void change(String caller, String action, String detail, UnaryOperator<ManagedAccess> edit) {
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
      ControlStore.StoredAccess stored = control.access();
      ManagedAccess next = edit.apply(stored.access());
      try {
        long revision = control.commitAccess(next, stored.revision(), caller, action, detail);
        current = Snapshot.of(new ControlStore.StoredAccess(next, revision));
        log.info("{} by {}: {}", action, caller, detail);
        return;
      } catch (ControlStore.AccessConflict e) {
        // Another replica changed access in between: read it again and redo the edit.
      }
    }
    throw InferenceException.aborted("access kept changing under this change (" + ATTEMPTS + " tries); retry");
  }

  // ---- report ----

  /** Who has access: tokens (never a hash or secret) and tenants, with where each comes from. */
  public AccessReport report() {
    AccessReport.Builder report = AccessReport.newBuilder();
    AdminTokens files = fileTokens();
    for (AdminTokens.Token token : files.tokens()) {
      report.addTokens(AccessToken.newBuilder().setName(token.name()).setRole(token.role().configName())
          .setSource(token.name().equals("admin") ? "server" : "file"));
    }
    ManagedAccess managed = current.stored().access();
    new TreeMap<>(managed.getTokensMap()).forEach((name, token) -> report.addTokens(AccessToken.newBuilder()
        .setName(name).setRole(token.getRole()).setSource("api")
        .setCreatedBy(token.getCreatedBy()).setCreatedAtMs(token.getCreatedAtMs())));
    if (tokensFile != null) {
      report.setTokensFile(tokensFile.file().toString());
    }
    if (callers != null) {
      CallerPolicy policy = callers.get();
      report.setCallersFile(callers.file().toString());
      policy.methods().forEach(m -> report.addIdentify(m.name().toLowerCase(Locale.ROOT)));
      for (CallerPolicy.Tenant tenant : new TreeMap<>(policy.tenants()).values()) {
        CallerPolicy.QuotaOverride api = quota(tenant.name());
        CallerPolicy.Quota quota = api != null ? api.over(tenant.quota()) : tenant.quota();
        Integer apiWeight = weight(tenant.name());
        List<QuotaMeasure> setThroughApi = new ArrayList<>();
        if (api != null) {
          if (!api.requestsFromFile()) {
            setThroughApi.add(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND);
          }
          if (!api.rowsFromFile()) {
            setThroughApi.add(QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND);
          }
          if (!api.inFlightFromFile()) {
            setThroughApi.add(QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT);
          }
        }
        report.addTenants(AccessTenant.newBuilder()
            .setName(tenant.name())
            .addAllModels(new java.util.TreeSet<>(tenant.models()))
            .setApiKeys(tenant.keyHashes().size())
            .addAllCertificates(new java.util.TreeSet<>(tenant.certificates()))
            .setRequestsPerSecond(quota.requestsPerSecond())
            .setRowsPerSecond(quota.rowsPerSecond())
            .setInFlight(quota.inFlight())
            .setQuotaSource(api != null ? "api" : tenant.quota().limits() ? "file" : "")
            .addAllSetThroughApi(setThroughApi)
            .setWeight(apiWeight != null ? apiWeight : tenant.weight())
            .setWeightSetThroughApi(apiWeight != null));
      }
    }
    return report.build();
  }

  @Override
  public void close() {
    if (refresher != null) {
      refresher.shutdownNow();
    }
  }
}

package io.modelgate.gateway.server;

import io.modelgate.gateway.tls.TlsSettings;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The admin port, the metrics port and the state directory.
 *
 * @param host admin address; loopback by default, so that only local operators reach it
 * @param port admin port; 0 picks a free one
 * @param token the bearer token admin calls must present
 * @param tls null for plaintext
 * @param metricsHost address of the HTTP {@code /metrics} endpoint
 * @param metricsPort its port; 0 picks a free one, -1 disables it
 * @param stateDirectory where routing policies, rollouts and the audit log are kept with the
 *     file control store
 * @param control the control store (the state directory, or etcd) and this replica's name
 * @param payloadLogDirectory where models' sampled payload logs are written (a folder per model)
 * @param callersFile the callers file: who may call the inference port (see {@link
 *     io.modelgate.gateway.callers.CallerPolicy}); null: anyone, as the tenant {@code anonymous}
 * @param accessLogRate the share of requests written to the access log (logger {@code
 *     modelgate.access}), 0 to 1
 * @param tokensFile more admin tokens, with roles (see {@link
 *     io.modelgate.gateway.admin.AdminTokens}); null: only {@code token}, as {@code admin}
 * @param warmupRounds rounds of calls to its own admin API and HTTP endpoints before the server
 *     reports ready (see {@link StartupWarmup}); 0: none
 * @param usageRetention how long the usage ledger keeps an hour, in the state directory and, in a
 *     fleet, in etcd; zero keeps every hour (the ledger then grows without bound)
 * @param requestMemoryBytes the most bytes of request messages held at once, from admission to
 *     answer, across versions (see {@link io.modelgate.gateway.inference.RequestMemory})
 * @param receiveTimeout how slowly a request message may arrive on the inference port before it is
 *     cancelled and what it gathered freed
 * @param repositoryPoll how often the model repository folder is looked at for changes, which are
 *     then loaded, loaded again or unloaded (see {@link io.modelgate.gateway.admin.RepositoryPoll});
 *     zero: never (changes wait for an operator's load)
 * @param traces where and how often inference calls are recorded as spans (see {@link
 *     io.modelgate.gateway.tracing.Tracing}); {@link io.modelgate.gateway.tracing.TraceSettings#OFF}: none
 */
public record AdminSettings(
    String host,
    int port,
    String token,
    TlsSettings tls,
    String metricsHost,
    int metricsPort,
    Path stateDirectory,
    io.modelgate.gateway.control.ControlSettings control,
    Path payloadLogDirectory,
    Path callersFile,
    double accessLogRate,
    Path tokensFile,
    int warmupRounds,
    java.time.Duration usageRetention,
    long requestMemoryBytes,
    io.modelgate.gateway.inference.ReceiveTimeout receiveTimeout,
    java.time.Duration repositoryPoll,
    io.modelgate.gateway.tracing.TraceSettings traces) {
  public static final int DEFAULT_PORT = 8003;
  /** The most warm-up rounds. */
  public static final int MAX_WARMUP_ROUNDS = 100_000;
  public static final int DEFAULT_METRICS_PORT = 8002;
  /** The usage ledger's retention by default: 400 days, a year and a month to compare it with. */
  public static final java.time.Duration DEFAULT_USAGE_RETENTION = java.time.Duration.ofDays(400);
  /** The shortest time between two looks at the repository folder. */
  public static final java.time.Duration MIN_REPOSITORY_POLL = java.time.Duration.ofSeconds(1);

  public AdminSettings {
    Objects.requireNonNull(host, "admin host");
    Objects.requireNonNull(token, "admin token");
    Objects.requireNonNull(metricsHost, "metrics host");
    Objects.requireNonNull(stateDirectory, "state directory");
    Objects.requireNonNull(control, "control store settings");
    Objects.requireNonNull(payloadLogDirectory, "payload log directory");
    Objects.requireNonNull(usageRetention, "usage retention");
    Objects.requireNonNull(receiveTimeout, "receive timeout");
    Objects.requireNonNull(repositoryPoll, "repository poll");
    Objects.requireNonNull(traces, "traces");
    if (repositoryPoll.isNegative() || (!repositoryPoll.isZero() && repositoryPoll.compareTo(MIN_REPOSITORY_POLL) < 0)) {
      throw new IllegalArgumentException("repository poll: " + io.modelgate.gateway.config.TimeSpans.format(repositoryPoll)
          + " (expected: at least " + io.modelgate.gateway.config.TimeSpans.format(MIN_REPOSITORY_POLL) + ", or 0 not to poll)");
    }
    if (usageRetention.isNegative() || (!usageRetention.isZero() && usageRetention.compareTo(java.time.Duration.ofHours(1)) < 0)) {
      throw new IllegalArgumentException("usage retention: " + io.modelgate.gateway.config.TimeSpans.format(usageRetention) + " (expected: at least an hour, or 0 to keep every hour)");
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("admin port: " + port + " (expected: 0 to 65535)");
    }
    if (metricsPort < -1 || metricsPort > 65535) {
      throw new IllegalArgumentException("metrics port: " + metricsPort + " (expected: -1 to 65535)");
    }
    if (!(accessLogRate >= 0 && accessLogRate <= 1)) {
      throw new IllegalArgumentException("access log rate: " + accessLogRate + " (expected: 0 to 1)");
    }
    if (warmupRounds < 0 || warmupRounds > MAX_WARMUP_ROUNDS) {
      throw new IllegalArgumentException("warm-up rounds: " + warmupRounds + " (expected: 0 to " + MAX_WARMUP_ROUNDS + ")");
    }
    if (requestMemoryBytes < 1) {
      throw new IllegalArgumentException("request memory: " + requestMemoryBytes + " bytes (expected: at least 1)");
    }
    if (token.length() < 16) {
      throw new IllegalArgumentException("admin token: " + token.length() + " characters (expected: at least 16)");
    }
  }

  /** With the state directory as the control store, payload logs under it. */
  public AdminSettings(
      String host, int port, String token, TlsSettings tls, String metricsHost, int metricsPort, Path stateDirectory) {
    this(host, port, token, tls, metricsHost, metricsPort, stateDirectory,
        io.modelgate.gateway.control.ControlSettings.file(io.modelgate.gateway.control.ControlSettings.defaultReplica()));
  }

  /** With payload logs under the state directory ({@code payloads/}). */
  public AdminSettings(
      String host, int port, String token, TlsSettings tls, String metricsHost, int metricsPort, Path stateDirectory,
      io.modelgate.gateway.control.ControlSettings control) {
    this(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, stateDirectory.resolve("payloads"));
  }

  /** Without a callers file: the inference port is open. */
  public AdminSettings(
      String host, int port, String token, TlsSettings tls, String metricsHost, int metricsPort, Path stateDirectory,
      io.modelgate.gateway.control.ControlSettings control, Path payloadLogDirectory) {
    this(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory, null,
        io.modelgate.gateway.usage.AccessLog.DEFAULT_RATE, null, 0, DEFAULT_USAGE_RETENTION,
        io.modelgate.gateway.inference.RequestMemory.defaultLimit(), io.modelgate.gateway.inference.ReceiveTimeout.DEFAULT,
        java.time.Duration.ZERO, io.modelgate.gateway.tracing.TraceSettings.OFF);
  }

  /** These settings with the admin tokens of {@code file} besides the server's own. */
  public AdminSettings withAdminTokens(Path file) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, file, warmupRounds, usageRetention, requestMemoryBytes, receiveTimeout, repositoryPoll, traces);
  }

  /** These settings with {@code file} as the callers file. */
  public AdminSettings withCallers(Path file) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory, file,
        accessLogRate, tokensFile, warmupRounds, usageRetention, requestMemoryBytes, receiveTimeout, repositoryPoll, traces);
  }

  /** These settings with {@code rate} of requests in the access log. */
  public AdminSettings withAccessLog(double rate) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, rate, tokensFile, warmupRounds, usageRetention, requestMemoryBytes, receiveTimeout, repositoryPoll, traces);
  }

  /** These settings with {@code rounds} of start-up warm-up (0: none). */
  public AdminSettings withWarmup(int rounds) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, tokensFile, rounds, usageRetention, requestMemoryBytes, receiveTimeout, repositoryPoll, traces);
  }

  /** These settings with the usage ledger keeping each hour for {@code retention} (zero: for ever). */
  public AdminSettings withUsageRetention(java.time.Duration retention) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, tokensFile, warmupRounds, retention, requestMemoryBytes, receiveTimeout, repositoryPoll, traces);
  }

  /** These settings with at most {@code bytes} of request messages held at once, across versions. */
  public AdminSettings withRequestMemory(long bytes) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, tokensFile, warmupRounds, usageRetention, bytes, receiveTimeout, repositoryPoll, traces);
  }

  /** These settings with request messages on the inference port cancelled when they arrive slower than {@code timeout}. */
  public AdminSettings withReceiveTimeout(io.modelgate.gateway.inference.ReceiveTimeout timeout) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, tokensFile, warmupRounds, usageRetention, requestMemoryBytes, timeout, repositoryPoll, traces);
  }

  /** These settings with the repository folder looked at for changes every {@code every} (zero: never). */
  public AdminSettings withRepositoryPoll(java.time.Duration every) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, tokensFile, warmupRounds, usageRetention, requestMemoryBytes, receiveTimeout, every, traces);
  }

  /** These settings with inference calls traced as {@code settings} say. */
  public AdminSettings withTraces(io.modelgate.gateway.tracing.TraceSettings settings) {
    return new AdminSettings(host, port, token, tls, metricsHost, metricsPort, stateDirectory, control, payloadLogDirectory,
        callersFile, accessLogRate, tokensFile, warmupRounds, usageRetention, requestMemoryBytes, receiveTimeout,
        repositoryPoll, settings);
  }
}

package io.modelgate.gateway.control;

import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Where the control state lives and who this replica is: validated once, immutable.
 *
 * @param etcdEndpoints empty for the state directory ({@code --control-store file}); else the etcd
 *     members, {@code http://} or {@code https://}
 * @param prefix the etcd key prefix, ending in {@code /}
 * @param replica this replica's name in the audit log, the fleet view and the judge election
 * @param user etcd user (null: no authentication)
 * @param password etcd password, with {@code user}, fixed for the process's life; null where {@code
 *     passwordFile} holds it
 * @param passwordFile file holding the etcd password, with {@code user}: read at start and again
 *     whenever it changes (a rotated password is used without a restart); null where {@code
 *     password} is given
 * @param trustedCa CA certificate (PEM) for etcd's TLS; null: the JVM's trust store
 * @param clientCertificate client certificate (PEM) for etcd's mutual TLS; null: none
 * @param clientKey its PKCS#8 private key (PEM)
 * @param judgeLease TTL of the lease by which one replica judges rollouts (and compacts etcd): when it dies, another
 *     takes over within this time (plus its next attempt, every {@link #probeInterval})
 * @param timeout how long one etcd request may take before the store is taken as down
 * @param probeInterval how often the store's reachability is checked and the judge's lease renewed
 * @param auditRetention how long etcd keeps an audit record: older ones are deleted (hourly, by
 *     every replica); zero keeps them all. The file store's {@code audit.log} is the operator's to
 *     rotate.
 * @param auditMaxRecords the most audit records etcd keeps: past it the oldest are deleted (hourly,
 *     as above); zero sets no limit
 * @param compaction how often the replica that judges rollouts compacts etcd's history, to the
 *     revision it saw one interval before (so that at least that much history stays, for watches
 *     that resume); zero leaves compaction to etcd ({@code --auto-compaction-retention})
 * @param fleetDriftEvery how often the replica that judges rollouts merges the fleet's drift and
 *     exports it ({@link FleetDrift}), at least {@link FleetDrift#LEAST_EVERY}; zero: never
 * @param rereadEvery how often a replica reads again, without being told of a change, what it
 *     follows of the fleet besides the models' records ({@link ControlStore.Topic}): etcd's watches
 *     tell it of each change at once, so this is only a safety net, at least a second
 */
public record ControlSettings(
    List<URI> etcdEndpoints,
    String prefix,
    String replica,
    String user,
    String password,
    Path passwordFile,
    Path trustedCa,
    Path clientCertificate,
    Path clientKey,
    Duration judgeLease,
    Duration timeout,
    Duration probeInterval,
    Duration auditRetention,
    long auditMaxRecords,
    Duration compaction,
    Duration fleetDriftEvery,
    Duration rereadEvery) {
  public static final String DEFAULT_PREFIX = "/modelgate/";
  /** The audit log's retention in etcd by default: 400 days, as the usage ledger's. */
  public static final Duration DEFAULT_AUDIT_RETENTION = Duration.ofDays(400);
  /**
   * The most audit records etcd keeps by default: a million, 0.3 to 0.6 GB of etcd's space (its
   * default quota is 2 GB) however fast records come.
   */
  public static final long DEFAULT_AUDIT_MAX_RECORDS = 1_000_000;
  /**
   * How often etcd's history is compacted by default: every 5 minutes, as the Kubernetes API server
   * compacts its own etcd. Without compaction etcd keeps every revision; the replicas' statistics
   * alone, rewritten every 2 s, fill its default 2 GB quota in days.
   */
  public static final Duration DEFAULT_COMPACTION = Duration.ofMinutes(5);
  /**
   * How often a replica reads the fleet's access, diagnostics and drift asks again by default
   * without a watch's word of a change: every 30 s, in case a watch missed one.
   */
  public static final Duration DEFAULT_REREAD = Duration.ofSeconds(30);

  public ControlSettings {
    etcdEndpoints = List.copyOf(etcdEndpoints);
    Objects.requireNonNull(prefix, "control prefix");
    Objects.requireNonNull(replica, "replica");
    Objects.requireNonNull(judgeLease, "judge lease");
    Objects.requireNonNull(timeout, "timeout");
    Objects.requireNonNull(probeInterval, "probe interval");
    Objects.requireNonNull(auditRetention, "audit retention");
    if (auditRetention.isNegative() || (!auditRetention.isZero() && auditRetention.compareTo(Duration.ofHours(1)) < 0)) {
      throw new IllegalArgumentException("audit retention: " + io.modelgate.gateway.config.TimeSpans.format(auditRetention) + " (expected: at least an hour, or 0 to keep every record)");
    }
    Objects.requireNonNull(compaction, "compaction interval");
    if (compaction.isNegative() || (!compaction.isZero() && compaction.compareTo(Duration.ofMinutes(1)) < 0)) {
      throw new IllegalArgumentException("etcd compaction interval: " + io.modelgate.gateway.config.TimeSpans.format(compaction)
          + " (expected: at least 1m, or 0 to leave compaction to etcd)");
    }
    Objects.requireNonNull(fleetDriftEvery, "fleet drift interval");
    if (fleetDriftEvery.isNegative() || (!fleetDriftEvery.isZero() && fleetDriftEvery.compareTo(FleetDrift.LEAST_EVERY) < 0)) {
      throw new IllegalArgumentException("fleet drift interval: " + io.modelgate.gateway.config.TimeSpans.format(fleetDriftEvery)
          + " (expected: at least " + io.modelgate.gateway.config.TimeSpans.format(FleetDrift.LEAST_EVERY)
          + ", or 0 for never)");
    }
    Objects.requireNonNull(rereadEvery, "reread interval");
    if (rereadEvery.compareTo(Duration.ofSeconds(1)) < 0) {
      throw new IllegalArgumentException("reread interval: " + io.modelgate.gateway.config.TimeSpans.format(rereadEvery)
          + " (expected: at least 1s)");
    }
    if (auditMaxRecords < 0) {
      throw new IllegalArgumentException("audit max records: " + auditMaxRecords + " (expected: at least 1, or 0 for no limit)");
    }
    if (!prefix.startsWith("/") || !prefix.endsWith("/")) {
      throw new IllegalArgumentException("control prefix " + prefix + " (expected: starts and ends with /, e.g. " + DEFAULT_PREFIX + ")");
    }
    if (replica.isBlank() || replica.length() > 128 || replica.contains("/")) {
      throw new IllegalArgumentException("replica name '" + replica + "' (expected: 1 to 128 characters, no '/')");
    }
    if (judgeLease.compareTo(Duration.ofSeconds(2)) < 0) {
      throw new IllegalArgumentException("judge lease " + judgeLease.toMillis() + " ms (expected: at least 2 s, etcd's lease granularity is a second)");
    }
    if (timeout.isNegative() || timeout.isZero() || probeInterval.isNegative() || probeInterval.isZero()) {
      throw new IllegalArgumentException("timeout and probe interval must be positive");
    }
    if ((user == null) != (password == null && passwordFile == null)) {
      throw new IllegalArgumentException("an etcd user needs a password, and a password a user");
    }
    if (password != null && passwordFile != null) {
      throw new IllegalArgumentException("an etcd password is given, or read from a file: not both");
    }
    if ((clientCertificate == null) != (clientKey == null)) {
      throw new IllegalArgumentException("an etcd client certificate needs its key, and a key its certificate");
    }
  }

  /** With the audit log's retention and limit in etcd by default. */
  public ControlSettings(List<URI> etcdEndpoints, String prefix, String replica, String user, String password,
      Path passwordFile, Path trustedCa, Path clientCertificate, Path clientKey, Duration judgeLease, Duration timeout,
      Duration probeInterval) {
    this(etcdEndpoints, prefix, replica, user, password, passwordFile, trustedCa, clientCertificate, clientKey, judgeLease,
        timeout, probeInterval, DEFAULT_AUDIT_RETENTION, DEFAULT_AUDIT_MAX_RECORDS, DEFAULT_COMPACTION, Duration.ZERO,
        DEFAULT_REREAD);
  }

  /** These settings with etcd keeping audit records for {@code retention} (zero: all), at most {@code maxRecords} (zero: any number). */
  public ControlSettings withAuditLimits(Duration retention, long maxRecords) {
    return new ControlSettings(etcdEndpoints, prefix, replica, user, password, passwordFile, trustedCa, clientCertificate,
        clientKey, judgeLease, timeout, probeInterval, retention, maxRecords, compaction, fleetDriftEvery, rereadEvery);
  }

  /** These settings with etcd's history compacted every {@code interval} (zero: by etcd itself). */
  public ControlSettings withCompaction(Duration interval) {
    return new ControlSettings(etcdEndpoints, prefix, replica, user, password, passwordFile, trustedCa, clientCertificate,
        clientKey, judgeLease, timeout, probeInterval, auditRetention, auditMaxRecords, interval, fleetDriftEvery, rereadEvery);
  }

  /** These settings with the fleet's drift merged and exported by the judge every {@code interval} (zero: never). */
  public ControlSettings withFleetDrift(Duration interval) {
    return new ControlSettings(etcdEndpoints, prefix, replica, user, password, passwordFile, trustedCa, clientCertificate,
        clientKey, judgeLease, timeout, probeInterval, auditRetention, auditMaxRecords, compaction, interval, rereadEvery);
  }

  /** These settings with what a replica follows of the fleet read again every {@code interval} besides each change's word. */
  public ControlSettings withRereadEvery(Duration interval) {
    return new ControlSettings(etcdEndpoints, prefix, replica, user, password, passwordFile, trustedCa, clientCertificate,
        clientKey, judgeLease, timeout, probeInterval, auditRetention, auditMaxRecords, compaction, fleetDriftEvery, interval);
  }

  /** The state directory, this process alone. */
  public static ControlSettings file(String replica) {
    return new ControlSettings(List.of(), DEFAULT_PREFIX, replica, null, null, null, null, null, null,
        Duration.ofSeconds(10), Duration.ofSeconds(3), Duration.ofMillis(500));
  }

  /**
   * Parses {@code --control-store}: {@code file}, or {@code etcd://HOST:PORT[,HOST:PORT...]}
   * (plaintext) or {@code etcds://HOST:PORT[,...]} (TLS).
   *
   * @throws IllegalArgumentException with what was expected
   */
  public static List<URI> parseStore(String store) {
    if (store.equals("file")) {
      return List.of();
    }
    String scheme;
    String rest;
    if (store.startsWith("etcd://")) {
      scheme = "http";
      rest = store.substring("etcd://".length());
    } else if (store.startsWith("etcds://")) {
      scheme = "https";
      rest = store.substring("etcds://".length());
    } else {
      throw new IllegalArgumentException(
          "control store '" + store + "' (expected: file, etcd://HOST:PORT[,HOST:PORT...] or etcds://... for TLS)");
    }
    List<URI> endpoints = new ArrayList<>();
    for (String member : rest.split(",")) {
      URI uri = URI.create(scheme + "://" + member.trim());
      if (uri.getHost() == null || uri.getPort() < 1 || (uri.getPath() != null && !uri.getPath().isEmpty())) {
        throw new IllegalArgumentException(
            "etcd member '" + member + "' in " + store + " (expected: HOST:PORT, e.g. 127.0.0.1:2379)");
      }
      endpoints.add(uri);
    }
    return endpoints;
  }

  public boolean etcd() {
    return !etcdEndpoints.isEmpty();
  }

  /** This process's default name: the host name (a pod's name in Kubernetes) and the process id. */
  public static String defaultReplica() {
    String host = System.getenv("HOSTNAME");
    if (host == null || host.isBlank()) {
      try {
        host = InetAddress.getLocalHost().getHostName();
      } catch (java.io.IOException e) {
        host = "localhost";
      }
    }
    return host + "-" + ManagementFactory.getRuntimeMXBean().getPid();
  }
}

package io.modelgate.gateway.cli;

import io.modelgate.gateway.control.ControlSettings;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.InferenceWarmup;
import io.modelgate.gateway.server.RepositoryAtStart;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.server.ServerVersion;
import io.modelgate.gateway.server.ConnectionSettings;
import io.modelgate.gateway.tls.TlsSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.TensorSpec;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code modelgate serve}: loads a model repository and serves it until interrupted. */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    description = {
      "Serves a model repository over KServe v2 gRPC, with grpc.health.v1 and reflection on the"
          + " same port.",
      "Without --model-repository it serves the embedded demo: cnn_mnist, versions 1 and 2."
    })
final class ServeCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(
      names = "--model-repository",
      paramLabel = "DIR",
      description = "Folder laid out as <DIR>/<model>/<version>/model.onnx. Default: the embedded demo.")
  Path modelRepository;

  @Option(names = "--host", defaultValue = "0.0.0.0", description = "Address to bind. Default: ${DEFAULT-VALUE}.")
  String host;

  @Option(names = "--grpc-port", defaultValue = "8001", description = "gRPC port. Default: ${DEFAULT-VALUE}.")
  int grpcPort;

  @Option(
      names = "--max-inbound-message-size",
      defaultValue = "128MiB",
      converter = Converters.ByteSize.class,
      description = "Largest request message accepted. Default: ${DEFAULT-VALUE}.")
  int maxInboundMessageSize;

  @Option(
      names = "--event-loop-threads",
      description = "Netty event loops. Default: one per two cores, at least one.")
  Integer eventLoopThreads;

  @Option(
      names = "--load-threads",
      defaultValue = "0",
      paramLabel = "N",
      description = "Models loaded at once as the server starts, each model's versions in turn (a session's graph"
          + " optimization runs on one thread): more bring a repository of many models to serving sooner, and hold"
          + " the memory of as many loads at once. 0: one per core, at most " + ServeCommand.AUTO_LOAD_THREADS_MAX
          + ". Default: ${DEFAULT-VALUE}.")
  int loadThreads;

  @Option(
      names = "--repository-poll",
      defaultValue = "0s",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "Look at the model repository folder this often and do what its changes ask: a version folder"
          + " that appears is loaded, a serving version whose files or model.yaml change is loaded again while it"
          + " serves (checked on its golden set), one whose folder has gone is drained and unloaded unless routing"
          + " names it; each change once it has held still for one look, audited as 'repository poll'. A version an"
          + " operator unloaded stays unloaded. In a fleet, the replica judging rollouts acts for all. At least 1s;"
          + " 0s: never (admin load). Default: ${DEFAULT-VALUE}.")
  java.time.Duration repositoryPoll;

  /** The most models {@code --load-threads 0} loads at once, whatever the cores. */
  static final int AUTO_LOAD_THREADS_MAX = 4;

  /** {@code --load-threads}, 0 resolved: one per core this JVM may use, at most {@link #AUTO_LOAD_THREADS_MAX}. */
  int loadThreads() {
    return loadThreads > 0 ? loadThreads
        : Math.max(1, Math.min(AUTO_LOAD_THREADS_MAX, Runtime.getRuntime().availableProcessors()));
  }

  @Option(
      names = "--intra-op-threads",
      defaultValue = "1",
      description = "ONNX Runtime threads per operator, per version (0: one per core). Default: ${DEFAULT-VALUE}.")
  int intraOpThreads;

  @Option(
      names = "--inter-op-threads",
      defaultValue = "1",
      description = "ONNX Runtime threads across operators, per version. Default: ${DEFAULT-VALUE}.")
  int interOpThreads;

  @Option(
      names = "--instances",
      defaultValue = "1",
      description = "Executor threads per version. Default: ${DEFAULT-VALUE}.")
  int instances;

  @Option(
      names = "--queue-capacity",
      defaultValue = "1024",
      description = "Requests that may wait per version; beyond it RESOURCE_EXHAUSTED. Default: ${DEFAULT-VALUE}.")
  int queueCapacity;

  @Option(
      names = "--tls-cert",
      paramLabel = "PEM",
      description = "Serve the inference port over TLS with this certificate chain (needs --tls-key).")
  Path tlsCert;

  @Option(names = "--tls-key", paramLabel = "PEM", description = "PKCS#8 private key for --tls-cert.")
  Path tlsKey;

  @Option(
      names = "--tls-client-ca",
      paramLabel = "PEM",
      description = "Require client certificates signed by this CA on the inference port (mutual TLS).")
  Path tlsClientCa;

  @Option(
      names = "--tls-client-auth",
      paramLabel = "require|optional",
      defaultValue = "require",
      description = {
        "With --tls-client-ca: whether every client must present a certificate (require), or a client may connect"
            + " without one (optional: the callers file then identifies it by API key, token or proxy). Default: ${DEFAULT-VALUE}."
      })
  String tlsClientAuth;

  @Option(names = "--admin-host", defaultValue = "127.0.0.1", description = "Admin address. Default: ${DEFAULT-VALUE} (local operators only).")
  String adminHost;

  @Option(names = "--admin-port", defaultValue = "8003", description = "Admin gRPC port. Default: ${DEFAULT-VALUE}.")
  int adminPort;

  @Option(
      names = "--admin-token-file",
      paramLabel = "FILE",
      description = {
        "File holding the admin bearer token (also: environment variable MODELGATE_ADMIN_TOKEN).",
        "Default: <state-dir>/admin-token, created with a random token if missing."
      })
  Path adminTokenFile;

  @Option(names = "--admin-tls-cert", paramLabel = "PEM", description = "Serve the admin port over TLS with this certificate chain.")
  Path adminTlsCert;

  @Option(names = "--admin-tls-key", paramLabel = "PEM", description = "PKCS#8 private key for --admin-tls-cert.")
  Path adminTlsKey;

  @Option(names = "--admin-tls-client-ca", paramLabel = "PEM", description = "Require admin client certificates signed by this CA.")
  Path adminTlsClientCa;

  @Option(names = "--metrics-host", defaultValue = "0.0.0.0", description = "Address of the Prometheus /metrics endpoint. Default: ${DEFAULT-VALUE}.")
  String metricsHost;

  @Option(names = "--metrics-port", defaultValue = "8002", description = "Port of /metrics; -1 turns it off. Default: ${DEFAULT-VALUE}.")
  int metricsPort;

  @Option(
      names = "--state-dir",
      defaultValue = "modelgate-state",
      paramLabel = "DIR",
      description = "Routing policies, rollouts, the audit log and the generated admin token. Default: ./${DEFAULT-VALUE}.")
  Path stateDir;

  @Option(
      names = "--payload-log-dir",
      paramLabel = "DIR",
      description = "Where models with payload_log in their model.yaml write their sampled requests, a folder per model. Default: <state-dir>/payloads.")
  Path payloadLogDir;

  @Option(
      names = "--callers",
      paramLabel = "FILE",
      description = "Callers file (YAML): the tenants that may call the inference port, how each proves who it is"
          + " (client certificate, API key, JWT, trusted proxy header) and the models each may use; read again"
          + " when it changes. Default: none, the inference port is open.")
  Path callersFile;

  @Option(
      names = "--admin-tokens",
      paramLabel = "FILE",
      description = "Admin tokens file (YAML): more tokens for the admin API, each with a name and a role (viewer,"
          + " operator, admin), kept as SHA-256 hashes; read again when it changes. The server's own token stays"
          + " the role admin.")
  Path adminTokensFile;

  @Option(
      names = "--log-format",
      defaultValue = "text",
      description = "Log lines on standard error as text or json (one JSON object per line: timestamp, level,"
          + " logger, message and key-value pairs such as an access line's tenant). Default: ${DEFAULT-VALUE}.")
  String logFormat;

  @Option(
      names = "--etcd-compaction",
      defaultValue = "5m",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "In a fleet, how often the replica that judges rollouts compacts etcd's history, keeping at least"
          + " this much of it (as the Kubernetes API server does). 0 leaves it to etcd (--auto-compaction-retention)."
          + " Default: ${DEFAULT-VALUE}.")
  java.time.Duration etcdCompaction;

  @Option(
      names = "--fleet-drift-every",
      defaultValue = "0",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "In a fleet, how often the replica that judges rollouts merges every replica's drift sketches of"
          + " each profiled model (as admin drift --merged) and exports the fleet's scores as modelgate_drift_fleet_*"
          + " (alert ModelgateFleetDrift); at least 10s. Each round asks every replica for its sketches through etcd"
          + " (about 60 KB each for the demo's model). 0: never. Default: ${DEFAULT-VALUE}.")
  java.time.Duration fleetDriftEvery;

  @Option(
      names = "--audit-retention",
      defaultValue = "400d",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "In a fleet, how long etcd keeps an audit record: older ones are deleted (hourly, by every"
          + " replica). 0 keeps every record. The state directory's audit.log is yours to rotate. Default: ${DEFAULT-VALUE}.")
  java.time.Duration auditRetention;

  @Option(
      names = "--audit-max-records",
      defaultValue = "1000000",
      paramLabel = "N",
      description = "In a fleet, the most audit records etcd keeps: past it the oldest are deleted (hourly, by"
          + " every replica). 0 sets no limit. Default: ${DEFAULT-VALUE}.")
  long auditMaxRecords;

  @Option(
      names = "--usage-retention",
      defaultValue = "400d",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "How long the usage ledger keeps an hour: its files in the state directory and, in a fleet,"
          + " its keys in etcd are deleted after this (checked hourly). 0 keeps every hour. Default: ${DEFAULT-VALUE}.")
  java.time.Duration usageRetention;

  @Option(
      names = "--request-memory",
      defaultValue = "25%",
      converter = Converters.HeapShare.class,
      paramLabel = "SIZE|PERCENT",
      description = "The most bytes of request messages held at once, from their first byte received to their answer, across every version:"
          + " a size (512MiB, 2GiB) or a share of the JVM's heap (25%%). Past it a request is refused RESOURCE_EXHAUSTED"
          + " before it is decoded. Default: ${DEFAULT-VALUE}.")
  long requestMemory;

  @Option(
      names = "--receive-timeout",
      defaultValue = "30s",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "How long a request message of 64 KiB or more, once begun, may go without gaining --receive-min-rate"
          + " bytes a second: one slower (a client stalled part way through it, or sending it a few bytes at a time) is"
          + " cancelled, its stream reset and what it gathered freed from --request-memory. 0s: never."
          + " Default: ${DEFAULT-VALUE}.")
  java.time.Duration receiveTimeout;

  @Option(
      names = "--receive-min-rate",
      defaultValue = "16KiB",
      converter = Converters.ByteSize.class,
      paramLabel = "SIZE",
      description = "The bytes a second a request message of 64 KiB or more must gain over each --receive-timeout"
          + " while it arrives. 0: any byte at all. Default: ${DEFAULT-VALUE}.")
  int receiveMinRate;

  @Option(
      names = "--access-log-rate",
      defaultValue = "0.01",
      description = "Share of requests written to the access log (logger modelgate.access: id, tenant, model,"
          + " version, status, latency, rows, bytes), 0 to 1. Default: ${DEFAULT-VALUE}.")
  double accessLogRate;

  @Option(
      names = "--trace-endpoint",
      paramLabel = "URL",
      description = "Record inference calls as OpenTelemetry spans and send them over OTLP to this address (an"
          + " OpenTelemetry Collector's: over HTTP e.g. http://otel-collector:4318, /v1/traces added to one without a"
          + " path; over gRPC, --trace-protocol grpc, e.g. http://otel-collector:4317; https:// for TLS)."
          + " A call whose W3C traceparent header is sampled is traced as a child of the caller's span; see"
          + " --trace-sample-rate for calls without one. Default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else"
          + " $OTEL_EXPORTER_OTLP_ENDPOINT (a base: /v1/traces added over HTTP), as OpenTelemetry's SDKs read them"
          + " (not with OTEL_SDK_DISABLED=true); else none (no call traced).")
  java.net.URI traceEndpoint;

  @Option(
      names = "--trace-protocol",
      paramLabel = "PROTOCOL",
      description = "With --trace-endpoint: how spans are sent, OTLP over HTTP (http/protobuf, a collector's port"
          + " 4318) or over gRPC (grpc, port 4317), as OpenTelemetry's OTEL_EXPORTER_OTLP_PROTOCOL names them."
          + " Default: $OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.")
  String traceProtocol;

  @Option(
      names = "--trace-compression",
      paramLabel = "none|gzip",
      description = "With --trace-endpoint: compress each export with gzip (fewer bytes to a collector across a"
          + " network or a backend billed by them, for some CPU on the exporter's thread), or not. Default:"
          + " $OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, else $OTEL_EXPORTER_OTLP_COMPRESSION, else none.")
  String traceCompression;

  @Option(
      names = "--trace-sample-rate",
      defaultValue = "0",
      description = "With --trace-endpoint: the share of requests arriving without a traceparent (a stream's messages"
          + " each drawn) that start a trace of their own, 0 to 1 (a traceparent not sampled is never traced)."
          + " Default: ${DEFAULT-VALUE}.")
  double traceSampleRate;

  @Option(
      names = "--trace-ca",
      paramLabel = "PEM",
      description = "With an https:// --trace-endpoint: the CA certificates that sign the collector's certificate."
          + " Read again when it changes. Default: the JVM's trust store.")
  Path traceCa;

  @Option(
      names = "--trace-cert",
      paramLabel = "PEM",
      description = "With an https:// --trace-endpoint: the certificate chain presented to the collector (mutual TLS;"
          + " needs --trace-key). Read again when it changes, and presented from the next export on.")
  Path traceCert;

  @Option(names = "--trace-key", paramLabel = "PEM", description = "PKCS#8 private key for --trace-cert.")
  Path traceKey;

  /**
   * Where, how and how often calls are traced: {@code --trace-endpoint}, {@code --trace-protocol}, {@code --trace-compression}, {@code --trace-sample-rate},
   * {@code --trace-ca}, {@code --trace-cert}, {@code --trace-key}, and the headers each export carries from {@code OTEL_EXPORTER_OTLP_TRACES_HEADERS} (or {@code
   * OTEL_EXPORTER_OTLP_HEADERS}), as OpenTelemetry's SDKs read them.
   */
  private io.modelgate.gateway.tracing.TraceSettings traceSettings() {
    return io.modelgate.gateway.tracing.TraceSettings.resolve(System.getenv(), traceEndpoint, traceProtocol,
        traceCompression, traceSampleRate, traceCa, traceCert, traceKey);
  }

  @Option(
      names = "--warmup-rounds",
      defaultValue = "200",
      paramLabel = "N",
      description = "Before reporting ready, call the gateway's own admin API (read-only) and HTTP endpoints N"
          + " times, at most 10 s, so that the first scrape or admin call under load does not stall"
          + " inference while the JIT compiles its path. 0: none. Default: ${DEFAULT-VALUE}.")
  int warmupRounds;

  @Option(
      names = "--warmup-inference",
      defaultValue = "10s",
      converter = Converters.TimeSpan.class,
      paramLabel = "DURATION",
      description = "Once the repository has loaded, serve the embedded demo model to itself on loopback for this"
          + " long (a throwaway gateway, nothing of it kept), so that the serving path is compiled before the"
          + " first caller arrives. 0s: none; at most 1m. Default: ${DEFAULT-VALUE}.")
  Duration warmupInference;

  @Option(
      names = "--control-store",
      defaultValue = "file",
      paramLabel = "STORE",
      description = {
        "Where routing policies, rollouts and the audit log live: file (the state directory, one"
            + " process), or etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS), shared by a fleet of"
            + " replicas. Default: ${DEFAULT-VALUE}."
      })
  String controlStore;

  @Option(
      names = "--control-prefix",
      defaultValue = ControlSettings.DEFAULT_PREFIX,
      paramLabel = "PREFIX",
      description = "etcd key prefix of this fleet's control state. Default: ${DEFAULT-VALUE}.")
  String controlPrefix;

  @Option(
      names = "--replica",
      paramLabel = "NAME",
      description = "This replica's name in the audit log, the fleet view and the judge election. Default: host name and process id.")
  String replica;

  @Option(names = "--etcd-user", paramLabel = "USER", description = "etcd user; the password comes from $MODELGATE_ETCD_PASSWORD or --etcd-password-file.")
  String etcdUser;

  @Option(names = "--etcd-password-file", paramLabel = "FILE", description = "File holding the etcd password; read again when it changes (checked every 2 s), the new password used once etcd accepts it.")
  Path etcdPasswordFile;

  @Option(names = "--etcd-ca", paramLabel = "PEM", description = "CA certificate that signed etcd's server certificate (etcds://). Read again when it changes.")
  Path etcdCa;

  @Option(names = "--etcd-cert", paramLabel = "PEM", description = "Client certificate for etcd's mutual TLS. Read again when it changes, and used from the next connection to etcd.")
  Path etcdCert;

  @Option(names = "--etcd-key", paramLabel = "PEM", description = "PKCS#8 private key for --etcd-cert.")
  Path etcdKey;

  @Option(
      names = "--judge-lease",
      defaultValue = "10s",
      converter = Converters.TimeSpan.class,
      description = "TTL of the etcd lease by which one replica judges rollouts; another takes over this long after it dies. Default: ${DEFAULT-VALUE}.")
  Duration judgeLease;

  @Option(
      names = "--drain-timeout",
      defaultValue = "30s",
      converter = Converters.TimeSpan.class,
      description = "On shutdown, how long queued requests may still run. Default: ${DEFAULT-VALUE}.")
  Duration drainTimeout;

  @Option(
      names = "--shutdown-delay",
      defaultValue = "0s",
      converter = Converters.TimeSpan.class,
      description =
          "On shutdown, how long to report NOT_SERVING (health, /readyz) while still serving, so that"
              + " load balancers move away before requests are refused. Default: ${DEFAULT-VALUE};"
              + " in Kubernetes, a little more than the readiness probe's period.")
  Duration shutdownDelay;

  @Option(
      names = "--max-connection-age",
      defaultValue = "0s",
      converter = Converters.TimeSpan.class,
      description =
          "Ask clients to reconnect (GOAWAY) once an inference connection is this old, give or take 10%%, so that"
              + " clients balancing over a fleet find replicas added since they connected; no call is lost."
              + " 0s: never. Default: ${DEFAULT-VALUE}; in a fleet, a few minutes.")
  Duration maxConnectionAge;

  @Option(
      names = "--max-connection-age-grace",
      converter = Converters.TimeSpan.class,
      description =
          "How long calls and streams in flight on a connection past --max-connection-age may still take."
              + " Default: as long as they take.")
  Duration maxConnectionAgeGrace;

  @Option(
      names = "--keepalive-time",
      defaultValue = "1m",
      converter = Converters.TimeSpan.class,
      description =
          "Ping an inference connection idle this long, and close it after 20 s without an answer (a client"
              + " gone behind a NAT or load balancer). At least 10s. Default: ${DEFAULT-VALUE}.")
  Duration keepAliveTime;

  @Option(
      names = "--permit-keepalive-time",
      defaultValue = "10s",
      converter = Converters.TimeSpan.class,
      description =
          "The shortest interval at which clients may ping the inference port, with or without calls in flight;"
              + " one pinging more often is told GOAWAY (too_many_pings). Default: ${DEFAULT-VALUE}.")
  Duration permitKeepAliveTime;

  @Option(
      names = "--max-concurrent-streams",
      defaultValue = "" + ConnectionSettings.DEFAULT_MAX_CONCURRENT_STREAMS,
      description =
          "The most calls a connection to the inference or admin port may have open at once (HTTP/2"
              + " SETTINGS_MAX_CONCURRENT_STREAMS); a gRPC client holds further calls until one ends. Bounds the answers"
              + " the server keeps for a client that stops reading. Default: ${DEFAULT-VALUE}.")
  int maxConcurrentStreams;

  @Option(
      names = "--max-connections",
      description =
          "The most connections the inference, admin, and metrics and health ports each hold at once, counted from their"
              + " acceptance; one more is refused as it is accepted (its client sees UNAVAILABLE and reconnects after its"
              + " back-off), and modelgate_connections_refused_total counts it. Default: "
              + ConnectionSettings.DEFAULT_MAX_CONNECTIONS + ", or a quarter of the process's open-file limit where that"
              + " is fewer.")
  Integer maxConnections;

  @Option(
      names = "--max-connection-rate",
      defaultValue = "" + ConnectionSettings.DEFAULT_MAX_CONNECTION_RATE,
      description =
          "The most new connections each port takes a second (a bucket of one second's worth); more are closed as they"
              + " are accepted, so that a storm of connections (a client reconnecting in a loop) cannot take the event"
              + " loops from the calls they serve. 0: any. Default: ${DEFAULT-VALUE}.")
  int maxConnectionRate;

  @Option(
      names = "--max-connections-per-address",
      defaultValue = "0",
      description =
          "The most connections the inference and admin ports each hold from one client address (its IP, whatever its"
              + " port); one more is refused as it is accepted, so that one client leaking connections cannot take"
              + " --max-connections from the others. Only where clients connect directly: behind a proxy, a sidecar or"
              + " a NAT every client shares an address. 0: no limit. Default: ${DEFAULT-VALUE}.")
  int maxConnectionsPerAddress;

  @Option(
      names = "--max-stream-resets",
      defaultValue = "" + ConnectionSettings.DEFAULT_MAX_STREAM_RESETS,
      description =
          "The most calls a client may reset (HTTP/2 RST_STREAM) on one connection in 10 s; past it the connection is"
              + " ended (GOAWAY ENHANCE_YOUR_CALM, too_many_rststreams), which bounds HTTP/2 \"rapid reset\" (a client"
              + " opening and resetting calls without end: CVE-2023-44487). 0: any. Default: ${DEFAULT-VALUE}.")
  int maxStreamResets;

  @Option(
      names = "--max-connection-idle",
      defaultValue = "1h",
      converter = Converters.TimeSpan.class,
      description =
          "Ask a client to go (GOAWAY, graceful; it reconnects when it next calls) once its connection to the inference"
              + " or admin port has had no call open this long, so that unused connections do not hold places under"
              + " --max-connections for good. 0s: never. Default: ${DEFAULT-VALUE}.")
  Duration maxConnectionIdle;

  @Option(
      names = "--handshake-timeout",
      defaultValue = "10s",
      converter = Converters.TimeSpan.class,
      description =
          "How long a new connection may take to finish its TLS handshake and send HTTP/2's preface before it is"
              + " closed, so that connections that never speak do not hold places under --max-connections. At least"
              + " 100ms. Default: ${DEFAULT-VALUE}.")
  Duration handshakeTimeout;

  /** Calls the inference warm-up keeps outstanding: what the suite's closed loop runs. */
  static final int WARMUP_IN_FLIGHT = 64;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    if (!logFormat.equals("text") && !logFormat.equals("json")) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--log-format: '" + logFormat + "' (expected: text or json)");
    }
    if (!(accessLogRate >= 0 && accessLogRate <= 1)) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--access-log-rate: " + accessLogRate + " (expected: 0 to 1)");
    }
    if (warmupRounds < 0 || warmupRounds > AdminSettings.MAX_WARMUP_ROUNDS) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--warmup-rounds: " + warmupRounds + " (expected: 0 to " + AdminSettings.MAX_WARMUP_ROUNDS + ")");
    }
    if (loadThreads < 0) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--load-threads: " + loadThreads + " (expected: 0 for one per core, or at least 1)");
    }
    if (warmupInference.isNegative() || warmupInference.compareTo(InferenceWarmup.MAX_DURATION) > 0) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--warmup-inference: " + io.modelgate.gateway.config.TimeSpans.format(warmupInference) + " (expected: 0s to 1m)");
    }
    io.modelgate.gateway.inference.ReceiveTimeout receive;
    try {
      receive = new io.modelgate.gateway.inference.ReceiveTimeout(receiveTimeout, receiveMinRate);
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), e.getMessage());
    }
    ConnectionSettings connections;
    try {
      connections = new ConnectionSettings(maxConnectionAge, maxConnectionAgeGrace, keepAliveTime, permitKeepAliveTime,
          maxConcurrentStreams,
          maxConnections != null ? maxConnections : ConnectionSettings.defaultMaxConnections(ConnectionSettings.maxOpenFiles()),
          maxConnectionRate, maxStreamResets, maxConnectionIdle, handshakeTimeout, maxConnectionsPerAddress);
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), e.getMessage());
    }
    Logging.configure(logFormat);
    long arrivingLimit = io.modelgate.gateway.inference.RequestMemory.unreserved(requestMemory);
    if (arrivingLimit < maxInboundMessageSize) {
      org.slf4j.LoggerFactory.getLogger(ServeCommand.class).warn(
          "--request-memory ({} bytes) lets a message fill {} bytes while it arrives (the part not kept for tenants with"
              + " nothing waiting), below --max-inbound-message-size ({} bytes): a larger request is refused"
              + " RESOURCE_EXHAUSTED even when nothing else is held", requestMemory, arrivingLimit, maxInboundMessageSize);
    }
    ServerSettings settings =
        new ServerSettings(
            host,
            grpcPort,
            maxInboundMessageSize,
            eventLoopThreads == null ? ServerSettings.defaultEventLoopThreads() : eventLoopThreads,
            drainTimeout,
            tls(tlsCert, tlsKey, tlsClientCa, "--tls", clientCertificateOptional()),
            shutdownDelay,
            connections);
    Files.createDirectories(stateDir);
    AdminToken token = AdminToken.resolve(adminTokenFile, stateDir);
    AdminSettings admin;
    try {
      admin = new AdminSettings(
          adminHost,
          adminPort,
          token.value(),
          tls(adminTlsCert, adminTlsKey, adminTlsClientCa, "--admin-tls", false),
          metricsHost,
          metricsPort,
          stateDir,
          controlSettings(),
          payloadLogDir == null ? stateDir.resolve("payloads") : payloadLogDir,
          callersFile,
          accessLogRate,
          adminTokensFile,
          warmupRounds,
          usageRetention,
          requestMemory,
          receive,
          repositoryPoll,
          traceSettings());
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), e.getMessage());
    }
    ModelSettings defaults =
        new ModelSettings(
            null,
            new SessionSettings(intraOpThreads, interOpThreads),
            new SchedulerSettings(queueCapacity, instances));
    Path root = modelRepository;
    boolean demo = root == null;
    if (demo) {
      root = DemoRepository.materialize(Files.createTempDirectory("modelgate-demo-"));
    }
    Path demoRoot = demo ? root : null;
    StatsRegistry stats = StatsRegistry.standard();
    // The versions its operators unloaded (in a fleet, on every replica) stay unloaded from the
    // start (the server then owns the store). A repository or store that cannot be read: exit code
    // 3, as for any file or server out of reach.
    RepositoryAtStart loaded;
    try {
      loaded = RepositoryAtStart.load(root, defaults, admin, stats, loadThreads());
    } catch (IOException | RuntimeException e) {
      stats.close();
      deleteQuietly(demoRoot);
      throw e;
    }
    ModelRepository repository = loaded.repository();
    if (!warmupInference.isZero()) {
      try {
        InferenceWarmup.Summary warm = InferenceWarmup.run(warmupInference, settings.eventLoopThreads(), WARMUP_IN_FLIGHT);
        org.slf4j.LoggerFactory.getLogger(ServeCommand.class).info(
            "inference warm-up: {} calls answered, {} refused by a full queue as meant, {} failed, by a throwaway"
                + " gateway in {} ms", warm.answered(), warm.refused(), warm.failed(), warm.millis());
      } catch (IOException | RuntimeException e) {
        org.slf4j.LoggerFactory.getLogger(ServeCommand.class).warn("inference warm-up skipped: {}", e.toString());
      }
    }
    GatewayServer server;
    try {
      server = GatewayServer.start(settings, admin, loaded, stats);
    } catch (IOException e) {
      repository.close(Duration.ZERO);
      stats.close();
      deleteQuietly(demoRoot);
      return cannotStart(e);
    }
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  server.stop();
                  stats.close();
                  deleteQuietly(demoRoot);
                  Logging.flush();
                },
                "modelgate-shutdown"));
    printBanner(out, settings, server.port(), root, demo, repository);
    out.printf(
        "admin API on %s:%d (token: %s); metrics and health on http://%s:%d/{metrics,livez,readyz}; state in %s%n",
        adminHost, server.adminPort(), token.source(), metricsHost, server.metricsPort(),
        admin.control().etcd()
            ? "etcd " + admin.control().etcdEndpoints() + " under " + admin.control().prefix() + " as replica " + admin.control().replica()
            : stateDir.toAbsolutePath().toString());
    out.flush();
    server.awaitTermination();
    return 0;
  }

  private ControlSettings controlSettings() throws IOException {
    String password = null;
    if (etcdUser != null && etcdPasswordFile == null) {
      password = System.getenv("MODELGATE_ETCD_PASSWORD");
      if (password == null) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(),
            "--etcd-user needs a password: --etcd-password-file FILE or $MODELGATE_ETCD_PASSWORD");
      }
    }
    try {
      return new ControlSettings(
          ControlSettings.parseStore(controlStore),
          controlPrefix,
          replica == null ? ControlSettings.defaultReplica() : replica,
          etcdUser,
          password,
          etcdPasswordFile,
          etcdCa,
          etcdCert,
          etcdKey,
          judgeLease,
          Duration.ofSeconds(3),
          Duration.ofMillis(500),
          auditRetention,
          auditMaxRecords,
          etcdCompaction,
          fleetDriftEvery,
          ControlSettings.DEFAULT_REREAD);
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), e.getMessage());
    }
  }

  private void printBanner(
      PrintWriter out,
      ServerSettings settings,
      int port,
      Path root,
      boolean demo,
      ModelRepository repository) {
    out.printf(
        "modelgate %s serving KServe v2 gRPC on %s:%d (health and reflection on the same port)%n",
        ServerVersion.current(), settings.host(), port);
    out.printf("model repository: %s%s%n", root, demo ? " (embedded demo)" : "");
    out.printf("  %-24s %-8s %-11s %s%n", "MODEL", "VERSION", "STATE", "DETAIL");
    for (Model model : repository.models()) {
      if (model.versions().isEmpty()) {
        out.printf("  %-24s %-8s %-11s %s%n", model.name(), "-", "-", "no version folders");
      }
      for (ModelVersion version : model.versions()) {
        out.printf(
            "  %-24s %-8s %-11s %s%n",
            model.name(),
            version.numberText(),
            version.state(),
            version.isReady() ? describe(version.serving()) : version.reason());
      }
    }
    String target = port == ServerSettings.DEFAULT_PORT ? "" : " --target localhost:" + port;
    Model example =
        repository.models().stream()
            .filter(m -> m.latestReady().isPresent())
            .findFirst()
            .orElse(null);
    if (example != null) {
      out.println("Try it from another terminal:");
      String digit = demo ? " --digit 7" : "";
      // With TLS, the hints name the CA that signed --tls-cert (and, with mutual TLS, a client's own).
      TlsSettings tls = settings.tls();
      String tlsFlags = tls == null ? "" : " --tls-ca CA.pem" + (tls.clientCa() == null ? "" : " --tls-cert CLIENT.pem --tls-key CLIENT-KEY.pem");
      out.printf("  bin/modelgate infer --model %s%s%s%s%n", example.name(), digit, target, tlsFlags);
      if (example.readyVersions().size() > 1) {
        out.printf(
            "  bin/modelgate infer --model %s --version %s%s%s%s%n",
            example.name(), example.readyVersions().get(0).numberText(), digit, target, tlsFlags);
      }
      String grpcurlTls = tls == null ? "-plaintext"
          : "-cacert CA.pem" + (tls.clientCa() == null ? "" : " -cert CLIENT.pem -key CLIENT-KEY.pem");
      out.printf(
          "  grpcurl %s -d '{\"name\":\"%s\"}' localhost:%d"
              + " inference.GRPCInferenceService/ModelMetadata%n",
          grpcurlTls, example.name(), port);
    }
    out.println("Stop with Ctrl-C: queued requests are completed first.");
    out.flush();
  }

  private static String describe(LoadedVersion loaded) {
    return loaded.signature().inputs().stream().map(TensorSpec::toString).collect(Collectors.joining(", "))
        + " -> "
        + loaded.signature().outputs().stream().map(TensorSpec::toString).collect(Collectors.joining(", "))
        + ", max_batch_size "
        + loaded.signature().maxBatchSize();
  }

  /** Whether {@code --tls-client-auth} lets inference clients connect without a certificate. */
  private boolean clientCertificateOptional() {
    return switch (tlsClientAuth) {
      case "require" -> false;
      case "optional" -> true;
      default -> throw new picocli.CommandLine.ParameterException(
          spec.commandLine(),
          "--tls-client-auth: '" + tlsClientAuth + "' (expected require or optional)");
    };
  }

  private TlsSettings tls(Path cert, Path key, Path clientCa, String option, boolean clientOptional) {
    if (clientOptional && clientCa == null) {
      throw new picocli.CommandLine.ParameterException(
          spec.commandLine(), option + "-client-auth optional needs " + option + "-client-ca");
    }
    if (cert == null && key == null && clientCa == null) {
      return null;
    }
    if (cert == null || key == null) {
      throw new picocli.CommandLine.ParameterException(
          spec.commandLine(),
          option + "-cert and " + option + "-key go together");
    }
    return new TlsSettings(cert, key, clientCa, clientOptional);
  }

  /** Says on standard error why the server cannot start ({@code e} and its root cause); returns the exit code, 1. */
  private int cannotStart(IOException e) {
    String cause = rootCause(e);
    String message = e.getMessage() == null || e.getMessage().contains(cause) ? cause : e.getMessage() + ": " + cause;
    spec.commandLine().getErr().println("modelgate: cannot start: " + message);
    return 1;
  }

  private static String rootCause(Throwable t) {
    Throwable cause = t;
    while (cause.getCause() != null) {
      cause = cause.getCause();
    }
    return cause.getMessage() == null ? cause.toString() : cause.getMessage();
  }

  /** Deletes the folder {@code root} (the embedded demo's copy) and what it holds; nothing when null. */
  private static void deleteQuietly(Path root) {
    if (root == null) {
      return;
    }
    try (Stream<Path> paths = Files.walk(root)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // A temporary folder left behind is harmless.
    }
  }
}

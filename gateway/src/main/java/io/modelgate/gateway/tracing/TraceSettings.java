package io.modelgate.gateway.tracing;

import java.net.URI;

/**
 * Where and how often the gateway records spans of the inference calls it serves. Immutable and
 * validated on construction.
 *
 * @param endpoint the OTLP endpoint spans are sent to, an OpenTelemetry Collector's: over HTTP
 *     its traces path (say {@code http://otel-collector:4318/v1/traces}; {@code /v1/traces} is added
 *     to an address given without a path), over gRPC its address ({@code
 *     http://otel-collector:4317}, no path); null: no call is traced
 * @param protocol how spans are sent: OTLP over HTTP (protobuf bodies) or over gRPC
 * @param gzip whether each export is compressed with gzip (OTLP's one compression besides none)
 * @param sampleRate the share of requests that arrive without a W3C {@code traceparent} (or with
 *     one that does not parse) that start a trace of their own, 0 to 1, each message of a stream
 *     drawn; a call whose {@code traceparent} is sampled is always traced, one whose {@code
 *     traceparent} is not sampled never is
 * @param headers sent with every export (a backend's API key, say), by name; never logged
 * @param ca for an {@code https} endpoint, the PEM CA certificates that sign the collector's
 *     certificate; null: the JVM's trust store. Read again when it changes
 * @param cert for an {@code https} endpoint, the PEM certificate chain the gateway presents
 *     (mutual TLS), with {@code key}; null: none. Read again when it changes
 * @param key the PKCS#8 PEM private key of {@code cert}
 */
public record TraceSettings(URI endpoint, Protocol protocol, boolean gzip, double sampleRate, java.util.Map<String, String> headers,
    java.nio.file.Path ca, java.nio.file.Path cert, java.nio.file.Path key) {
  /** No call traced. */
  public static final TraceSettings OFF = new TraceSettings(null, Protocol.HTTP, false, 0, java.util.Map.of(), null, null,
      null);
  /**
   * The environment variables whose headers exports carry, as OpenTelemetry's SDKs read them: the
   * first one set is taken.
   */
  public static final java.util.List<String> HEADERS_VARIABLES =
      java.util.List.of("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS");
  /** The environment variables of the endpoint, the traces' own first (taken as it is), then the base one. */
  public static final java.util.List<String> ENDPOINT_VARIABLES =
      java.util.List.of("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT");
  public static final java.util.List<String> PROTOCOL_VARIABLES =
      java.util.List.of("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL");
  public static final java.util.List<String> COMPRESSION_VARIABLES =
      java.util.List.of("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION");
  /** The path an OTLP/HTTP collector takes traces at. */
  public static final String TRACES_PATH = "/v1/traces";

  /** How spans are sent, by the names OpenTelemetry's {@code OTEL_EXPORTER_OTLP_PROTOCOL} gives them. */
  public enum Protocol {
    /** OTLP/HTTP with protobuf bodies, a collector's port 4318. */
    HTTP("http/protobuf"),
    /** OTLP/gRPC, a collector's port 4317. */
    GRPC("grpc");

    private final String text;

    Protocol(String text) {
      this.text = text;
    }

    /** The protocol {@code text} names ({@code http/protobuf} or {@code grpc}). */
    public static Protocol named(String text) {
      for (Protocol protocol : values()) {
        if (protocol.text.equals(text)) {
          return protocol;
        }
      }
      throw new IllegalArgumentException("trace protocol: " + text + " (expected: http/protobuf or grpc)");
    }

    @Override
    public String toString() {
      return text;
    }
  }

  public TraceSettings {
    headers = java.util.Map.copyOf(headers);
    java.util.Objects.requireNonNull(protocol, "protocol");
    if (!(sampleRate >= 0 && sampleRate <= 1)) {
      throw new IllegalArgumentException("trace sample rate: " + sampleRate + " (expected: 0 to 1)");
    }
    if (endpoint != null) {
      checkAddress(endpoint, protocol);
      String path = endpoint.getRawPath();
      boolean noPath = path == null || path.isEmpty() || path.equals("/");
      if (protocol == Protocol.GRPC && (!noPath || endpoint.getRawQuery() != null)) {
        throw new IllegalArgumentException("trace endpoint: " + endpoint + " (expected: an OTLP/gRPC address,"
            + " http://host:4317 or https://host:4317, without a path: the path is gRPC's method)");
      }
      if (protocol == Protocol.HTTP && noPath) {
        endpoint = endpoint.resolve(TRACES_PATH);
      }
    } else if (sampleRate > 0) {
      throw new IllegalArgumentException("trace sample rate " + sampleRate + " without a trace endpoint to send spans to");
    } else if (protocol != Protocol.HTTP) {
      throw new IllegalArgumentException("trace protocol " + protocol + " without a trace endpoint to send spans to");
    } else if (gzip) {
      throw new IllegalArgumentException("trace compression gzip without a trace endpoint to send spans to");
    }
    if ((cert == null) != (key == null)) {
      throw new IllegalArgumentException("--trace-cert and --trace-key go together (mutual TLS with the collector)");
    }
    if ((ca != null || cert != null) && (endpoint == null || !"https".equals(endpoint.getScheme()))) {
      throw new IllegalArgumentException("--trace-ca, --trace-cert and --trace-key are for an https:// trace endpoint"
          + (endpoint == null ? " (none given)" : " (given: " + endpoint + ")"));
    }
    for (java.nio.file.Path file : new java.nio.file.Path[] {ca, cert, key}) {
      if (file != null && !java.nio.file.Files.isReadable(file)) {
        throw new IllegalArgumentException("trace TLS file " + file + " is not readable");
      }
    }
  }

  /** Calls traced, spans sent to {@code endpoint} over OTLP/HTTP, no headers. */
  public static TraceSettings to(URI endpoint, double sampleRate) {
    return to(Protocol.HTTP, endpoint, sampleRate);
  }

  /** Calls traced, spans sent to {@code endpoint} over {@code protocol}, no headers. */
  public static TraceSettings to(Protocol protocol, URI endpoint, double sampleRate) {
    return new TraceSettings(endpoint, protocol, false, sampleRate, java.util.Map.of(), null, null, null);
  }

  /**
   * The settings of the flags, each one not given ({@code null}) taken from OpenTelemetry's SDK
   * environment variables as its SDKs read them, the traces' own before the general one: the
   * endpoint ({@code OTEL_EXPORTER_OTLP_TRACES_ENDPOINT} as it is, or {@code
   * OTEL_EXPORTER_OTLP_ENDPOINT} as a base: over HTTP {@code v1/traces} is added to its path), the
   * protocol, the compression; the headers come from the environment alone. With {@code
   * OTEL_SDK_DISABLED=true} the environment turns no tracing on.
   *
   * @throws IllegalArgumentException naming the flag or variable whose value is not one
   */
  public static TraceSettings resolve(java.util.Map<String, String> environment, URI endpoint, String protocol,
      String compression, double sampleRate, java.nio.file.Path ca, java.nio.file.Path cert, java.nio.file.Path key) {
    String protocolText = protocol != null ? protocol : first(environment, PROTOCOL_VARIABLES, "http/protobuf");
    Protocol chosen = named(protocol != null ? "--trace-protocol" : variable(environment, PROTOCOL_VARIABLES),
        () -> Protocol.named(protocolText));
    String compressionText = compression != null ? compression : first(environment, COMPRESSION_VARIABLES, "none");
    boolean gzip = named(compression != null ? "--trace-compression" : variable(environment, COMPRESSION_VARIABLES),
        () -> gzip(compressionText));
    String endpointFrom = "--trace-endpoint";
    if (endpoint == null && !"true".equalsIgnoreCase(environment.getOrDefault("OTEL_SDK_DISABLED", "").strip())) {
      String own = environment.get(ENDPOINT_VARIABLES.get(0));
      String base = environment.get(ENDPOINT_VARIABLES.get(1));
      if (own != null && !own.isBlank()) {
        endpointFrom = "$" + ENDPOINT_VARIABLES.get(0);
        endpoint = named(endpointFrom, () -> URI.create(own.strip()));
      } else if (base != null && !base.isBlank()) {
        endpointFrom = "$" + ENDPOINT_VARIABLES.get(1);
        URI at = named(endpointFrom, () -> URI.create(base.strip()));
        Protocol sending = chosen;
        URI address = at;
        named(endpointFrom, () -> {
          checkAddress(address, sending); // before the path is added: the message shows the value as given
          return address;
        });
        if (chosen == Protocol.HTTP) {
          String path = at.getRawPath() == null ? "" : at.getRawPath();
          at = at.resolve((path.endsWith("/") ? path : path + "/") + TRACES_PATH.substring(1));
        }
        endpoint = at;
      }
    }
    if (endpoint == null) {
      // Nothing traced: what the environment says of how to send is moot (a flag saying it is refused).
      chosen = protocol != null ? chosen : Protocol.HTTP;
      gzip = compression != null && gzip;
    }
    java.util.Map<String, String> headers = java.util.Map.of();
    String headersVariable = variable(environment, HEADERS_VARIABLES);
    if (headersVariable != null) {
      headers = named(headersVariable, () -> parseHeaders(environment.get(headersVariable.substring(1))));
    }
    URI resolved = endpoint;
    boolean finalGzip = gzip;
    Protocol finalProtocol = chosen;
    java.util.Map<String, String> finalHeaders = headers;
    try {
      return new TraceSettings(resolved, finalProtocol, finalGzip, sampleRate, finalHeaders, ca, cert, key);
    } catch (IllegalArgumentException e) {
      // An endpoint that is no collector's address says where it came from, as other values do.
      if (resolved != null && e.getMessage().startsWith("trace endpoint: ")) {
        throw new IllegalArgumentException(endpointFrom + ": " + e.getMessage(), e);
      }
      throw e;
    }
  }

  /** Refuses an {@code endpoint} that is not an http:// or https:// address of a host. */
  private static void checkAddress(URI endpoint, Protocol protocol) {
    String scheme = endpoint.getScheme();
    if (!"http".equals(scheme) && !"https".equals(scheme) || endpoint.getHost() == null) {
      throw new IllegalArgumentException("trace endpoint: " + endpoint + (protocol == Protocol.GRPC
          ? " (expected: an OTLP/gRPC address, http://host:4317 or https://host:4317)"
          : " (expected: an OTLP/HTTP address, http://host:4318 or https://host:4318, with or without a path)"));
    }
  }

  /** The first of {@code variables} set (not blank) in {@code environment}, as {@code $NAME}; null for none. */
  private static String variable(java.util.Map<String, String> environment, java.util.List<String> variables) {
    for (String variable : variables) {
      String value = environment.get(variable);
      if (value != null && !value.isBlank()) {
        return "$" + variable;
      }
    }
    return null;
  }

  private static String first(java.util.Map<String, String> environment, java.util.List<String> variables, String otherwise) {
    String variable = variable(environment, variables);
    return variable == null ? otherwise : environment.get(variable.substring(1)).strip();
  }

  /** {@code parse}'s value; its error prefixed with where the text came from (none: as it is). */
  private static <T> T named(String where, java.util.function.Supplier<T> parse) {
    try {
      return parse.get();
    } catch (IllegalArgumentException e) {
      throw where == null ? e : new IllegalArgumentException(where + ": " + e.getMessage(), e);
    }
  }

  /** These settings with {@code headers} sent with every export. */
  public TraceSettings withHeaders(java.util.Map<String, String> headers) {
    return new TraceSettings(endpoint, protocol, gzip, sampleRate, headers, ca, cert, key);
  }

  /** These settings with the collector's certificate checked against {@code ca}, and {@code cert} and {@code key} presented (each may be null). */
  public TraceSettings withTls(java.nio.file.Path ca, java.nio.file.Path cert, java.nio.file.Path key) {
    return new TraceSettings(endpoint, protocol, gzip, sampleRate, headers, ca, cert, key);
  }

  /** These settings with each export compressed with gzip, or not. */
  public TraceSettings withGzip(boolean gzip) {
    return new TraceSettings(endpoint, protocol, gzip, sampleRate, headers, ca, cert, key);
  }

  /** The compression {@code text} names, as OpenTelemetry's {@code OTEL_EXPORTER_OTLP_COMPRESSION} does: true for gzip. */
  public static boolean gzip(String text) {
    return switch (text) {
      case "gzip" -> true;
      case "none" -> false;
      default -> throw new IllegalArgumentException("trace compression: " + text + " (expected: none or gzip)");
    };
  }

  /** Whether the exporter's TLS is set by files of the operator's (a CA, a client certificate), not the JVM's defaults. */
  public boolean tlsFiles() {
    return ca != null || cert != null;
  }

  /**
   * The headers of OpenTelemetry's {@code OTEL_EXPORTER_OTLP_HEADERS} format: {@code
   * name=value} pairs separated by commas, each value percent-encoded (RFC 3986: {@code %20} for a
   * space, {@code %2C} for a comma); spaces around each are dropped.
   *
   * @throws IllegalArgumentException where a pair has no name or no {@code =} (the message names
   *     the pair's place, never its value)
   */
  public static java.util.Map<String, String> parseHeaders(String text) {
    java.util.Map<String, String> headers = new java.util.LinkedHashMap<>();
    if (text == null || text.isBlank()) {
      return headers;
    }
    String[] pairs = text.split(",", -1);
    for (int i = 0; i < pairs.length; i++) {
      String pair = pairs[i].strip();
      int equals = pair.indexOf('=');
      if (equals <= 0) {
        throw new IllegalArgumentException("trace export headers: pair " + (i + 1) + " of " + pairs.length
            + " is not name=value");
      }
      String name = pair.substring(0, equals).strip();
      String value = java.net.URLDecoder.decode(pair.substring(equals + 1).strip().replace("+", "%2B"),
          java.nio.charset.StandardCharsets.UTF_8);
      headers.put(name, value);
    }
    return headers;
  }

  /** Whether any call is traced. */
  public boolean on() {
    return endpoint != null;
  }
}

package io.modelgate.gateway.tracing;

import java.net.URI;

/**
 * Where and how often the gateway records spans of the inference calls it serves. Immutable and
 * validated on construction.
 *
 * @param endpoint the OTLP/HTTP traces endpoint spans are sent to (an OpenTelemetry Collector's,
 *     say {@code http://otel-collector:4318/v1/traces}; {@code /v1/traces} is added to an address
 *     given without a path); null: no call is traced
 * @param sampleRate the share of requests that arrive without a W3C {@code traceparent} (or with
 *     one that does not parse) that start a trace of their own, 0 to 1, each message of a stream
 *     drawn; a call whose {@code traceparent} is sampled is always traced, one whose {@code
 *     traceparent} is not sampled never is
 * @param headers sent with every export (a backend's API key, say), by name; never logged
 */
public record TraceSettings(URI endpoint, double sampleRate, java.util.Map<String, String> headers) {
  /** No call traced. */
  public static final TraceSettings OFF = new TraceSettings(null, 0, java.util.Map.of());
  /**
   * The environment variables whose headers exports carry, as OpenTelemetry's SDKs read them: the
   * first one set is taken.
   */
  public static final java.util.List<String> HEADERS_VARIABLES =
      java.util.List.of("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS");
  /** The path an OTLP/HTTP collector takes traces at. */
  public static final String TRACES_PATH = "/v1/traces";

  public TraceSettings {
    headers = java.util.Map.copyOf(headers);
    if (!(sampleRate >= 0 && sampleRate <= 1)) {
      throw new IllegalArgumentException("trace sample rate: " + sampleRate + " (expected: 0 to 1)");
    }
    if (endpoint != null) {
      String scheme = endpoint.getScheme();
      if (!"http".equals(scheme) && !"https".equals(scheme) || endpoint.getHost() == null) {
        throw new IllegalArgumentException("trace endpoint: " + endpoint
            + " (expected: an OTLP/HTTP address, http://host:4318 or https://host:4318, with or without a path)");
      }
      String path = endpoint.getRawPath();
      if (path == null || path.isEmpty() || path.equals("/")) {
        endpoint = endpoint.resolve(TRACES_PATH);
      }
    } else if (sampleRate > 0) {
      throw new IllegalArgumentException("trace sample rate " + sampleRate + " without a trace endpoint to send spans to");
    }
  }

  /** Calls traced, spans sent to {@code endpoint}, no headers. */
  public static TraceSettings to(URI endpoint, double sampleRate) {
    return new TraceSettings(endpoint, sampleRate, java.util.Map.of());
  }

  /** These settings with {@code headers} sent with every export. */
  public TraceSettings withHeaders(java.util.Map<String, String> headers) {
    return new TraceSettings(endpoint, sampleRate, headers);
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

package io.modelgate.gateway.tracing;

import java.net.URI;
import java.time.Duration;

/**
 * Where and how often the gateway records spans of the inference calls it serves. Immutable and
 * validated on construction.
 *
 * @param endpoint the OTLP/HTTP traces endpoint spans are sent to (an OpenTelemetry Collector's,
 *     say {@code http://otel-collector:4318/v1/traces}; {@code /v1/traces} is added to an address
 *     given without a path); null: no call is traced
 * @param sampleRate the share of calls that arrive without a sampled W3C {@code traceparent} that
 *     start a trace of their own, 0 to 1; a call whose {@code traceparent} is sampled is always
 *     traced, one whose {@code traceparent} is not sampled never is
 * @param exportDelay how long a finished span may wait before it is sent with others
 */
public record TraceSettings(URI endpoint, double sampleRate, Duration exportDelay) {
  /** No call traced. */
  public static final TraceSettings OFF = new TraceSettings(null, 0, Duration.ofSeconds(1));
  /** The path an OTLP/HTTP collector takes traces at. */
  public static final String TRACES_PATH = "/v1/traces";

  public TraceSettings {
    if (!(sampleRate >= 0 && sampleRate <= 1)) {
      throw new IllegalArgumentException("trace sample rate: " + sampleRate + " (expected: 0 to 1)");
    }
    if (exportDelay.isNegative() || exportDelay.isZero()) {
      throw new IllegalArgumentException("trace export delay: " + exportDelay + " (expected: more than zero)");
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

  /** Calls traced, spans sent to {@code endpoint}, a second's wait before a batch is sent. */
  public static TraceSettings to(URI endpoint, double sampleRate) {
    return new TraceSettings(endpoint, sampleRate, Duration.ofSeconds(1));
  }

  /** Whether any call is traced. */
  public boolean on() {
    return endpoint != null;
  }
}

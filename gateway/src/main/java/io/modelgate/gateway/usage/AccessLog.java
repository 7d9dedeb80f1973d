package io.modelgate.gateway.usage;

import io.grpc.Status;
import java.util.concurrent.ThreadLocalRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The access log: a sampled share of requests, one line each on the logger {@code modelgate.access}
 * with the request's id, tenant, model, version, status, latency, rows and bytes as key-value
 * pairs (fields of their own with {@code --log-format json}), and the trace of a call traced
 * ({@code trace_id}, first, where there is one). The command line's logging hands
 * lines to a background appender that drops rather than blocks, so a slow terminal or pipe never
 * holds an answering thread.
 */
public final class AccessLog {
  private static final Logger log = LoggerFactory.getLogger("modelgate.access");
  /** The default share of requests logged. */
  public static final double DEFAULT_RATE = 0.01;

  private final double rate;

  /** @param rate the share of requests logged, 0 (off) to 1 */
  public AccessLog(double rate) {
    if (!(rate >= 0 && rate <= 1)) {
      throw new IllegalArgumentException("access log rate: " + rate + " (expected: 0 to 1)");
    }
    this.rate = rate;
  }

  public static AccessLog off() {
    return new AccessLog(0);
  }

  /** Whether this request is logged: a draw at the rate. Never allocates. */
  boolean sampled() {
    return rate > 0 && (rate >= 1 || ThreadLocalRandom.current().nextDouble() < rate) && log.isInfoEnabled();
  }

  void log(String id, String tenant, String model, String version, Status.Code code, long latencyNanos, int rows,
      long bytesIn, long bytesOut, String traceId) {
    org.slf4j.spi.LoggingEventBuilder line = log.atInfo();
    if (traceId != null) {
      line = line.addKeyValue("trace_id", traceId);
    }
    line
        .addKeyValue("id", id)
        .addKeyValue("tenant", tenant)
        .addKeyValue("model", model)
        .addKeyValue("version", version)
        .addKeyValue("status", code.name())
        .addKeyValue("latency_ms", Math.round(latencyNanos / 1e3) / 1e3)
        .addKeyValue("rows", rows)
        .addKeyValue("bytes_in", bytesIn)
        .addKeyValue("bytes_out", bytesOut)
        .log("request");
  }
}

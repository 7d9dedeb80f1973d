package io.modelgate.gateway.inference;

import java.time.Duration;
import java.util.Objects;

/**
 * How slowly a request message may arrive before the server gives up on it. grpc-java gathers a
 * message whole before the service sees it, and {@link RequestMemory} holds what it gathered; a
 * client that stops sending part way through a large message, or sends it a few bytes at a time,
 * would otherwise hold those bytes until its connection ends. Once {@value #WATCHED_FROM} bytes of
 * a message have arrived, it must gain at least {@code minBytesPerSecond × window} bytes in every
 * {@code window} until it is whole; one that does not is ended, as a request body's read timeout
 * with a minimum rate works in HTTP servers: at its next bytes with {@code DEADLINE_EXCEEDED} and
 * the reason, or, if none come within another window, by resetting its stream; what it gathered
 * is freed either way ({@link RequestMemory}).
 * Smaller messages are not watched: they hold little, and watching costs a little on every call.
 * Immutable and validated.
 *
 * @param window how long a message has to gain its bytes; {@link Duration#ZERO}: never cancelled
 * @param minBytesPerSecond the rate a message must keep up over each window, bytes a second; 0:
 *     any byte at all in each window
 */
public record ReceiveTimeout(Duration window, long minBytesPerSecond) {
  /** Messages are watched once this many of their bytes (the 5-byte gRPC header included) have arrived. */
  public static final int WATCHED_FROM = 64 * 1024;

  /** 30 s windows, 16 KiB a second: 480 KiB every 30 s, far below any data centre link. */
  public static final ReceiveTimeout DEFAULT = new ReceiveTimeout(Duration.ofSeconds(30), 16 * 1024);

  /** Messages may take as long as they take. */
  public static final ReceiveTimeout OFF = new ReceiveTimeout(Duration.ZERO, 0);

  public ReceiveTimeout {
    Objects.requireNonNull(window, "receive timeout");
    if (window.isNegative() || (!window.isZero() && (window.compareTo(Duration.ofSeconds(1)) < 0
        || window.compareTo(Duration.ofHours(1)) > 0))) {
      throw new IllegalArgumentException("receive timeout: " + io.modelgate.gateway.config.TimeSpans.format(window) + " (expected: 0 for none, or 1s to 1h)");
    }
    if (minBytesPerSecond < 0 || minBytesPerSecond > Integer.MAX_VALUE) {
      throw new IllegalArgumentException(
          "receive min rate: " + minBytesPerSecond + " bytes a second (expected: 0 to " + Integer.MAX_VALUE + ")");
    }
  }

  /** Whether slow messages are cancelled at all. */
  public boolean enabled() {
    return !window.isZero();
  }

  /** The bytes a watched message must gain in each window, at least 1. */
  long leastBytesPerWindow() {
    return Math.max(1, minBytesPerSecond * window.toMillis() / 1000);
  }
}

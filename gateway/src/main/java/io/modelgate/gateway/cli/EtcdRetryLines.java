package io.modelgate.gateway.cli;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.turbo.TurboFilter;
import ch.qos.logback.core.spi.FilterReply;
import io.modelgate.runtime.logging.LogThrottle;
import java.time.Duration;
import java.util.function.LongSupplier;
import org.slf4j.Marker;

/**
 * Lets the etcd client's retry warnings through at most once a minute each: jetcd warns of every
 * failed attempt of every operation ({@code retry failure (attempt: N, error: ...)}, then {@code
 * maximum number of auto retries reached ...}), about four lines a second per replica while etcd is
 * down — some 14,000 an hour of an outage — where the control store already says, once, that etcd
 * cannot be reached and when it is again, and the metrics say so throughout. Every other line of
 * the etcd client passes, and so does every retry line while {@code io.etcd} logs at DEBUG (an
 * operator looking into it: {@code modelgate admin log --logger io.etcd --level DEBUG}).
 *
 * <p>Threads: any; {@link #decide} runs for every log call, so it looks at the level and the
 * format's first characters before anything else, and holds no lock.
 */
final class EtcdRetryLines extends TurboFilter {
  static final String RETRY = "retry failure (attempt: ";
  static final String RETRIES_EXCEEDED = "maximum number of auto retries reached";
  static final Duration EVERY = Duration.ofMinutes(1);

  private final LogThrottle retries;
  private final LogThrottle exceeded;

  EtcdRetryLines() {
    this(System::nanoTime);
  }

  /** With {@code nanoTime} for the clock (tests). */
  EtcdRetryLines(LongSupplier nanoTime) {
    this.retries = new LogThrottle(EVERY, nanoTime);
    this.exceeded = new LogThrottle(EVERY, nanoTime);
  }

  @Override
  public FilterReply decide(Marker marker, Logger logger, Level level, String format, Object[] params, Throwable t) {
    if (level != Level.WARN || format == null || logger == null) {
      return FilterReply.NEUTRAL;
    }
    LogThrottle throttle;
    if (format.startsWith(RETRY)) {
      throttle = retries;
    } else if (format.startsWith(RETRIES_EXCEEDED)) {
      throttle = exceeded;
    } else {
      return FilterReply.NEUTRAL;
    }
    if (!logger.getName().startsWith("io.etcd.") || logger.isDebugEnabled()) {
      return FilterReply.NEUTRAL;
    }
    return throttle.pass() >= 0 ? FilterReply.NEUTRAL : FilterReply.DENY;
  }
}

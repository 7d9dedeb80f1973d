package io.modelgate.gateway.cli;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import org.junit.jupiter.api.Test;

class EtcdRetryLinesTest {
  private final long[] nanos = {0};
  private final LoggerContext context = new LoggerContext();
  private final ListAppender<ILoggingEvent> lines = new ListAppender<>();

  EtcdRetryLinesTest() {
    lines.setContext(context);
    lines.start();
    context.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME).addAppender(lines);
    context.getLogger("io.etcd").setLevel(Level.WARN);
    context.addTurboFilter(new EtcdRetryLines(() -> nanos[0]));
  }

  /** An etcd outage's attempts as jetcd logs them, {@code times} times over. */
  private void outage(Logger kv, int times) {
    for (int i = 0; i < times; i++) {
      kv.warn("retry failure (attempt: {}, error: {})", 3, "UNAVAILABLE: io exception");
      kv.warn("maximum number of auto retries reached (attempt: {}, error: {})", 3, "UNAVAILABLE: io exception");
    }
  }

  @Test
  void retryWarnings_passOnceAMinuteEach_everythingElsePasses() {
    Logger kv = context.getLogger("io.etcd.jetcd.impl.KVImpl");
    Logger lease = context.getLogger("io.etcd.jetcd.impl.LeaseImpl");
    outage(kv, 50);
    outage(lease, 50);
    assertThat(lines.list).extracting(ILoggingEvent::getFormattedMessage).containsExactly(
        "retry failure (attempt: 3, error: UNAVAILABLE: io exception)",
        "maximum number of auto retries reached (attempt: 3, error: UNAVAILABLE: io exception)");
    // Other lines of the etcd client, and the same words from another library, are never held back.
    kv.warn("watch failed");
    context.getLogger("io.modelgate.Something").warn("retry failure (attempt: {}, error: {})", 1, "x");
    kv.error("retry failure (attempt: {}, error: {})", 1, "an error, not a warning");
    assertThat(lines.list).hasSize(5);
    // A minute on: one of each again.
    nanos[0] += EtcdRetryLines.EVERY.toNanos();
    outage(kv, 10);
    assertThat(lines.list).hasSize(7);
    nanos[0] += EtcdRetryLines.EVERY.toNanos() - 1;
    outage(kv, 10);
    assertThat(lines.list).hasSize(7);
  }

  @Test
  void anOperatorDebuggingTheEtcdClient_seesEveryAttempt() {
    context.getLogger("io.etcd").setLevel(Level.DEBUG);
    outage(context.getLogger("io.etcd.jetcd.impl.KVImpl"), 20);
    assertThat(lines.list).hasSize(40);
  }
}

package io.modelgate.gateway.cli;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.JsonEncoder;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.ConsoleAppender;
import ch.qos.logback.core.encoder.Encoder;
import org.slf4j.LoggerFactory;

/**
 * Where the command line's log lines go: standard error, one line per event, as text (the
 * default: time, level, logger, message and its key-value pairs such as an access line's tenant)
 * or as JSON (Logback's {@link JsonEncoder}: one object per line with timestamp, level, logger,
 * message, key-value pairs and the throwable). gRPC and Netty log warnings only; the etcd client's
 * warnings of each failed attempt, at most once a minute ({@link EtcdRetryLines}).
 */
final class Logging {
  static final String TEXT_PATTERN = "%d{yyyy-MM-dd'T'HH:mm:ss.SSSZ} %-5level %logger{0} - %msg %kvp%n";

  private Logging() {}

  /**
   * Writes out the lines still queued for the console (waiting up to a second) and stops logging:
   * the last step of shutdown, so that the JVM does not exit with the final lines — "stopped" among
   * them — still in the queue.
   */
  static void flush() {
    if (LoggerFactory.getILoggerFactory() instanceof LoggerContext context) {
      context.stop();
    }
  }

  /** Replaces whatever configuration there is with {@code format} ({@code text} or {@code json}). */
  static void configure(String format) {
    if (!(LoggerFactory.getILoggerFactory() instanceof LoggerContext context)) {
      return;
    }
    context.reset();
    Encoder<ILoggingEvent> encoder;
    if (format.equals("json")) {
      JsonEncoder json = new JsonEncoder();
      json.setWithSequenceNumber(false);
      json.setWithNanoseconds(false);
      json.setWithContext(false);
      json.setWithArguments(false);
      json.setWithMessage(false);
      json.setWithFormattedMessage(true);
      encoder = json;
    } else {
      PatternLayoutEncoder text = new PatternLayoutEncoder();
      text.setPattern(TEXT_PATTERN);
      encoder = text;
    }
    encoder.setContext(context);
    encoder.start();
    ConsoleAppender<ILoggingEvent> console = new ConsoleAppender<>();
    console.setContext(context);
    console.setName("console");
    console.setTarget("System.err");
    console.setEncoder(encoder);
    console.start();
    // Lines reach the console from a queue: a full one drops lines rather than blocking a thread
    // that answers requests (warnings and errors are never dropped while there is room).
    ch.qos.logback.classic.AsyncAppender async = new ch.qos.logback.classic.AsyncAppender();
    async.setContext(context);
    async.setName("async");
    async.setQueueSize(8192);
    async.setNeverBlock(true);
    async.addAppender(console);
    async.start();
    ch.qos.logback.classic.Logger root = context.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);
    root.setLevel(Level.INFO);
    root.addAppender(async);
    context.getLogger("io.grpc").setLevel(Level.WARN);
    // grpc-java warns once per stream it fails while gathering a message: one over the inbound
    // limit, refused by the request memory, or malformed. Each is the client's error, answered with
    // its status and counted in the metrics; a line for each would flood the log under the very
    // overload it reports.
    context.getLogger("io.grpc.netty.NettyServerStream").setLevel(Level.ERROR);
    context.getLogger("io.netty").setLevel(Level.WARN);
    context.getLogger("io.etcd").setLevel(Level.WARN);
    // The etcd client warns of every failed attempt while etcd is down: once a minute is plenty.
    EtcdRetryLines etcdRetries = new EtcdRetryLines();
    etcdRetries.setContext(context);
    etcdRetries.start();
    context.addTurboFilter(etcdRetries);
    context.getLogger("io.vertx").setLevel(Level.WARN);
  }
}

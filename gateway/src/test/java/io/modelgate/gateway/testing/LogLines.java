package io.modelgate.gateway.testing;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.util.List;
import org.slf4j.LoggerFactory;

/**
 * The lines one class logs at INFO and above while open (from every thread, every replica in the
 * JVM); the logger's level is set back as it closes. Thread-safe.
 */
public final class LogLines implements AutoCloseable {
  private final Logger logger;
  private final Level before;
  private final ListAppender<ILoggingEvent> lines = new ListAppender<>();

  public LogLines(Class<?> logging) {
    logger = (Logger) LoggerFactory.getLogger(logging);
    before = logger.getLevel();
    lines.start();
    logger.addAppender(lines);
    logger.setLevel(Level.INFO);
  }

  /** The messages logged so far that start with {@code prefix}, formatted, in order. */
  public List<String> startingWith(String prefix) {
    synchronized (lines) {
      return lines.list.stream().map(ILoggingEvent::getFormattedMessage).filter(line -> line.startsWith(prefix)).toList();
    }
  }

  @Override
  public void close() {
    logger.detachAppender(lines);
    logger.setLevel(before);
  }
}

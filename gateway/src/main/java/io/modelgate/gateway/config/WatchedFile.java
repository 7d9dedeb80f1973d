package io.modelgate.gateway.config;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A configuration file and the value read from it, read again when the file changes (checked
 * every 2 seconds, and on {@link #reload}): the callers file and the admin tokens file, whose keys
 * are added or revoked without a restart. A change that cannot be used is logged and the value in
 * force stays.
 *
 * <p>Threads: the value is immutable, behind a volatile field; request threads only read it. One
 * thread per file, {@code modelgate-watch-<what>}, checks it.
 *
 * @param <T> the immutable value a file holds
 */
public final class WatchedFile<T> implements Supplier<T>, AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(WatchedFile.class);
  static final long CHECK_MILLIS = 2000;

  /** Reads a file's value; throws with a message naming the key and what was expected. */
  @FunctionalInterface
  public interface Reader<T> {
    T read(Path file) throws IOException, InvalidFileException;
  }

  /** A file that cannot be used; the message says why. */
  public static class InvalidFileException extends Exception {
    private static final long serialVersionUID = 1L;

    public InvalidFileException(String message) {
      super(message);
    }
  }

  private final String what;
  private final Path file;
  private final Reader<T> reader;
  private final ScheduledExecutorService checker;
  private volatile T value;
  private FileTime read;
  private long size;

  private WatchedFile(String what, Path file, Reader<T> reader, T value, FileTime read, long size) {
    this.what = what;
    this.file = file;
    this.reader = reader;
    this.value = value;
    this.read = read;
    this.size = size;
    this.checker = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "modelgate-watch-" + what.replace(' ', '-'));
      t.setDaemon(true);
      return t;
    });
    checker.scheduleWithFixedDelay(this::check, CHECK_MILLIS, CHECK_MILLIS, TimeUnit.MILLISECONDS);
  }

  /**
   * Reads {@code file} now (the server does not start without a valid one) and follows it.
   *
   * @param what names the file in messages, e.g. {@code callers file}
   * @throws InvalidFileException naming the file, the key and what was expected
   */
  public static <T> WatchedFile<T> open(String what, Path file, Reader<T> reader) throws IOException, InvalidFileException {
    FileTime modified = Files.getLastModifiedTime(file);
    long size = Files.size(file);
    T value;
    try {
      value = reader.read(file);
    } catch (InvalidFileException e) {
      throw new InvalidFileException(what + " " + file.getFileName() + ": " + e.getMessage());
    }
    log.info("{} {} read: {}", what, file, value);
    return new WatchedFile<>(what, file, reader, value, modified, size);
  }

  @Override
  public T get() {
    return value;
  }

  public Path file() {
    return file;
  }

  /** Reads the file again if it changed since it was last read; true when a new value is in force. */
  public synchronized boolean reload() {
    try {
      FileTime modified = Files.getLastModifiedTime(file);
      long length = Files.size(file);
      if (modified.equals(read) && length == size) {
        return false;
      }
      read = modified;
      size = length;
      value = reader.read(file);
      log.info("{} {} read again: {}", what, file, value);
      return true;
    } catch (IOException | InvalidFileException e) {
      log.error("{} {} changed but cannot be used ({}); the one read before stays in force", what, file, e.getMessage());
      return false;
    }
  }

  private void check() {
    try {
      reload();
    } catch (RuntimeException e) {
      log.error("checking the {} failed", what, e);
    }
  }

  @Override
  public void close() {
    checker.shutdownNow();
  }
}

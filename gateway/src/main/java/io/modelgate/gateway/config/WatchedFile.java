package io.modelgate.gateway.config;

import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A configuration file (or files read together) and the value read from it, read again when a
 * file changes (checked every 2 seconds, and on {@link #reload}): the callers file and the admin
 * tokens file, whose keys are added or revoked without a restart, and a port's TLS certificate, key
 * and client CAs, renewed without one. A value may name further files it was read from (the JWKS a
 * callers file names: {@link #alsoWatching}); a change to one of those reads the whole value again
 * too. A change that cannot be used is logged, counted ({@link #failures}) and the value in force
 * stays; a file is read again once it changes again.
 *
 * <p>Threads: the value is immutable, behind a volatile field; request threads only read it. One
 * thread per watched value, {@code modelgate-watch-<what>}, checks the files.
 *
 * @param <T> the immutable value the files hold
 */
public final class WatchedFile<T> implements Supplier<T>, AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(WatchedFile.class);
  static final long CHECK_MILLIS = 2000;

  /** Reads a file's value; throws with a message naming the key and what was expected. */
  @FunctionalInterface
  public interface Reader<T> {
    T read(Path file) throws IOException, InvalidFileException;
  }

  /** Reads a value from several files at once; throws with a message saying what is wrong. */
  @FunctionalInterface
  public interface Loader<T> {
    T load() throws IOException, InvalidFileException;
  }

  /** A file that cannot be used; the message says why. */
  public static class InvalidFileException extends Exception {
    private static final long serialVersionUID = 1L;

    public InvalidFileException(String message) {
      super(message);
    }

    public InvalidFileException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  private final String what;
  private final List<Path> files;
  private final Loader<T> loader;
  private final ScheduledExecutorService checker;
  private volatile T value;
  /** Each file's modification time and size when last read (by the checker, under this lock). */
  private List<Object> read;
  private volatile long failures;
  /** The further files a value was read from, found in it; watched as the files themselves are. */
  private java.util.function.Function<? super T, List<Path>> alsoRead = value -> List.of();

  private WatchedFile(String what, List<Path> files, Loader<T> loader, T value, List<Object> read) {
    this.what = what;
    this.files = files;
    this.loader = loader;
    this.value = value;
    this.read = read;
    this.checker = DaemonThreads.scheduled("modelgate-watch-" + what.replace(' ', '-'));
    checker.scheduleWithFixedDelay(this::check, CHECK_MILLIS, CHECK_MILLIS, TimeUnit.MILLISECONDS);
  }

  /**
   * Reads {@code file} now (the server does not start without a valid one) and follows it.
   *
   * @param what names the file in messages, e.g. {@code callers file}
   * @throws InvalidFileException naming the file, the key and what was expected
   */
  public static <T> WatchedFile<T> open(String what, Path file, Reader<T> reader) throws IOException, InvalidFileException {
    return open(what, what + " " + file.getFileName(), List.of(file), () -> reader.read(file));
  }

  /**
   * Reads {@code files} together now, with {@code loader} (the server does not start without a
   * valid value), and again whenever any of them changes.
   *
   * @param what names the value in messages and in the checker thread's name
   * @throws InvalidFileException prefixed with {@code what}
   */
  public static <T> WatchedFile<T> open(String what, List<Path> files, Loader<T> loader)
      throws IOException, InvalidFileException {
    return open(what, what, files, loader);
  }

  private static <T> WatchedFile<T> open(String what, String label, List<Path> files, Loader<T> loader)
      throws IOException, InvalidFileException {
    List<Object> stamp = stamp(files);
    T value;
    try {
      value = loader.load();
    } catch (InvalidFileException e) {
      throw new InvalidFileException(label + ": " + e.getMessage(), e);
    }
    log.info("{} {} read: {}", what, files, value);
    return new WatchedFile<>(what, List.copyOf(files), loader, value, stamp);
  }

  /** Each file's modification time and size, in order. */
  private static List<Object> stamp(List<Path> files) throws IOException {
    List<Object> stamp = new ArrayList<>(2 * files.size());
    for (Path file : files) {
      stamp.add(Files.getLastModifiedTime(file));
      stamp.add(Files.size(file));
    }
    return stamp;
  }

  @Override
  public T get() {
    return value;
  }

  /**
   * Watches, besides the files opened, those each value names ({@code alsoRead}: the JWKS file a
   * callers file names, say), so that a change to one of them reads the value again; returns this.
   */
  public synchronized WatchedFile<T> alsoWatching(java.util.function.Function<? super T, List<Path>> alsoRead) {
    this.alsoRead = java.util.Objects.requireNonNull(alsoRead, "alsoRead");
    try {
      read = stamp(watched(value));
    } catch (IOException e) {
      // Unreadable now: the next check finds a change and reads the value again, or says why not.
      read = List.of();
    }
    return this;
  }

  /** The files opened and those {@code current} names. */
  private List<Path> watched(T current) {
    List<Path> more = alsoRead.apply(current);
    if (more.isEmpty()) {
      return files;
    }
    List<Path> all = new ArrayList<>(files);
    all.addAll(more);
    return all;
  }

  /** The first file watched (the only one, for a single file). */
  public Path file() {
    return files.get(0);
  }

  /**
   * Exports {@link #failures} as {@code modelgate_config_reload_failures_total{file="<what>"}}: an
   * operator's change that is not in force.
   */
  public WatchedFile<T> countFailures(io.micrometer.core.instrument.MeterRegistry registry) {
    io.micrometer.core.instrument.FunctionCounter.builder("modelgate.config.reload.failures", this, WatchedFile::failures)
        .description("Changes to a watched configuration file that could not be used (the value read before stays in force)")
        .tag("file", what)
        .register(registry);
    return this;
  }

  /** Changes read that could not be used, since this was opened. */
  public long failures() {
    return failures;
  }

  /** Reads the files again if any changed since they were last read; true when a new value is in force. */
  public synchronized boolean reload() {
    try {
      List<Path> paths = watched(value);
      List<Object> stamp = stamp(paths);
      if (stamp.equals(read)) {
        return false;
      }
      read = stamp;
      T next = loader.load();
      List<Path> nextPaths = watched(next);
      if (!nextPaths.equals(paths)) {
        // The value names other files now: watch those from here on.
        read = stamp(nextPaths);
      }
      value = next;
      log.info("{} {} read again: {}", what, nextPaths, value);
      return true;
    } catch (IOException | InvalidFileException e) {
      failures++;
      log.error("{} {} changed but cannot be used ({}); the one read before stays in force", what, files, e.getMessage());
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

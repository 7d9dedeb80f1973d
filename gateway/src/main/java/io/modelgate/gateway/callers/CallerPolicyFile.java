package io.modelgate.gateway.callers;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The callers file and the policy read from it, read again when the file changes (checked every 2
 * seconds, and on {@link #reload}): keys added or revoked take effect without a restart. A change
 * that does not parse is logged and the policy in force stays.
 *
 * <p>Threads: the policy is an immutable value behind a volatile field; request threads only read
 * it. One thread, {@code modelgate-callers}, checks the file.
 */
public final class CallerPolicyFile implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(CallerPolicyFile.class);
  static final long CHECK_MILLIS = 2000;

  private final Path file;
  private final ScheduledExecutorService checker;
  private volatile CallerPolicy policy;
  private FileTime read;
  private long size;

  private CallerPolicyFile(Path file, CallerPolicy policy, FileTime read, long size) {
    this.file = file;
    this.policy = policy;
    this.read = read;
    this.size = size;
    this.checker = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "modelgate-callers");
      t.setDaemon(true);
      return t;
    });
    checker.scheduleWithFixedDelay(this::check, CHECK_MILLIS, CHECK_MILLIS, TimeUnit.MILLISECONDS);
  }

  /** Reads {@code file} now (the server does not start without a valid one) and follows it. */
  public static CallerPolicyFile open(Path file) throws IOException, CallerPolicy.InvalidCallersException {
    FileTime modified = Files.getLastModifiedTime(file);
    long size = Files.size(file);
    CallerPolicy policy;
    try {
      policy = CallerPolicy.read(file);
    } catch (CallerPolicy.InvalidCallersException e) {
      throw new CallerPolicy.InvalidCallersException(file.getFileName() + ": " + e.getMessage());
    }
    log.info("callers file {}: {} tenants, identified by {}", file, policy.tenants().size(), policy.methods());
    return new CallerPolicyFile(file, policy, modified, size);
  }

  public CallerPolicy policy() {
    return policy;
  }

  public Path file() {
    return file;
  }

  /** Reads the file again if it changed since it was last read; true when a new policy is in force. */
  public synchronized boolean reload() {
    try {
      FileTime modified = Files.getLastModifiedTime(file);
      long length = Files.size(file);
      if (modified.equals(read) && length == size) {
        return false;
      }
      read = modified;
      size = length;
      policy = CallerPolicy.read(file);
      log.info("callers file {} read again: {} tenants, identified by {}", file, policy.tenants().size(), policy.methods());
      return true;
    } catch (IOException | CallerPolicy.InvalidCallersException e) {
      log.error("callers file {} changed but cannot be used ({}); the policy read before stays in force", file, e.getMessage());
      return false;
    }
  }

  private void check() {
    try {
      reload();
    } catch (RuntimeException e) {
      log.error("checking the callers file failed", e);
    }
  }

  @Override
  public void close() {
    checker.shutdownNow();
  }
}

package io.modelgate.gateway.control;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import io.modelgate.proto.admin.v1.AdminState;
import io.modelgate.proto.admin.v1.AuditRecord;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * The state directory: routing policies, their history and rollouts in {@code state.json}, written
 * atomically and durably (a temporary file flushed to disk, renamed over the old one, then the
 * directory itself flushed so that the rename survives a crash), and the append-only {@code
 * audit.log}, one JSON record per line, flushed before it returns. A change is acknowledged only
 * after both calls return. Callers serialize writes.
 */
public final class StateStore {
  public static final String STATE_FILE = "state.json";
  public static final String AUDIT_FILE = "audit.log";

  private final Path directory;
  private volatile boolean healthy = true;
  private final java.util.concurrent.atomic.AtomicLong failures = new java.util.concurrent.atomic.AtomicLong();

  public StateStore(Path directory) throws IOException {
    this.directory = Files.createDirectories(directory);
  }

  public Path directory() {
    return directory;
  }

  /** Whether the last write succeeded (true before any). */
  public boolean healthy() {
    return healthy;
  }

  /** Writes that failed since start. */
  public long failures() {
    return failures.get();
  }

  private void outcome(boolean ok) {
    healthy = ok;
    if (!ok) {
      failures.incrementAndGet();
    }
  }

  /** The saved state, or an empty one when none was saved. */
  public AdminState load() throws IOException {
    Path file = directory.resolve(STATE_FILE);
    if (!Files.exists(file)) {
      return AdminState.getDefaultInstance();
    }
    AdminState.Builder state = AdminState.newBuilder();
    try {
      JsonFormat.parser().ignoringUnknownFields().merge(Files.readString(file), state);
    } catch (InvalidProtocolBufferException e) {
      throw new IOException(file + " is not a modelgate state file: " + e.getMessage(), e);
    }
    return state.build();
  }

  /** Replaces the saved state atomically. */
  public void save(AdminState state) {
    Path file = directory.resolve(STATE_FILE);
    Path temporary = directory.resolve(STATE_FILE + ".tmp");
    try {
      byte[] json = JsonFormat.printer().print(state).getBytes(StandardCharsets.UTF_8);
      try (FileChannel channel =
          FileChannel.open(
              temporary,
              StandardOpenOption.CREATE,
              StandardOpenOption.TRUNCATE_EXISTING,
              StandardOpenOption.WRITE)) {
        channel.write(ByteBuffer.wrap(json));
        channel.force(true);
      }
      Files.move(temporary, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      forceDirectory();
      outcome(true);
    } catch (IOException e) {
      outcome(false);
      throw new UncheckedIOException("cannot save " + file + ": " + e.getMessage(), e);
    }
  }

  /**
   * Flushes the directory's entries (a rename, a new file) to disk. Without it a crash right after
   * a rename may come back with the old file, though the change was acknowledged.
   */
  private void forceDirectory() throws IOException {
    try (FileChannel channel = FileChannel.open(directory, StandardOpenOption.READ)) {
      channel.force(true);
    } catch (IOException e) {
      // Some platforms cannot open a directory for reading; there the rename is all there is.
      if (!System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).startsWith("windows")) {
        throw e;
      }
    }
  }

  /** Appends one audit record and flushes it (and, when it creates the file, the directory) to disk. */
  public void audit(AuditRecord record) {
    Path file = directory.resolve(AUDIT_FILE);
    boolean created = !Files.exists(file);
    try (FileChannel channel =
        FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.APPEND, StandardOpenOption.WRITE)) {
      String line = JsonFormat.printer().omittingInsignificantWhitespace().print(record) + "\n";
      channel.write(ByteBuffer.wrap(line.getBytes(StandardCharsets.UTF_8)));
      channel.force(false);
      if (created) {
        forceDirectory();
      }
      outcome(true);
    } catch (IOException e) {
      outcome(false);
      throw new UncheckedIOException("cannot append to " + file + ": " + e.getMessage(), e);
    }
  }
}

package io.modelgate.runtime.repository;

import java.util.List;
import java.util.Objects;

/**
 * A model's sampled payload log, from the {@code payload_log} mapping of its {@code model.yaml}.
 * Immutable and validated.
 *
 * @param sampleRate the share of requests logged, 0 to 1
 * @param keep the tensors (inputs and outputs, by name) whose data is logged; empty: all but {@code drop}
 * @param drop the tensors whose data is never logged (redaction), whatever {@code keep} says
 * @param maxFileBytes the size at which the current file is closed and a new one started
 * @param maxFiles closed files kept; older ones are deleted
 */
public record PayloadLogSettings(double sampleRate, List<String> keep, List<String> drop, long maxFileBytes, int maxFiles) {
  public static final long DEFAULT_MAX_FILE_BYTES = 64L << 20;
  public static final int DEFAULT_MAX_FILES = 10;

  public PayloadLogSettings {
    if (!(sampleRate >= 0 && sampleRate <= 1)) {
      throw new IllegalArgumentException("payload_log.sample_rate: " + sampleRate + " (expected: 0 to 1)");
    }
    keep = List.copyOf(Objects.requireNonNull(keep, "keep"));
    drop = List.copyOf(Objects.requireNonNull(drop, "drop"));
    if (maxFileBytes < 1024) {
      throw new IllegalArgumentException("payload_log.max_file_kb: " + (maxFileBytes / 1024) + " (expected: at least 1)");
    }
    if (maxFiles < 1) {
      throw new IllegalArgumentException("payload_log.max_files: " + maxFiles + " (expected: at least 1)");
    }
  }

  /** Whether a tensor's data may be logged. */
  public boolean logs(String tensor) {
    return !drop.contains(tensor) && (keep.isEmpty() || keep.contains(tensor));
  }
}

package io.modelgate.gateway.cli;

import java.time.Duration;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** Command-line value converters for sizes and durations. */
final class Converters {
  private Converters() {}

  private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?");

  /** {@code 128MiB}, {@code 64m}, {@code 1048576}: a byte count (binary units). */
  static final class ByteSize implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      long bytes = bytes(value);
      if (bytes > Integer.MAX_VALUE) {
        throw new TypeConversionException("'" + value + "' (expected: at most 2GiB - 1)");
      }
      return (int) bytes;
    }
  }

  /**
   * A byte count as {@link ByteSize} takes it, without its 2 GiB bound, or a share of the JVM's
   * heap ({@code 25%}: a quarter of {@code -Xmx}).
   */
  static final class HeapShare implements ITypeConverter<Long> {
    @Override
    public Long convert(String value) {
      String trimmed = value.trim();
      if (trimmed.endsWith("%")) {
        long percent;
        try {
          percent = Long.parseLong(trimmed.substring(0, trimmed.length() - 1).trim());
        } catch (NumberFormatException e) {
          percent = -1;
        }
        if (percent < 1 || percent > 100) {
          throw new TypeConversionException("'" + value + "' (expected: a share of the heap from 1% to 100%, or a size such as 512MiB)");
        }
        return Runtime.getRuntime().maxMemory() / 100 * percent;
      }
      return bytes(value);
    }
  }

  private static long bytes(String value) {
    Matcher m = SIZE.matcher(value.trim().toLowerCase(Locale.ROOT));
    if (!m.matches() || m.group(1).length() > 15) {
      throw new TypeConversionException(
          "'" + value + "' (expected: a size such as 134217728, 128MiB or 1GiB)");
    }
    long n = Long.parseLong(m.group(1));
    String unit = m.group(2) == null ? "b" : m.group(2);
    return switch (unit.charAt(0)) {
      case 'k' -> n << 10;
      case 'm' -> n << 20;
      case 'g' -> n << 30;
      default -> n;
    };
  }

  /** {@code 30s}, {@code 500ms}, {@code 2m}, {@code 12h}, {@code 400d}. */
  static final class TimeSpan implements ITypeConverter<Duration> {
    @Override
    public Duration convert(String value) {
      try {
        return io.modelgate.gateway.config.TimeSpans.parse(value);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }
  }

  /**
   * A statistics window to show: one the server reports ({@link
   * io.modelgate.gateway.stats.StatsRegistry#WINDOWS}, and {@code all}: since the version loaded),
   * or {@code all-windows}.
   */
  static final class StatsWindow implements ITypeConverter<String> {
    static final java.util.List<String> NAMES = java.util.stream.Stream.concat(
        io.modelgate.gateway.stats.StatsRegistry.WINDOWS.stream().map(java.util.Map.Entry::getKey),
        java.util.stream.Stream.of("all", "all-windows")).toList();

    @Override
    public String convert(String value) {
      if (!NAMES.contains(value)) {
        throw new TypeConversionException("'" + value + "' (expected one of: " + String.join(", ", NAMES) + ")");
      }
      return value;
    }
  }
}

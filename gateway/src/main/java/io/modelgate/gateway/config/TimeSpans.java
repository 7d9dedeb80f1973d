package io.modelgate.gateway.config;

import java.time.Duration;

/** Time spans as the command line writes them ({@code 500ms}, {@code 30s}, {@code 2m}, {@code 12h}, {@code 400d}). */
public final class TimeSpans {
  private static final java.util.regex.Pattern SPAN = java.util.regex.Pattern.compile("(\\d+)\\s*(ms|s|m|h|d)");

  private TimeSpans() {}

  /**
   * A span as the command line writes one: {@code 500ms}, {@code 30s}, {@code 2m}, {@code 12h},
   * {@code 400d}, or {@code 0}.
   *
   * @throws IllegalArgumentException naming the value and the forms expected
   */
  public static Duration parse(String value) {
    String trimmed = value.trim().toLowerCase(java.util.Locale.ROOT);
    if (trimmed.equals("0")) {
      return Duration.ZERO;
    }
    java.util.regex.Matcher m = SPAN.matcher(trimmed);
    if (!m.matches()) {
      throw new IllegalArgumentException("'" + value + "' (expected: a duration such as 500ms, 30s, 2m, 12h or 400d)");
    }
    long n = Long.parseLong(m.group(1));
    return switch (m.group(2)) {
      case "ms" -> Duration.ofMillis(n);
      case "s" -> Duration.ofSeconds(n);
      case "h" -> Duration.ofHours(n);
      case "d" -> Duration.ofDays(n);
      default -> Duration.ofMinutes(n);
    };
  }

  /**
   * {@code span} in the largest unit that holds it whole, as {@code serve}'s options take it: 500ms,
   * 5s, 2m, 12h, 400d (not {@code PT5S}); a span below a millisecond or negative, in milliseconds.
   */
  public static String format(Duration span) {
    long ms = span.toMillis();
    if (ms <= 0 || ms % 1000 != 0) {
      return ms + "ms";
    }
    long s = ms / 1000;
    if (s % 86_400 == 0) {
      return s / 86_400 + "d";
    }
    if (s % 3600 == 0) {
      return s / 3600 + "h";
    }
    return s % 60 == 0 ? s / 60 + "m" : s + "s";
  }
}

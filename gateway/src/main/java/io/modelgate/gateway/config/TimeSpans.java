package io.modelgate.gateway.config;

import java.time.Duration;

/** Time spans as the command line writes them ({@code 500ms}, {@code 30s}, {@code 2m}, {@code 12h}, {@code 400d}). */
public final class TimeSpans {
  private TimeSpans() {}

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

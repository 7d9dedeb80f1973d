package io.modelgate.gateway.demo;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The 62 labelled MNIST test digits that ship with the demo (Tribuo's {@code
 * mnist_test_head.libsvm}): each a label and 784 pixels, 0–255, row-major 28×28.
 */
public final class MnistDigits {
  public static final int PIXELS = 28 * 28;

  /** One labelled digit. The pixel array is shared: callers must not modify it. */
  public record Digit(int label, float[] pixels) {}

  private static final List<Digit> DIGITS = load();

  private MnistDigits() {}

  public static List<Digit> all() {
    return DIGITS;
  }

  public static Digit get(int index) {
    if (index < 0 || index >= DIGITS.size()) {
      throw new IllegalArgumentException(
          "digit " + index + " (expected: 0 to " + (DIGITS.size() - 1) + ")");
    }
    return DIGITS.get(index);
  }

  /** The image inverted: each pixel p (0 to 255) becomes 255 − p (a new array). */
  public static float[] inverted(float[] pixels) {
    float[] out = new float[pixels.length];
    for (int i = 0; i < pixels.length; i++) {
      out[i] = 255f - pixels[i];
    }
    return out;
  }

  /**
   * The 28×28 image moved {@code by} pixels right and down, what leaves the frame dropped and the
   * uncovered pixels 0 (a new array).
   */
  public static float[] shifted(float[] pixels, int by) {
    int side = 28;
    float[] out = new float[pixels.length];
    for (int y = 0; y + by < side; y++) {
      for (int x = 0; x + by < side; x++) {
        out[(y + by) * side + x + by] = pixels[y * side + x];
      }
    }
    return out;
  }

  private static List<Digit> load() {
    try (InputStream in = MnistDigits.class.getResourceAsStream("mnist_test_head.libsvm")) {
      if (in == null) {
        throw new IllegalStateException("the demo digits are missing from the build");
      }
      BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII));
      List<Digit> digits = new ArrayList<>();
      String line;
      while ((line = reader.readLine()) != null) {
        if (line.isBlank()) {
          continue;
        }
        String[] fields = line.trim().split("\\s+");
        float[] pixels = new float[PIXELS];
        for (int i = 1; i < fields.length; i++) {
          int colon = fields[i].indexOf(':');
          // libsvm feature indices are 1-based.
          int index = Integer.parseInt(fields[i], 0, colon, 10) - 1;
          pixels[index] = Float.parseFloat(fields[i].substring(colon + 1));
        }
        digits.add(new Digit(Integer.parseInt(fields[0]), pixels));
      }
      return List.copyOf(digits);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}

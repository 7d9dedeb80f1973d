package io.modelgate.gateway.stats;

import com.google.protobuf.ByteString;
import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;

/** HdrHistograms as the fleet exchanges them: HdrHistogram's own compressed encoding. */
public final class Histograms {
  private Histograms() {}

  public static ByteString encode(Histogram histogram) {
    ByteBuffer buffer = ByteBuffer.allocate(histogram.getNeededByteBufferCapacity());
    int length = histogram.encodeIntoCompressedByteBuffer(buffer);
    return ByteString.copyFrom(buffer.array(), 0, length);
  }

  /**
   * @throws IllegalArgumentException for bytes that are not a compressed HdrHistogram
   */
  public static Histogram decode(ByteString bytes) {
    if (bytes.isEmpty()) {
      return new Histogram(2);
    }
    try {
      return Histogram.decodeFromCompressedByteBuffer(bytes.asReadOnlyByteBuffer(), 0);
    } catch (DataFormatException | RuntimeException e) {
      throw new IllegalArgumentException("not a compressed HdrHistogram: " + e.getMessage(), e);
    }
  }

  /**
   * Every recorded value, each bucket's count of times, at the value HdrHistogram reports for it
   * (within the histogram's precision): the samples a rank test needs, from a merged histogram.
   */
  public static long[] values(Histogram histogram) {
    long total = histogram.getTotalCount();
    if (total > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException(total + " values are too many to expand");
    }
    long[] values = new long[(int) total];
    int n = 0;
    for (HistogramIterationValue v : histogram.recordedValues()) {
      long value = histogram.highestEquivalentValue(v.getValueIteratedTo());
      for (long i = 0; i < v.getCountAtValueIteratedTo(); i++) {
        values[n++] = value;
      }
    }
    return java.util.Arrays.copyOf(values, n);
  }
}

package io.modelgate.runtime.tensor;

import java.util.List;

/** Shape arithmetic and formatting shared by the codec, the signature and error messages. */
public final class Shapes {
  private Shapes() {}

  /** {@code [1,3,224,224]}; -1 stands for a dimension of variable size. */
  public static String format(long[] shape) {
    StringBuilder sb = new StringBuilder(2 + shape.length * 4).append('[');
    for (int i = 0; i < shape.length; i++) {
      if (i > 0) {
        sb.append(',');
      }
      sb.append(shape[i]);
    }
    return sb.append(']').toString();
  }

  /** Same as {@link #format(long[])} for a shape as protobuf delivers it. */
  public static String format(List<Long> shape) {
    StringBuilder sb = new StringBuilder(2 + shape.size() * 4).append('[');
    for (int i = 0; i < shape.size(); i++) {
      if (i > 0) {
        sb.append(',');
      }
      sb.append(shape.get(i));
    }
    return sb.append(']').toString();
  }

  /**
   * The number of elements of a concrete shape (no negative dimensions), or -1 when it exceeds
   * {@link Integer#MAX_VALUE}: no tensor that large fits in one message or one Java buffer.
   */
  public static long elementCount(long[] shape) {
    long count = 1;
    for (long dim : shape) {
      if (dim != 0 && count > Integer.MAX_VALUE / dim) {
        return -1;
      }
      count *= dim;
    }
    return count;
  }
}

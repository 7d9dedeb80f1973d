package io.modelgate.runtime.tensor;

import com.google.protobuf.ByteString;
import java.util.Objects;

/**
 * One output of one request as it goes back to the client: name, element type, the shape ONNX
 * Runtime actually produced (not the declared one), and the elements in raw little-endian form
 * (BYTES elements each as a 4-byte little-endian length and their UTF-8 bytes). Immutable.
 */
public final class OutputTensor {
  private final String name;
  private final DataType dataType;
  private final long[] shape;
  private final ByteString data;

  public OutputTensor(String name, DataType dataType, long[] shape, ByteString data) {
    this.name = Objects.requireNonNull(name, "name");
    this.dataType = Objects.requireNonNull(dataType, "dataType");
    this.shape = shape.clone();
    this.data = Objects.requireNonNull(data, "data");
  }

  public String name() {
    return name;
  }

  public DataType dataType() {
    return dataType;
  }

  /** The shape. The array is shared: callers must not modify it. */
  public long[] shape() {
    return shape;
  }

  public ByteString data() {
    return data;
  }

  /** Whether its elements are FP32 or FP64, which {@link #toDoubles} reads. */
  public boolean isFloatingPoint() {
    return dataType == DataType.FP32 || dataType == DataType.FP64;
  }

  /**
   * Its FP32 or FP64 elements as doubles, in order (a copy).
   *
   * @throws IllegalStateException for another element type
   */
  public double[] toDoubles() {
    if (!isFloatingPoint()) {
      throw new IllegalStateException(name + " is " + dataType.wireName() + ", not FP32 or FP64");
    }
    java.nio.ByteBuffer buffer = data.asReadOnlyByteBuffer().order(java.nio.ByteOrder.LITTLE_ENDIAN);
    boolean single = dataType == DataType.FP32;
    double[] values = new double[data.size() / (single ? 4 : 8)];
    for (int i = 0; i < values.length; i++) {
      values[i] = single ? buffer.getFloat() : buffer.getDouble();
    }
    return values;
  }

  /** The index, from 0, of the largest of {@code width} values starting at {@code from} (the first of ties). */
  public static int argmax(double[] values, int from, int width) {
    int best = from;
    for (int i = from + 1; i < from + width; i++) {
      if (values[i] > values[best]) {
        best = i;
      }
    }
    return best - from;
  }

  /** The length of the last axis: the classes of a classifier's output (1 for a scalar). */
  public int rowWidth() {
    return (int) Math.max(1, shape.length == 0 ? 1 : shape[shape.length - 1]);
  }
}

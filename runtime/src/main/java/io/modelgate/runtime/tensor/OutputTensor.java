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
}

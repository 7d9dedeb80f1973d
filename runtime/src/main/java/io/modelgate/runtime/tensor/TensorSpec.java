package io.modelgate.runtime.tensor;

import java.util.Objects;

/**
 * One input or output of a model as ONNX Runtime reports it: name, element type and shape, with -1
 * for each dimension of variable size. Immutable.
 */
public final class TensorSpec {
  private final String name;
  private final DataType dataType;
  private final long[] shape;
  private final String shapeText;

  public TensorSpec(String name, DataType dataType, long[] shape) {
    this.name = Objects.requireNonNull(name, "name");
    this.dataType = Objects.requireNonNull(dataType, "dataType");
    this.shape = shape.clone();
    for (long dim : this.shape) {
      if (dim < -1) {
        throw new IllegalArgumentException(
            "tensor '" + name + "': dimension " + dim + " (expected: >= 0, or -1 for variable)");
      }
    }
    this.shapeText = Shapes.format(this.shape);
  }

  public String name() {
    return name;
  }

  public DataType dataType() {
    return dataType;
  }

  public int rank() {
    return shape.length;
  }

  /** The size of dimension {@code axis}, or -1 when it varies. */
  public long dim(int axis) {
    return shape[axis];
  }

  /** A copy of the shape. */
  public long[] shape() {
    return shape.clone();
  }

  /** The shape as {@code [-1,1,28,28]}. */
  public String shapeText() {
    return shapeText;
  }

  /** {@code FP32 [-1,1,28,28]}, for messages. */
  public String describe() {
    return dataType.wireName() + " " + shapeText;
  }

  @Override
  public String toString() {
    return name + " " + describe();
  }
}

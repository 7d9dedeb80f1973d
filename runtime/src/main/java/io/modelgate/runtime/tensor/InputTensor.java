package io.modelgate.runtime.tensor;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferTensorContents;
import java.nio.ByteBuffer;

/**
 * One validated input of one request. It holds a view of the request's bytes (raw or typed
 * contents), not a copy: the single copy into memory ONNX Runtime reads happens in {@link
 * #copyTo(ByteBuffer)}, at execution time, straight into the executor's direct buffer.
 *
 * <p>BYTES inputs are held as decoded strings, because ONNX Runtime's Java API takes string
 * tensors only as {@code String[]}.
 *
 * <p>Immutable; safe to read from any thread once published.
 */
public final class InputTensor {
  private final TensorSpec spec;
  private final long[] shape;
  private final int elementCount;
  private final ByteString raw;
  private final InferTensorContents typed;
  private final String[] strings;

  private InputTensor(
      TensorSpec spec,
      long[] shape,
      int elementCount,
      ByteString raw,
      InferTensorContents typed,
      String[] strings) {
    this.spec = spec;
    this.shape = shape;
    this.elementCount = elementCount;
    this.raw = raw;
    this.typed = typed;
    this.strings = strings;
  }

  static InputTensor raw(TensorSpec spec, long[] shape, int elementCount, ByteString bytes) {
    return new InputTensor(spec, shape, elementCount, bytes, null, null);
  }

  static InputTensor typed(
      TensorSpec spec, long[] shape, int elementCount, InferTensorContents contents) {
    return new InputTensor(spec, shape, elementCount, null, contents, null);
  }

  static InputTensor strings(TensorSpec spec, long[] shape, String[] values) {
    return new InputTensor(spec, shape, values.length, null, null, values);
  }

  public TensorSpec spec() {
    return spec;
  }

  public DataType dataType() {
    return spec.dataType();
  }

  /** The request's shape. The array is shared: callers must not modify it. */
  public long[] shape() {
    return shape;
  }

  public int elementCount() {
    return elementCount;
  }

  /** Bytes this tensor occupies in raw form; for BYTES, 0 (its elements are strings). */
  public int byteSize() {
    return elementCount * spec.dataType().elementSize();
  }

  /** The elements of a BYTES input. The array is shared: callers must not modify it. */
  public String[] strings() {
    if (strings == null) {
      throw new IllegalStateException("input '" + spec.name() + "' is not BYTES");
    }
    return strings;
  }

  /**
   * Writes the elements, little-endian and row-major, at {@code dst}'s position and advances it by
   * {@link #byteSize()}. {@code dst} must be in little-endian order. Not for BYTES inputs.
   */
  public void copyTo(ByteBuffer dst) {
    copyTo(dst, 0, elementCount);
  }

  /**
   * Writes elements {@code from} to {@code from + count - 1} (in row-major order) at {@code dst}'s
   * position and advances it. {@code dst} must be in little-endian order. Not for BYTES inputs.
   */
  public void copyTo(ByteBuffer dst, int from, int count) {
    if (raw != null) {
      int size = spec.dataType().elementSize();
      if (from == 0 && count == elementCount) {
        raw.copyTo(dst);
      } else {
        raw.substring(from * size, (from + count) * size).copyTo(dst);
      }
      return;
    }
    InferTensorContents c = typed;
    int end = from + count;
    switch (spec.dataType()) {
      case BOOL:
        for (int i = from; i < end; i++) {
          dst.put(c.getBoolContents(i) ? (byte) 1 : (byte) 0);
        }
        break;
      case UINT8:
        for (int i = from; i < end; i++) {
          dst.put((byte) c.getUintContents(i));
        }
        break;
      case INT8:
        for (int i = from; i < end; i++) {
          dst.put((byte) c.getIntContents(i));
        }
        break;
      case INT16:
        for (int i = from; i < end; i++) {
          dst.putShort((short) c.getIntContents(i));
        }
        break;
      case INT32:
        for (int i = from; i < end; i++) {
          dst.putInt(c.getIntContents(i));
        }
        break;
      case INT64:
        for (int i = from; i < end; i++) {
          dst.putLong(c.getInt64Contents(i));
        }
        break;
      case FP32:
        for (int i = from; i < end; i++) {
          dst.putFloat(c.getFp32Contents(i));
        }
        break;
      case FP64:
        for (int i = from; i < end; i++) {
          dst.putDouble(c.getFp64Contents(i));
        }
        break;
      default:
        throw new IllegalStateException(
            "input '" + spec.name() + "': " + spec.dataType() + " has no typed form to copy");
    }
  }

  /** Whether {@code other} has the same shape and the same elements, whatever their form. */
  public boolean sameContents(InputTensor other) {
    if (!java.util.Arrays.equals(shape, other.shape) || spec.dataType() != other.spec.dataType()) {
      return false;
    }
    if (strings != null) {
      return java.util.Arrays.equals(strings, other.strings);
    }
    if (raw != null && other.raw != null) {
      return raw.equals(other.raw);
    }
    return canonical().equals(other.canonical());
  }

  private ByteBuffer canonical() {
    ByteBuffer bytes = ByteBuffer.allocate(byteSize()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    copyTo(bytes);
    return bytes.flip();
  }
}

package io.modelgate.runtime.tensor;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.TensorInfo.OnnxTensorType;
import java.util.Arrays;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The tensor element types modelgate serves: the protocol's datatype string, the size of one
 * element in raw (little-endian) form, and the ONNX Runtime types it maps to.
 *
 * <p>The protocol also names UINT16, UINT32 and UINT64, but ONNX Runtime's Java API cannot create
 * tensors of those types, so a model that needs them fails to load with that reason.
 */
public enum DataType {
  BOOL("BOOL", 1, OnnxJavaType.BOOL, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL,
      io.modelgate.proto.inference.DataType.TYPE_BOOL),
  UINT8("UINT8", 1, OnnxJavaType.UINT8, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
      io.modelgate.proto.inference.DataType.TYPE_UINT8),
  INT8("INT8", 1, OnnxJavaType.INT8, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
      io.modelgate.proto.inference.DataType.TYPE_INT8),
  INT16("INT16", 2, OnnxJavaType.INT16, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16,
      io.modelgate.proto.inference.DataType.TYPE_INT16),
  INT32("INT32", 4, OnnxJavaType.INT32, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
      io.modelgate.proto.inference.DataType.TYPE_INT32),
  INT64("INT64", 8, OnnxJavaType.INT64, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
      io.modelgate.proto.inference.DataType.TYPE_INT64),
  FP16("FP16", 2, OnnxJavaType.FLOAT16, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
      io.modelgate.proto.inference.DataType.TYPE_FP16),
  FP32("FP32", 4, OnnxJavaType.FLOAT, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
      io.modelgate.proto.inference.DataType.TYPE_FP32),
  FP64("FP64", 8, OnnxJavaType.DOUBLE, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
      io.modelgate.proto.inference.DataType.TYPE_FP64),
  BF16("BF16", 2, OnnxJavaType.BFLOAT16, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16,
      io.modelgate.proto.inference.DataType.TYPE_BF16),
  /** Variable-length elements; ONNX string tensors, which must hold UTF-8 text. */
  BYTES("BYTES", 0, OnnxJavaType.STRING, OnnxTensorType.ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING,
      io.modelgate.proto.inference.DataType.TYPE_STRING);

  private static final DataType[] VALUES = values();

  private final String wireName;
  private final int elementSize;
  private final OnnxJavaType ortType;
  private final OnnxTensorType onnxType;
  private final io.modelgate.proto.inference.DataType configType;

  DataType(
      String wireName,
      int elementSize,
      OnnxJavaType ortType,
      OnnxTensorType onnxType,
      io.modelgate.proto.inference.DataType configType) {
    this.wireName = wireName;
    this.elementSize = elementSize;
    this.ortType = ortType;
    this.onnxType = onnxType;
    this.configType = configType;
  }

  /** The protocol's datatype string, e.g. {@code "FP32"}. */
  public String wireName() {
    return wireName;
  }

  /** Bytes per element in raw form; 0 for {@link #BYTES}, whose elements vary in size. */
  public int elementSize() {
    return elementSize;
  }

  public boolean isVariableSize() {
    return elementSize == 0;
  }

  public OnnxJavaType ortType() {
    return ortType;
  }

  /** The enum used by the protocol's model configuration message. */
  public io.modelgate.proto.inference.DataType configType() {
    return configType;
  }

  /** The type for a protocol datatype string, or empty when modelgate does not serve it. */
  public static Optional<DataType> fromWireName(String name) {
    for (DataType type : VALUES) {
      if (type.wireName.equals(name)) {
        return Optional.of(type);
      }
    }
    return Optional.empty();
  }

  /** The type for an ONNX element type, or empty when ONNX Runtime's Java API cannot pass it. */
  public static Optional<DataType> fromOnnx(OnnxTensorType onnxType) {
    for (DataType type : VALUES) {
      if (type.onnxType == onnxType) {
        return Optional.of(type);
      }
    }
    return Optional.empty();
  }

  /** The wire names of all served types, for error messages. */
  public static String supportedNames() {
    return Arrays.stream(VALUES).map(DataType::wireName).collect(Collectors.joining(", "));
  }
}

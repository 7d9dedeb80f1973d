package io.modelgate.runtime.onnx;

import ai.onnx.proto.OnnxMl;
import com.google.protobuf.ByteString;
import io.modelgate.runtime.tensor.DataType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;

/**
 * Writes small ONNX models in Java: the demo's derived version, the benchmark's generated MLP and
 * the test models that exercise every datatype. Not thread-safe; build one model per instance.
 */
public final class OnnxGraphBuilder {
  /** ONNX {@code TensorProto.DataType} codes. */
  public static final int FLOAT = 1;

  public static final int UINT8 = 2;
  public static final int INT8 = 3;
  public static final int UINT16 = 4;
  public static final int INT16 = 5;
  public static final int INT32 = 6;
  public static final int INT64 = 7;
  public static final int STRING = 8;
  public static final int BOOL = 9;
  public static final int FLOAT16 = 10;
  public static final int DOUBLE = 11;
  public static final int UINT32 = 12;
  public static final int UINT64 = 13;
  public static final int BFLOAT16 = 16;

  private final OnnxMl.ModelProto.Builder model;
  private final OnnxMl.GraphProto.Builder graph;

  private OnnxGraphBuilder(String name, int opset) {
    this.model =
        OnnxMl.ModelProto.newBuilder()
            .setIrVersion(8)
            .setProducerName("modelgate")
            .addOpsetImport(OnnxMl.OperatorSetIdProto.newBuilder().setDomain("").setVersion(opset));
    this.graph = OnnxMl.GraphProto.newBuilder().setName(name);
  }

  /** A new model using the default ONNX operator set at version {@code opset}. */
  public static OnnxGraphBuilder create(String name, int opset) {
    return new OnnxGraphBuilder(name, opset);
  }

  /** The ONNX element type code of {@code type}. */
  public static int elementType(DataType type) {
    switch (type) {
      case BOOL:
        return BOOL;
      case UINT8:
        return UINT8;
      case INT8:
        return INT8;
      case INT16:
        return INT16;
      case INT32:
        return INT32;
      case INT64:
        return INT64;
      case FP16:
        return FLOAT16;
      case FP32:
        return FLOAT;
      case FP64:
        return DOUBLE;
      case BF16:
        return BFLOAT16;
      case BYTES:
        return STRING;
      default:
        throw new IllegalArgumentException("no ONNX type for " + type);
    }
  }

  /** Declares a graph input; -1 in {@code dims} is a variable dimension. */
  public OnnxGraphBuilder input(String name, int elementType, long... dims) {
    graph.addInput(valueInfo(name, elementType, dims));
    return this;
  }

  /** Declares a graph output; -1 in {@code dims} is a variable dimension. */
  public OnnxGraphBuilder output(String name, int elementType, long... dims) {
    graph.addOutput(valueInfo(name, elementType, dims));
    return this;
  }

  /** Adds a node with integer, float or integer-list attributes. */
  public OnnxGraphBuilder node(
      String opType, List<String> inputs, List<String> outputs, Map<String, Object> attributes) {
    OnnxMl.NodeProto.Builder node =
        OnnxMl.NodeProto.newBuilder()
            .setOpType(opType)
            .setName(opType + "_" + graph.getNodeCount())
            .addAllInput(inputs)
            .addAllOutput(outputs);
    for (Map.Entry<String, Object> attribute : attributes.entrySet()) {
      node.addAttribute(attribute(attribute.getKey(), attribute.getValue()));
    }
    graph.addNode(node);
    return this;
  }

  public OnnxGraphBuilder node(String opType, List<String> inputs, List<String> outputs) {
    return node(opType, inputs, outputs, Map.of());
  }

  /** Adds a float constant (weights, biases, scalars) with the given dimensions. */
  public OnnxGraphBuilder initializer(String name, float[] values, long... dims) {
    ByteBuffer bytes = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float value : values) {
      bytes.putFloat(value);
    }
    graph.addInitializer(
        OnnxMl.TensorProto.newBuilder()
            .setName(name)
            .setDataType(FLOAT)
            .addAllDims(toList(dims))
            .setRawData(ByteString.copyFrom(bytes.array())));
    return this;
  }

  /** Adds an int64 constant (shapes, axes) with the given dimensions. */
  public OnnxGraphBuilder initializer(String name, long[] values, long... dims) {
    ByteBuffer bytes = ByteBuffer.allocate(values.length * 8).order(ByteOrder.LITTLE_ENDIAN);
    for (long value : values) {
      bytes.putLong(value);
    }
    graph.addInitializer(
        OnnxMl.TensorProto.newBuilder()
            .setName(name)
            .setDataType(INT64)
            .addAllDims(toList(dims))
            .setRawData(ByteString.copyFrom(bytes.array())));
    return this;
  }

  /** The serialized model. */
  public byte[] build() {
    return model.setGraph(graph).build().toByteArray();
  }

  private static OnnxMl.ValueInfoProto valueInfo(String name, int elementType, long[] dims) {
    OnnxMl.TensorShapeProto.Builder shape = OnnxMl.TensorShapeProto.newBuilder();
    for (int i = 0; i < dims.length; i++) {
      OnnxMl.TensorShapeProto.Dimension.Builder dim = OnnxMl.TensorShapeProto.Dimension.newBuilder();
      if (dims[i] < 0) {
        dim.setDimParam(name + "_dim" + i);
      } else {
        dim.setDimValue(dims[i]);
      }
      shape.addDim(dim);
    }
    return OnnxMl.ValueInfoProto.newBuilder()
        .setName(name)
        .setType(
            OnnxMl.TypeProto.newBuilder()
                .setTensorType(
                    OnnxMl.TypeProto.Tensor.newBuilder().setElemType(elementType).setShape(shape)))
        .build();
  }

  private static OnnxMl.AttributeProto attribute(String name, Object value) {
    OnnxMl.AttributeProto.Builder attribute = OnnxMl.AttributeProto.newBuilder().setName(name);
    if (value instanceof Integer || value instanceof Long) {
      attribute.setType(OnnxMl.AttributeProto.AttributeType.INT).setI(((Number) value).longValue());
    } else if (value instanceof Float || value instanceof Double) {
      attribute
          .setType(OnnxMl.AttributeProto.AttributeType.FLOAT)
          .setF(((Number) value).floatValue());
    } else if (value instanceof long[]) {
      attribute.setType(OnnxMl.AttributeProto.AttributeType.INTS).addAllInts(toList((long[]) value));
    } else {
      throw new IllegalArgumentException("attribute '" + name + "': unsupported value " + value);
    }
    return attribute.build();
  }

  private static List<Long> toList(long[] values) {
    Long[] boxed = new Long[values.length];
    for (int i = 0; i < values.length; i++) {
      boxed[i] = values[i];
    }
    return List.of(boxed);
  }
}

package io.modelgate.runtime.tensor;

import static io.modelgate.runtime.error.InferenceException.invalidArgument;
import static io.modelgate.runtime.error.InferenceException.quote;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;

/**
 * Validates a {@link ModelInferRequest} against a {@link ModelSignature} and turns it into a {@link
 * DecodedRequest}, without copying tensor data.
 *
 * <p>Every rejection is an {@link io.modelgate.runtime.error.InferenceException} with {@code INVALID_ARGUMENT} and a message
 * that names the tensor, what was expected and what came. Request parameters are ignored: the
 * protocol lets servers define their own and requires unknown ones to be tolerated.
 *
 * <p>Stateless and thread-safe; called on the gRPC event loop, so it never blocks.
 */
public final class RequestDecoder {
  private RequestDecoder() {}

  /** Decodes {@code request} for the model version described by {@code signature}. */
  public static DecodedRequest decode(ModelInferRequest request, ModelSignature signature) {
    int given = request.getInputsCount();
    int rawCount = request.getRawInputContentsCount();
    boolean useRaw = rawCount > 0;
    if (useRaw && rawCount != given) {
      throw invalidArgument(
          "raw_input_contents has "
              + rawCount
              + " entries for "
              + given
              + " inputs (expected: one entry per input, in the order of inputs)");
    }
    InputTensor[] inputs = new InputTensor[signature.inputs().size()];
    for (int i = 0; i < given; i++) {
      InferInputTensor input = request.getInputs(i);
      int index = signature.inputIndex(input.getName());
      if (index < 0) {
        throw invalidArgument(
            "unknown input " + quote(input.getName()) + " (expected: " + signature.inputNames() + ")");
      }
      if (inputs[index] != null) {
        throw invalidArgument("input '" + input.getName() + "' is given more than once");
      }
      TensorSpec spec = signature.inputs().get(index);
      inputs[index] =
          useRaw
              ? decodeRaw(spec, input, request.getRawInputContents(i))
              : decodeTyped(spec, input);
    }
    for (int i = 0; i < inputs.length; i++) {
      if (inputs[i] == null) {
        TensorSpec spec = signature.inputs().get(i);
        throw invalidArgument("missing input '" + spec.name() + "' (" + spec.describe() + ")");
      }
    }
    int rows = signature.batches() ? batchRows(signature, inputs) : 0;
    return new DecodedRequest(signature, inputs, requestedOutputs(request, signature), rows);
  }

  private static InputTensor decodeRaw(TensorSpec spec, InferInputTensor input, ByteString bytes) {
    if (input.hasContents()) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "' has typed contents while the request carries raw_input_contents"
              + " (expected: one form for all inputs)");
    }
    long[] shape = checkHeader(spec, input);
    int count = elementCount(spec, shape);
    DataType type = spec.dataType();
    if (type == DataType.BYTES) {
      return InputTensor.strings(spec, shape, splitRawStrings(spec, shape, count, bytes));
    }
    long expected = (long) count * type.elementSize();
    if (bytes.size() != expected) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': "
              + bytes.size()
              + " bytes of raw data for shape "
              + Shapes.format(shape)
              + " of "
              + type.wireName()
              + " (expected: "
              + expected
              + " bytes = "
              + count
              + " elements x "
              + type.elementSize()
              + ")");
    }
    return InputTensor.raw(spec, shape, count, bytes);
  }

  private static String[] splitRawStrings(
      TensorSpec spec, long[] shape, int count, ByteString bytes) {
    String[] values = new String[count];
    ByteBufferView view = new ByteBufferView(bytes);
    for (int i = 0; i < count; i++) {
      if (view.remaining() < 4) {
        throw invalidArgument(
            "input '"
                + spec.name()
                + "': raw BYTES data ends after "
                + i
                + " of "
                + count
                + " elements for shape "
                + Shapes.format(shape)
                + " (expected: each element as a 4-byte little-endian length and its bytes)");
      }
      long length = view.readUint32();
      if (length > view.remaining()) {
        throw invalidArgument(
            "input '"
                + spec.name()
                + "': BYTES element "
                + i
                + " declares "
                + length
                + " bytes but only "
                + view.remaining()
                + " remain");
      }
      values[i] = utf8(spec, i, view.take((int) length));
    }
    if (view.remaining() != 0) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': "
              + view.remaining()
              + " bytes of raw BYTES data left after "
              + count
              + " elements for shape "
              + Shapes.format(shape));
    }
    return values;
  }

  private static InputTensor decodeTyped(TensorSpec spec, InferInputTensor input) {
    if (!input.hasContents()) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "' carries no data (expected: contents, or raw_input_contents for all inputs)");
    }
    long[] shape = checkHeader(spec, input);
    int count = elementCount(spec, shape);
    DataType type = spec.dataType();
    InferTensorContents contents = input.getContents();
    String field = typedField(type);
    if (field == null) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': "
              + type.wireName()
              + " has no typed contents field (expected: raw_input_contents)");
    }
    String other = otherFilledField(contents, field);
    if (other != null) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': "
              + type.wireName()
              + " values belong in "
              + field
              + " (got: "
              + other
              + ")");
    }
    int filled = typedCount(contents, type);
    if (filled != count) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': shape "
              + Shapes.format(shape)
              + " has "
              + count
              + " elements but "
              + field
              + " has "
              + filled);
    }
    if (type == DataType.BYTES) {
      String[] values = new String[count];
      for (int i = 0; i < count; i++) {
        values[i] = utf8(spec, i, contents.getBytesContents(i));
      }
      return InputTensor.strings(spec, shape, values);
    }
    return InputTensor.typed(spec, shape, count, contents);
  }

  /** Checks name-independent header fields: datatype and shape. Returns the shape. */
  private static long[] checkHeader(TensorSpec spec, InferInputTensor input) {
    if (!spec.dataType().wireName().equals(input.getDatatype())) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': datatype '"
              + input.getDatatype()
              + "' (expected: "
              + spec.dataType().wireName()
              + ")");
    }
    int rank = input.getShapeCount();
    if (rank != spec.rank()) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': shape "
              + Shapes.format(input.getShapeList())
              + " has rank "
              + rank
              + " (expected: rank "
              + spec.rank()
              + ", model shape "
              + spec.shapeText()
              + ")");
    }
    long[] shape = new long[rank];
    for (int axis = 0; axis < rank; axis++) {
      long dim = input.getShape(axis);
      long want = spec.dim(axis);
      if (dim < 0 || (want >= 0 && dim != want)) {
        throw invalidArgument(
            "input '"
                + spec.name()
                + "': shape "
                + Shapes.format(input.getShapeList())
                + " has "
                + dim
                + " at dimension "
                + axis
                + " (expected: "
                + (want >= 0 ? Long.toString(want) : ">= 0")
                + ", model shape "
                + spec.shapeText()
                + ")");
      }
      shape[axis] = dim;
    }
    return shape;
  }

  private static int elementCount(TensorSpec spec, long[] shape) {
    long count = Shapes.elementCount(shape);
    if (count < 0) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': shape "
              + Shapes.format(shape)
              + " has more than "
              + Integer.MAX_VALUE
              + " elements");
    }
    return (int) count;
  }

  private static int batchRows(ModelSignature signature, InputTensor[] inputs) {
    long rows = -1;
    String first = null;
    for (int i = 0; i < inputs.length; i++) {
      int axis = signature.inputAxis(i);
      if (axis == ModelSignature.NO_AXIS) {
        continue;
      }
      long dim = inputs[i].shape()[axis];
      if (rows < 0) {
        rows = dim;
        first = inputs[i].spec().name();
      } else if (dim != rows) {
        throw invalidArgument(
            "input '"
                + inputs[i].spec().name()
                + "' has batch size "
                + dim
                + " but input '"
                + first
                + "' has "
                + rows
                + " (expected: the same batch size on every input's batch axis)");
      }
    }
    if (rows < 1 || rows > signature.maxBatchSize()) {
      throw invalidArgument(
          "batch size "
              + rows
              + " (expected: 1 to max_batch_size "
              + signature.maxBatchSize()
              + ", along every input's batch axis)");
    }
    return (int) rows;
  }

  private static int[] requestedOutputs(ModelInferRequest request, ModelSignature signature) {
    int n = request.getOutputsCount();
    if (n == 0) {
      return signature.allOutputIndices();
    }
    int[] outputs = new int[n];
    for (int i = 0; i < n; i++) {
      String name = request.getOutputs(i).getName();
      int index = signature.outputIndex(name);
      if (index < 0) {
        throw invalidArgument(
            "unknown output " + quote(name) + " (expected one of: " + signature.outputNames() + ")");
      }
      for (int j = 0; j < i; j++) {
        if (outputs[j] == index) {
          throw invalidArgument("output '" + name + "' is requested more than once");
        }
      }
      outputs[i] = index;
    }
    return outputs;
  }

  private static String utf8(TensorSpec spec, int element, ByteString value) {
    if (!value.isValidUtf8()) {
      throw invalidArgument(
          "input '"
              + spec.name()
              + "': BYTES element "
              + element
              + " is not valid UTF-8 (expected: UTF-8 text, as ONNX string tensors hold)");
    }
    return value.toStringUtf8();
  }

  /** The typed contents field that carries {@code type}, or null when it has none. */
  static String typedField(DataType type) {
    switch (type) {
      case BOOL:
        return "bool_contents";
      case UINT8:
        return "uint_contents";
      case INT8:
      case INT16:
      case INT32:
        return "int_contents";
      case INT64:
        return "int64_contents";
      case FP32:
        return "fp32_contents";
      case FP64:
        return "fp64_contents";
      case BYTES:
        return "bytes_contents";
      default:
        return null;
    }
  }

  private static int typedCount(InferTensorContents c, DataType type) {
    switch (type) {
      case BOOL:
        return c.getBoolContentsCount();
      case UINT8:
        return c.getUintContentsCount();
      case INT8:
      case INT16:
      case INT32:
        return c.getIntContentsCount();
      case INT64:
        return c.getInt64ContentsCount();
      case FP32:
        return c.getFp32ContentsCount();
      case FP64:
        return c.getFp64ContentsCount();
      case BYTES:
        return c.getBytesContentsCount();
      default:
        throw new IllegalStateException(type + " has no typed contents");
    }
  }

  /** The first filled field other than {@code expected}, or null. */
  private static String otherFilledField(InferTensorContents c, String expected) {
    if (c.getBoolContentsCount() > 0 && !expected.equals("bool_contents")) {
      return "bool_contents";
    }
    if (c.getIntContentsCount() > 0 && !expected.equals("int_contents")) {
      return "int_contents";
    }
    if (c.getInt64ContentsCount() > 0 && !expected.equals("int64_contents")) {
      return "int64_contents";
    }
    if (c.getUintContentsCount() > 0 && !expected.equals("uint_contents")) {
      return "uint_contents";
    }
    if (c.getUint64ContentsCount() > 0) {
      return "uint64_contents";
    }
    if (c.getFp32ContentsCount() > 0 && !expected.equals("fp32_contents")) {
      return "fp32_contents";
    }
    if (c.getFp64ContentsCount() > 0 && !expected.equals("fp64_contents")) {
      return "fp64_contents";
    }
    if (c.getBytesContentsCount() > 0 && !expected.equals("bytes_contents")) {
      return "bytes_contents";
    }
    return null;
  }

  /** Sequential little-endian reads over a ByteString without copying it. */
  private static final class ByteBufferView {
    private final ByteString bytes;
    private int position;

    ByteBufferView(ByteString bytes) {
      this.bytes = bytes;
    }

    int remaining() {
      return bytes.size() - position;
    }

    long readUint32() {
      long value =
          (bytes.byteAt(position) & 0xFFL)
              | (bytes.byteAt(position + 1) & 0xFFL) << 8
              | (bytes.byteAt(position + 2) & 0xFFL) << 16
              | (bytes.byteAt(position + 3) & 0xFFL) << 24;
      position += 4;
      return value;
    }

    ByteString take(int length) {
      ByteString slice = bytes.substring(position, position + length);
      position += length;
      return slice;
    }
  }
}

package io.modelgate.gateway.inference;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferRequestedOutputTensor;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * Triton's classification extension: a requested output with the parameter {@code classification:
 * k} (int64) comes back as its top {@code k} classes instead of its values — a BYTES tensor of
 * strings {@code "<value>:<index>"}, highest value first (ties: lower index first), {@code [rows,
 * k]} for a model that batches on the output's first axis and {@code [k]} otherwise, where
 * {@code k} is cut to the number of classes. Values print as C's {@code %f}, as Triton does; no
 * labels are attached.
 *
 * <p>Validated at admission (k must be a positive int64, the output numeric); applied on the
 * answering thread, to the request's own outputs only. Requests without the parameter pay one
 * check of their requested-output count.
 */
final class Classification {
  static final String PARAMETER = "classification";

  private Classification() {}

  /**
   * What one request asked: the top-k of each requested output by its position in the request's
   * outputs (0: values as they are), and whether that output is classified per row.
   */
  record Plan(int[] topK, boolean[] perRow) {
    /** The request's outputs, those asked for classified. */
    OutputTensor apply(int position, OutputTensor output) {
      return position < topK.length && topK[position] > 0
          ? classify(output, topK[position], perRow[position])
          : output;
    }
  }

  /**
   * The classification one request asks for, or null when no output asks for it.
   *
   * @throws InferenceException INVALID_ARGUMENT for a parameter that is not a positive int64, or
   *     on an output that is not numeric
   */
  static Plan requested(ModelInferRequest request, ModelSignature signature) {
    int n = request.getOutputsCount();
    if (n == 0) {
      return null;
    }
    int[] topK = null;
    boolean[] perRow = null;
    for (int i = 0; i < n; i++) {
      InferRequestedOutputTensor output = request.getOutputs(i);
      InferParameter parameter = output.getParametersMap().get(PARAMETER);
      if (parameter == null) {
        continue;
      }
      long k =
          switch (parameter.getParameterChoiceCase()) {
            case INT64_PARAM -> parameter.getInt64Param();
            case UINT64_PARAM -> parameter.getUint64Param();
            default -> -1;
          };
      if (k < 1) {
        throw InferenceException.invalidArgument(
            "output " + InferenceException.quote(output.getName()) + ": parameter 'classification' "
                + parameter.toString().trim() + " (expected: a positive int64, the number of classes to return)");
      }
      int index = signature.outputIndex(output.getName());
      if (topK == null) {
        topK = new int[n];
        perRow = new boolean[n];
      }
      if (index >= 0) {
        perRow[i] = signature.maxBatchSize() > 0 && signature.outputAxis(index) == 0;
        DataType type = signature.outputs().get(index).dataType();
        if (type == DataType.BYTES || type == DataType.BOOL) {
          throw InferenceException.invalidArgument(
              "output '" + output.getName() + "' is " + type.wireName()
                  + ": classification needs a numeric output");
        }
      }
      topK[i] = (int) Math.min(k, Integer.MAX_VALUE);
    }
    return topK == null ? null : new Plan(topK, perRow);
  }

  /**
   * The top {@code k} classes of {@code output}: per row when {@code perRow} (its first axis is
   * the batch), else over the whole tensor.
   */
  static OutputTensor classify(OutputTensor output, int k, boolean perRow) {
    long[] shape = output.shape();
    ByteBuffer data = output.data().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    int size = output.dataType().elementSize();
    int elements = data.remaining() / size;
    int rows = perRow && shape.length > 1 ? (int) shape[0] : 1;
    int classes = rows == 0 ? 0 : elements / rows;
    int top = Math.min(k, classes);
    ByteString.Output out = ByteString.newOutput();
    double[] values = new double[classes];
    Integer[] order = new Integer[classes];
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < classes; c++) {
        values[c] = value(data, output.dataType(), (r * classes + c) * size);
        order[c] = c;
      }
      java.util.Arrays.sort(order, (a, b) -> {
        int byValue = Double.compare(values[b], values[a]);
        return byValue != 0 ? byValue : Integer.compare(a, b);
      });
      for (int j = 0; j < top; j++) {
        byte[] text =
            String.format(Locale.ROOT, "%f:%d", values[order[j]], order[j]).getBytes(StandardCharsets.UTF_8);
        int length = text.length;
        out.write(length & 0xff);
        out.write((length >>> 8) & 0xff);
        out.write((length >>> 16) & 0xff);
        out.write((length >>> 24) & 0xff);
        out.write(text, 0, length);
      }
    }
    long[] classified = perRow && shape.length > 1 ? new long[] {rows, top} : new long[] {top};
    return new OutputTensor(output.name(), DataType.BYTES, classified, out.toByteString());
  }

  private static double value(ByteBuffer data, DataType type, int offset) {
    return switch (type) {
      case UINT8 -> data.get(offset) & 0xff;
      case INT8 -> data.get(offset);
      case INT16 -> data.getShort(offset);
      case INT32 -> data.getInt(offset);
      case INT64 -> data.getLong(offset);
      case FP16 -> halfToFloat(data.getShort(offset));
      case BF16 -> Float.intBitsToFloat((data.getShort(offset) & 0xffff) << 16);
      case FP32 -> data.getFloat(offset);
      case FP64 -> data.getDouble(offset);
      default -> throw new IllegalArgumentException("not numeric: " + type);
    };
  }

  /** IEEE 754 half precision to float. */
  static float halfToFloat(short half) {
    int bits = half & 0xffff;
    int sign = (bits & 0x8000) << 16;
    int exponent = (bits >>> 10) & 0x1f;
    int mantissa = bits & 0x3ff;
    if (exponent == 0x1f) {
      return Float.intBitsToFloat(sign | 0x7f800000 | (mantissa << 13));
    }
    if (exponent == 0) {
      if (mantissa == 0) {
        return Float.intBitsToFloat(sign);
      }
      float value = mantissa / 1024f / 16384f;
      return sign == 0 ? value : -value;
    }
    return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  }
}

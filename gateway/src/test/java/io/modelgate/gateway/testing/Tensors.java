package io.modelgate.gateway.testing;

import com.google.protobuf.ByteString;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;
import io.modelgate.runtime.testing.Requests;

/** Request builders and raw-tensor readers for gateway tests. */
public final class Tensors {
  private Tensors() {}

  public static InferInputTensor.Builder input(String name, String datatype, long... shape) {
    return Requests.input(name, datatype, shape);
  }

  public static ByteString rawFloats(float... values) {
    return Requests.rawFloats(values);
  }

  public static float[] floats(ByteString raw) {
    return Requests.floats(raw);
  }

  public static int argmax(float[] values) {
    int best = 0;
    for (int i = 1; i < values.length; i++) {
      if (values[i] > values[best]) {
        best = i;
      }
    }
    return best;
  }

  /** affine's input x FP32 [1,3], typed. */
  public static ModelInferRequest.Builder affine(float a, float b, float c) {
    return ModelInferRequest.newBuilder()
        .setModelName("affine")
        .addInputs(
            input("x", "FP32", 1, 3)
                .setContents(InferTensorContents.newBuilder().addFp32Contents(a).addFp32Contents(b).addFp32Contents(c)));
  }

  /** One MNIST digit for cnn_mnist, raw. */
  public static ModelInferRequest.Builder digit(MnistDigits.Digit digit) {
    return ModelInferRequest.newBuilder()
        .setModelName("cnn_mnist")
        .addInputs(input("input_image", "FP32", 1, 1, 28, 28))
        .addRawInputContents(rawFloats(digit.pixels()));
  }
}

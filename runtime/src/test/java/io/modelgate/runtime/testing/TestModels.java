package io.modelgate.runtime.testing;

import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import io.modelgate.runtime.tensor.DataType;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** Real ONNX models for tests: third-party ones from Maven Central and small generated ones. */
public final class TestModels {
  private TestModels() {}

  public static final String TRIBUO = "/org/tribuo/interop/onnx/";

  /** Tribuo's cnn_mnist: input_image FP32 [-1,1,28,28] → output_probs FP32 [-1,10]. */
  public static byte[] cnnMnist() {
    return resource(TRIBUO + "cnn_mnist.onnx");
  }

  /** scikit-learn logistic regression whose second output is a sequence of maps. */
  public static byte[] lrMnist() {
    return resource(TRIBUO + "lr_mnist.onnx");
  }

  /** An Identity model per datatype: input {@code x} → output {@code y}, shape [-1,-1]. */
  public static byte[] identity(DataType type) {
    int onnx = OnnxGraphBuilder.elementType(type);
    return OnnxGraphBuilder.create("identity_" + type, 17)
        .input("x", onnx, -1, -1)
        .output("y", onnx, -1, -1)
        .node("Identity", List.of("x"), List.of("y"))
        .build();
  }

  /** An Identity model over a type ONNX Runtime's Java API cannot pass (uint32). */
  public static byte[] uint32Identity() {
    return OnnxGraphBuilder.create("uint32", 17)
        .input("x", OnnxGraphBuilder.UINT32, -1, 2)
        .output("y", OnnxGraphBuilder.UINT32, -1, 2)
        .node("Identity", List.of("x"), List.of("y"))
        .build();
  }

  /**
   * x FP32 [-1,4] reshaped to [2,2]: runs for exactly one row and fails inside ONNX Runtime for
   * any other row count.
   */
  public static byte[] reshapeToTwoByTwo() {
    return OnnxGraphBuilder.create("reshape", 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, 4)
        .output("y", OnnxGraphBuilder.FLOAT, 2, 2)
        .initializer("shape", new long[] {2, 2}, 2)
        .node("Reshape", List.of("x", "shape"), List.of("y"))
        .build();
  }

  /**
   * A table of 10 rows looked up by index: ids INT64 [-1,1] → y FP32 [-1,1,2], row i being [i,
   * 10i]. An id outside 0 to 9 fails inside ONNX Runtime (Gather), and with it the batch it is in.
   */
  public static byte[] lookup() {
    float[] table = new float[20];
    for (int i = 0; i < 10; i++) {
      table[2 * i] = i;
      table[2 * i + 1] = 10 * i;
    }
    return OnnxGraphBuilder.create("lookup", 17)
        .input("ids", OnnxGraphBuilder.INT64, -1, 1)
        .output("y", OnnxGraphBuilder.FLOAT, -1, 1, 2)
        .initializer("table", table, 10, 2)
        .node("Gather", List.of("table", "ids"), List.of("y"), Map.of("axis", 0L))
        .build();
  }

  /** y = x * 2 + 1 elementwise, FP32 [-1,3]; two outputs, y and z = x * 2. */
  public static byte[] affine() {
    return OnnxGraphBuilder.create("affine", 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, 3)
        .output("y", OnnxGraphBuilder.FLOAT, -1, 3)
        .output("z", OnnxGraphBuilder.FLOAT, -1, 3)
        .initializer("two", new float[] {2f})
        .initializer("one", new float[] {1f})
        .node("Mul", List.of("x", "two"), List.of("z"))
        .node("Add", List.of("z", "one"), List.of("y"), Map.of())
        .build();
  }

  /**
   * A small MLP: x FP32 [-1,8] → Gemm(8x16) → Relu → Gemm(16x4) → y FP32 [-1,4], with weights
   * drawn from {@code seed}.
   */
  public static byte[] mlp(long seed) {
    java.util.Random random = new java.util.Random(seed);
    return OnnxGraphBuilder.create("mlp", 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, 8)
        .output("y", OnnxGraphBuilder.FLOAT, -1, 4)
        .initializer("w1", randoms(random, 8 * 16), 8, 16)
        .initializer("b1", randoms(random, 16), 16)
        .initializer("w2", randoms(random, 16 * 4), 16, 4)
        .initializer("b2", randoms(random, 4), 4)
        .node("Gemm", List.of("x", "w1", "b1"), List.of("h"))
        .node("Relu", List.of("h"), List.of("hr"))
        .node("Gemm", List.of("hr", "w2", "b2"), List.of("y"))
        .build();
  }

  /** x FP32 [-1,-1] of any width → sum FP32 [-1,1] (over each row) and tripled FP32 [-1,-1]. */
  public static byte[] rowSums() {
    return OnnxGraphBuilder.create("row_sums", 17)
        .input("x", OnnxGraphBuilder.FLOAT, -1, -1)
        .output("sum", OnnxGraphBuilder.FLOAT, -1, 1)
        .output("tripled", OnnxGraphBuilder.FLOAT, -1, -1)
        .initializer("axes", new long[] {1}, 1)
        .initializer("three", new float[] {3f})
        .node("ReduceSum", List.of("x", "axes"), List.of("sum"), Map.of("keepdims", 1))
        .node("Mul", List.of("x", "three"), List.of("tripled"))
        .build();
  }

  /**
   * A recurrent-style model: state FP32 [2,-1,3] batched on axis 1, and a rank-0 scale shared by
   * the batch. Outputs: scaled = state * scale [2,-1,3] (batch axis 1) and total FP32 [-1], the sum
   * of each batch entry's state (batch axis 0).
   */
  public static byte[] stateWithScale() {
    return OnnxGraphBuilder.create("state", 17)
        .input("state", OnnxGraphBuilder.FLOAT, 2, -1, 3)
        .input("scale", OnnxGraphBuilder.FLOAT)
        .output("scaled", OnnxGraphBuilder.FLOAT, 2, -1, 3)
        .output("total", OnnxGraphBuilder.FLOAT, -1)
        .initializer("axes", new long[] {0, 2}, 2)
        .node("Mul", List.of("state", "scale"), List.of("scaled"))
        .node("ReduceSum", List.of("state", "axes"), List.of("total"), Map.of("keepdims", 0))
        .build();
  }

  private static float[] randoms(java.util.Random random, int n) {
    float[] values = new float[n];
    for (int i = 0; i < n; i++) {
      values[i] = (float) random.nextGaussian() * 0.5f;
    }
    return values;
  }

  /** Writes {@code model} to {@code <root>/<name>/<version>/model.onnx} and returns the file. */
  public static Path write(Path root, String name, int version, byte[] model) {
    try {
      Path dir = Files.createDirectories(root.resolve(name).resolve(Integer.toString(version)));
      return Files.write(dir.resolve("model.onnx"), model);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static byte[] resource(String path) {
    try (InputStream in = TestModels.class.getResourceAsStream(path)) {
      if (in == null) {
        throw new IllegalStateException("missing test resource " + path);
      }
      return in.readAllBytes();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}

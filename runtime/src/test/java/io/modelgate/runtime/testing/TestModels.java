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

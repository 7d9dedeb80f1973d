package io.modelgate.bench;

import com.google.protobuf.ByteString;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;
import io.modelgate.runtime.onnx.OnnxGraphBuilder;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Random;

/** The models the benchmarks run, and one request for each. */
final class BenchModels {
  private BenchModels() {}

  /** A benchmark model: its ONNX bytes and a batch-1 request for it. */
  record BenchModel(String name, byte[] onnx, String input, long[] rowShape, float[] row) {
    ModelInferRequest request(String modelName) {
      return batchRequest(modelName, 1);
    }

    ModelInferRequest batchRequest(String modelName, int rows) {
      long[] shape = new long[rowShape.length + 1];
      shape[0] = rows;
      System.arraycopy(rowShape, 0, shape, 1, rowShape.length);
      float[] values = new float[rows * row.length];
      for (int r = 0; r < rows; r++) {
        System.arraycopy(row, 0, values, r * row.length, row.length);
      }
      return fp32Request(modelName, input, shape, values);
    }
  }

  /** A request for {@code modelName} with one FP32 input of {@code shape}, its values raw. */
  static ModelInferRequest fp32Request(String modelName, String input, long[] shape, float[] values) {
    InferInputTensor.Builder tensor = InferInputTensor.newBuilder().setName(input).setDatatype("FP32");
    for (long dim : shape) {
      tensor.addShape(dim);
    }
    ByteBuffer bytes = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float value : values) {
      bytes.putFloat(value);
    }
    bytes.flip();
    return ModelInferRequest.newBuilder()
        .setModelName(modelName)
        .addInputs(tensor)
        .addRawInputContents(ByteString.copyFrom(bytes))
        .build();
  }

  static BenchModel byName(String name) {
    switch (name) {
      case "mlp":
        return mlp();
      case "mlp_large":
        return mlpLarge();
      case "cnn_mnist":
        return new BenchModel(
            "cnn_mnist",
            DemoRepository.original(),
            "input_image",
            new long[] {1, 28, 28},
            MnistDigits.get(0).pixels());
      case "minilm":
        return new BenchModel("minilm", minilm(), "input_ids", new long[] {128}, new float[0]);
      default:
        throw new IllegalArgumentException(
            "unknown benchmark model '" + name + "' (expected: mlp, mlp_large, cnn_mnist, minilm)");
    }
  }

  /** MLP 256→1024→1024→16, FP32, ReLU between layers, random weights from a fixed seed. */
  static BenchModel mlp() {
    return mlp("mlp", new int[] {256, 1024, 1024, 16}, 20261127);
  }

  /**
   * MLP 1024→4096→4096→1024, FP32 (96 MB of weights), ReLU between layers, random weights from a
   * fixed seed: the GPU benchmark's model, large enough that a GPU's batching shows.
   */
  static BenchModel mlpLarge() {
    return mlp("mlp_large", new int[] {1024, 4096, 4096, 1024}, 20261204);
  }

  /** An MLP of {@code widths}, Gemm and ReLU, He-scaled Gaussian weights from {@code seed}. */
  private static BenchModel mlp(String name, int[] widths, long seed) {
    Random random = new Random(seed);
    int first = widths[0];
    int last = widths[widths.length - 1];
    OnnxGraphBuilder graph =
        OnnxGraphBuilder.create(name, 17)
            .input("x", OnnxGraphBuilder.FLOAT, -1, first)
            .output("y", OnnxGraphBuilder.FLOAT, -1, last);
    String previous = "x";
    for (int layer = 0; layer < widths.length - 1; layer++) {
      int in = widths[layer];
      int out = widths[layer + 1];
      float scale = (float) Math.sqrt(2.0 / in);
      graph.initializer("w" + layer, gaussian(random, in * out, scale), in, out);
      graph.initializer("b" + layer, gaussian(random, out, 0.01f), out);
      boolean lastLayer = layer == widths.length - 2;
      String gemm = lastLayer ? "y" : "h" + layer;
      graph.node("Gemm", List.of(previous, "w" + layer, "b" + layer), List.of(gemm));
      if (!lastLayer) {
        graph.node("Relu", List.of(gemm), List.of("r" + layer));
        previous = "r" + layer;
      }
    }
    return new BenchModel(name, graph.build(), "x", new long[] {first}, gaussian(random, first, 1f));
  }

  /** all-MiniLM-L6-v2, int8-quantized (from langchain4j's Maven Central artifact, Apache-2.0). */
  static byte[] minilm() {
    try (java.io.InputStream in = BenchModels.class.getResourceAsStream("/all-minilm-l6-v2-q.onnx")) {
      if (in == null) {
        throw new IllegalStateException("all-minilm-l6-v2-q.onnx is not on the class path");
      }
      return in.readAllBytes();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /** The shapes of one row of each input, for models whose inputs have variable dimensions. */
  static java.util.Map<String, long[]> rowShapes(String name, int rows) {
    if (name.equals("minilm")) {
      return java.util.Map.of(
          "input_ids", new long[] {rows, 128},
          "attention_mask", new long[] {rows, 128},
          "token_type_ids", new long[] {rows, 128});
    }
    if (name.equals("cnn_mnist")) {
      return java.util.Map.of("input_image", new long[] {rows, 1, 28, 28});
    }
    if (name.equals("mlp_large")) {
      return java.util.Map.of("x", new long[] {rows, 1024});
    }
    return java.util.Map.of("x", new long[] {rows, 256});
  }

  private static float[] gaussian(Random random, int n, float scale) {
    float[] values = new float[n];
    for (int i = 0; i < n; i++) {
      values[i] = (float) random.nextGaussian() * scale;
    }
    return values;
  }
}

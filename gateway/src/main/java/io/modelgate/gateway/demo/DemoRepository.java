package io.modelgate.gateway.demo;

import ai.onnx.proto.OnnxMl;
import com.google.protobuf.ByteString;
import com.google.protobuf.util.JsonFormat;
import io.modelgate.gateway.health.GoldenSet;
import io.modelgate.proto.health.v1.GoldenExample;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The embedded demo repository: Tribuo's cnn_mnist (Apache-2.0, from Maven Central) as two
 * versions whose outputs differ, so that version selection and per-version figures have something
 * to show.
 *
 * <ul>
 *   <li>Version 1 is the published model: {@code input_image} FP32 [-1,1,28,28] (pixels 0–255) →
 *       {@code output_probs} FP32 [-1,10], log-probabilities.
 *   <li>Version 2 is derived from it: its logits are divided by a temperature of {@value
 *       #TEMPERATURE} before the final LogSoftmax. It predicts the same digit with softer
 *       probabilities, as a calibrated retrain would.
 * </ul>
 *
 * <p>Its golden set ({@code cnn_mnist/golden/digits.jsonl}) is the 62 labelled digits of {@link
 * MnistDigits}: both versions answer all of them.
 */
public final class DemoRepository {
  public static final String MODEL = "cnn_mnist";
  public static final float TEMPERATURE = 2.0f;

  private static final String CONFIG =
      "# The embedded demo: cnn_mnist from Tribuo's test resources (Apache-2.0).\n"
          + "# Version 1 is the published model. Version 2 divides its logits by a temperature\n"
          + "# of 2.0 before LogSoftmax: the same predictions, softer probabilities.\n"
          + "max_batch_size: 64\n"
          + "# Batches of 16 rows or more may run on a second session with two ONNX Runtime\n"
          + "# threads, while it measures faster than the first; smaller ones keep one thread's latency.\n"
          + "large_batch_rows: 16\n"
          + "large_batch_intra_op_threads: 2\n"
          + "# Drift: every request profiled and compared with the golden set's profile; the demo\n"
          + "# alerts on the last minute so that a drifted input shows at once.\n"
          + "drift:\n"
          + "  sample_rate: 1.0\n"
          + "  window: 1m\n";

  private DemoRepository() {}

  /** Writes the demo repository into {@code dir} (created if needed) and returns {@code dir}. */
  public static Path materialize(Path dir) {
    try {
      byte[] original = original();
      Path model = dir.resolve(MODEL);
      Files.createDirectories(model.resolve("1"));
      Files.createDirectories(model.resolve("2"));
      Files.write(model.resolve("1/model.onnx"), original);
      Files.write(model.resolve("2/model.onnx"), withTemperature(original, TEMPERATURE));
      Files.writeString(model.resolve("model.yaml"), CONFIG);
      Files.createDirectories(model.resolve(GoldenSet.DIRECTORY));
      Files.writeString(model.resolve(GoldenSet.DIRECTORY).resolve("digits.jsonl"), goldenDigits());
      return dir;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * The demo's golden set: the 62 labelled MNIST digits it ships, one {@code GoldenExample} per
   * line (a KServe v2 request in protobuf JSON and the digit as the expected class).
   */
  static String goldenDigits() {
    StringBuilder lines = new StringBuilder(
        "# The 62 labelled MNIST digits of the demo: each a request for cnn_mnist and the digit it shows.\n");
    JsonFormat.Printer printer = JsonFormat.printer().omittingInsignificantWhitespace();
    List<MnistDigits.Digit> digits = MnistDigits.all();
    for (int i = 0; i < digits.size(); i++) {
      MnistDigits.Digit digit = digits.get(i);
      InferTensorContents.Builder pixels = InferTensorContents.newBuilder();
      for (float p : digit.pixels()) {
        pixels.addFp32Contents(p);
      }
      GoldenExample example = GoldenExample.newBuilder()
          .setName("digit #" + i)
          .setRequest(ModelInferRequest.newBuilder()
              .setModelName(MODEL)
              .addInputs(ModelInferRequest.InferInputTensor.newBuilder()
                  .setName("input_image").setDatatype("FP32").addAllShape(List.of(1L, 1L, 28L, 28L)).setContents(pixels)))
          .setLabel(digit.label())
          .build();
      try {
        lines.append(printer.print(example)).append('\n');
      } catch (com.google.protobuf.InvalidProtocolBufferException e) {
        throw new IllegalStateException(e);
      }
    }
    return lines.toString();
  }

  /** The classes a faulty version swaps. */
  public static final int SWAPPED_A = 3;
  public static final int SWAPPED_B = 5;

  /**
   * Adds to a demo repository a faulty candidate, {@code version}: version 1 with its classes
   * {@value #SWAPPED_A} and {@value #SWAPPED_B} swapped. It loads, serves and is as fast as version
   * 1, but calls every 3 a 5 and every 5 a 3 — what only a golden set catches.
   */
  public static void addFaultyVersion(Path dir, long version) {
    try {
      Path folder = Files.createDirectories(dir.resolve(MODEL).resolve(Long.toString(version)));
      Files.write(folder.resolve("model.onnx"), withClassesSwapped(original(), SWAPPED_A, SWAPPED_B));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** {@code model} with classes {@code a} and {@code b} swapped in its output: a Gather after it. */
  static byte[] withClassesSwapped(byte[] model, int a, int b) throws IOException {
    OnnxMl.ModelProto proto = OnnxMl.ModelProto.parseFrom(model);
    OnnxMl.GraphProto.Builder graph = proto.getGraph().toBuilder();
    String output = graph.getOutput(0).getName();
    int producer = -1;
    for (int i = 0; i < graph.getNodeCount(); i++) {
      if (graph.getNode(i).getOutputList().contains(output)) {
        producer = i;
      }
    }
    String unswapped = output + "_before_swap";
    graph.setNode(producer, graph.getNode(producer).toBuilder().setOutput(0, unswapped));
    ByteBuffer order = ByteBuffer.allocate(8 * 10).order(ByteOrder.LITTLE_ENDIAN);
    for (long c = 0; c < 10; c++) {
      order.putLong(c == a ? b : c == b ? a : c);
    }
    graph.addInitializer(OnnxMl.TensorProto.newBuilder()
        .setName("class_order")
        .setDataType(OnnxMl.TensorProto.DataType.INT64_VALUE)
        .addDims(10)
        .setRawData(ByteString.copyFrom(order.array())));
    graph.addNode(OnnxMl.NodeProto.newBuilder()
        .setOpType("Gather")
        .setName("swap_classes")
        .addInput(unswapped)
        .addInput("class_order")
        .addOutput(output)
        .addAttribute(OnnxMl.AttributeProto.newBuilder()
            .setName("axis")
            .setType(OnnxMl.AttributeProto.AttributeType.INT)
            .setI(1)));
    return proto.toBuilder().setGraph(graph).build().toByteArray();
  }

  /** The published cnn_mnist. */
  public static byte[] original() {
    try (InputStream in = DemoRepository.class.getResourceAsStream("cnn_mnist.onnx")) {
      if (in == null) {
        throw new IllegalStateException(
            "the demo model is missing from the build (expected resource"
                + " io/modelgate/gateway/demo/cnn_mnist.onnx)");
      }
      return in.readAllBytes();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * {@code model} with its LogSoftmax input divided by {@code temperature}: a Div node with a
   * scalar initializer inserted in front of the LogSoftmax node.
   */
  static byte[] withTemperature(byte[] model, float temperature) throws IOException {
    OnnxMl.ModelProto proto = OnnxMl.ModelProto.parseFrom(model);
    OnnxMl.GraphProto.Builder graph = proto.getGraph().toBuilder();
    int index = -1;
    for (int i = 0; i < graph.getNodeCount(); i++) {
      if (graph.getNode(i).getOpType().equals("LogSoftmax")) {
        index = i;
      }
    }
    if (index < 0) {
      throw new IllegalStateException("cnn_mnist has no LogSoftmax node to put a temperature in");
    }
    OnnxMl.NodeProto softmax = graph.getNode(index);
    String logits = softmax.getInput(0);
    String scaled = logits + "_over_temperature";
    ByteBuffer value = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(temperature);
    graph.addInitializer(
        OnnxMl.TensorProto.newBuilder()
            .setName("temperature")
            .setDataType(OnnxMl.TensorProto.DataType.FLOAT_VALUE)
            .setRawData(ByteString.copyFrom(value.array())));
    graph.setNode(index, softmax.toBuilder().setInput(0, scaled));
    graph.addNode(
        index,
        OnnxMl.NodeProto.newBuilder()
            .setOpType("Div")
            .setName("temperature_scaling")
            .addInput(logits)
            .addInput("temperature")
            .addOutput(scaled));
    return proto.toBuilder().setGraph(graph).setModelVersion(2).build().toByteArray();
  }
}

package io.modelgate.gateway.demo;

import ai.onnx.proto.OnnxMl;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

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
 */
public final class DemoRepository {
  public static final String MODEL = "cnn_mnist";
  public static final float TEMPERATURE = 2.0f;

  private static final String CONFIG =
      "# The embedded demo: cnn_mnist from Tribuo's test resources (Apache-2.0).\n"
          + "# Version 1 is the published model. Version 2 divides its logits by a temperature\n"
          + "# of 2.0 before LogSoftmax: the same predictions, softer probabilities.\n"
          + "max_batch_size: 64\n";

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
      return dir;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
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

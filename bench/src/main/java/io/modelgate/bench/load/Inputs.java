package io.modelgate.bench.load;

import com.google.protobuf.ByteString;
import com.google.protobuf.util.JsonFormat;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;
import io.modelgate.proto.inference.ModelMetadataResponse;
import io.modelgate.proto.inference.ModelMetadataResponse.TensorMetadata;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * The request a load run sends: read from a file (a ModelInferRequest in protobuf JSON), or built
 * from the model's metadata with random contents. Variable dimensions are 1 unless {@code shapes}
 * names them. Integer inputs named like token ids get ids in [1000, 30000), attention masks get 1,
 * token types 0; everything else is random.
 */
public final class Inputs {
  private Inputs() {}

  public static ModelInferRequest fromFile(Path file, String model, String version) throws IOException {
    ModelInferRequest.Builder request = ModelInferRequest.newBuilder();
    JsonFormat.parser().ignoringUnknownFields().merge(Files.readString(file), request);
    return request.setModelName(model).setModelVersion(version).build();
  }

  public static ModelInferRequest random(
      ModelMetadataResponse metadata, String version, Map<String, long[]> shapes, long seed) {
    Random random = new Random(seed);
    ModelInferRequest.Builder request =
        ModelInferRequest.newBuilder().setModelName(metadata.getName()).setModelVersion(version);
    for (TensorMetadata input : metadata.getInputsList()) {
      long[] shape = shapes.get(input.getName());
      if (shape == null) {
        shape = input.getShapeList().stream().mapToLong(d -> d < 0 ? 1 : d).toArray();
      }
      InferInputTensor.Builder tensor =
          request.addInputsBuilder().setName(input.getName()).setDatatype(input.getDatatype());
      long count = 1;
      for (long dim : shape) {
        tensor.addShape(dim);
        count *= dim;
      }
      request.addRawInputContents(contents(input.getName(), input.getDatatype(), Math.toIntExact(count), random));
    }
    return request.build();
  }

  private static ByteString contents(String name, String datatype, int n, Random random) {
    String lower = name.toLowerCase(Locale.ROOT);
    ByteBuffer buffer = ByteBuffer.allocate(n * 16 + 16).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      long integer =
          lower.contains("mask") ? 1 : lower.contains("type") ? 0 : lower.contains("ids") ? 1000 + random.nextInt(29_000) : random.nextInt(100);
      switch (datatype) {
        case "BOOL" -> buffer.put((byte) (random.nextBoolean() ? 1 : 0));
        case "UINT8", "INT8" -> buffer.put((byte) integer);
        case "INT16", "FP16", "BF16" -> buffer.putShort((short) integer);
        case "INT32" -> buffer.putInt((int) integer);
        case "INT64" -> buffer.putLong(integer);
        case "FP32" -> buffer.putFloat(random.nextFloat());
        case "FP64" -> buffer.putDouble(random.nextDouble());
        case "BYTES" -> buffer.putInt(9).put("modelgate".getBytes(StandardCharsets.UTF_8));
        default -> throw new IllegalArgumentException("cannot build random " + datatype + " input '" + name + "'");
      }
    }
    buffer.flip();
    return ByteString.copyFrom(buffer);
  }

  /** {@code input_ids:1,128} → name and shape. */
  public static Map.Entry<String, long[]> parseShape(String text) {
    int colon = text.indexOf(':');
    if (colon < 1) {
      throw new IllegalArgumentException("shape '" + text + "' (expected: NAME:DIM,DIM,..., e.g. input_ids:1,128)");
    }
    String[] dims = text.substring(colon + 1).split(",");
    long[] shape = new long[dims.length];
    for (int i = 0; i < dims.length; i++) {
      shape[i] = Long.parseLong(dims[i].trim());
    }
    return Map.entry(text.substring(0, colon), shape);
  }
}

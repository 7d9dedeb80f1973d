package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelInferResponse.InferOutputTensor;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.OutputTensor;
import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The answer written without protobuf objects is, byte for byte, what protobuf writes. */
class EncodedResponseTest {

  /** The same answer built with protobuf's builders: the reference the encoder must match. */
  private static ModelInferResponse built(String model, String version, String id, OutputTensor[] outputs) {
    ModelInferResponse.Builder response =
        ModelInferResponse.newBuilder().setModelName(model).setModelVersion(version).setId(id);
    for (OutputTensor output : outputs) {
      InferOutputTensor.Builder tensor =
          response.addOutputsBuilder().setName(output.name()).setDatatype(output.dataType().wireName());
      for (long dim : output.shape()) {
        tensor.addShape(dim);
      }
      response.addRawOutputContents(output.data());
    }
    return response.build();
  }

  private static byte[] drained(EncodedResponse answer) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int written = answer.drainTo(out);
    assertThat(written).isEqualTo(out.size());
    assertThat(answer.available()).isZero();
    return out.toByteArray();
  }

  private static OutputTensor tensor(String name, DataType type, long[] shape, int bytes, Random random) {
    byte[] data = new byte[bytes];
    random.nextBytes(data);
    // A slice of a larger array, as results hold them.
    byte[] larger = new byte[bytes + 7];
    System.arraycopy(data, 0, larger, 3, bytes);
    return new OutputTensor(name, type, shape, com.google.protobuf.UnsafeByteOperations.unsafeWrap(larger, 3, bytes));
  }

  @Test
  void theDemosAnswer_isWhatProtobufWrites() throws Exception {
    OutputTensor[] outputs = {tensor("output", DataType.FP32, new long[] {1, 10}, 40, new Random(1))};
    EncodedResponse answer = EncodedResponse.of("cnn_mnist", "2", "request-7", outputs);
    byte[] expected = built("cnn_mnist", "2", "request-7", outputs).toByteArray();
    assertThat(answer.available()).isEqualTo(expected.length);
    assertThat(answer.size()).isEqualTo(expected.length);
    assertThat(drained(answer)).isEqualTo(expected);
  }

  @Test
  void emptyFieldsLargeDimsNegativeDimsAndLongData_areWhatProtobufWrites() throws Exception {
    Random random = new Random(42);
    List<String> texts = List.of("", "a", "é", "模型", "🙂x", "a\uD800b", "\uDC00", "x".repeat(300));
    for (int round = 0; round < 300; round++) {
      int count = random.nextInt(4);
      OutputTensor[] outputs = new OutputTensor[count];
      for (int i = 0; i < count; i++) {
        long[] shape = new long[random.nextInt(4)];
        for (int d = 0; d < shape.length; d++) {
          shape[d] = switch (random.nextInt(5)) {
            case 0 -> 0;
            case 1 -> -1;
            case 2 -> Long.MAX_VALUE;
            default -> random.nextInt(1 << random.nextInt(30));
          };
        }
        int bytes = random.nextInt(3) == 0 ? 0 : random.nextInt(random.nextBoolean() ? 100 : 20_000);
        DataType type = DataType.values()[random.nextInt(DataType.values().length)];
        outputs[i] = tensor(texts.get(random.nextInt(texts.size())), type, shape, bytes, random);
      }
      String model = texts.get(random.nextInt(texts.size()));
      String version = random.nextBoolean() ? "" : Integer.toString(random.nextInt(1000));
      String id = texts.get(random.nextInt(texts.size()));
      ModelInferResponse reference = built(model, version, id, outputs);

      assertThat(drained(EncodedResponse.of(model, version, id, outputs)))
          .as("round %d", round)
          .isEqualTo(reference.toByteArray());
      assertThat(drained(EncodedResponse.streamed(model, version, id, outputs)))
          .as("round %d, streamed", round)
          .isEqualTo(ModelStreamInferResponse.newBuilder().setInferResponse(reference).build().toByteArray());
      // Parsed, as the payload log sees it (an unpaired surrogate comes back as '?').
      ModelInferResponse parsed = ModelInferResponse.parseFrom(reference.toByteArray());
      assertThat(EncodedResponse.of(model, version, id, outputs).toMessage().equals(parsed)).as("round %d", round).isTrue();
      assertThat(EncodedResponse.streamed(model, version, id, outputs).toMessage().equals(parsed)).as("round %d", round).isTrue();
    }
  }

  @Test
  void readByteByByteInChunksThenDrainTheRest_givesTheSameBytes() throws Exception {
    Random random = new Random(7);
    OutputTensor[] outputs = {
      tensor("scores", DataType.FP32, new long[] {3, 10}, 120, random),
      tensor("labels", DataType.INT64, new long[] {3}, 24, random)
    };
    byte[] expected = built("m", "12", "id", outputs).toByteArray();

    EncodedResponse answer = EncodedResponse.of("m", "12", "id", outputs);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(answer.read());
    out.write(answer.read());
    byte[] chunk = new byte[17];
    int n = answer.read(chunk, 0, chunk.length);
    out.write(chunk, 0, n);
    assertThat(answer.available()).isEqualTo(expected.length - 2 - n);
    answer.drainTo(out);
    assertThat(out.toByteArray()).isEqualTo(expected);
    assertThat(answer.read()).isEqualTo(-1);
    assertThat(answer.read(chunk, 0, 4)).isEqualTo(-1);

    // Read whole through InputStream's own loop, as a parser without the fast path does.
    List<Byte> all = new ArrayList<>();
    EncodedResponse again = EncodedResponse.of("m", "12", "id", outputs);
    for (int b = again.read(); b >= 0; b = again.read()) {
      all.add((byte) b);
    }
    assertThat(ModelInferResponse.parseFrom(ByteString.copyFrom(toArray(all)))).isEqualTo(built("m", "12", "id", outputs));
  }

  private static byte[] toArray(List<Byte> bytes) {
    byte[] array = new byte[bytes.size()];
    for (int i = 0; i < array.length; i++) {
      array[i] = bytes.get(i);
    }
    return array;
  }

  @Test
  void outputData_isWrittenFromTheResultsOwnArray_notCopiedFirst() throws Exception {
    byte[] batch = new byte[400];
    new Random(3).nextBytes(batch);
    OutputTensor row = new OutputTensor("output", DataType.FP32, new long[] {1, 10},
        com.google.protobuf.UnsafeByteOperations.unsafeWrap(batch, 40, 40));
    List<byte[]> written = new ArrayList<>();
    java.io.OutputStream transport = new java.io.OutputStream() {
      @Override
      public void write(int b) {
        written.add(new byte[] {(byte) b});
      }

      @Override
      public void write(byte[] from, int offset, int length) {
        written.add(from);
      }
    };
    EncodedResponse.of("m", "1", "", new OutputTensor[] {row}).drainTo(transport);
    // The head, the raw entry's prefix, then the data straight from the batch's array.
    assertThat(written.get(written.size() - 1)).isSameAs(batch);
  }

  @Test
  void varintSizes() {
    assertThat(EncodedResponse.varint64Size(0)).isEqualTo(1);
    assertThat(EncodedResponse.varint64Size(127)).isEqualTo(1);
    assertThat(EncodedResponse.varint64Size(128)).isEqualTo(2);
    assertThat(EncodedResponse.varint64Size(-1)).isEqualTo(10);
    assertThat(EncodedResponse.varintSize(-1)).isEqualTo(5);
    assertThat(EncodedResponse.utf8Length("a\uD83D\uDE42\uD800é")).isEqualTo(1 + 4 + 1 + 2);
  }
}

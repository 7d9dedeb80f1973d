package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.util.JsonFormat;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelMetadataResponse;
import io.modelgate.proto.inference.ModelMetadataResponse.TensorMetadata;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class InputsTest {
  @TempDir Path dir;

  private static final ModelMetadataResponse BERT_LIKE = ModelMetadataResponse.newBuilder()
      .setName("m")
      .addInputs(TensorMetadata.newBuilder().setName("input_ids").setDatatype("INT64").addShape(-1).addShape(-1))
      .addInputs(TensorMetadata.newBuilder().setName("attention_mask").setDatatype("INT64").addShape(-1).addShape(-1))
      .addInputs(TensorMetadata.newBuilder().setName("pixels").setDatatype("FP32").addShape(-1).addShape(3).addShape(4))
      .addInputs(TensorMetadata.newBuilder().setName("text").setDatatype("BYTES").addShape(2))
      .build();

  @Test
  void random_fillsEveryInputToItsShape_withOpenDimensionsOneUnlessGiven() {
    ModelInferRequest request = Inputs.random(BERT_LIKE, "3", Map.of("input_ids", new long[] {1, 8},
        "attention_mask", new long[] {1, 8}), 7);

    assertThat(request.getModelName()).isEqualTo("m");
    assertThat(request.getModelVersion()).isEqualTo("3");
    assertThat(request.getInputs(0).getShapeList()).containsExactly(1L, 8L);
    assertThat(request.getInputs(2).getShapeList()).containsExactly(1L, 3L, 4L);
    assertThat(request.getRawInputContents(0).size()).isEqualTo(8 * 8);
    assertThat(request.getRawInputContents(2).size()).isEqualTo(12 * 4);
    // BYTES: each element a 4-byte little-endian length, then its bytes.
    assertThat(request.getRawInputContents(3).size()).isEqualTo(2 * (4 + "modelgate".length()));

    ByteBuffer ids = request.getRawInputContents(0).asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer mask = request.getRawInputContents(1).asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 8; i++) {
      assertThat(ids.getLong()).isBetween(1000L, 29_999L);
      assertThat(mask.getLong()).isEqualTo(1);
    }
    assertThat(Inputs.random(BERT_LIKE, "", Map.of(), 7)).as("the seed decides the contents")
        .isEqualTo(Inputs.random(BERT_LIKE, "", Map.of(), 7));
  }

  @Test
  void fromFile_readsProtobufJson_andNamesTheModelAndVersionGiven() throws Exception {
    ModelInferRequest written = Inputs.random(BERT_LIKE, "", Map.of(), 1).toBuilder().setModelName("other").build();
    Path file = Files.writeString(dir.resolve("request.json"), JsonFormat.printer().print(written));

    ModelInferRequest read = Inputs.fromFile(file, "m", "2");

    assertThat(read.getModelName()).isEqualTo("m");
    assertThat(read.getModelVersion()).isEqualTo("2");
    assertThat(read.getInputsList()).isEqualTo(written.getInputsList());
    assertThat(read.getRawInputContentsList()).isEqualTo(written.getRawInputContentsList());
  }

  @Test
  void parseShape_readsNameAndDimensions_andExplainsABadOne() {
    Map.Entry<String, long[]> shape = Inputs.parseShape("input_ids:1, 128");
    assertThat(shape.getKey()).isEqualTo("input_ids");
    assertThat(shape.getValue()).containsExactly(1, 128);

    assertThatThrownBy(() -> Inputs.parseShape("1,128"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("expected: NAME:DIM,DIM");
  }
}

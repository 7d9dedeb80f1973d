package io.modelgate.runtime.tensor;

import static io.modelgate.runtime.testing.Requests.input;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferRequestedOutputTensor;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.testing.Requests;
import java.util.List;
import org.assertj.core.api.AbstractThrowableAssert;
import org.junit.jupiter.api.Test;

class RequestDecoderTest {
  /** image FP32 [-1,2,2] and mask BOOL [-1,2]; outputs score FP32 [-1,1] and label INT64 [-1]. */
  private static final ModelSignature SIGNATURE =
      new ModelSignature(
          List.of(
              new TensorSpec("image", DataType.FP32, new long[] {-1, 2, 2}),
              new TensorSpec("mask", DataType.BOOL, new long[] {-1, 2})),
          List.of(
              new TensorSpec("score", DataType.FP32, new long[] {-1, 1}),
              new TensorSpec("label", DataType.INT64, new long[] {-1})),
          4);

  private static final ModelSignature STRINGS =
      new ModelSignature(
          List.of(new TensorSpec("text", DataType.BYTES, new long[] {-1})),
          List.of(new TensorSpec("n", DataType.INT64, new long[] {-1})),
          0);

  private static InferTensorContents.Builder floats(int n) {
    InferTensorContents.Builder c = InferTensorContents.newBuilder();
    for (int i = 0; i < n; i++) {
      c.addFp32Contents(i);
    }
    return c;
  }

  private static InferTensorContents.Builder bools(int n) {
    InferTensorContents.Builder c = InferTensorContents.newBuilder();
    for (int i = 0; i < n; i++) {
      c.addBoolContents(i % 2 == 0);
    }
    return c;
  }

  private static ModelInferRequest.Builder valid() {
    return ModelInferRequest.newBuilder()
        .addInputs(input("image", "FP32", 1, 2, 2).setContents(floats(4)))
        .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2)));
  }

  private static AbstractThrowableAssert<?, ?> rejects(ModelInferRequest.Builder request) {
    return rejects(request, SIGNATURE);
  }

  private static AbstractThrowableAssert<?, ?> rejects(
      ModelInferRequest.Builder request, ModelSignature signature) {
    return assertThatThrownBy(() -> RequestDecoder.decode(request.build(), signature))
        .isInstanceOfSatisfying(
            InferenceException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_ARGUMENT));
  }

  @Test
  void validRequest_decodesInModelOrder_withAllOutputs() {
    ModelInferRequest request =
        ModelInferRequest.newBuilder()
            .addInputs(input("mask", "BOOL", 2, 2).setContents(bools(4)))
            .addInputs(input("image", "FP32", 2, 2, 2).setContents(floats(8)))
            .putParameters("triton_enable_empty_final_response", InferParameter.newBuilder().setBoolParam(true).build())
            .putParameters("something_unknown", InferParameter.newBuilder().setStringParam("x").build())
            .build();
    DecodedRequest decoded = RequestDecoder.decode(request, SIGNATURE);
    assertThat(decoded.inputs()[0].spec().name()).isEqualTo("image");
    assertThat(decoded.inputs()[1].spec().name()).isEqualTo("mask");
    assertThat(decoded.inputs()[0].byteSize()).isEqualTo(32);
    assertThat(decoded.rows()).isEqualTo(2);
    assertThat(decoded.outputs()).containsExactly(0, 1);
  }

  @Test
  void requestedOutputs_keepTheRequestedOrder() {
    DecodedRequest decoded =
        RequestDecoder.decode(
            valid()
                .addOutputs(InferRequestedOutputTensor.newBuilder().setName("label"))
                .addOutputs(InferRequestedOutputTensor.newBuilder().setName("score"))
                .build(),
            SIGNATURE);
    assertThat(decoded.outputs()).containsExactly(1, 0);
  }

  @Test
  void unknownInput() {
    rejects(valid().addInputs(input("img", "FP32", 1).setContents(floats(1))))
        .hasMessage("unknown input 'img' (expected: image, mask)");
  }

  @Test
  void missingInput() {
    rejects(ModelInferRequest.newBuilder().addInputs(input("image", "FP32", 1, 2, 2).setContents(floats(4))))
        .hasMessage("missing input 'mask' (BOOL [-1,2])");
  }

  @Test
  void repeatedInput() {
    rejects(valid().addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage("input 'mask' is given more than once");
  }

  @Test
  void wrongDatatype() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP64", 1, 2, 2).setContents(floats(4)))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage("input 'image': datatype 'FP64' (expected: FP32)");
  }

  @Test
  void wrongRank() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 4).setContents(floats(4)))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage(
            "input 'image': shape [1,4] has rank 2 (expected: rank 3, model shape [-1,2,2])");
  }

  @Test
  void wrongDimension() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 2, 3).setContents(floats(6)))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage(
            "input 'image': shape [1,2,3] has 3 at dimension 2 (expected: 2, model shape [-1,2,2])");
  }

  @Test
  void negativeDimension() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", -1, 2, 2).setContents(floats(4)))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessageContaining("has -1 at dimension 0 (expected: >= 0");
  }

  @Test
  void typedElementCountMismatch() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 2, 2).setContents(floats(3)))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage("input 'image': shape [1,2,2] has 4 elements but fp32_contents has 3");
  }

  @Test
  void typedValuesInTheWrongField() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(
                    input("image", "FP32", 1, 2, 2)
                        .setContents(InferTensorContents.newBuilder().addAllIntContents(List.of(1, 2, 3, 4))))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage("input 'image': FP32 values belong in fp32_contents (got: int_contents)");
  }

  @Test
  void inputWithoutData() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 2, 2))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage(
            "input 'image' carries no data (expected: contents, or raw_input_contents for all inputs)");
  }

  @Test
  void rawByteLengthMismatch() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 2, 2))
                .addInputs(input("mask", "BOOL", 1, 2))
                .addRawInputContents(ByteString.copyFrom(new byte[15]))
                .addRawInputContents(ByteString.copyFrom(new byte[2])))
        .hasMessage(
            "input 'image': 15 bytes of raw data for shape [1,2,2] of FP32 (expected: 16 bytes = 4"
                + " elements x 4)");
  }

  @Test
  void rawAndTypedMixed() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 2, 2).setContents(floats(4)))
                .addInputs(input("mask", "BOOL", 1, 2))
                .addRawInputContents(ByteString.copyFrom(new byte[16]))
                .addRawInputContents(ByteString.copyFrom(new byte[2])))
        .hasMessage(
            "input 'image' has typed contents while the request carries raw_input_contents"
                + " (expected: one form for all inputs)");
  }

  @Test
  void rawEntryCountMismatch() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 1, 2, 2))
                .addInputs(input("mask", "BOOL", 1, 2))
                .addRawInputContents(ByteString.copyFrom(new byte[16])))
        .hasMessage(
            "raw_input_contents has 1 entries for 2 inputs (expected: one entry per input, in the"
                + " order of inputs)");
  }

  @Test
  void fp16HasNoTypedForm() {
    ModelSignature half =
        new ModelSignature(
            List.of(new TensorSpec("h", DataType.FP16, new long[] {2})),
            List.of(new TensorSpec("y", DataType.FP16, new long[] {2})),
            0);
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("h", "FP16", 2).setContents(floats(2))),
            half)
        .hasMessage("input 'h': FP16 has no typed contents field (expected: raw_input_contents)");
  }

  @Test
  void batchSizesDiffer() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 2, 2, 2).setContents(floats(8)))
                .addInputs(input("mask", "BOOL", 1, 2).setContents(bools(2))))
        .hasMessage(
            "input 'mask' has batch size 1 but input 'image' has 2 (expected: the same batch size"
                + " on every input's batch axis)");
  }

  @Test
  void batchLargerThanMaxBatchSize() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 5, 2, 2).setContents(floats(20)))
                .addInputs(input("mask", "BOOL", 5, 2).setContents(bools(10))))
        .hasMessage(
            "batch size 5 (expected: 1 to max_batch_size 4, along every input's batch axis)");
  }

  @Test
  void emptyBatch() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("image", "FP32", 0, 2, 2).setContents(InferTensorContents.getDefaultInstance()))
                .addInputs(input("mask", "BOOL", 0, 2).setContents(InferTensorContents.getDefaultInstance())))
        .hasMessageStartingWith("batch size 0 (expected: 1 to max_batch_size 4");
  }

  @Test
  void unknownOutput() {
    rejects(valid().addOutputs(InferRequestedOutputTensor.newBuilder().setName("scores")))
        .hasMessage("unknown output 'scores' (expected one of: score, label)");
  }

  @Test
  void repeatedOutput() {
    rejects(
            valid()
                .addOutputs(InferRequestedOutputTensor.newBuilder().setName("score"))
                .addOutputs(InferRequestedOutputTensor.newBuilder().setName("score")))
        .hasMessage("output 'score' is requested more than once");
  }

  @Test
  void rawBytes_truncatedLength() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("text", "BYTES", 2))
                .addRawInputContents(ByteString.copyFrom(new byte[] {1, 0, 0, 0, 'a', 5, 0})),
            STRINGS)
        .hasMessage(
            "input 'text': raw BYTES data ends after 1 of 2 elements for shape [2] (expected: each"
                + " element as a 4-byte little-endian length and its bytes)");
  }

  @Test
  void rawBytes_lengthBeyondTheData() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("text", "BYTES", 1))
                .addRawInputContents(ByteString.copyFrom(new byte[] {9, 0, 0, 0, 'a'})),
            STRINGS)
        .hasMessage("input 'text': BYTES element 0 declares 9 bytes but only 1 remain");
  }

  @Test
  void rawBytes_trailingData() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(input("text", "BYTES", 1))
                .addRawInputContents(ByteString.copyFrom(new byte[] {1, 0, 0, 0, 'a', 'b'})),
            STRINGS)
        .hasMessage("input 'text': 1 bytes of raw BYTES data left after 1 elements for shape [1]");
  }

  @Test
  void bytes_invalidUtf8() {
    rejects(
            ModelInferRequest.newBuilder()
                .addInputs(
                    input("text", "BYTES", 1)
                        .setContents(
                            InferTensorContents.newBuilder()
                                .addBytesContents(ByteString.copyFrom(new byte[] {(byte) 0xC3, 0x28})))),
            STRINGS)
        .hasMessage(
            "input 'text': BYTES element 0 is not valid UTF-8 (expected: UTF-8 text, as ONNX string"
                + " tensors hold)");
  }

  @Test
  void rawBytes_decodeToStrings() {
    DecodedRequest decoded =
        RequestDecoder.decode(
            ModelInferRequest.newBuilder()
                .addInputs(input("text", "BYTES", 2))
                .addRawInputContents(
                    ByteString.copyFrom(new byte[] {2, 0, 0, 0, 'h', 'i', 0, 0, 0, 0}))
                .build(),
            STRINGS);
    assertThat(decoded.inputs()[0].strings()).containsExactly("hi", "");
    assertThat(decoded.rows()).isZero();
  }

  @Test
  void fp32Raw_andTyped_decodeToTheSameBytes() {
    ModelSignature one =
        new ModelSignature(
            List.of(new TensorSpec("x", DataType.FP32, new long[] {-1, 3})),
            List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, 3})),
            8);
    DecodedRequest typed = RequestDecoder.decode(Requests.fp32("x", new long[] {1, 3}, 1.5f, -2f, 3f), one);
    DecodedRequest raw = RequestDecoder.decode(Requests.fp32Raw("x", new long[] {1, 3}, 1.5f, -2f, 3f), one);
    java.nio.ByteBuffer a = java.nio.ByteBuffer.allocate(12).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(12).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    typed.inputs()[0].copyTo(a);
    raw.inputs()[0].copyTo(b);
    assertThat(a.array()).isEqualTo(b.array());
  }
}

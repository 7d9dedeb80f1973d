package io.modelgate.runtime.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.ModelLoadException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.onnx.OnnxBatchExecutor;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.testing.Requests;
import io.modelgate.runtime.testing.TestModels;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;

/**
 * Every datatype, in typed and in raw form, goes through the decoder, a real ONNX Runtime Identity
 * model and the output encoder, and comes back as exactly the little-endian bytes it stands for.
 */
class CodecRoundTripPropertiesTest {
  private static final Map<DataType, OnnxModel> MODELS = new EnumMap<>(DataType.class);

  private static synchronized OnnxModel identity(DataType type) {
    return MODELS.computeIfAbsent(
        type,
        t -> {
          try {
            Path file = Files.createTempFile("identity-" + t, ".onnx");
            Files.write(file, TestModels.identity(t));
            file.toFile().deleteOnExit();
            return OnnxModel.open(file, SessionSettings.DEFAULTS);
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          } catch (ModelLoadException e) {
            throw new AssertionError(e);
          }
        });
  }

  @AfterContainer
  static synchronized void closeModels() {
    MODELS.values().forEach(OnnxModel::close);
    MODELS.clear();
  }

  /** A tensor's datatype, shape and elements, with the raw bytes they must encode to. */
  record Case(DataType type, int rows, int cols, long seed) {
    int count() {
      return rows * cols;
    }
  }

  @Provide
  Arbitrary<Case> typedCases() {
    return cases(
        Arbitraries.of(
            DataType.BOOL,
            DataType.UINT8,
            DataType.INT8,
            DataType.INT16,
            DataType.INT32,
            DataType.INT64,
            DataType.FP32,
            DataType.FP64,
            DataType.BYTES));
  }

  @Provide
  Arbitrary<Case> rawCases() {
    return cases(Arbitraries.of(DataType.values()));
  }

  private static Arbitrary<Case> cases(Arbitrary<DataType> types) {
    return Combinators.combine(
            types,
            Arbitraries.integers().between(1, 4),
            Arbitraries.integers().between(0, 9),
            Arbitraries.longs())
        .as(Case::new);
  }

  @Property(tries = 300)
  void typedContents_roundTripThroughOnnxRuntime(@ForAll("typedCases") Case c) throws Exception {
    Values values = Values.random(c);
    ModelInferRequest request =
        ModelInferRequest.newBuilder()
            .addInputs(
                Requests.input("x", c.type().wireName(), c.rows(), c.cols())
                    .setContents(values.typed()))
            .build();
    assertRoundTrip(c, request, values.raw());
  }

  @Property(tries = 300)
  void rawContents_roundTripThroughOnnxRuntime(@ForAll("rawCases") Case c) throws Exception {
    Values values = Values.random(c);
    ModelInferRequest request =
        ModelInferRequest.newBuilder()
            .addInputs(Requests.input("x", c.type().wireName(), c.rows(), c.cols()))
            .addRawInputContents(values.raw())
            .build();
    assertRoundTrip(c, request, values.raw());
  }

  private static void assertRoundTrip(Case c, ModelInferRequest request, ByteString expected)
      throws Exception {
    OnnxModel model = identity(c.type());
    ModelSignature signature = new ModelSignature(model.inputs(), model.outputs(), 64);
    DecodedRequest decoded = RequestDecoder.decode(request, signature);
    Requests.Answer answer = new Requests.Answer();
    try (OnnxBatchExecutor executor = new OnnxBatchExecutor(model, signature, "identity")) {
      executor.execute(Batch.of(InferenceRequest.of(decoded, System.nanoTime(), null, answer)));
    }
    InferenceResult result = answer.result.get(10, TimeUnit.SECONDS);
    OutputTensor y = result.outputs()[0];
    assertThat(y.name()).isEqualTo("y");
    assertThat(y.dataType()).isEqualTo(c.type());
    assertThat(y.shape()).containsExactly(c.rows(), c.cols());
    assertThat(y.data().toByteArray()).isEqualTo(expected.toByteArray());
  }

  /** Random elements of one case in both protocol forms, built independently of the codec. */
  record Values(InferTensorContents typed, ByteString raw) {
    static Values random(Case c) {
      Random random = new Random(c.seed());
      int n = c.count();
      InferTensorContents.Builder typed = InferTensorContents.newBuilder();
      ByteBuffer raw = ByteBuffer.allocate(n * 16 + 64).order(ByteOrder.LITTLE_ENDIAN);
      for (int i = 0; i < n; i++) {
        switch (c.type()) {
          case BOOL -> {
            boolean v = random.nextBoolean();
            typed.addBoolContents(v);
            raw.put(v ? (byte) 1 : 0);
          }
          case UINT8 -> {
            int v = random.nextInt(256);
            typed.addUintContents(v);
            raw.put((byte) v);
          }
          case INT8 -> {
            int v = random.nextInt(256) - 128;
            typed.addIntContents(v);
            raw.put((byte) v);
          }
          case INT16 -> {
            int v = random.nextInt(65536) - 32768;
            typed.addIntContents(v);
            raw.putShort((short) v);
          }
          case INT32 -> {
            int v = random.nextInt();
            typed.addIntContents(v);
            raw.putInt(v);
          }
          case INT64 -> {
            long v = random.nextLong();
            typed.addInt64Contents(v);
            raw.putLong(v);
          }
          case FP32 -> {
            float v = Float.intBitsToFloat(random.nextInt());
            typed.addFp32Contents(v);
            raw.putInt(Float.floatToRawIntBits(v));
          }
          case FP64 -> {
            double v = Double.longBitsToDouble(random.nextLong());
            typed.addFp64Contents(v);
            raw.putLong(Double.doubleToRawLongBits(v));
          }
          case FP16, BF16 -> raw.putShort((short) random.nextInt(65536));
          case BYTES -> {
            byte[] v = text(random).getBytes(StandardCharsets.UTF_8);
            typed.addBytesContents(ByteString.copyFrom(v));
            if (raw.remaining() < v.length + 4) {
              ByteBuffer bigger =
                  ByteBuffer.allocate(raw.capacity() * 2 + v.length).order(ByteOrder.LITTLE_ENDIAN);
              raw.flip();
              raw = bigger.put(raw);
            }
            raw.putInt(v.length).put(v);
          }
          default -> throw new AssertionError(c.type());
        }
      }
      raw.flip();
      return new Values(typed.build(), ByteString.copyFrom(raw));
    }

    private static final List<String> WORDS =
        List.of("", "a", "ONNX", "naïve", "日本語テキスト", "Ελληνικά", "tab\tand\nnewline", "x".repeat(300));

    private static String text(Random random) {
      return WORDS.get(random.nextInt(WORDS.size())) + (random.nextBoolean() ? random.nextInt() : "");
    }
  }
}

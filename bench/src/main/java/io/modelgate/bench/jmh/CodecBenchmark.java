package io.modelgate.bench.jmh;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The tensor codec on an MNIST-sized input (784 FP32 per row): validation alone, and validation
 * plus the one copy into a direct buffer, from raw and from typed contents.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class CodecBenchmark {
  @Param({"1", "32"})
  public int rows;

  private ModelSignature signature;
  private ModelInferRequest raw;
  private ModelInferRequest typed;
  private ByteBuffer direct;

  @Setup
  public void setUp() {
    signature =
        new ModelSignature(
            List.of(new TensorSpec("x", DataType.FP32, new long[] {-1, 784})),
            List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, 10})),
            64);
    int n = rows * 784;
    ByteBuffer bytes = ByteBuffer.allocate(n * 4).order(ByteOrder.LITTLE_ENDIAN);
    InferTensorContents.Builder contents = InferTensorContents.newBuilder();
    for (int i = 0; i < n; i++) {
      bytes.putFloat(i * 0.5f);
      contents.addFp32Contents(i * 0.5f);
    }
    InferInputTensor.Builder header = InferInputTensor.newBuilder().setName("x").setDatatype("FP32").addShape(rows).addShape(784);
    raw = ModelInferRequest.newBuilder().addInputs(header).addRawInputContents(ByteString.copyFrom(bytes.array())).build();
    typed = ModelInferRequest.newBuilder().addInputs(header.clone().setContents(contents)).build();
    direct = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.LITTLE_ENDIAN);
  }

  @Benchmark
  public DecodedRequest decodeRaw() {
    return RequestDecoder.decode(raw, signature);
  }

  @Benchmark
  public ByteBuffer decodeAndCopyRaw() {
    direct.clear();
    RequestDecoder.decode(raw, signature).inputs()[0].copyTo(direct);
    return direct;
  }

  @Benchmark
  public ByteBuffer decodeAndCopyTyped() {
    direct.clear();
    RequestDecoder.decode(typed, signature).inputs()[0].copyTo(direct);
    return direct;
  }
}

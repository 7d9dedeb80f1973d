package io.modelgate.bench.jmh;

import com.google.protobuf.UnsafeByteOperations;
import io.modelgate.gateway.inference.EncodedResponse;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelInferResponse.InferOutputTensor;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.OutputTensor;
import java.io.IOException;
import java.io.OutputStream;
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
 * One answer from a result's outputs to bytes in a transport buffer: built as protobuf messages
 * and serialized (what the server did before, and what grpc-java's marshaller does), against
 * {@link EncodedResponse} drained into the same buffer. {@code bytes}: one output's data (40: a
 * cnn_mnist row's ten classes; 4,000 and 400,000 for larger outputs). Run with {@code -prof gc}
 * for the allocation per answer.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
@State(Scope.Thread)
public class AnswerEncodingBenchmark {
  @Param({"40", "4000", "400000"})
  public int bytes;

  private OutputTensor[] outputs;
  private Sink transport;

  /** Stands in for the transport's buffer: copies what it is given into one reused array. */
  static final class Sink extends OutputStream {
    final byte[] buffer;
    int at;

    Sink(int size) {
      buffer = new byte[size];
    }

    @Override
    public void write(int b) {
      buffer[at++] = (byte) b;
    }

    @Override
    public void write(byte[] from, int offset, int length) {
      System.arraycopy(from, offset, buffer, at, length);
      at += length;
    }
  }

  @Setup
  public void setUp() {
    // A slice of a larger array, as the executor's results hold each request's rows.
    byte[] batch = new byte[bytes * 4];
    java.util.Arrays.fill(batch, (byte) 7);
    outputs = new OutputTensor[] {
      new OutputTensor("output_probs", DataType.FP32, new long[] {1, bytes / 4}, UnsafeByteOperations.unsafeWrap(batch, bytes, bytes))
    };
    transport = new Sink(bytes + 1024);
  }

  @Benchmark
  public int protobufMessages() throws IOException {
    ModelInferResponse.Builder response =
        ModelInferResponse.newBuilder().setModelName("cnn_mnist").setModelVersion("2").setId("request-1");
    for (OutputTensor output : outputs) {
      InferOutputTensor.Builder tensor =
          response.addOutputsBuilder().setName(output.name()).setDatatype(output.dataType().wireName());
      for (long dim : output.shape()) {
        tensor.addShape(dim);
      }
      response.addRawOutputContents(output.data());
    }
    ModelInferResponse message = response.build();
    transport.at = 0;
    message.writeTo(transport);
    return transport.at;
  }

  @Benchmark
  public int encodedResponse() throws IOException {
    transport.at = 0;
    return EncodedResponse.of("cnn_mnist", "2", "request-1", outputs).drainTo(transport);
  }
}

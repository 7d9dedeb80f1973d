package io.modelgate.runtime.testing;

import com.google.protobuf.ByteString;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceResult;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.CompletableFuture;

/** Builders for protocol requests and a callback that captures the one answer. */
public final class Requests {
  private Requests() {}

  public static InferInputTensor.Builder input(String name, String datatype, long... shape) {
    InferInputTensor.Builder input = InferInputTensor.newBuilder().setName(name).setDatatype(datatype);
    for (long dim : shape) {
      input.addShape(dim);
    }
    return input;
  }

  /** A request with one FP32 input given in typed form. */
  public static ModelInferRequest fp32(String name, long[] shape, float... values) {
    InferTensorContents.Builder contents = InferTensorContents.newBuilder();
    for (float value : values) {
      contents.addFp32Contents(value);
    }
    return ModelInferRequest.newBuilder()
        .addInputs(input(name, "FP32", shape).setContents(contents))
        .build();
  }

  /** A request with one FP32 input given as raw bytes. */
  public static ModelInferRequest fp32Raw(String name, long[] shape, float... values) {
    return ModelInferRequest.newBuilder()
        .addInputs(input(name, "FP32", shape))
        .addRawInputContents(rawFloats(values))
        .build();
  }

  public static ByteString rawFloats(float... values) {
    ByteBuffer buffer = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float value : values) {
      buffer.putFloat(value);
    }
    return ByteString.copyFrom(buffer.array());
  }

  public static float[] floats(ByteString raw) {
    ByteBuffer buffer = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    float[] values = new float[raw.size() / 4];
    for (int i = 0; i < values.length; i++) {
      values[i] = buffer.getFloat();
    }
    return values;
  }

  /** Captures the answer; fails the test if there is a second one. */
  public static class Answer implements InferenceCallback {
    public final CompletableFuture<InferenceResult> result = new CompletableFuture<>();
    private int answers;

    @Override
    public synchronized void onSuccess(InferenceResult value) {
      answers++;
      result.complete(value);
    }

    private long charged;

    @Override
    public synchronized void onFailure(InferenceException error) {
      answers++;
      result.completeExceptionally(error);
    }

    @Override
    public synchronized void onFailure(InferenceException error, long computeNanos) {
      charged = computeNanos;
      onFailure(error);
    }

    public synchronized int answers() {
      return answers;
    }

    /**
     * The model's time this request was charged, ns: for a result, its share by rows of its run's;
     * for a failure, what the executor charged it.
     */
    public synchronized double charged(int rows) {
      if (result.isDone() && !result.isCompletedExceptionally()) {
        InferenceResult value = result.join();
        return value.computeNanos() * (double) rows / value.batchRows();
      }
      return charged;
    }
  }
}

package io.modelgate.runtime.onnx;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.BatchExecutor;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.InputTensor;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.Shapes;
import io.modelgate.runtime.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Runs batches on one {@link OnnxModel}: concatenates each input of the batch's requests along the
 * first dimension into a direct buffer (the one copy of the request's bytes), calls ONNX Runtime,
 * and splits each output back by the requests' row counts. Where the model has a second session for
 * large batches, each executor sends a large batch to whichever session measured the shorter time a
 * row on such batches ({@link SessionChoice}).
 *
 * <p>One request's values can make a whole batch fail (an index past the end of a table the model
 * looks it up in, a shape the model takes alone but not beside others). A request ONNX Runtime
 * fails as an invalid argument is answered {@code INVALID_ARGUMENT}, any other failure {@code
 * INTERNAL}, each with ONNX Runtime's message. A batch of several
 * requests that fails is run again in halves, and each half that fails in halves again, down to
 * single requests: only the requests that fail alone fail, each with its own error; the others are
 * answered. Where every request of {@value #WHOLE_FAILURES_AFTER} such batches in a row fails
 * alone too, with no request answered between them and none refused as an invalid argument, the
 * fault is likely the model's rather than a request's: until this executor next answers a request,
 * for at most {@link #WHOLE_FAILURES_MILLIS} ms, batches that fail other than as an invalid argument
 * fail whole, without being run again. (A model that fails whatever it is given then costs one run
 * a batch, not about two a request.) A failure ONNX Runtime calls an invalid argument is a verdict
 * on a request's values, not on the model: such batches are always run again in halves, so that a
 * client sending bursts of bad values never makes the good requests batched with them fail.
 *
 * <p>One instance per executor thread: it owns its direct buffers and reuses them, growing them to
 * the largest batch seen. Responses are built from the tensors ONNX Runtime returns, not from the
 * declared output shapes. Every tensor and result is closed, whatever happens.
 */
public final class OnnxBatchExecutor implements BatchExecutor {
  private final OnnxModel model;
  private final ModelSignature signature;
  private final String label;
  private final ByteBuffer[] buffers;
  private final OnnxTensor[] tensors;
  private final Map<String, OnnxTensor> feed;
  private final Set<String> allOutputNames;
  /** Which session large batches run on, where the model has two; null where it has one. */
  private final SessionChoice sessions;
  /** Where each request's rows start in the batch in hand; grown to the largest batch, reused. */
  private int[] firstRows = new int[1];
  /** How long at most failing batches fail whole once they do, in milliseconds. */
  static final long WHOLE_FAILURES_MILLIS = 1_000;

  private final java.util.function.LongSupplier nanoTime;
  /** Batches in a row whose every request failed alone, with none answered since, before failing batches fail whole. */
  static final int WHOLE_FAILURES_AFTER = 2;

  /**
   * Batches in a row whose every request failed alone, with no request answered since; and until
   * when (nanoTime) failing batches fail whole once they reach {@link #WHOLE_FAILURES_AFTER}. This
   * executor's thread only.
   */
  private int failedWhole;
  private long failWholeUntil;
  /**
   * The model's last run's time in ns (0 where the model was not reached); and, over the runs of
   * the execution in hand, when the first started, when the last ended, their sum and their number.
   * This executor's thread only.
   */
  private long lastRunNanos;
  private long firstRunStart;
  private long lastRunEnd;
  private long modelNanos;
  private int runs;

  /**
   * @param label names the version in error messages, e.g. {@code "model 'm' version 1"}
   */
  public OnnxBatchExecutor(OnnxModel model, ModelSignature signature, String label) {
    this(model, signature, label, System::nanoTime, true);
  }

  /**
   * An executor whose first large batches run on the model's first session, until what it measures
   * says otherwise: for the version's warm-up, so that the first session's first large batch (the
   * executors try it on 4 of every 64) is not a client's. Otherwise as the public constructor.
   */
  public static OnnxBatchExecutor startingOnFirstSession(OnnxModel model, ModelSignature signature, String label) {
    return new OnnxBatchExecutor(model, signature, label, System::nanoTime, false);
  }

  /** With {@code nanoTime} for the clock (tests). */
  OnnxBatchExecutor(OnnxModel model, ModelSignature signature, String label, java.util.function.LongSupplier nanoTime) {
    this(model, signature, label, nanoTime, true);
  }

  private OnnxBatchExecutor(OnnxModel model, ModelSignature signature, String label,
      java.util.function.LongSupplier nanoTime, boolean largeOnSecond) {
    this.nanoTime = nanoTime;
    this.model = model;
    this.signature = signature;
    this.label = label;
    this.sessions = model.largeBatchRows() > 0 ? new SessionChoice(largeOnSecond) : null;
    int inputs = signature.inputs().size();
    this.buffers = new ByteBuffer[inputs];
    this.tensors = new OnnxTensor[inputs];
    this.feed = new HashMap<>(inputs * 2);
    Set<String> names = new LinkedHashSet<>();
    for (TensorSpec output : signature.outputs()) {
      names.add(output.name());
    }
    this.allOutputNames = Set.copyOf(names);
  }

  @Override
  public void execute(Batch batch) {
    firstRunStart = 0;
    lastRunEnd = 0;
    modelNanos = 0;
    runs = 0;
    InferenceException failure = run(batch);
    if (failure == null) {
      failedWhole = 0;
      return;
    }
    long failedNanos = lastRunNanos;
    if (batch.size() == 1
        || (failure.code() != ErrorCode.INVALID_ARGUMENT
            && failedWhole >= WHOLE_FAILURES_AFTER
            && nanoTime.getAsLong() - failWholeUntil < 0)) {
      failAll(batch, failure, failedNanos);
      batch.ranInParts(firstRunStart, lastRunEnd, modelNanos, runs);
      return;
    }
    int n = batch.size();
    InferenceException[] errors = new InferenceException[n];
    long[] charges = new long[n];
    split(batch, 0, n, failure, failedNanos, errors, charges);
    batch.ranInParts(firstRunStart, lastRunEnd, modelNanos, runs);
    int failedByModel = 0;
    for (int i = 0; i < n; i++) {
      if (errors[i] != null) {
        batch.get(i).fail(errors[i], charges[i]);
        if (errors[i].code() != ErrorCode.INVALID_ARGUMENT) {
          failedByModel++;
        }
      }
    }
    // Every one failed alone, none refused as an invalid argument: the model's fault, perhaps, if
    // the next does too before a request is answered.
    failedWhole = failedByModel == n ? failedWhole + 1 : 0;
    if (failedWhole >= WHOLE_FAILURES_AFTER) {
      failWholeUntil = nanoTime.getAsLong() + java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(WHOLE_FAILURES_MILLIS);
    }
  }

  /**
   * Runs the requests {@code [from, to)} of {@code batch}, which failed together with {@code
   * failure} in a run of the model that took {@code failedNanos}, again in two halves, and each half
   * that fails in two again, down to single requests, which fail with their own error: one bad
   * request among n costs about 2 log2(n) runs of shrinking size, the good part of each half
   * answered in one. Each request that fails in the end gets its error in {@code errors} and, in
   * {@code charges}, the model's time of the failed runs it was in, shared by rows among the
   * requests of each run that failed in the end (a run whose requests failed only together is
   * charged to none of them: each was answered, with its own run's time).
   */
  private void split(Batch batch, int from, int to, InferenceException failure, long failedNanos,
      InferenceException[] errors, long[] charges) {
    if (to - from == 1) {
      errors[from] = failure;
      charges[from] += failedNanos;
      return;
    }
    int middle = (from + to) >>> 1;
    retry(batch, from, middle, errors, charges);
    retry(batch, middle, to, errors, charges);
    apportion(batch, from, to, failedNanos, errors, charges);
  }

  /**
   * Adds {@code nanos} to {@code charges} of the requests {@code [from, to)} of {@code batch} that
   * have an error in {@code failed} (all of them where {@code failed} is null), shared by rows, the
   * last taking what division leaves; none where none has.
   */
  private static void apportion(Batch batch, int from, int to, long nanos, InferenceException[] failed, long[] charges) {
    long rows = 0;
    int last = -1;
    for (int i = from; i < to; i++) {
      if (failed == null || failed[i] != null) {
        rows += rows(batch.get(i));
        last = i;
      }
    }
    long left = nanos;
    for (int i = from; i <= last; i++) {
      if (failed == null || failed[i] != null) {
        long share = i == last ? left : nanos * rows(batch.get(i)) / rows;
        charges[i] += share;
        left -= share;
      }
    }
  }

  private void retry(Batch batch, int from, int to, InferenceException[] errors, long[] charges) {
    InferenceRequest[] part = new InferenceRequest[to - from];
    for (int i = 0; i < part.length; i++) {
      part[i] = batch.get(from + i);
    }
    InferenceException failure = run(Batch.of(part));
    if (failure != null) {
      split(batch, from, to, failure, lastRunNanos, errors, charges);
    }
  }

  private static int rows(InferenceRequest request) {
    return Math.max(1, request.decoded().rows());
  }

  /**
   * Runs {@code batch} and answers every request of it; or answers none and returns why. Either way
   * notes the model's run: {@link #lastRunNanos} (0 where it was not reached) and the execution's
   * totals.
   */
  private InferenceException run(Batch batch) {
    long runStart = 0;
    lastRunNanos = 0;
    try {
      for (int i = 0; i < tensors.length; i++) {
        tensors[i] = input(i, batch);
        feed.put(signature.inputs().get(i).name(), tensors[i]);
      }
      int rows = batch.rows();
      boolean large = sessions != null && rows >= model.largeBatchRows();
      boolean second = large && sessions.second();
      runStart = System.nanoTime();
      try (OrtSession.Result result = model.run(feed, outputNames(batch), rows, second)) {
        long runEnd = System.nanoTime();
        if (large) {
          sessions.ran(second, rows, runEnd - runStart);
        }
        batch.ran(runStart, runEnd);
        noteRun(runStart, runEnd);
        runStart = 0;
        answer(batch, result);
      }
      return null;
    } catch (OrtException e) {
      noteFailedRun(runStart);
      if (e.getCode() == OrtException.OrtErrorCode.ORT_INVALID_ARGUMENT) {
        // ONNX Runtime's own verdict on the values it was given: the request's fault once it fails alone.
        return InferenceException.invalidArgument("ONNX Runtime refused the inputs of " + label + ": " + e.getMessage());
      }
      return InferenceException.internal("ONNX Runtime failed running " + label + ": " + e.getMessage(), e);
    } catch (InferenceException e) {
      noteFailedRun(runStart);
      return e;
    } finally {
      for (int i = 0; i < tensors.length; i++) {
        if (tensors[i] != null) {
          tensors[i].close();
          tensors[i] = null;
        }
      }
      feed.clear();
    }
  }

  /** A run of the model that failed, started at {@code runStart} (0: not reached, or noted already). */
  private void noteFailedRun(long runStart) {
    if (runStart != 0) {
      noteRun(runStart, System.nanoTime());
    }
  }

  private void noteRun(long runStart, long runEnd) {
    lastRunNanos = runEnd - runStart;
    modelNanos += lastRunNanos;
    runs++;
    if (firstRunStart == 0) {
      firstRunStart = runStart;
    }
    lastRunEnd = runEnd;
  }

  private OnnxTensor input(int index, Batch batch) throws OrtException {
    int n = batch.size();
    int axis = signature.inputAxis(index);
    InputTensor first = batch.get(0).decoded().inputs()[index];
    if (n == 1 || axis == ModelSignature.NO_AXIS) {
      // One request, or an input every request of the batch shares unchanged.
      if (first.dataType() == DataType.BYTES) {
        return OnnxTensor.createTensor(OnnxModel.environment(), first.strings(), first.shape());
      }
      ByteBuffer buffer = buffer(index, first.byteSize());
      first.copyTo(buffer);
      buffer.flip();
      return OnnxTensor.createTensor(
          OnnxModel.environment(), buffer, first.shape(), first.dataType().ortType());
    }
    long[] shape = first.shape().clone();
    shape[axis] = batch.rows();
    int outer = (int) product(shape, 0, axis);
    int inner = (int) product(shape, axis + 1, shape.length);
    if (first.dataType() == DataType.BYTES) {
      String[] values = new String[(int) product(shape, 0, shape.length)];
      int at = 0;
      for (int o = 0; o < outer; o++) {
        for (int r = 0; r < n; r++) {
          InputTensor part = batch.get(r).decoded().inputs()[index];
          int length = (int) part.shape()[axis] * inner;
          System.arraycopy(part.strings(), o * length, values, at, length);
          at += length;
        }
      }
      return OnnxTensor.createTensor(OnnxModel.environment(), values, shape);
    }
    int bytes = 0;
    for (int r = 0; r < n; r++) {
      bytes += batch.get(r).decoded().inputs()[index].byteSize();
    }
    ByteBuffer buffer = buffer(index, bytes);
    for (int o = 0; o < outer; o++) {
      for (int r = 0; r < n; r++) {
        InputTensor part = batch.get(r).decoded().inputs()[index];
        int length = (int) part.shape()[axis] * inner;
        part.copyTo(buffer, o * length, length);
      }
    }
    buffer.flip();
    return OnnxTensor.createTensor(
        OnnxModel.environment(), buffer, shape, first.dataType().ortType());
  }

  static long product(long[] shape, int from, int to) {
    long product = 1;
    for (int i = from; i < to; i++) {
      product *= shape[i];
    }
    return product;
  }

  private ByteBuffer buffer(int index, int bytes) {
    ByteBuffer buffer = buffers[index];
    if (buffer == null || buffer.capacity() < bytes) {
      int capacity = buffer == null ? bytes : Math.max(bytes, buffer.capacity() * 2);
      buffer = ByteBuffer.allocateDirect(Math.max(capacity, 64)).order(ByteOrder.LITTLE_ENDIAN);
      buffers[index] = buffer;
    }
    buffer.clear();
    return buffer;
  }

  private Set<String> outputNames(Batch batch) {
    int[] first = batch.get(0).decoded().outputs();
    if (first.length == allOutputNames.size() && batch.size() == 1) {
      return allOutputNames;
    }
    Set<String> names = new LinkedHashSet<>();
    for (int r = 0; r < batch.size(); r++) {
      for (int output : batch.get(r).decoded().outputs()) {
        names.add(signature.outputs().get(output).name());
      }
    }
    return names.size() == allOutputNames.size() ? allOutputNames : names;
  }

  private void answer(Batch batch, OrtSession.Result result) {
    int n = batch.size();
    int outputCount = signature.outputs().size();
    Encoded[] encoded = new Encoded[outputCount];
    OutputTensor[][] perRequest = new OutputTensor[n][];
    // Where each request's rows start in the batch: once, not once a request (512 requests: 131k sums).
    if (firstRows.length < n) {
      firstRows = new int[Math.max(n, 2 * firstRows.length)];
    }
    for (int r = 1; r < n; r++) {
      firstRows[r] = firstRows[r - 1] + batch.get(r - 1).decoded().rows();
    }
    for (int r = 0; r < n; r++) {
      int[] wanted = batch.get(r).decoded().outputs();
      perRequest[r] = new OutputTensor[wanted.length];
      for (int o = 0; o < wanted.length; o++) {
        int index = wanted[o];
        if (encoded[index] == null) {
          encoded[index] = encode(signature.outputs().get(index), result);
        }
        perRequest[r][o] =
            n == 1
                ? encoded[index].whole()
                : encoded[index].rows(batch, r, firstRows[r], signature.outputAxis(index), label);
      }
    }
    int rows = batch.rows();
    long compute = batch.hasComputeTimes() ? batch.computeNanos() : 0;
    long computeStart = batch.hasComputeTimes() ? batch.computeStartNanos() : 0;
    for (int r = 0; r < n; r++) {
      batch.get(r).succeed(new InferenceResult(perRequest[r], rows, compute, computeStart));
    }
  }

  private Encoded encode(TensorSpec spec, OrtSession.Result result) {
    OnnxValue value =
        result
            .get(spec.name())
            .orElseThrow(
                () ->
                    InferenceException.internal(
                        label + ": ONNX Runtime returned no output '" + spec.name() + "'", null));
    if (!(value instanceof OnnxTensor)) {
      throw InferenceException.internal(
          label + ": output '" + spec.name() + "' is a " + value.getType() + ", not a tensor",
          null);
    }
    OnnxTensor tensor = (OnnxTensor) value;
    long[] shape = tensor.getInfo().getShape();
    DataType type = DataType.fromOnnx(tensor.getInfo().onnxType).orElse(spec.dataType());
    if (type == DataType.BYTES) {
      return Encoded.strings(spec.name(), shape, flattenStrings(tensor, spec.name()));
    }
    ByteBuffer data = tensor.getByteBuffer();
    return Encoded.fixed(spec.name(), type, shape, data.array());
  }

  private String[] flattenStrings(OnnxTensor tensor, String name) {
    try {
      Object value = tensor.getValue();
      List<String> out = new ArrayList<>();
      flatten(value, out);
      return out.toArray(new String[0]);
    } catch (OrtException e) {
      throw InferenceException.internal(
          label + ": could not read string output '" + name + "': " + e.getMessage(), e);
    }
  }

  private static void flatten(Object value, List<String> out) {
    if (value instanceof String) {
      out.add((String) value);
    } else if (value instanceof Object[]) {
      for (Object element : (Object[]) value) {
        flatten(element, out);
      }
    }
  }

  /** Fails every request of {@code batch} with {@code error}, sharing {@code nanos} of the model's time among them by rows. */
  private static void failAll(Batch batch, InferenceException error, long nanos) {
    long[] charges = new long[batch.size()];
    apportion(batch, 0, batch.size(), nanos, null, charges);
    for (int r = 0; r < batch.size(); r++) {
      batch.get(r).fail(error, charges[r]);
    }
  }

  @Override
  public void close() {
    // Direct buffers are released with this object; sessions belong to the version.
  }

  /** One output of the whole batch in raw form, ready to be split by rows. */
  private static final class Encoded {
    final String name;
    final DataType type;
    final long[] shape;
    final byte[] bytes;
    /** For BYTES: where each element starts in {@code bytes}, plus the end. */
    final int[] offsets;

    private Encoded(String name, DataType type, long[] shape, byte[] bytes, int[] offsets) {
      this.name = name;
      this.type = type;
      this.shape = shape;
      this.bytes = bytes;
      this.offsets = offsets;
    }

    static Encoded fixed(String name, DataType type, long[] shape, byte[] bytes) {
      return new Encoded(name, type, shape, bytes, null);
    }

    static Encoded strings(String name, long[] shape, String[] values) {
      int[] offsets = new int[values.length + 1];
      byte[][] utf8 = new byte[values.length][];
      int size = 0;
      for (int i = 0; i < values.length; i++) {
        utf8[i] = values[i].getBytes(StandardCharsets.UTF_8);
        offsets[i] = size;
        size += 4 + utf8[i].length;
      }
      offsets[values.length] = size;
      ByteBuffer out = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
      for (byte[] value : utf8) {
        out.putInt(value.length).put(value);
      }
      return new Encoded(name, DataType.BYTES, shape, out.array(), offsets);
    }

    OutputTensor whole() {
      return new OutputTensor(name, type, shape, UnsafeByteOperations.unsafeWrap(bytes));
    }

    /**
     * The part of this output that belongs to request {@code r} of {@code batch}, whose rows start
     * at row {@code before} of the batch: its rows along {@code axis}, where the batch's requests
     * are laid out in order. An output without a batch axis goes whole to every request.
     */
    OutputTensor rows(Batch batch, int r, int before, int axis, String label) {
      if (axis == ModelSignature.NO_AXIS) {
        return whole();
      }
      int total = batch.rows();
      if (shape.length <= axis || shape[axis] != total) {
        throw InferenceException.internal(
            label
                + ": output '"
                + name
                + "' has shape "
                + Shapes.format(shape)
                + " for a batch of "
                + total
                + " rows (expected: the batch size at its batch axis "
                + axis
                + ")",
            null);
      }
      int mine = batch.get(r).decoded().rows();
      long[] part = shape.clone();
      part[axis] = mine;
      int outer = (int) product(shape, 0, axis);
      int inner = (int) product(shape, axis + 1, shape.length);
      ByteString data;
      if (offsets == null) {
        int rowBytes = inner * type.elementSize();
        if (outer == 1) {
          data = UnsafeByteOperations.unsafeWrap(bytes, before * rowBytes, mine * rowBytes);
        } else {
          byte[] copy = new byte[outer * mine * rowBytes];
          for (int o = 0; o < outer; o++) {
            System.arraycopy(
                bytes, (o * total + before) * rowBytes, copy, o * mine * rowBytes, mine * rowBytes);
          }
          data = UnsafeByteOperations.unsafeWrap(copy);
        }
      } else {
        ByteString.Output out = ByteString.newOutput();
        for (int o = 0; o < outer; o++) {
          int from = offsets[(o * total + before) * inner];
          int to = offsets[(o * total + before + mine) * inner];
          out.write(bytes, from, to - from);
        }
        data = out.toByteString();
      }
      return new OutputTensor(name, type, part, data);
    }
  }
}

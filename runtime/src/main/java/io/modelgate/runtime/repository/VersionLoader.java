package io.modelgate.runtime.repository;

import com.google.protobuf.UnsafeByteOperations;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.ModelLoadException;
import io.modelgate.runtime.execution.Batch;
import io.modelgate.runtime.execution.BatchPolicy;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.execution.RingScheduler;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.onnx.OnnxBatchExecutor;
import io.modelgate.runtime.onnx.OnnxModel;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loads one version: its ONNX Runtime session, its signature and batch policy resolved against its
 * {@code model.yaml}, a warm-up run, and its scheduler with a statistics recorder from the
 * repository's factory. Also what happens when a READY version's scheduler stops serving.
 *
 * <p>Threads: whichever loads (startup, or the admin executor), which waits while the sessions are
 * opened on a thread named for the version (so that ONNX Runtime's pool threads carry its name);
 * one load per version at a time, which the repository ensures.
 */
final class VersionLoader {
  private static final Logger log = LoggerFactory.getLogger(VersionLoader.class);

  /** The most bytes of inputs a warm-up batch may hold: 64 MiB. */
  static final long WARM_UP_MAX_BYTES = 64L << 20;

  private final StageRecorder.Factory recorders;

  VersionLoader(StageRecorder.Factory recorders) {
    this.recorders = recorders;
  }

  /**
   * Opens the version's session, resolves its signature and batch policy, warms it up and starts
   * its scheduler; the version becomes READY, or FAILED with the reason. Throws only an {@link Error}
   * that is not {@linkplain #survivable survivable}, after the version is FAILED.
   *
   * @param expectedSha256 the SHA-256 its {@code model.onnx} must have (a copy's: its source's as
   *     loaded), or null for any
   */
  void load(ModelVersion version, ModelSettings settings, String expectedSha256) {
    try {
      version.ready(open(version, settings, expectedSha256, "READY"));
    } catch (ModelLoadException e) {
      version.failed(e.getMessage());
      log.error("{} FAILED: {}", version.label(), e.getMessage());
    } catch (RuntimeException e) {
      failed(version, e);
    } catch (Error e) {
      // A version too large for the heap, a model deep enough to overflow the stack, a native
      // library missing: this version fails, and is not left LOADING (which no later load could
      // leave) nor takes the server's start down with it.
      failed(version, e);
      if (!survivable(e)) {
        throw e;
      }
    }
  }

  /**
   * What {@link #load} does short of changing the version's state: opens a session of the model
   * file in {@link ModelVersion#directory}, resolves the signature and batch policy under {@code
   * settings}, warms it up and starts a scheduler, whose failure while serving fails the version
   * only while it serves with this load. Logs the load as {@code done} ("READY"; "loaded again").
   * A load that throws leaves nothing open.
   *
   * @param expectedSha256 the SHA-256 its {@code model.onnx} must have, or null for any
   * @throws ModelLoadException what is wrong with the file or the settings, in words for the
   *     version's reason
   */
  LoadedVersion open(ModelVersion version, ModelSettings settings, String expectedSha256, String done)
      throws ModelLoadException {
    long start = System.nanoTime();
    OnnxModel onnx = null;
    try {
      Path file = version.directory().resolve(RepositoryFolder.MODEL_FILE);
      // Before ONNX Runtime reads it (a missing file is left to it to report).
      String sha256 = Files.isRegularFile(file) ? sha256(file) : "";
      if (expectedSha256 != null && !sha256.isEmpty() && !expectedSha256.equals(sha256)) {
        throw new ModelLoadException(RepositoryFolder.MODEL_FILE + " (sha256 " + abbreviated(sha256)
            + ") is not the file version " + version.copyOf() + " loaded (sha256 " + abbreviated(expectedSha256)
            + "): it has changed on disk since, and a copy would not be that version's model");
      }
      // On a thread of the version's name, which ONNX Runtime's pool threads then carry.
      onnx = OnnxModel.open(file, settings.session(), RingScheduler.threadPrefix(version.label()) + "-open");
      ModelSignature signature = signature(onnx, settings);
      BatchPolicy policy;
      try {
        policy = BatchPolicy.of(signature.maxBatchSize(), settings.scheduler());
      } catch (IllegalArgumentException e) {
        throw new ModelLoadException(ModelConfigFile.FILE_NAME + ": " + e.getMessage());
      }
      if (onnx.largeBatchRows() > signature.maxBatchSize()) {
        throw new ModelLoadException(
            ModelConfigFile.FILE_NAME
                + ": large_batch_rows: "
                + onnx.largeBatchRows()
                + " is above the version's max_batch_size "
                + signature.maxBatchSize()
                + ", so no batch would run on the second session (expected: at most "
                + signature.maxBatchSize()
                + ", or neither large_batch key)");
      }
      ModelSettings effective = settings.withMaxBatchSize(signature.maxBatchSize());
      OnnxModel session = onnx;
      warmUp(version, onnx, signature, 1, false);
      if (onnx.largeBatchRows() > 0) {
        warmUp(version, onnx, signature, onnx.largeBatchRows(), false);
        warmUp(version, onnx, signature, onnx.largeBatchRows(), true);
      }
      StageRecorder recorder = recorders.create(version.model(), version.number());
      LoadedVersion[] serving = new LoadedVersion[1];
      RingScheduler scheduler =
          new RingScheduler(
              version.label(),
              settings.scheduler(),
              policy,
              () -> new OnnxBatchExecutor(session, signature, version.label()),
              recorder,
              error -> stoppedServing(version, serving[0], error));
      serving[0] = new LoadedVersion(signature, scheduler, effective, policy, recorder, onnx, sha256);
      log.info(
          "{} {} in {} ms on {}, model.onnx sha256 {}: inputs {}, outputs {}, max_batch_size {}, max_queue_delay_us {}{}",
          version.label(),
          done,
          (System.nanoTime() - start) / 1_000_000,
          onnx.provider().configName(),
          sha256,
          signature.inputs(),
          signature.outputs(),
          signature.maxBatchSize(),
          settings.scheduler().maxQueueDelayMicros(),
          onnx.largeBatchRows() == 0
              ? ""
              : ", batches of "
                  + onnx.largeBatchRows()
                  + " rows or more on a second session of "
                  + settings.session().largeBatchIntraOpThreads()
                  + " intra-op threads");
      return serving[0];
    } catch (ModelLoadException | RuntimeException | Error e) {
      if (onnx != null) {
        onnx.close();
      }
      throw e;
    }
  }

  /** Why a load that threw {@code e} failed, as the version's reason gives it. */
  static String reason(Throwable e) {
    return e instanceof ModelLoadException || e instanceof ModelConfigFile.InvalidConfigException
        ? e.getMessage() : "unexpected error while loading: " + e;
  }

  /** The SHA-256 of {@code file}, 64 lowercase hex digits, read in 1 MiB pieces. */
  static String sha256(Path file) throws ModelLoadException {
    MessageDigest digest;
    try {
      digest = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every Java platform has SHA-256", e);
    }
    ByteBuffer buffer = ByteBuffer.allocate(1 << 20);
    try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
      while (channel.read(buffer.clear()) >= 0) {
        digest.update(buffer.flip());
      }
    } catch (IOException e) {
      throw new ModelLoadException("cannot read " + file + ": " + e.getMessage());
    }
    return HexFormat.of().formatHex(digest.digest());
  }

  /** The first 12 hex digits of a SHA-256, as the CLI shows it. */
  static String abbreviated(String sha256) {
    return sha256.length() > 12 ? sha256.substring(0, 12) : sha256;
  }

  /**
   * Errors that a failed load leaves behind it: what this load allocated, recursed into or linked
   * against is gone when its frames are. Other errors (the JVM's internal ones) are thrown on,
   * after the version is FAILED.
   */
  static boolean survivable(Error e) {
    return e instanceof OutOfMemoryError || e instanceof StackOverflowError || e instanceof LinkageError;
  }

  private static void failed(ModelVersion version, Throwable e) {
    String reason = reason(e);
    version.failed(reason);
    log.error("{} FAILED: {}", version.label(), reason, e);
  }

  /**
   * A READY version's scheduler failed and answered its queue: the version becomes FAILED with the
   * reason (requests to it get UNAVAILABLE naming it) and its session closes. Runs on the failed
   * batcher thread; loading the version again through the admin API brings it back.
   */
  private static void stoppedServing(ModelVersion version, LoadedVersion loaded, Throwable error) {
    String reason = "stopped serving after an internal failure of its batcher: " + error;
    if (version.failedWhileServing(loaded, reason)) {
      log.error("{} FAILED: {}", version.label(), reason);
      if (loaded != null) {
        loaded.onnx().close();
      }
    }
  }

  /**
   * Runs a batch of {@code copies} requests of zeros (empty strings for BYTES), every variable
   * dimension 1, so that the first client request does not pay for ONNX Runtime's first-run
   * allocations. With a second session, a batch of {@link OnnxModel#largeBatchRows} warms it, and
   * another ({@code largeOnFirst}) the first session's run of so large a batch, which the executors
   * try there too. A model that rejects zeros still loads; the warning says so. A model whose
   * warm-up batch would hold more than {@value #WARM_UP_MAX_BYTES} bytes of inputs is not warmed
   * (a large fixed input shape would otherwise take the heap the server serves from); the warning
   * says so.
   */
  private static void warmUp(ModelVersion version, OnnxModel onnx, ModelSignature signature, int copies,
      boolean largeOnFirst) {
    long[] bytes = new long[signature.inputs().size()];
    long total = 0;
    try {
      for (int i = 0; i < bytes.length; i++) {
        TensorSpec input = signature.inputs().get(i);
        long elements = 1;
        for (long dim : input.shape()) {
          elements = Math.multiplyExact(elements, dim < 0 ? 1 : dim);
        }
        bytes[i] = Math.multiplyExact(elements, input.dataType().isVariableSize() ? 4 : input.dataType().elementSize());
        total = Math.addExact(total, bytes[i]);
      }
      total = Math.multiplyExact(total, copies);
    } catch (ArithmeticException overflow) {
      total = Long.MAX_VALUE;
    }
    if (total > WARM_UP_MAX_BYTES) {
      log.warn("{}: not warmed up: {} row{} of zeros would be {} MiB of inputs (at most {} MiB are warmed);"
              + " the first requests pay for ONNX Runtime's first-run allocations",
          version.label(), copies, copies == 1 ? "" : "s", total >> 20, WARM_UP_MAX_BYTES >> 20);
      return;
    }
    ModelInferRequest.Builder request = ModelInferRequest.newBuilder();
    for (int i = 0; i < bytes.length; i++) {
      TensorSpec input = signature.inputs().get(i);
      ModelInferRequest.InferInputTensor.Builder tensor =
          request.addInputsBuilder().setName(input.name()).setDatatype(input.dataType().wireName());
      for (long dim : input.shape()) {
        tensor.addShape(dim < 0 ? 1 : dim);
      }
      // Zeros never written to: wrapped, not copied.
      request.addRawInputContents(UnsafeByteOperations.unsafeWrap(new byte[(int) bytes[i]]));
    }
    try (OnnxBatchExecutor executor = largeOnFirst
        ? OnnxBatchExecutor.startingOnFirstSession(onnx, signature, version.label())
        : new OnnxBatchExecutor(onnx, signature, version.label())) {
      ModelInferRequest built = request.build();
      InferenceRequest[] requests = new InferenceRequest[copies];
      CompletableFuture<?>[] done = new CompletableFuture<?>[copies];
      for (int i = 0; i < copies; i++) {
        CompletableFuture<InferenceResult> answer = new CompletableFuture<>();
        done[i] = answer;
        DecodedRequest decoded = RequestDecoder.decode(built, signature);
        requests[i] = InferenceRequest.of(decoded, System.nanoTime(), null, InferenceCallback.completing(answer));
      }
      executor.execute(Batch.of(requests));
      CompletableFuture.allOf(done).join();
    } catch (RuntimeException e) {
      Throwable cause = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
      log.warn("{}: warm-up with zeros failed, serving anyway: {}", version.label(), cause.getMessage());
    }
  }

  /**
   * The signature with batch axes and {@code max_batch_size} resolved against what the model
   * allows.
   */
  static ModelSignature signature(OnnxModel onnx, ModelSettings settings)
      throws ModelLoadException {
    for (String name : settings.batchAxes().keySet()) {
      if (find(onnx.inputs(), name) < 0 && find(onnx.outputs(), name) < 0) {
        throw new ModelLoadException(
            ModelConfigFile.FILE_NAME
                + ": batch_axes: unknown tensor '"
                + name
                + "' (expected one of: "
                + names(onnx.inputs())
                + ", "
                + names(onnx.outputs())
                + ")");
      }
    }
    int[] inputAxes = axes(onnx.inputs(), settings.batchAxes());
    int[] outputAxes = axes(onnx.outputs(), settings.batchAxes());
    String notBatchable = notBatchableReason(onnx.inputs(), inputAxes, onnx.outputs(), outputAxes);
    Integer configured = settings.maxBatchSize();
    int maxBatchSize;
    if (configured == null) {
      maxBatchSize = notBatchable == null ? ModelSettings.DEFAULT_MAX_BATCH_SIZE : 0;
    } else if (configured > 0 && notBatchable != null) {
      throw new ModelLoadException(
          ModelConfigFile.FILE_NAME
              + ": max_batch_size: "
              + configured
              + ", but "
              + notBatchable
              + " (expected: max_batch_size 0 for this model, or batch_axes that name a"
              + " variable dimension)");
    } else {
      maxBatchSize = configured;
    }
    try {
      return new ModelSignature(onnx.inputs(), onnx.outputs(), maxBatchSize, inputAxes, outputAxes);
    } catch (IllegalArgumentException e) {
      throw new ModelLoadException(ModelConfigFile.FILE_NAME + ": batch_axes: " + e.getMessage());
    }
  }

  private static int[] axes(List<TensorSpec> specs, Map<String, Integer> configured) {
    int[] axes = new int[specs.size()];
    for (int i = 0; i < axes.length; i++) {
      TensorSpec spec = specs.get(i);
      Integer axis = configured.get(spec.name());
      axes[i] = axis != null ? axis : spec.rank() == 0 ? ModelSignature.NO_AXIS : 0;
    }
    return axes;
  }

  private static int find(List<TensorSpec> specs, String name) {
    for (int i = 0; i < specs.size(); i++) {
      if (specs.get(i).name().equals(name)) {
        return i;
      }
    }
    return -1;
  }

  private static String names(List<TensorSpec> specs) {
    return specs.stream().map(TensorSpec::name).collect(java.util.stream.Collectors.joining(", "));
  }

  /** Why the tensors cannot batch along their axes, or null when they can. */
  private static String notBatchableReason(
      List<TensorSpec> inputs, int[] inputAxes, List<TensorSpec> outputs, int[] outputAxes) {
    boolean anyAxis = false;
    for (int i = 0; i < inputs.size(); i++) {
      TensorSpec input = inputs.get(i);
      int axis = inputAxes[i];
      if (axis == ModelSignature.NO_AXIS) {
        continue;
      }
      anyAxis = true;
      if (axis >= input.rank()) {
        return "input '" + input.name() + "' has shape " + input.shapeText() + ", with no axis " + axis;
      }
      if (input.dim(axis) != -1) {
        return "input '"
            + input.name()
            + "' has shape "
            + input.shapeText()
            + ", whose batch axis "
            + axis
            + " is not variable (-1)";
      }
    }
    if (!anyAxis) {
      return "no input has a batch axis";
    }
    for (int i = 0; i < outputs.size(); i++) {
      if (outputAxes[i] != ModelSignature.NO_AXIS && outputAxes[i] >= outputs.get(i).rank()) {
        return "output '"
            + outputs.get(i).name()
            + "' has shape "
            + outputs.get(i).shapeText()
            + ", with no axis "
            + outputAxes[i];
      }
    }
    return null;
  }
}

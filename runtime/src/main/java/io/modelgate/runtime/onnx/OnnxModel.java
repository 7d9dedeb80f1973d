package io.modelgate.runtime.onnx;

import ai.onnxruntime.MapInfo;
import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtProvider;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.OrtSession.SessionOptions;
import ai.onnxruntime.SequenceInfo;
import ai.onnxruntime.TensorInfo;
import ai.onnxruntime.ValueInfo;
import ai.onnxruntime.providers.OrtCUDAProviderOptions;
import io.modelgate.runtime.error.ModelLoadException;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.TensorSpec;
import io.modelgate.runtime.threads.DaemonThreads;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One ONNX Runtime session and the tensors it takes and returns — and, where the settings ask for
 * it ({@link SessionSettings#largeBatches()}), a second session of the same model with more
 * intra-op threads that batches of {@link SessionSettings#largeBatchRows()} rows or more may run on
 * (each executor chooses, by what it measures: {@link SessionChoice}). Created
 * once per model version; {@link #run} is thread-safe, so every executor of the version shares the
 * sessions.
 */
public final class OnnxModel implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(OnnxModel.class);
  private static final OrtEnvironment ENV =
      OrtEnvironment.getEnvironment(OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING, "modelgate");

  private final Path file;
  private final OrtSession session;
  /** The session for batches of {@link #largeBatchRows} or more; null when there is none. */
  private final OrtSession large;
  private final int largeBatchRows;
  private final LongAdder largeRuns = new LongAdder();
  private final LongAdder largeOnFirst = new LongAdder();
  private final List<TensorSpec> inputs;
  private final List<TensorSpec> outputs;
  private final ExecutionProvider provider;
  private final String fallbackReason;

  private OnnxModel(
      Path file,
      OrtSession session,
      OrtSession large,
      int largeBatchRows,
      List<TensorSpec> inputs,
      List<TensorSpec> outputs,
      ExecutionProvider provider,
      String fallbackReason) {
    this.file = file;
    this.session = session;
    this.large = large;
    this.largeBatchRows = large == null ? 0 : largeBatchRows;
    this.inputs = inputs;
    this.outputs = outputs;
    this.provider = provider;
    this.fallbackReason = fallbackReason;
  }

  private static OrtSession createSession(
      Path file, SessionSettings settings, int intraOpThreads, boolean cuda) throws OrtException {
    try (SessionOptions options = new SessionOptions()) {
      options.setIntraOpNumThreads(intraOpThreads);
      options.setInterOpNumThreads(settings.interOpThreads());
      // Idle spinning threads would steal the cores the event loops need.
      options.addConfigEntry("session.intra_op.allow_spinning", "0");
      options.addConfigEntry("session.inter_op.allow_spinning", "0");
      options.setOptimizationLevel(SessionOptions.OptLevel.ALL_OPT);
      if (!cuda) {
        return ENV.createSession(file.toString(), options);
      }
      try (OrtCUDAProviderOptions provider = new OrtCUDAProviderOptions(settings.deviceId())) {
        // ONNX Runtime's default is TF32 on: answers about 1e-3 off the CPU's. Full FP32 unless asked.
        provider.add("use_tf32", settings.cudaTf32() ? "1" : "0");
        options.addCUDA(provider);
        return ENV.createSession(file.toString(), options);
      }
    }
  }

  /** Why CUDA cannot be used in this process, or null when its provider is present. */
  private static String cudaUnavailable() {
    EnumSet<OrtProvider> available = OrtEnvironment.getAvailableProviders();
    if (available.contains(OrtProvider.CUDA)) {
      return null;
    }
    return "this ONNX Runtime build has no CUDA execution provider (available: "
        + available
        + "; build with -Pgpu for onnxruntime_gpu, on a machine with CUDA 12)";
  }

  /** The process-wide ONNX Runtime environment. */
  public static OrtEnvironment environment() {
    return ENV;
  }

  /**
   * Opens {@code file} with {@code settings}. Fails with a message a user can act on when the file
   * is missing, is not a model ONNX Runtime can load, or takes or returns something other than
   * tensors of a type modelgate can pass.
   */
  public static OnnxModel open(Path file, SessionSettings settings) throws ModelLoadException {
    return open(file, settings, null);
  }

  /**
   * As {@link #open(Path, SessionSettings)}, the sessions created on a thread named {@code
   * threadName} that the caller waits for (none: on the calling thread). ONNX Runtime starts a
   * session's pool threads (a session of more than one intra-op or inter-op thread) from the thread
   * that creates it, and Linux gives a new thread its creator's name: so named, they carry the
   * version's name in the kernel's per-thread counts (the gateway's {@code
   * modelgate_threads_cpu_seconds_total{threads="model"}}) instead of the loading thread's.
   */
  public static OnnxModel open(Path file, SessionSettings settings, String threadName)
      throws ModelLoadException {
    if (threadName == null) {
      return openHere(file, settings);
    }
    Object[] outcome = new Object[1];
    Thread opener =
        DaemonThreads.thread(
            threadName,
            () -> {
              try {
                outcome[0] = openHere(file, settings);
              } catch (ModelLoadException | RuntimeException | Error e) {
                outcome[0] = e;
              }
            });
    opener.start();
    // The sessions are the caller's to close: wait for them even when interrupted.
    boolean interrupted = false;
    while (true) {
      try {
        opener.join();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    if (outcome[0] instanceof OnnxModel model) {
      return model;
    }
    if (outcome[0] instanceof ModelLoadException e) {
      throw e;
    }
    if (outcome[0] instanceof Error e) {
      throw e;
    }
    throw (RuntimeException) outcome[0];
  }

  private static OnnxModel openHere(Path file, SessionSettings settings) throws ModelLoadException {
    if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
      // Raw tensor data is little-endian on the wire and handed to ONNX Runtime as it is.
      throw new ModelLoadException("modelgate requires a little-endian platform");
    }
    if (!Files.isRegularFile(file)) {
      throw new ModelLoadException("missing model file " + file + " (expected: an ONNX model)");
    }
    ExecutionProvider provider = settings.provider();
    String fallbackReason = "";
    OrtSession session;
    if (provider == ExecutionProvider.CUDA) {
      String unavailable = cudaUnavailable();
      if (unavailable == null) {
        try {
          session = createSession(file, settings, settings.intraOpThreads(), true);
        } catch (OrtException e) {
          unavailable =
              "ONNX Runtime could not use CUDA device " + settings.deviceId() + ": " + e.getMessage();
          session = null;
        }
      } else {
        session = null;
      }
      if (unavailable != null) {
        if (!settings.allowCpuFallback()) {
          throw new ModelLoadException(
              "execution_provider: cuda, but "
                  + unavailable
                  + " (set allow_cpu_fallback: true to run on the CPU instead)");
        }
        log.warn("{}: {}; running on the CPU (allow_cpu_fallback)", file, unavailable);
        provider = ExecutionProvider.CPU;
        fallbackReason = unavailable;
      }
    } else {
      session = null;
    }
    if (session == null) {
      try {
        session = createSession(file, settings, settings.intraOpThreads(), false);
      } catch (OrtException e) {
        throw new ModelLoadException(
            "ONNX Runtime could not load " + file + ": " + e.getMessage(), e);
      }
    }
    OrtSession large = null;
    try {
      List<TensorSpec> inputs = specs("input", session.getInputInfo());
      List<TensorSpec> outputs = specs("output", session.getOutputInfo());
      if (outputs.isEmpty()) {
        throw new ModelLoadException("the model has no outputs");
      }
      if (settings.largeBatches()) {
        try {
          large = createSession(file, settings, settings.largeBatchIntraOpThreads(), false);
        } catch (OrtException e) {
          throw new ModelLoadException(
              "ONNX Runtime could not open the second session of "
                  + file
                  + " (large_batch_intra_op_threads "
                  + settings.largeBatchIntraOpThreads()
                  + "): "
                  + e.getMessage(),
              e);
        }
      }
      return new OnnxModel(
          file,
          session,
          large,
          settings.largeBatchRows(),
          List.copyOf(inputs),
          List.copyOf(outputs),
          provider,
          fallbackReason);
    } catch (OrtException | ModelLoadException | RuntimeException e) {
      closeQuietly(session);
      if (large != null) {
        closeQuietly(large);
      }
      if (e instanceof ModelLoadException) {
        throw (ModelLoadException) e;
      }
      throw new ModelLoadException(
          "ONNX Runtime could not describe the tensors of " + file + ": " + e.getMessage(), e);
    }
  }

  private static List<TensorSpec> specs(String role, Map<String, NodeInfo> infos)
      throws ModelLoadException {
    List<TensorSpec> specs = new ArrayList<>(infos.size());
    for (NodeInfo node : infos.values()) {
      ValueInfo info = node.getInfo();
      if (!(info instanceof TensorInfo)) {
        throw new ModelLoadException(
            role
                + " '"
                + node.getName()
                + "' is "
                + describeNonTensor(info)
                + "; modelgate serves only tensor "
                + role
                + "s (re-export the model without it, e.g. skl2onnx's ZipMap)");
      }
      TensorInfo tensor = (TensorInfo) info;
      DataType type =
          DataType.fromOnnx(tensor.onnxType)
              .orElseThrow(
                  () ->
                      new ModelLoadException(
                          role
                              + " '"
                              + node.getName()
                              + "' has element type "
                              + tensor.onnxType
                              + ", which modelgate cannot pass to ONNX Runtime's Java API"
                              + " (supported: "
                              + DataType.supportedNames()
                              + ")"));
      specs.add(new TensorSpec(node.getName(), type, tensor.getShape()));
    }
    return specs;
  }

  private static String describeNonTensor(ValueInfo info) {
    if (info instanceof SequenceInfo) {
      SequenceInfo sequence = (SequenceInfo) info;
      return sequence.isSequenceOfMaps() ? "a sequence of maps" : "a sequence";
    }
    if (info instanceof MapInfo) {
      return "a map";
    }
    return "not a tensor (" + info + ")";
  }

  public Path file() {
    return file;
  }

  /** The provider the session really runs on. */
  public ExecutionProvider provider() {
    return provider;
  }

  /** Why a CUDA version runs on the CPU; empty when it runs where it was asked to. */
  public String fallbackReason() {
    return fallbackReason;
  }

  /** The inputs in the model's order. */
  public List<TensorSpec> inputs() {
    return inputs;
  }

  /** The outputs in the model's order. */
  public List<TensorSpec> outputs() {
    return outputs;
  }

  /**
   * The rows from which a batch runs on the second session with more intra-op threads; 0 when
   * the settings ask for none.
   */
  public int largeBatchRows() {
    return largeBatchRows;
  }

  /** How many runs the second session has made. */
  public long largeBatchRuns() {
    return largeRuns.sum();
  }

  /**
   * How many batches of {@link #largeBatchRows} rows or more ran on the first session, where the
   * second measured no faster ({@link SessionChoice}).
   */
  public long largeBatchRunsOnFirst() {
    return largeOnFirst.sum();
  }

  /**
   * Runs the model on a batch of {@code rows} rows: on the second session when there is one, the
   * batch has at least {@link #largeBatchRows} rows and {@code second} asks for it; else on the
   * first. Thread-safe. The caller owns {@code feed}'s tensors and the result, and must close both.
   */
  public OrtSession.Result run(Map<String, OnnxTensor> feed, Set<String> outputNames, int rows, boolean second)
      throws OrtException {
    if (large != null && rows >= largeBatchRows) {
      if (second) {
        largeRuns.increment();
        return large.run(feed, outputNames);
      }
      largeOnFirst.increment();
    }
    return session.run(feed, outputNames);
  }

  /** Releases the sessions. No {@link #run} may be in progress or follow. */
  @Override
  public void close() {
    closeQuietly(session);
    if (large != null) {
      closeQuietly(large);
    }
  }

  private static void closeQuietly(OrtSession session) {
    try {
      session.close();
    } catch (OrtException e) {
      // Nothing to do: the native session is gone either way.
    }
  }
}

package io.modelgate.gateway.health;

import io.modelgate.proto.admin.v1.GoldenResult;
import io.modelgate.proto.health.v1.GoldenExample;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Predictive validity per version: each version of a model with a golden set runs it when it
 * becomes READY (on this component's thread, {@code modelgate-golden}, one version at a time) and
 * on {@link #validate}; the result belongs to that load of the version (a reload runs it again).
 *
 * <p>The examples go through the version's own queue and batcher, as requests do, a few at a time,
 * so that serving traffic keeps its share; they are not counted as requests in its statistics.
 *
 * <p>Threading: results are immutable values in a concurrent map; {@link #result} never blocks.
 */
public final class GoldenSets implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(GoldenSets.class);
  /** Examples in flight at once per validation. */
  static final int IN_FLIGHT = 8;
  /** Failing examples listed in a result. */
  static final int LISTED_FAILURES = 20;
  private static final Duration EXAMPLE_TIMEOUT = Duration.ofSeconds(60);

  private final ModelRepository repository;
  private final Clock clock;
  private final Map<String, Entry> results = new ConcurrentHashMap<>();
  private final ExecutorService thread;

  /** A result and the load of the version it was computed on. */
  private record Entry(LoadedVersion loaded, GoldenResult result) {}

  /**
   * Sees each golden run's examples as they are answered (drift takes its reference from them).
   * Called on the thread that runs the golden set; must not block.
   */
  public interface Observer {
    void goldenStarted(ModelVersion version, LoadedVersion loaded, int examples);

    void goldenExample(ModelVersion version, LoadedVersion loaded, io.modelgate.runtime.tensor.DecodedRequest request,
        InferenceResult result);

    /** @param complete whether the set was read and run to its end */
    void goldenFinished(ModelVersion version, LoadedVersion loaded, int examples, boolean complete);
  }

  private static final Observer NO_OBSERVER = new Observer() {
    @Override
    public void goldenStarted(ModelVersion version, LoadedVersion loaded, int examples) {}

    @Override
    public void goldenExample(ModelVersion version, LoadedVersion loaded, io.modelgate.runtime.tensor.DecodedRequest request,
        InferenceResult result) {}

    @Override
    public void goldenFinished(ModelVersion version, LoadedVersion loaded, int examples, boolean complete) {}
  };

  private final Observer observer;

  /**
   * @param background whether versions are validated when they become READY (tests call {@link
   *     #validate})
   */
  public GoldenSets(ModelRepository repository, Clock clock, boolean background) {
    this(repository, clock, background, null);
  }

  /**
   * @param background whether versions are validated when they become READY (tests call {@link
   *     #validate})
   * @param observer sees every golden run's answers, or null
   */
  public GoldenSets(ModelRepository repository, Clock clock, boolean background, Observer observer) {
    this.observer = observer == null ? NO_OBSERVER : observer;
    this.repository = repository;
    this.clock = clock;
    repository.events().subscribe(this::forgetStale);
    if (background) {
      thread =
          DaemonThreads.single("modelgate-golden");
      repository.events().subscribe(this::onStateChange);
      for (var model : repository.models()) {
        for (ModelVersion version : model.versions()) {
          onStateChange(version);
        }
      }
    } else {
      thread = null;
    }
  }

  /**
   * Drops the version's result if it was computed on a load that is no longer the version's
   * (unloaded, or loaded again): {@link #result} would not show it, and it kept that load — its
   * batch buffers and rings — from being collected.
   */
  private void forgetStale(ModelVersion version) {
    LoadedVersion current = version.loadedOrNull();
    results.computeIfPresent(key(version), (k, entry) -> entry.loaded() == current ? entry : null);
  }

  /** Whether a result of {@code version} is kept (tests). */
  boolean keeps(ModelVersion version) {
    return results.containsKey(key(version));
  }

  private void onStateChange(ModelVersion version) {
    if (version.isReady() && hasGoldenSet(version.model()) && !thread.isShutdown()) {
      thread.execute(() -> {
        try {
          validate(version);
        } catch (RuntimeException e) {
          log.warn("{}: golden set not run: {}", version.label(), e.getMessage());
        }
      });
    }
  }

  private Path modelDirectory(String model) {
    return repository.root().resolve(model);
  }

  public boolean hasGoldenSet(String model) {
    return GoldenSet.exists(modelDirectory(model));
  }

  private static String key(ModelVersion version) {
    return version.model() + "\u0000" + version.number();
  }

  /** The version's result on its current load; never blocks. */
  public GoldenResult result(ModelVersion version) {
    if (!hasGoldenSet(version.model())) {
      return GoldenResult.newBuilder().setState("NONE").build();
    }
    Entry entry = results.get(key(version));
    LoadedVersion loaded = version.loadedOrNull();
    if (entry == null || loaded == null || entry.loaded() != loaded) {
      return GoldenResult.newBuilder().setState("PENDING").build();
    }
    return entry.result();
  }

  /**
   * Runs the golden set on {@code version} now, on the calling thread, and keeps the result.
   *
   * @throws InferenceException FAILED_PRECONDITION when the version is not READY
   */
  public GoldenResult validate(ModelVersion version) {
    LoadedVersion loaded = version.serving();
    if (!hasGoldenSet(version.model())) {
      return GoldenResult.newBuilder().setState("NONE").build();
    }
    long started = System.nanoTime();
    results.put(key(version), new Entry(loaded, GoldenResult.newBuilder().setState("RUNNING").setTimeMs(clock.millis()).build()));
    GoldenResult result;
    try {
      result = run(GoldenSet.read(modelDirectory(version.model())), version, loaded, started, observer);
    } catch (IOException e) {
      observer.goldenFinished(version, loaded, 0, false);
      result = GoldenResult.newBuilder()
          .setState("FAILED")
          .setTimeMs(clock.millis())
          .setError("the golden set of model '" + version.model() + "' cannot be read: " + e.getMessage())
          .build();
    }
    results.put(key(version), new Entry(loaded, result));
    // Unloaded while it ran: its result goes with the load.
    forgetStale(version);
    if (result.getState().equals("DONE")) {
      log.info("{}: golden set {}/{} passed ({}) in {} ms", version.label(), result.getPassed(), result.getExamples(),
          String.format("%.4f", result.getScore()), Math.round(result.getSeconds() * 1000));
    } else {
      log.error("{}: golden set FAILED: {}", version.label(), result.getError());
    }
    return result;
  }

  /**
   * Why {@code fresh}, a new load of {@code version} that does not serve yet (a reload), must not
   * replace {@code serving}: its score on the model's golden set is below the serving load's. Null
   * when it may: the model has no golden set, the set cannot be read (the run after the swap says
   * so), or the new load scores as well or better. Runs the set as it is now on both loads, on the
   * calling thread; keeps neither result and tells the observer nothing (the run once the new load
   * serves does both, as for any load).
   */
  public String refusesReload(ModelVersion version, LoadedVersion serving, LoadedVersion fresh) {
    if (!hasGoldenSet(version.model())) {
      return null;
    }
    GoldenSet set;
    try {
      set = GoldenSet.read(modelDirectory(version.model()));
    } catch (IOException e) {
      log.warn("{}: the new load not checked on the golden set, which cannot be read: {}", version.label(),
          e.getMessage());
      return null;
    }
    GoldenResult after = run(set, version, fresh, System.nanoTime(), NO_OBSERVER);
    // The serving load on the set as it is now (not its kept result, which an edited set has outdated).
    GoldenResult before = run(set, version, serving, System.nanoTime(), NO_OBSERVER);
    if (after.getScore() >= before.getScore()) {
      return null;
    }
    return String.format(java.util.Locale.ROOT, "its golden set scored %.4f (%d/%d) on the new load against %.4f (%d/%d) on the load"
            + " serving, so it was not swapped in%s", after.getScore(), after.getPassed(), after.getExamples(),
        before.getScore(), before.getPassed(), before.getExamples(),
        after.getFailingCount() == 0 ? "" : "; failing: " + String.join("; ", after.getFailingList()));
  }

  /**
   * Waits (up to {@code timeout}) for the background validation of the version's current load,
   * running it on the calling thread when none has been started; the result as it stands then.
   */
  public GoldenResult await(ModelVersion version, Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    GoldenResult result = result(version);
    if (result.getState().equals("PENDING") && thread == null) {
      return validate(version);
    }
    while ((result.getState().equals("PENDING") || result.getState().equals("RUNNING")) && System.nanoTime() < deadline) {
      Thread.sleep(20);
      result = result(version);
    }
    return result;
  }

  private GoldenResult run(GoldenSet set, ModelVersion version, LoadedVersion loaded, long started, Observer observer) {
    List<GoldenExample> examples = set.examples();
    List<String> failing = new ArrayList<>();
    int passed = 0;
    observer.goldenStarted(version, loaded, examples.size());
    boolean complete = false;
    try {
      for (int from = 0; from < examples.size(); from += IN_FLIGHT) {
        int to = Math.min(examples.size(), from + IN_FLIGHT);
        List<Submitted> answers = new ArrayList<>(to - from);
        for (int i = from; i < to; i++) {
          answers.add(submit(examples.get(i), loaded));
        }
        for (int i = from; i < to; i++) {
          if (check(examples.get(i), answers.get(i - from), version, loaded, failing, observer)) {
            passed++;
          }
        }
      }
      complete = true;
    } finally {
      observer.goldenFinished(version, loaded, examples.size(), complete);
    }
    return GoldenResult.newBuilder()
        .setState("DONE")
        .setExamples(examples.size())
        .setPassed(passed)
        .setScore(passed / (double) examples.size())
        .addAllFailing(failing)
        .setTimeMs(clock.millis())
        .setSeconds((System.nanoTime() - started) / 1e9)
        .build();
  }

  /** An example handed to the version: its decoded request (null when refused) and its answer. */
  private record Submitted(io.modelgate.runtime.tensor.DecodedRequest request, CompletableFuture<InferenceResult> answer) {}

  /** Waits for one example's answer and checks it: whether it passed; lists it in {@code failing} if not. */
  private boolean check(GoldenExample example, Submitted submitted, ModelVersion version, LoadedVersion loaded,
      List<String> failing, Observer observer) {
        String failure;
        try {
          InferenceResult result = submitted.answer().get(EXAMPLE_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
          observer.goldenExample(version, loaded, submitted.request(), result);
          failure = check(example, result, loaded);
        } catch (ExecutionException e) {
          failure = "answered " + (e.getCause() == null ? e : e.getCause()).getMessage();
        } catch (TimeoutException e) {
          failure = "no answer within " + EXAMPLE_TIMEOUT.toSeconds() + " s";
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw InferenceException.unavailable("golden validation interrupted");
        }
        if (failure != null && failing.size() < LISTED_FAILURES) {
          failing.add(example.getName() + ": " + failure);
        }
        return failure == null;
  }

  /** Submits one example to the version's queue, retrying while the queue is full. */
  private static Submitted submit(GoldenExample example, LoadedVersion loaded) {
    CompletableFuture<InferenceResult> answer = new CompletableFuture<>();
    InferenceCallback callback = InferenceCallback.completing(answer);
    long deadline = System.nanoTime() + EXAMPLE_TIMEOUT.toNanos();
    io.modelgate.runtime.tensor.DecodedRequest decoded = null;
    while (true) {
      try {
        decoded = RequestDecoder.decode(example.getRequest(), loaded.signature());
        loaded.scheduler().submit(InferenceRequest.ofTheGateway(decoded, callback));
        return new Submitted(decoded, answer);
      } catch (InferenceException e) {
        if (e.code() != ErrorCode.RESOURCE_EXHAUSTED || System.nanoTime() > deadline) {
          answer.completeExceptionally(e);
          return new Submitted(decoded, answer);
        }
        try {
          Thread.sleep(5);
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          answer.completeExceptionally(InferenceException.unavailable("golden validation interrupted"));
          return new Submitted(decoded, answer);
        }
      }
    }
  }

  /** Null when {@code result} meets the example's expectation, else what went wrong. */
  static String check(GoldenExample example, InferenceResult result, LoadedVersion loaded) {
    String name = example.getOutput().isEmpty() ? loaded.signature().outputs().get(0).name() : example.getOutput();
    OutputTensor output = null;
    for (OutputTensor o : result.outputs()) {
      if (o.name().equals(name)) {
        output = o;
      }
    }
    if (output == null) {
      return "no output '" + name + "'";
    }
    if (!output.isFloatingPoint()) {
      return "output '" + name + "' is " + output.dataType().wireName() + ", not FP32 or FP64";
    }
    double[] values = output.toDoubles();
    switch (example.getExpectationCase()) {
      case LABEL -> {
        int width = output.rowWidth();
        for (int row = 0; row + width <= values.length; row += width) {
          int got = OutputTensor.argmax(values, row, width);
          if (got != example.getLabel()) {
            return "expected class " + example.getLabel() + ", got " + got;
          }
        }
        return null;
      }
      case EXPECTED -> {
        List<Double> expected = example.getExpected().getValuesList();
        if (expected.size() != values.length) {
          return "expected " + expected.size() + " values, got " + values.length;
        }
        double tolerance = example.getExpected().getTolerance();
        for (int i = 0; i < values.length; i++) {
          if (!(Math.abs(values[i] - expected.get(i)) <= tolerance)) {
            return String.format("value %d is %.6g, expected %.6g within %.3g", i, values[i], expected.get(i), tolerance);
          }
        }
        return null;
      }
      default -> {
        return "no expectation";
      }
    }
  }

  @Override
  public void close() {
    if (thread != null) {
      thread.shutdownNow();
    }
  }
}

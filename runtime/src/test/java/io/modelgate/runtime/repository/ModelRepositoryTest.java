package io.modelgate.runtime.repository;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.StageRecorder;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.testing.Requests;
import io.modelgate.runtime.testing.TestModels;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelRepositoryTest {
  @TempDir Path root;
  private ModelRepository repository;

  @AfterEach
  void close() {
    if (repository != null) {
      repository.close(Duration.ofSeconds(5));
    }
  }

  private ModelRepository load() throws IOException {
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
    return repository;
  }

  /** {@link #load()}, and what it logged (the log goes to the process's standard error). */
  private String loadLogging() throws IOException {
    java.io.PrintStream original = System.err;
    java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
    System.setErr(new java.io.PrintStream(captured, true, java.nio.charset.StandardCharsets.UTF_8));
    try {
      load();
    } finally {
      System.setErr(original);
    }
    return captured.toString(java.nio.charset.StandardCharsets.UTF_8);
  }

  private ModelVersion version(String model, long number) {
    return repository.model(model).orElseThrow().version(number).orElseThrow();
  }

  @Test
  void brokenVersions_areFailedWithTheirReasons_whileOthersServe() throws Exception {
    TestModels.write(root, "good", 1, TestModels.affine());
    TestModels.write(root, "corrupt", 1, "this is not an ONNX model".getBytes());
    TestModels.write(root, "zipmap", 1, TestModels.lrMnist());
    TestModels.write(root, "unsigned", 1, TestModels.uint32Identity());
    Files.createDirectories(root.resolve("empty/1"));

    load();

    assertThat(version("good", 1).state()).isEqualTo(VersionState.READY);
    assertThat(version("corrupt", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("corrupt", 1).reason())
        .startsWith("ONNX Runtime could not load corrupt/1/model.onnx")
        .doesNotContain(root.toString())
        .doesNotContain(root.toAbsolutePath().toString());
    assertThat(version("zipmap", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("zipmap", 1).reason())
        .contains("output 'output_probability' is a sequence of maps")
        .contains("only tensor outputs");
    assertThat(version("unsigned", 1).reason()).contains("input 'x'").contains("UINT32");
    assertThat(version("empty", 1).reason())
        .isEqualTo("missing model file empty/1/model.onnx (expected: an ONNX model)");

    // The good model serves despite its broken neighbours.
    LoadedVersion good = version("good", 1).serving();
    Requests.Answer answer = new Requests.Answer();
    good.scheduler()
        .submit(
            InferenceRequest.of(
                RequestDecoder.decode(
                    Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), good.signature()),
                System.nanoTime(),
                null,
                answer));
    assertThat(Requests.floats(answer.result.get(10, TimeUnit.SECONDS).outputs()[0].data()))
        .containsExactly(3, 5, 7);
  }

  @Test
  void modelsLoadedOnSeveralThreads_endAsOnOne_eachModelsVersionsInTurn_brokenOnesFailedBesideTheOthers() throws Exception {
    for (int model = 1; model <= 5; model++) {
      TestModels.write(root, "m" + model, 1, TestModels.affine());
      TestModels.write(root, "m" + model, 2, TestModels.affine());
    }
    TestModels.write(root, "corrupt", 1, "this is not an ONNX model".getBytes());
    java.util.Set<String> loaders = java.util.concurrent.ConcurrentHashMap.newKeySet();
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS),
        StageRecorder.Factory.NONE, (model, version) -> {
          loaders.add(Thread.currentThread().getName());
          return model.equals("m3") && version == 2 ? "left unloaded by the test" : null;
        }, 3);
    assertThat(repository.models()).extracting(Model::name).containsExactly("corrupt", "m1", "m2", "m3", "m4", "m5");
    for (int model = 1; model <= 5; model++) {
      assertThat(version("m" + model, 1).state()).isEqualTo(VersionState.READY);
      assertThat(version("m" + model, 2).state()).isEqualTo(model == 3 ? VersionState.UNAVAILABLE : VersionState.READY);
    }
    assertThat(version("m3", 2).reason()).isEqualTo("left unloaded by the test");
    assertThat(version("corrupt", 1).state()).isEqualTo(VersionState.FAILED);
    // On the pool's threads, not the caller's; as many as asked at most.
    assertThat(loaders).allMatch(name -> name.startsWith("modelgate-load-")).hasSizeBetween(1, 3);
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> ModelRepository.load(root,
            ModelSettings.defaults(SessionSettings.DEFAULTS), StageRecorder.Factory.NONE, ModelRepository.LeftUnloaded.NONE, 0))
        .isInstanceOf(IllegalArgumentException.class).hasMessage("load threads: 0 (expected: at least 1)");
  }

  @Test
  void aVersionWhoseBatcherFails_becomesFailedWithTheReason_andCanBeLoadedAgain() throws Exception {
    TestModels.write(root, "good", 1, TestModels.affine());
    load();
    LoadedVersion loaded = version("good", 1).serving();
    Requests.Answer answer = new Requests.Answer();
    loaded.scheduler()
        .submit(
            InferenceRequest.of(
                RequestDecoder.decode(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), loaded.signature()),
                System.nanoTime(),
                () -> {
                  throw new IllegalStateException("defect in the batcher's path");
                },
                answer));
    assertThatThrownBy(() -> answer.result.get(10, TimeUnit.SECONDS))
        .cause()
        .isInstanceOfSatisfying(
            InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE));
    // The state changes on the batcher thread right after it answered its queue.
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (version("good", 1).state() != VersionState.FAILED && System.nanoTime() < until) {
      Thread.sleep(5);
    }
    assertThat(version("good", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("good", 1).reason()).contains("batcher").contains("defect in the batcher's path");
    assertThatThrownBy(() -> version("good", 1).serving())
        .isInstanceOfSatisfying(
            InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE));
    assertThat(repository.loadVersion("good", 1).state()).isEqualTo(VersionState.READY);
  }

  @Test
  void aReload_swapsInANewLoadOfTheFolderAsItIsNow_whileTheVersionStaysReady_andTheOldOneCompletesWhatItAccepted()
      throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 8\nmax_queue_delay_us: 700\n");
    load();
    LoadedVersion before = version("m", 1).serving();
    java.util.List<String> changes = new java.util.concurrent.CopyOnWriteArrayList<>();
    java.util.concurrent.CountDownLatch swapped = new java.util.concurrent.CountDownLatch(1);
    repository.events().subscribe(v -> {
      changes.add(v.state() + (v.loadedOrNull() == before ? " before" : " new"));
      if (v.isReady() && v.loadedOrNull() != before) {
        swapped.countDown();
      }
    });
    // A request the old load accepted, held in its batcher until the new load is swapped in.
    Requests.Answer held = new Requests.Answer();
    before.scheduler().submit(InferenceRequest.of(
        RequestDecoder.decode(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), before.signature()),
        System.nanoTime(),
        () -> {
          try {
            return !swapped.await(10, TimeUnit.SECONDS);
          } catch (InterruptedException e) {
            throw new IllegalStateException(e);
          }
        },
        held));
    // Edited while it serves: another model file, other settings.
    TestModels.write(root, "m", 1, TestModels.mlp(7));
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 4\nmax_queue_delay_us: 100\n");

    ModelRepository.Reload reload = repository.reloadVersion("m", 1, Duration.ofSeconds(5));
    assertThat(reload.failure()).isNull();
    ModelVersion reloaded = reload.version();

    assertThat(changes).containsExactly("READY new");
    assertThat(held.result.get(10, TimeUnit.SECONDS).outputs()[0].shape()).containsExactly(1, 3);
    assertThat(held.answers()).isEqualTo(1);
    LoadedVersion after = reloaded.serving();
    assertThat(after).isNotSameAs(before);
    assertThat(after.modelSha256()).isNotEqualTo(before.modelSha256());
    assertThat(after.signature().inputs().get(0).shape()).containsExactly(-1, 8);
    assertThat(after.settings().maxBatchSize()).isEqualTo(4);
    assertThat(after.settings().scheduler().maxQueueDelayMicros()).isEqualTo(100);
    // The same statistics go on across the reload.
    assertThat(after.recorder()).isSameAs(before.recorder());
    // The old load was drained: it takes nothing more.
    assertThatThrownBy(() -> before.scheduler().submit(InferenceRequest.of(
            RequestDecoder.decode(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), before.signature()),
            System.nanoTime(), null, new Requests.Answer())))
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE));
  }

  @Test
  void aReloadThatCannotLoad_leavesTheVersionServingAsBefore_andSaysWhy() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    load();
    LoadedVersion before = version("m", 1).serving();

    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: many\n");
    ModelRepository.Reload reload = repository.reloadVersion("m", 1, Duration.ofSeconds(5));
    assertThat(reload.reloaded()).isFalse();
    assertThat(reload.failure()).startsWith("model.yaml: max_batch_size: 'many'");
    assertThat(version("m", 1).serving()).isSameAs(before);

    Files.delete(root.resolve("m/model.yaml"));
    TestModels.write(root, "m", 1, "this is not an ONNX model".getBytes());
    reload = repository.reloadVersion("m", 1, Duration.ofSeconds(5));
    assertThat(reload.failure()).contains("m/1/model.onnx").doesNotContain(root.toString());
    assertThat(version("m", 1).serving()).isSameAs(before);
    Requests.Answer answer = new Requests.Answer();
    before.scheduler().submit(InferenceRequest.of(
        RequestDecoder.decode(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), before.signature()),
        System.nanoTime(), null, answer));
    assertThat(answer.result.get(10, TimeUnit.SECONDS).outputs()).hasSize(2);
  }

  @Test
  void aReloadsCheck_seesBothLoads_andARefusalOrAFailureOfItKeepsTheOldLoadServing() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    load();
    LoadedVersion before = version("m", 1).serving();
    java.util.List<String> seen = new java.util.ArrayList<>();
    ModelRepository.Reload refused = repository.reloadVersion("m", 1, Duration.ofSeconds(5), (v, serving, fresh) -> {
      seen.add(v.label() + ": " + (serving == before) + ", " + (fresh != before && fresh.scheduler().queuedCount() == 0));
      return "not as good";
    });
    assertThat(seen).containsExactly("model 'm' version 1: true, true");
    assertThat(refused.failure()).isEqualTo("not as good");
    assertThat(version("m", 1).serving()).isSameAs(before);

    ModelRepository.Reload failed = repository.reloadVersion("m", 1, Duration.ofSeconds(5), (v, serving, fresh) -> {
      throw new IllegalStateException("the check broke");
    });
    assertThat(failed.failure()).isEqualTo("the check of the new load failed: the check broke");
    assertThat(version("m", 1).serving()).isSameAs(before);

    assertThat(repository.reloadVersion("m", 1, Duration.ofSeconds(5), ModelRepository.ReloadCheck.NONE).reloaded())
        .isTrue();
    assertThat(version("m", 1).serving()).isNotSameAs(before);
  }

  @Test
  void onlyAReadyVersionOfItsOwnFolderReloads() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    TestModels.write(root, "m", 2, TestModels.affine());
    load();
    repository.unloadVersion("m", 2, Duration.ofSeconds(5));
    repository.loadCopy("m", 3, 1);

    assertThatThrownBy(() -> repository.reloadVersion("m", 2, Duration.ofSeconds(5)))
        .isInstanceOfSatisfying(InferenceException.class, e -> {
          assertThat(e.code()).isEqualTo(ErrorCode.FAILED_PRECONDITION);
          assertThat(e.getMessage()).isEqualTo("model 'm' version 2 is UNAVAILABLE, not READY: load it (a load reads its"
              + " folder and model.yaml as they are now)");
        });
    assertThatThrownBy(() -> repository.reloadVersion("m", 3, Duration.ofSeconds(5)))
        .isInstanceOfSatisfying(InferenceException.class, e -> {
          assertThat(e.code()).isEqualTo(ErrorCode.FAILED_PRECONDITION);
          assertThat(e.getMessage()).isEqualTo("model 'm' version 3 is a copy of version 1, serving that version's"
              + " file as it loaded; reload version 1 instead");
        });
    assertThatThrownBy(() -> repository.reloadVersion("m", 4, Duration.ofSeconds(5)))
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.NOT_FOUND));
    assertThatThrownBy(() -> repository.reloadVersion("other", 1, Duration.ofSeconds(5)))
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.NOT_FOUND));
    delete(root.resolve("m/1"));
    assertThatThrownBy(() -> repository.reloadVersion("m", 1, Duration.ofSeconds(5)))
        .isInstanceOfSatisfying(InferenceException.class, e -> {
          assertThat(e.code()).isEqualTo(ErrorCode.NOT_FOUND);
          assertThat(e.getMessage()).isEqualTo("model 'm' version 1 has no version folder m/1 in the repository any"
              + " more; it serves as before");
        });
    assertThat(version("m", 1).isReady()).isTrue();
  }

  @Test
  void anOperatorsUnload_tellsClientsSo_andNotThatTheServerIsStopping() throws Exception {
    TestModels.write(root, "good", 1, TestModels.affine());
    load();
    java.util.List<String> unloadingReasons = new java.util.concurrent.CopyOnWriteArrayList<>();
    repository.events().subscribe(v -> {
      if (v.state() == VersionState.UNLOADING) {
        unloadingReasons.add(v.reason());
      }
    });
    repository.unloadVersion("good", 1, Duration.ofSeconds(5));
    assertThat(unloadingReasons).containsExactly("it is being unloaded by an operator");
    assertThat(version("good", 1).state()).isEqualTo(VersionState.UNAVAILABLE);
    repository.loadVersion("good", 1);
    repository.drain(Duration.ofSeconds(5));
    assertThat(unloadingReasons).containsExactly("it is being unloaded by an operator", "the server is stopping");
  }

  @Test
  void anEmptyRepositoryFolder_warns() throws Exception {
    String logged = loadLogging();
    assertThat(repository.models()).isEmpty();
    assertThat(logged).contains("holds no model folders");
  }

  @Test
  void failedVersion_refusesWithUnavailableNamingTheReason() throws Exception {
    TestModels.write(root, "corrupt", 3, new byte[] {1, 2, 3});
    load();
    assertThatThrownBy(() -> version("corrupt", 3).serving())
        .isInstanceOfSatisfying(
            InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE))
        .hasMessageStartingWith("model 'corrupt' version 3 is FAILED: ONNX Runtime could not load");
  }

  @Test
  void nonNumericVersionFoldersAndFiles_areIgnored() throws Exception {
    TestModels.write(root, "m", 2, TestModels.affine());
    Files.createDirectories(root.resolve("m/latest"));
    Files.createDirectories(root.resolve("m/0"));
    Files.writeString(root.resolve("m/README"), "notes");
    load();
    assertThat(repository.model("m").orElseThrow().versions())
        .extracting(ModelVersion::number)
        .containsExactly(2L);
  }

  @Test
  void latestReady_isTheHighestReadyVersion() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    TestModels.write(root, "m", 2, TestModels.affine());
    TestModels.write(root, "m", 3, new byte[] {0});
    load();
    Model model = repository.model("m").orElseThrow();
    assertThat(model.latestReady()).map(ModelVersion::number).contains(2L);
    assertThat(model.readyVersions()).extracting(ModelVersion::number).containsExactly(1L, 2L);
    assertThat(model.describeVersions()).contains("1: READY").contains("3: FAILED (ONNX Runtime");
  }

  @Test
  void config_setsMaxBatchSizeAndThreads() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(
        root.resolve("m/model.yaml"),
        "max_batch_size: 8\ninstances: 2\nqueue_capacity: 100\nintra_op_threads: 2\n");
    load();
    LoadedVersion loaded = version("m", 1).serving();
    assertThat(loaded.signature().maxBatchSize()).isEqualTo(8);
    assertThat(loaded.settings().scheduler().instances()).isEqualTo(2);
    assertThat(loaded.settings().scheduler().ringSize()).isEqualTo(128);
    assertThat(loaded.settings().session().intraOpThreads()).isEqualTo(2);
  }

  @Test
  void onnxRuntimesPoolThreads_carryTheVersionsName_inTheKernel() throws Exception {
    // Linux names a new thread after the thread that starts it; ONNX Runtime starts a session's pool
    // threads (intra_op_threads - 1 of them) from the thread that creates the session.
    Path tasks = Path.of("/proc/self/task");
    org.junit.jupiter.api.Assumptions.assumeTrue(Files.isDirectory(tasks), "no /proc/self/task here");
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(root.resolve("m/model.yaml"), "intra_op_threads: 3\n");
    // A thread Java has seen end (an earlier test's, the session-opening one) may still be leaving
    // the kernel's list for a moment: each count is read again until it settles, or gives up.
    long before = settled(0);
    load();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.READY);
    assertThat(settled(before + 2) - before).isEqualTo(2);
    // They end with the session.
    repository.close(Duration.ofSeconds(5));
    repository = null;
    assertThat(settled(before)).isEqualTo(before);
  }

  /** {@link #nativeThreadsNamed} of modelgate-model, read until it is {@code expected} or 10 s pass. */
  private static long settled(long expected) throws Exception {
    long giveUp = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    long count = nativeThreadsNamed("modelgate-model");
    while (count != expected && System.nanoTime() - giveUp < 0) {
      Thread.sleep(10);
      count = nativeThreadsNamed("modelgate-model");
    }
    return count;
  }

  /** Threads the kernel names {@code prefix}... (its first 15 characters) that are not Java threads. */
  private static long nativeThreadsNamed(String prefix) throws IOException {
    long kernel;
    try (java.util.stream.Stream<Path> tasks = Files.list(Path.of("/proc/self/task"))) {
      kernel = tasks.filter(task -> {
        try {
          return Files.readString(task.resolve("comm")).startsWith(prefix);
        } catch (IOException gone) {
          return false;
        }
      }).count();
    }
    long java = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith(prefix)).count();
    return kernel - java;
  }

  @Test
  void config_largeBatches_openASecondSessionWarmedUp_orFailWhereNoBatchCouldUseIt() throws Exception {
    String large = "large_batch_rows: %d\nlarge_batch_intra_op_threads: 2\n";
    TestModels.write(root, "large", 1, TestModels.affine());
    Files.writeString(root.resolve("large/model.yaml"), "max_batch_size: 8\n" + large.formatted(4));
    TestModels.write(root, "above", 1, TestModels.affine());
    Files.writeString(root.resolve("above/model.yaml"), "max_batch_size: 8\n" + large.formatted(16));
    TestModels.write(root, "unbatched", 1, TestModels.affine());
    Files.writeString(root.resolve("unbatched/model.yaml"), "max_batch_size: 0\n" + large.formatted(2));
    load();
    LoadedVersion loaded = version("large", 1).serving();
    assertThat(loaded.onnx().largeBatchRows()).isEqualTo(4);
    // Warmed up with a batch of 4 rows, so that the first large batch pays no first-run cost.
    assertThat(loaded.onnx().largeBatchRuns()).isEqualTo(1);
    assertThat(loaded.settings().session().largeBatchIntraOpThreads()).isEqualTo(2);
    assertThat(version("above", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("above", 1).reason())
        .isEqualTo("model.yaml: large_batch_rows: 16 is above the version's max_batch_size 8, so no batch"
            + " would run on the second session (expected: at most 8, or neither large_batch key)");
    assertThat(version("unbatched", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("unbatched", 1).reason()).contains("max_batch_size 0");
  }

  @Test
  void maxBatchSize_defaultsFromTheModel() throws Exception {
    TestModels.write(root, "batchable", 1, TestModels.affine());
    TestModels.write(root, "fixed", 1, TestModels.reshapeToTwoByTwo());
    load();
    assertThat(version("batchable", 1).serving().signature().maxBatchSize())
        .isEqualTo(ModelSettings.DEFAULT_MAX_BATCH_SIZE);
    // reshape's output is [2,2] but its input [-1,4] is batchable: the input decides.
    assertThat(version("fixed", 1).serving().signature().maxBatchSize())
        .isEqualTo(ModelSettings.DEFAULT_MAX_BATCH_SIZE);
  }

  @Test
  void aModelWhoseWarmUpWouldTakeGigabytes_loadsUnwarmed_besideTheOthers() throws Exception {
    TestModels.write(root, "good", 1, TestModels.affine());
    // 600 million floats a row: 2.4 GB of zeros to warm it, more than a Java array holds (the
    // warm-up had thrown OutOfMemoryError out of the load, leaving the version LOADING).
    Path dir = Files.createDirectories(root.resolve("huge/1"));
    Files.write(
        dir.resolve("model.onnx"),
        io.modelgate.runtime.onnx.OnnxGraphBuilder.create("huge", 17)
            .input("x", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, -1, 600_000_000)
            .output("y", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, -1, 600_000_000)
            .node("Identity", java.util.List.of("x"), java.util.List.of("y"))
            .build());
    String logged = loadLogging();
    assertThat(version("huge", 1).state()).isEqualTo(VersionState.READY);
    assertThat(version("good", 1).state()).isEqualTo(VersionState.READY);
    assertThat(logged).contains(
        "not warmed up: 1 row of zeros would be 2288 MiB of inputs (at most 64 MiB are warmed)");
  }

  @Test
  void aFixedBatchDimension_meansNoBatching_soRequestsAreNeverMerged() throws Exception {
    Path dir = Files.createDirectories(root.resolve("fixed/1"));
    Files.write(
        dir.resolve("model.onnx"),
        io.modelgate.runtime.onnx.OnnxGraphBuilder.create("fixed", 17)
            .input("x", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, 1, 3)
            .output("y", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, 1, 3)
            .node("Identity", java.util.List.of("x"), java.util.List.of("y"))
            .build());
    load();
    LoadedVersion fixed = version("fixed", 1).serving();
    assertThat(fixed.signature().maxBatchSize()).isZero();
    assertThat(fixed.batchPolicy().merges()).isFalse();
  }

  @Test
  void maxBatchSize_onAModelWithoutABatchDimension_failsTheVersion() throws Exception {
    TestModels.write(root, "unsigned", 1, TestModels.affine());
    Path dir = root.resolve("fixed/1");
    Files.createDirectories(dir);
    Files.write(
        dir.resolve("model.onnx"),
        io.modelgate.runtime.onnx.OnnxGraphBuilder.create("fixed", 17)
            .input("x", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, 1, 3)
            .output("y", io.modelgate.runtime.onnx.OnnxGraphBuilder.FLOAT, 1, 3)
            .node("Identity", java.util.List.of("x"), java.util.List.of("y"))
            .build());
    Files.writeString(root.resolve("fixed/model.yaml"), "max_batch_size: 4\n");
    load();
    assertThat(version("fixed", 1).reason())
        .isEqualTo(
            "model.yaml: max_batch_size: 4, but input 'x' has shape [1,3], whose batch axis 0 is"
                + " not variable (-1) (expected: max_batch_size 0 for this model, or batch_axes that"
                + " name a variable dimension)");
  }

  @Test
  void invalidConfig_failsEveryVersionWithTheKeyValueAndExpectation() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    TestModels.write(root, "m", 2, TestModels.affine());
    TestModels.write(root, "other", 1, TestModels.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: eight\n");
    load();
    assertThat(version("m", 1).reason())
        .isEqualTo("model.yaml: max_batch_size: 'eight' (expected: an integer >= 0)");
    assertThat(version("m", 2).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("other", 1).state()).isEqualTo(VersionState.READY);
  }

  @Test
  void unknownConfigKey_isAnError() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batchsize: 8\n");
    load();
    assertThat(version("m", 1).reason())
        .startsWith("model.yaml: unknown key 'max_batchsize' (expected one of: [")
        .contains("max_batch_size");
  }

  @Test
  void outOfRangeConfigValue_namesTheRange() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(root.resolve("m/model.yaml"), "instances: 0\n");
    load();
    assertThat(version("m", 1).reason()).isEqualTo("model.yaml: instances: 0 (expected: 1 to 64)");
  }

  @Test
  void close_unloadsEveryVersion() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    load();
    ModelVersion version = version("m", 1);
    repository.close(Duration.ofSeconds(5));
    repository = null;
    assertThat(version.state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThatThrownBy(version::serving).hasMessageContaining("is UNAVAILABLE");
  }

  @Test
  void batchingKeys_areReadAndValidatedAgainstTheModel() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(
        root.resolve("m/model.yaml"),
        "max_batch_size: 16\nmax_queue_delay_us: 500\npreferred_batch_sizes: [4, 8]\n");
    TestModels.write(root, "too_big", 1, TestModels.affine());
    Files.writeString(
        root.resolve("too_big/model.yaml"), "max_batch_size: 4\npreferred_batch_sizes: [2, 8]\n");
    TestModels.write(root, "axes", 1, TestModels.affine());
    Files.writeString(root.resolve("axes/model.yaml"), "batch_axes: {input: 1}\n");
    TestModels.write(root, "bad_axis", 1, TestModels.affine());
    Files.writeString(root.resolve("bad_axis/model.yaml"), "batch_axes: {x: 5}\n");
    TestModels.write(root, "delay", 1, TestModels.affine());
    Files.writeString(root.resolve("delay/model.yaml"), "max_queue_delay_us: -3\n");
    TestModels.write(root, "reserve", 1, TestModels.affine());
    Files.writeString(root.resolve("reserve/model.yaml"), "instances: 3\nreserved_instances: 1\n");
    TestModels.write(root, "reserve_all", 1, TestModels.affine());
    Files.writeString(root.resolve("reserve_all/model.yaml"), "instances: 2\nreserved_instances: 2\n");
    load();
    assertThat(version("reserve", 1).serving().settings().scheduler().reservedInstances()).isEqualTo(1);
    assertThat(version("reserve_all", 1).reason())
        .isEqualTo("model.yaml: reserved_instances: 2 (expected: 0 to instances - 1 = 1; at least one executor"
            + " must be free to serve a tenant with a backlog)");
    LoadedVersion m = version("m", 1).serving();
    assertThat(m.batchPolicy().maxBatchSize()).isEqualTo(16);
    assertThat(m.batchPolicy().maxQueueDelayNanos()).isEqualTo(500_000);
    assertThat(m.batchPolicy().preferredBatchSizes()).containsExactly(4, 8);
    assertThat(version("too_big", 1).reason())
        .isEqualTo(
            "model.yaml: preferred_batch_sizes: [2, 8] (expected: increasing sizes from 1 to"
                + " max_batch_size 4)");
    assertThat(version("axes", 1).reason())
        .isEqualTo("model.yaml: batch_axes: unknown tensor 'input' (expected one of: x, y, z)");
    assertThat(version("bad_axis", 1).reason())
        .startsWith("model.yaml: ")
        .contains("input 'x'")
        .contains("axis 5");
    assertThat(version("delay", 1).reason())
        .isEqualTo("model.yaml: max_queue_delay_us: -3 (expected: 0 to 10000000)");
  }

  @Test
  void cuda_withoutTheCudaBuild_failsWithAClearReason_orFallsBackWhenAllowed() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeFalse(
        ai.onnxruntime.OrtEnvironment.getAvailableProviders()
            .contains(ai.onnxruntime.OrtProvider.CUDA),
        "this build has the CUDA provider; the GPU check runs on the device instead");
    TestModels.write(root, "strict", 1, TestModels.affine());
    Files.writeString(root.resolve("strict/model.yaml"), "execution_provider: cuda\ndevice_id: 0\n");
    TestModels.write(root, "lenient", 1, TestModels.affine());
    Files.writeString(
        root.resolve("lenient/model.yaml"), "execution_provider: cuda\nallow_cpu_fallback: true\n");
    TestModels.write(root, "typo", 1, TestModels.affine());
    Files.writeString(root.resolve("typo/model.yaml"), "execution_provider: gpu\n");
    load();
    assertThat(version("strict", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("strict", 1).reason())
        .startsWith("execution_provider: cuda, but this ONNX Runtime build has no CUDA execution provider")
        .contains("-Pgpu")
        .endsWith("(set allow_cpu_fallback: true to run on the CPU instead)");
    LoadedVersion lenient = version("lenient", 1).serving();
    assertThat(lenient.executionProvider()).isEqualTo(io.modelgate.runtime.onnx.ExecutionProvider.CPU);
    assertThat(lenient.fallbackReason()).contains("no CUDA execution provider");
    assertThat(version("typo", 1).reason())
        .isEqualTo("model.yaml: execution_provider: 'gpu' (expected: cpu or cuda)");
  }

  @Test
  void aCopy_loadsAnotherVersionsModelFile_underANumberNoFolderHas_andIsNeverTheLatest() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    TestModels.write(root, "m", 2, TestModels.affine());
    load();
    ModelVersion copy = repository.loadCopy("m", 3, 1);
    assertThat(copy.state()).isEqualTo(VersionState.READY);
    assertThat(copy.copyOf()).isEqualTo(1);
    assertThat(copy.directory()).isEqualTo(version("m", 1).directory());
    // Served like any version, with its source's answers.
    for (long number : new long[] {1, 3}) {
      LoadedVersion serving = version("m", number).serving();
      Requests.Answer answer = new Requests.Answer();
      serving.scheduler().submit(InferenceRequest.of(
          RequestDecoder.decode(Requests.fp32("x", new long[] {1, 3}, 1, 2, 3), serving.signature()),
          System.nanoTime(), null, answer));
      assertThat(Requests.floats(answer.result.get(10, TimeUnit.SECONDS).outputs()[0].data()))
          .as("version %d", number)
          .containsExactly(3, 5, 7);
    }
    // Never the latest READY version: a request naming none goes to version 2.
    assertThat(repository.model("m").orElseThrow().latestReady()).contains(version("m", 2));
    // Loading the same copy again leaves it as it is.
    assertThat(repository.loadCopy("m", 3, 1)).isSameAs(copy);

    assertThatThrownBy(() -> repository.loadCopy("m", 2, 1))
        .isInstanceOf(InferenceException.class)
        .hasMessage("model 'm' has a version folder m/2; a copy takes a number that no folder has");
    assertThatThrownBy(() -> repository.loadCopy("m", 3, 2))
        .isInstanceOf(InferenceException.class)
        .hasMessage("model 'm' version 3 is READY as a copy of version 1; unload it first");
    assertThatThrownBy(() -> repository.loadCopy("m", 4, 3))
        .isInstanceOf(InferenceException.class)
        .hasMessage("model 'm' has no version 3 to copy");
    // A READY version is left as it is, a copy too.
    assertThat(repository.loadVersion("m", 3)).isSameAs(copy);

    // The file its source loaded: the same SHA-256, that of the file's bytes.
    String sha256 = java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
        .digest(Files.readAllBytes(root.resolve("m/1/model.onnx"))));
    assertThat(version("m", 1).serving().modelSha256()).isEqualTo(sha256);
    assertThat(copy.serving().modelSha256()).isEqualTo(sha256);

    // Unloaded, it stays a copy (listed, UNAVAILABLE) until a folder of its number is loaded.
    repository.unloadVersion("m", 3, Duration.ofSeconds(5), "the rollout it was a control of ended");
    assertThat(copy.state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThatThrownBy(() -> repository.loadVersion("m", 3))
        .isInstanceOf(InferenceException.class)
        .hasMessage("model 'm' has no version folder m/3 in the repository");
    TestModels.write(root, "m", 3, TestModels.affine());
    assertThat(repository.loadVersion("m", 3)).isSameAs(copy);
    assertThat(copy.state()).isEqualTo(VersionState.READY);
    assertThat(copy.isCopy()).isFalse();
    assertThat(copy.directory()).isEqualTo(root.resolve("m/3"));
    assertThat(repository.model("m").orElseThrow().latestReady()).contains(copy);
  }

  @Test
  void aCopy_ofAVersionWhoseFileChangedOnDiskSinceItLoaded_fails() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    load();
    String loaded = version("m", 1).serving().modelSha256();
    // Another model written over version 1's file while it serves the one it loaded.
    TestModels.write(root, "m", 1, TestModels.lrMnist());
    ModelVersion copy = repository.loadCopy("m", 2, 1);
    assertThat(copy.state()).isEqualTo(VersionState.FAILED);
    assertThat(copy.reason())
        .startsWith("model.onnx (sha256 ")
        .contains(") is not the file version 1 loaded (sha256 " + loaded.substring(0, 12) + ")")
        .endsWith("it has changed on disk since, and a copy would not be that version's model");
    assertThat(version("m", 1).isReady()).isTrue();
  }

  @Test
  void aCopy_runsUnderTheSettingsItsSourceLoadedWith_notModelYamlEditedSince() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 8\nmax_queue_delay_us: 700\nintra_op_threads: 1\n");
    load();
    LoadedVersion source = version("m", 1).serving();
    // Edited while version 1 serves under what it loaded.
    Files.writeString(root.resolve("m/model.yaml"), "max_batch_size: 2\nmax_queue_delay_us: 100\nintra_op_threads: 2\n");

    LoadedVersion copy = repository.loadCopy("m", 2, 1).serving();
    assertThat(copy.settings().maxBatchSize()).isEqualTo(8);
    assertThat(copy.settings().scheduler()).isEqualTo(source.settings().scheduler());
    assertThat(copy.settings().scheduler().maxQueueDelayMicros()).isEqualTo(700);
    assertThat(copy.settings().session().intraOpThreads()).isEqualTo(1);
    assertThat(copy.batchPolicy()).isEqualTo(source.batchPolicy());

    // A version loaded from its folder reads model.yaml as it is now.
    TestModels.write(root, "m", 3, TestModels.affine());
    LoadedVersion third = repository.loadVersion("m", 3).serving();
    assertThat(third.settings().maxBatchSize()).isEqualTo(2);
    assertThat(third.settings().scheduler().maxQueueDelayMicros()).isEqualTo(100);
    assertThat(third.settings().session().intraOpThreads()).isEqualTo(2);
  }

  @Test
  void aModelFolderAddedAfterTheStart_isAddedWhenAVersionOfItLoads_itsListenersToldBeforeItsVersionsLoad() throws Exception {
    TestModels.write(root, "b", 1, TestModels.affine());
    load();
    TestModels.write(root, "a", 1, TestModels.affine());
    TestModels.write(root, "a", 2, TestModels.affine());
    Files.createDirectories(root.resolve(".hidden"));
    Files.writeString(root.resolve("a-file"), "not a folder");
    assertThat(repository.model("a")).isEmpty();
    assertThat(repository.modelsNotAdded()).containsExactly("a");
    java.util.List<String> told = new java.util.ArrayList<>();
    repository.onModelAdded(name -> told.add(name + " with " + repository.model(name).orElseThrow().versions().size() + " versions"));

    assertThat(repository.loadVersion("a", 2).state()).isEqualTo(VersionState.READY);
    assertThat(told).containsExactly("a with 0 versions");
    assertThat(repository.models()).extracting(Model::name).containsExactly("a", "b");
    assertThat(repository.model("a").orElseThrow().versions()).extracting(ModelVersion::number).containsExactly(2L);
    assertThat(repository.model("a").orElseThrow().latestReady()).contains(version("a", 2));
    assertThat(repository.modelsNotAdded()).isEmpty();
    // Added once: the same model from then on.
    assertThat(repository.modelOrAdd("a")).isSameAs(repository.model("a").orElseThrow());
    assertThat(repository.loadVersion("a", 1).isReady()).isTrue();
    assertThat(told).hasSize(1);

    for (String name : new String[] {"c", "..", ".hidden", "a-file", "a/1"}) {
      assertThatThrownBy(() -> repository.loadVersion(name, 1))
          .as(name)
          .isInstanceOf(InferenceException.class)
          .hasMessage("unknown model '" + name + "': the repository has no folder " + name);
    }
    assertThat(repository.models()).extracting(Model::name).containsExactly("a", "b");
  }

  @Test
  void twoVersionsOfANewModelLoadedAtOnce_addTheModelOnce_andBothLoad() throws Exception {
    TestModels.write(root, "b", 1, TestModels.affine());
    load();
    for (int version = 1; version <= 4; version++) {
      TestModels.write(root, "a", version, TestModels.affine());
    }
    java.util.concurrent.atomic.AtomicInteger told = new java.util.concurrent.atomic.AtomicInteger();
    repository.onModelAdded(name -> told.incrementAndGet());
    java.util.concurrent.CyclicBarrier together = new java.util.concurrent.CyclicBarrier(4);
    java.util.concurrent.ExecutorService threads = java.util.concurrent.Executors.newFixedThreadPool(4);
    try {
      java.util.List<java.util.concurrent.Future<ModelVersion>> loads = new java.util.ArrayList<>();
      for (long version = 1; version <= 4; version++) {
        long number = version;
        loads.add(threads.submit(() -> {
          together.await();
          return repository.loadVersion("a", number);
        }));
      }
      for (java.util.concurrent.Future<ModelVersion> load : loads) {
        assertThat(load.get(30, TimeUnit.SECONDS).state()).isEqualTo(VersionState.READY);
      }
    } finally {
      threads.shutdownNow();
    }
    assertThat(told).hasValue(1);
    assertThat(repository.model("a").orElseThrow().versions()).extracting(ModelVersion::number)
        .containsExactly(1L, 2L, 3L, 4L);
  }

  /** Deletes {@code dir} and everything in it. */
  private static void delete(Path dir) throws IOException {
    try (java.util.stream.Stream<Path> paths = Files.walk(dir)) {
      for (Path path : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
        Files.delete(path);
      }
    }
  }

  @Test
  void aModelIsRemovedOnlyOnceItsFolderHasGone_noVersionIsInMemory_andTheCallerHasForgottenIt_thenComesBackAnew() throws Exception {
    TestModels.write(root, "a", 1, TestModels.affine());
    TestModels.write(root, "a", 2, TestModels.affine());
    TestModels.write(root, "b", 1, TestModels.affine());
    load();
    java.util.List<String> told = new java.util.ArrayList<>();
    repository.onModelRemoved(told::add);
    Model before = repository.model("a").orElseThrow();

    // Folder there, versions unloaded: kept (listed, its versions UNAVAILABLE).
    repository.unloadVersion("a", 1, Duration.ofSeconds(5));
    repository.unloadVersion("a", 2, Duration.ofSeconds(5));
    assertThat(repository.removeIfGone("a", model -> true)).isFalse();
    // Folder gone, one version still READY: kept, and it still serves.
    repository.loadVersion("a", 2);
    delete(root.resolve("a"));
    assertThat(repository.removeIfGone("a", model -> true)).isFalse();
    assertThat(version("a", 2).isReady()).isTrue();
    // Folder gone, nothing in memory, but the caller still keeps something of it: kept.
    repository.unloadVersion("a", 2, Duration.ofSeconds(5));
    assertThat(repository.removeIfGone("a", model -> false)).isFalse();
    assertThat(told).isEmpty();

    assertThat(repository.removeIfGone("a", model -> model == before)).isTrue();
    assertThat(told).containsExactly("a");
    assertThat(repository.model("a")).isEmpty();
    assertThat(repository.models()).extracting(Model::name).containsExactly("b");
    assertThat(repository.modelsNotAdded()).isEmpty();
    assertThatThrownBy(() -> repository.loadVersion("a", 1))
        .isInstanceOf(InferenceException.class)
        .hasMessage("unknown model 'a': the repository has no folder a");
    assertThatThrownBy(() -> repository.loadCopy("a", 9, 1))
        .isInstanceOf(InferenceException.class)
        .hasMessage("unknown model 'a'");
    assertThat(repository.removeIfGone("a", model -> true)).isFalse();
    assertThat(repository.removeIfGone("b", model -> true)).isFalse();

    // Its folder put back: a model added anew, with only the versions loaded since.
    TestModels.write(root, "a", 1, TestModels.affine());
    assertThat(repository.modelsNotAdded()).containsExactly("a");
    assertThat(repository.loadVersion("a", 1).isReady()).isTrue();
    assertThat(repository.model("a").orElseThrow()).isNotSameAs(before);
    assertThat(repository.model("a").orElseThrow().versions()).extracting(ModelVersion::number).containsExactly(1L);
  }

  @Test
  void aModelWithAFailedVersionAndNoneInMemory_isRemoved_theCallersCheckSeeingTheStatesTwice_beforeAndUnderTheLocks() throws Exception {
    TestModels.write(root, "a", 1, TestModels.affine());
    Files.createDirectories(root.resolve("a").resolve("2"));
    Files.writeString(root.resolve("a").resolve("2").resolve(RepositoryFolder.MODEL_FILE), "not a model");
    load();
    assertThat(version("a", 2).state()).isEqualTo(VersionState.FAILED);
    repository.unloadVersion("a", 1, Duration.ofSeconds(5));
    delete(root.resolve("a"));
    // The caller's check runs once before the locks and once under them (where no load can start).
    java.util.List<String> seen = new java.util.ArrayList<>();
    assertThat(repository.removeIfGone("a", model -> {
      seen.add(model.describeVersions());
      return true;
    })).isTrue();
    assertThat(seen).hasSize(2).allMatch(line -> line.startsWith("1: UNAVAILABLE") && line.contains("2: FAILED"));
  }

  @Test
  void versionsLeftUnloadedAtTheStart_areNeverBuilt_areUnavailableWithTheReason_andLoadLater() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    TestModels.write(root, "m", 2, TestModels.affine());
    TestModels.write(root, "other", 1, TestModels.affine());
    java.util.List<String> built = new java.util.concurrent.CopyOnWriteArrayList<>();
    java.util.List<String> asked = new java.util.ArrayList<>();
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS),
        (model, version) -> {
          built.add(model + "/" + version);
          return StageRecorder.NONE;
        },
        (model, version) -> {
          asked.add(model + "/" + version);
          return model.equals("m") && version == 2 ? "unloaded on every replica" : null;
        });
    assertThat(asked).containsExactly("m/1", "m/2", "other/1");
    assertThat(built).containsExactly("m/1", "other/1");
    assertThat(version("m", 2).state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThat(version("m", 2).reason()).isEqualTo("unloaded on every replica");
    assertThatThrownBy(() -> version("m", 2).serving())
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE))
        .hasMessageContaining("unloaded on every replica");
    assertThat(version("m", 1).state()).isEqualTo(VersionState.READY);
    assertThat(repository.loadVersion("m", 2).state()).isEqualTo(VersionState.READY);
    assertThat(built).containsExactly("m/1", "other/1", "m/2");
  }

  /** Recorders whose {@code n}th creation (from 1) throws {@code error}, the others record nothing. */
  private static StageRecorder.Factory throwingOnCreation(int n, Error error) {
    AtomicInteger created = new AtomicInteger();
    return (model, version) -> {
      if (created.incrementAndGet() == n) {
        throw error;
      }
      return StageRecorder.NONE;
    };
  }

  @Test
  void anOutOfMemoryErrorWhileLoading_failsTheVersionWithItsReason_andItLoadsAgainLater() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    TestModels.write(root, "other", 1, TestModels.affine());
    // The first version loaded ("m", in name order) runs out of heap; the start goes on.
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS),
        throwingOnCreation(1, new OutOfMemoryError("Java heap space")));
    assertThat(version("m", 1).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("m", 1).reason())
        .isEqualTo("unexpected error while loading: java.lang.OutOfMemoryError: Java heap space");
    assertThat(version("other", 1).state()).isEqualTo(VersionState.READY);
    assertThat(repository.loadVersion("m", 1).state()).isEqualTo(VersionState.READY);
  }

  @Test
  void anErrorTheLoadCannotSurvive_isThrownOn_leavingTheVersionFailedNotLoading() throws Exception {
    TestModels.write(root, "m", 1, TestModels.affine());
    repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS),
        throwingOnCreation(2, new InternalError("the JVM's own")));
    TestModels.write(root, "m", 2, TestModels.affine());
    assertThatThrownBy(() -> repository.loadVersion("m", 2))
        .isInstanceOf(InternalError.class)
        .hasMessage("the JVM's own");
    assertThat(version("m", 2).state()).isEqualTo(VersionState.FAILED);
    assertThat(version("m", 2).reason()).isEqualTo("unexpected error while loading: java.lang.InternalError: the JVM's own");
    // Not stuck in LOADING: a later load is taken, and serves.
    assertThat(repository.loadVersion("m", 2).state()).isEqualTo(VersionState.READY);
    assertThat(version("m", 1).state()).isEqualTo(VersionState.READY);
  }

  @Test
  void missingRoot_isAnIoError() {
    assertThatThrownBy(
            () ->
                ModelRepository.load(
                    root.resolve("nope"), ModelSettings.defaults(SessionSettings.DEFAULTS)))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("is not a folder");
  }
}

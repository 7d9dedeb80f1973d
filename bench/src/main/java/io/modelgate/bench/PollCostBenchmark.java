package io.modelgate.bench;

import io.modelgate.bench.load.LoadGenerator;
import io.modelgate.gateway.admin.RepositoryPoll;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * What {@code serve --repository-poll} costs the requests a server answers while nothing changes:
 * one gateway serving a model under closed-loop load, with and without the poll's look ({@link
 * RepositoryPoll#look}, what the poll's thread does every interval) running beside it on a thread of
 * its own, over a repository folder of a given number of version folders: spaced as the server
 * spaces its looks ({@link RepositoryPoll#spacing}: the interval, or 20 times a look's time where
 * that is longer), or, for comparison, at the interval whatever a look takes. The
 * folders looked at are a tree of their own, as large as asked, whose versions are not loaded (a
 * look reads the same for a version loaded or not; loading thousands would measure memory, not the
 * poll). Scenarios interleave over rounds, so that each sees the same machine; reports throughput
 * and p99 as ratios against the poll off, and the looks' own time.
 */
@Command(
    name = "poll",
    mixinStandardHelpOptions = true,
    description = "End-to-end cost of the repository poll's looks beside served requests, against none.")
final class PollCostBenchmark implements Callable<Integer> {
  @Spec CommandSpec spec;

  @picocli.CommandLine.Mixin ClosedLoopRounds load;
  @picocli.CommandLine.Mixin JitSettleOption jitSettle;

  @Option(names = "--folders", split = ",", defaultValue = "300,3000",
      description = "The version folders looked at in each polled scenario (models of three versions, two files each). Default: ${DEFAULT-VALUE}.")
  List<Integer> folders;
  @Option(names = "--every", defaultValue = "1s",
      description = "How often the poll looks (the server's shortest --repository-poll is 1s). Default: ${DEFAULT-VALUE}.")
  String every;
  @Option(names = "--spacing", split = ",", defaultValue = "server",
      description = "How looks are spaced, one scenario each: server (as the server does: the interval, or 20 times a"
          + " look's time where longer), fixed (every interval, whatever a look takes). Default: ${DEFAULT-VALUE}.")
  List<String> spacings;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    Duration interval = io.modelgate.gateway.config.TimeSpans.parse(every);
    BenchModels.BenchModel bench = BenchModels.byName(load.model);
    Path root = Files.createTempDirectory("modelgate-bench-poll-");
    Path served = Files.createDirectories(root.resolve("served"));
    Files.write(Files.createDirectories(served.resolve(load.model).resolve("1")).resolve("model.onnx"), bench.onnx());
    for (String spacing : spacings) {
      if (!spacing.equals("server") && !spacing.equals("fixed")) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(),
            "--spacing " + spacing + " (expected: server, fixed)");
      }
    }
    Map<String, Path> trees = new LinkedHashMap<>();
    Map<String, Boolean> fixed = new LinkedHashMap<>();
    trees.put("poll off (baseline)", null);
    for (int count : folders) {
      Path tree = tree(root.resolve("tree-" + count), count);
      for (String spacing : spacings) {
        String name = String.format("poll every %s%s over %d version folders", every,
            spacing.equals("fixed") ? " (fixed)" : "", count);
        trees.put(name, tree);
        fixed.put(name, spacing.equals("fixed"));
      }
    }
    ModelInferRequest request = bench.request(load.model);
    ScheduledExecutorService thread = DaemonThreads.scheduled("modelgate-repository-poll");
    Map<String, List<LoadGenerator.Result>> results;
    Map<String, AtomicLong[]> looks = new LinkedHashMap<>();
    try (BenchGateway gateway = BenchGateway.start(served, load.connections, true)) {
      io.modelgate.bench.load.Connections channels = gateway.channels();
      out.printf("poll cost: model %s, %d callers over %d connections, %d s JIT warm-up, then %d rounds of %d s warm-up + %d s"
          + " per scenario, in rotating order%n", load.model, load.concurrency, load.connections, load.jitWarmupSeconds,
          load.rounds, load.warmupSeconds, load.durationSeconds);
      out.flush();
      new LoadGenerator(channels, request).run(LoadGenerator.Options.closed(load.concurrency, false, Duration.ZERO,
          Duration.ofSeconds(load.jitWarmupSeconds)), line -> {});
      jitSettle.settle(() -> new LoadGenerator(channels, request)
          .run(LoadGenerator.Options.closed(load.concurrency, false, Duration.ofSeconds(1), Duration.ZERO), line -> {}), out);
      Map<String, ClosedLoopRounds.Scenario> scenarios = new LinkedHashMap<>();
      for (String name : trees.keySet()) {
        looks.put(name, new AtomicLong[] {new AtomicLong(), new AtomicLong(), new AtomicLong()});
        scenarios.put(name, options -> {
          Path tree = trees.get(name);
          AtomicLong[] counted = looks.get(name);
          java.util.concurrent.atomic.AtomicBoolean stopped = new java.util.concurrent.atomic.AtomicBoolean();
          if (tree != null) {
            thread.execute(new Runnable() {
              @Override
              public void run() {
                if (stopped.get()) {
                  return;
                }
                long began = System.nanoTime();
                try {
                  RepositoryPoll.look(tree);
                } catch (IOException e) {
                  throw new java.io.UncheckedIOException(e);
                }
                long took = System.nanoTime() - began;
                counted[0].incrementAndGet();
                counted[1].addAndGet(took);
                counted[2].accumulateAndGet(took, Math::max);
                // Fixed: the next look starts an interval after this one ended, as before the server spaced them.
                long wait = fixed.get(name) ? interval.toNanos() : RepositoryPoll.spacing(took, interval);
                thread.schedule(this, wait, TimeUnit.NANOSECONDS);
              }
            });
          }
          try {
            return new LoadGenerator(channels, request).run(options, line -> {});
          } finally {
            stopped.set(true);
          }
        });
      }
      results = load.rounds(out, scenarios);
    } finally {
      thread.shutdownNow();
      try (var paths = Files.walk(root)) {
        paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
    for (Map.Entry<String, AtomicLong[]> entry : looks.entrySet()) {
      AtomicLong[] counted = entry.getValue();
      if (counted[0].get() > 0) {
        out.printf("  %s: %d looks, %.2f ms each on average, %.2f ms at most%n", entry.getKey(), counted[0].get(),
            counted[1].get() / 1e6 / counted[0].get(), counted[2].get() / 1e6);
      }
    }
    ScenarioTable.print(out, results, "off");
    return 0;
  }

  /** A repository folder of {@code versions} version folders: models of three, each a model.onnx and a second file of 4 KB. */
  private static Path tree(Path root, int versions) throws IOException {
    byte[] bytes = new byte[4096];
    for (int v = 0; v < versions; v++) {
      Path dir = Files.createDirectories(root.resolve("model-" + v / 3));
      if (v % 3 == 0) {
        Files.writeString(dir.resolve("model.yaml"), "max_batch_size: 8\n");
      }
      Path version = Files.createDirectories(dir.resolve(Integer.toString(v % 3 + 1)));
      Files.write(version.resolve("model.onnx"), bytes);
      Files.write(version.resolve("model.onnx.data"), bytes);
    }
    return root;
  }
}

package io.modelgate.bench;

import picocli.CommandLine.Option;

/**
 * The options of the benchmarks that measure scenarios of one gateway under closed-loop load in
 * interleaved rounds against a baseline in the same run ({@code drift}, {@code poll}, {@code
 * tracing}): the model, the callers and their connections, and the rounds' timing; and the rounds
 * themselves ({@link #rounds}). A picocli mixin.
 */
final class ClosedLoopRounds {
  /** One scenario's closed-loop run, with the options it is given. */
  @FunctionalInterface
  interface Scenario {
    io.modelgate.bench.load.LoadGenerator.Result run(io.modelgate.bench.load.LoadGenerator.Options options)
        throws InterruptedException;
  }

  /**
   * Runs every scenario once a round for {@link #rounds} rounds, each round starting with another
   * (so that none is always first after a pause), each run {@link #concurrency} closed-loop
   * callers for {@link #warmupSeconds} unrecorded then {@link #durationSeconds} measured; prints
   * each round's line; returns each scenario's results, in the order {@code scenarios} gives them.
   */
  java.util.Map<String, java.util.List<io.modelgate.bench.load.LoadGenerator.Result>> rounds(java.io.PrintWriter out,
      java.util.Map<String, Scenario> scenarios) throws InterruptedException {
    java.util.Map<String, java.util.List<io.modelgate.bench.load.LoadGenerator.Result>> results =
        new java.util.LinkedHashMap<>();
    for (String name : scenarios.keySet()) {
      results.put(name, new java.util.ArrayList<>());
    }
    java.util.List<String> order = new java.util.ArrayList<>(scenarios.keySet());
    io.modelgate.bench.load.LoadGenerator.Options measured = io.modelgate.bench.load.LoadGenerator.Options.closed(
        concurrency, false, java.time.Duration.ofSeconds(warmupSeconds), java.time.Duration.ofSeconds(durationSeconds));
    for (int round = 1; round <= rounds; round++) {
      java.util.Collections.rotate(order, 1);
      for (String name : order) {
        io.modelgate.bench.load.LoadGenerator.Result result = scenarios.get(name).run(measured);
        results.get(name).add(result);
        ScenarioTable.printRound(out, round, name, result);
      }
    }
    return results;
  }

  @Option(names = "--model", defaultValue = "cnn_mnist", description = "The model: mlp, mlp_large, cnn_mnist or minilm. Default: ${DEFAULT-VALUE}.")
  String model;

  @Option(names = "--concurrency", defaultValue = "64", description = "Closed-loop callers. Default: ${DEFAULT-VALUE}.")
  int concurrency;

  @Option(names = "--connections", defaultValue = "2", description = "HTTP/2 connections they share. Default: ${DEFAULT-VALUE}.")
  int connections;

  @Option(names = "--duration", defaultValue = "8", description = "Seconds measured, per scenario and round. Default: ${DEFAULT-VALUE}.")
  int durationSeconds;

  @Option(names = "--warmup", defaultValue = "6", description = "Seconds of unrecorded load before each measurement. Default: ${DEFAULT-VALUE}.")
  int warmupSeconds;

  @Option(names = "--rounds", defaultValue = "5", description = "Rounds, each running every scenario, in rotating order. Default: ${DEFAULT-VALUE}.")
  int rounds;

  @Option(names = "--jit-warmup", defaultValue = "20",
      description = "Seconds of unrecorded load over every scenario before the first round. Default: ${DEFAULT-VALUE}.")
  int jitWarmupSeconds;
}

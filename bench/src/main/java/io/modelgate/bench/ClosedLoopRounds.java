package io.modelgate.bench;

import picocli.CommandLine.Option;

/**
 * The options of the benchmarks that measure scenarios of one gateway under closed-loop load in
 * interleaved rounds against a baseline in the same run ({@code drift}, {@code poll}): the model,
 * the callers and their connections, and the rounds' timing. A picocli mixin.
 */
final class ClosedLoopRounds {
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

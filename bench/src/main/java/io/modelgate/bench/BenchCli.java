package io.modelgate.bench;

import org.slf4j.bridge.SLF4JBridgeHandler;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code modelgate-bench}: benchmarks against the gateway, with their baselines in the same run. */
@Command(
    name = "modelgate-bench",
    mixinStandardHelpOptions = true,
    description = "modelgate benchmarks.",
    subcommands = {BatchingBenchmark.class, CommandLine.HelpCommand.class})
public final class BenchCli implements Runnable {
  @Override
  public void run() {
    new CommandLine(this).usage(System.out);
  }

  public static void main(String[] args) {
    SLF4JBridgeHandler.removeHandlersForRootLogger();
    SLF4JBridgeHandler.install();
    System.exit(new CommandLine(new BenchCli()).execute(args));
  }
}

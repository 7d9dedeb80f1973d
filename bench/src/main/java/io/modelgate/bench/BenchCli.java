package io.modelgate.bench;

import org.slf4j.bridge.SLF4JBridgeHandler;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code modelgate-bench}: benchmarks against the gateway, with their baselines in the same run. */
@Command(
    name = "modelgate-bench",
    mixinStandardHelpOptions = true,
    description = "modelgate benchmarks.",
    subcommands = {
      LoadCommand.class,
      SuiteCommand.class,
      BatchingBenchmark.class,
      RoutingCostBenchmark.class,
      DriftCostBenchmark.class,
      FairnessBenchmark.class,
      CeilingCommand.class,
      BenchCli.Jmh.class,
      CommandLine.HelpCommand.class
    })
public final class BenchCli implements Runnable {
  @Override
  public void run() {
    new CommandLine(this).usage(System.out);
  }

  /** Runs the JMH suites; arguments go to JMH (e.g. a benchmark regex, -f, -wi, -i). */
  @Command(name = "jmh", description = "Run the JMH suites (RoutingBenchmark, StatsBenchmark); arguments go to JMH.")
  static final class Jmh implements java.util.concurrent.Callable<Integer> {
    @picocli.CommandLine.Unmatched java.util.List<String> args = new java.util.ArrayList<>();

    @Override
    public Integer call() throws Exception {
      org.openjdk.jmh.Main.main(args.toArray(new String[0]));
      return 0;
    }
  }

  public static void main(String[] args) {
    io.modelgate.gateway.server.NettyDefaults.apply();
    SLF4JBridgeHandler.removeHandlersForRootLogger();
    SLF4JBridgeHandler.install();
    System.exit(
        io.modelgate.gateway.cli.CliErrors.install(new CommandLine(new BenchCli()), "modelgate-bench").execute(args));
  }
}

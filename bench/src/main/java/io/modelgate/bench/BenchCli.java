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
      PollCostBenchmark.class,
      TracingCostBenchmark.class,
      TraceSinkCommand.class,
      FairnessBenchmark.class,
      SoakCommand.class,
      CeilingCommand.class,
      GpuBenchmark.class,
      BenchCli.Jmh.class,
      CommandLine.HelpCommand.class
    })
public final class BenchCli implements Runnable {
  @Override
  public void run() {
    new CommandLine(this).usage(System.out);
  }

  /** Runs the JMH suites; arguments go to JMH (e.g. a benchmark regex, -f, -wi, -i). */
  @Command(name = "jmh", description = "Run the JMH suites (-l lists them); arguments go to JMH.")
  static final class Jmh implements java.util.concurrent.Callable<Integer> {
    @picocli.CommandLine.Unmatched java.util.List<String> args = new java.util.ArrayList<>();

    @Override
    public Integer call() throws Exception {
      org.openjdk.jmh.Main.main(args.toArray(new String[0]));
      return 0;
    }
  }

  /**
   * How long, in seconds, this JVM keeps a host name's addresses unless the user set {@code
   * networkaddress.cache.ttl} (a security property) or {@code sun.net.inetaddr.ttl}: a load
   * generator looks its target up again when a connection is made again, to find a scale-out's new
   * replicas, and the JVM's default of 30 s would hide them that long.
   */
  static final String ADDRESS_CACHE_SECONDS = "1";

  /**
   * Sets what must be set before anything in this JVM looks a name up or opens a channel: Netty's
   * defaults, and the address cache ({@link #ADDRESS_CACHE_SECONDS}). The JVM reads the cache's
   * setting at its first lookup, so this runs first in {@link #main}.
   */
  static void configureJvm() {
    io.modelgate.gateway.server.NettyDefaults.apply();
    if (java.security.Security.getProperty("networkaddress.cache.ttl") == null
        && System.getProperty("sun.net.inetaddr.ttl") == null) {
      java.security.Security.setProperty("networkaddress.cache.ttl", ADDRESS_CACHE_SECONDS);
    }
  }

  public static void main(String[] args) {
    configureJvm();
    SLF4JBridgeHandler.removeHandlersForRootLogger();
    SLF4JBridgeHandler.install();
    System.exit(
        io.modelgate.gateway.cli.CliErrors.install(new CommandLine(new BenchCli()), "modelgate-bench").execute(args));
  }
}

package io.modelgate.gateway.cli;

import io.modelgate.gateway.server.NettyDefaults;
import io.modelgate.gateway.server.ServerVersion;
import org.slf4j.bridge.SLF4JBridgeHandler;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** {@code modelgate}: the gateway's command line. */
@Command(
    name = "modelgate",
    mixinStandardHelpOptions = true,
    versionProvider = ModelgateCli.Version.class,
    description = "A low-latency KServe v2 gRPC inference gateway for ONNX models.",
    subcommands = {ServeCommand.class, InferCommand.class, AdminCommand.class, DemoCommand.class, CallersCommand.class,
      CommandLine.HelpCommand.class})
public final class ModelgateCli implements Runnable {
  @Spec CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(spec.commandLine().getOut());
  }

  /** The command line, ready to execute; output goes where the caller's CommandLine says. */
  public static CommandLine commandLine() {
    return CliErrors.install(new CommandLine(new ModelgateCli()), "modelgate");
  }

  public static void main(String[] args) {
    NettyDefaults.apply();
    Logging.configure("text");
    // grpc-java logs through java.util.logging; send it where everything else goes.
    SLF4JBridgeHandler.removeHandlersForRootLogger();
    SLF4JBridgeHandler.install();
    System.exit(commandLine().execute(args));
  }

  static final class Version implements IVersionProvider {
    @Override
    public String[] getVersion() {
      return new String[] {"modelgate " + ServerVersion.current()};
    }
  }
}

package io.modelgate.gateway.cli;

import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.NoSuchFileException;
import picocli.CommandLine;

/**
 * What a command prints and returns when it fails: one line naming the problem, never a Java stack
 * trace (set {@code MODELGATE_DEBUG=1} to get one), and a documented exit code.
 *
 * <ul>
 *   <li>{@link #FAILED} (1): the server answered with an error, or the operation failed;
 *   <li>{@link #USAGE} (2): the command line is wrong (picocli's own code);
 *   <li>{@link #UNREACHABLE} (3): a server could not be reached, or a local file (repository,
 *       token, certificate) could not be read.
 * </ul>
 */
public final class CliErrors implements CommandLine.IExecutionExceptionHandler {
  public static final int FAILED = 1;
  public static final int USAGE = CommandLine.ExitCode.USAGE;
  public static final int UNREACHABLE = 3;

  private final String program;

  public CliErrors(String program) {
    this.program = program;
  }

  /** {@code commandLine} with this handler installed. */
  public static CommandLine install(CommandLine commandLine, String program) {
    return commandLine.setExecutionExceptionHandler(new CliErrors(program));
  }

  @Override
  public int handleExecutionException(
      Exception e, CommandLine commandLine, CommandLine.ParseResult parseResult) {
    commandLine.getErr().println(program + ": " + describe(e));
    if (System.getenv("MODELGATE_DEBUG") != null) {
      e.printStackTrace(commandLine.getErr());
    }
    commandLine.getErr().flush();
    return exitCode(e);
  }

  /** One line for {@code e}: a gRPC status as "CODE: message", a missing file by its name. */
  public static String describe(Throwable e) {
    return describe(e, null);
  }

  /**
   * As {@link #describe(Throwable)}; a server that could not be reached named by {@code target}, the
   * address the command was given (null: not named).
   */
  public static String describe(Throwable e, String target) {
    if (e instanceof StatusRuntimeException s) {
      return s.getStatus().getCode() + ": " + unreachable(s, target);
    }
    if (e instanceof UncheckedIOException && e.getCause() != null) {
      return describe(e.getCause(), target);
    }
    if (e instanceof NoSuchFileException) {
      return "no such file: " + e.getMessage();
    }
    if (e instanceof IOException || e instanceof IllegalArgumentException || e instanceof IllegalStateException) {
      return e.getMessage();
    }
    return e.getClass().getSimpleName() + ": " + e.getMessage() + " (MODELGATE_DEBUG=1 shows where)";
  }

  private static String unreachable(StatusRuntimeException e, String target) {
    String description = e.getStatus().getDescription();
    // Named by the command's target where given, the innermost cause says why; else the transport's
    // own (Netty's names the address: "Connection refused: localhost/127.0.0.1:8003").
    Throwable cause = e.getCause();
    while (target != null && cause != null && cause.getCause() != null) {
      cause = cause.getCause();
    }
    if (e.getStatus().getCode() == io.grpc.Status.Code.UNAVAILABLE && cause != null) {
      return "cannot reach the server" + (target == null ? "" : " at " + target) + ": " + cause.getMessage();
    }
    return description;
  }

  public static int exitCode(Throwable e) {
    if (e instanceof StatusRuntimeException s) {
      return s.getStatus().getCode() == io.grpc.Status.Code.UNAVAILABLE && s.getCause() != null
          ? UNREACHABLE
          : FAILED;
    }
    if (e instanceof IOException || e instanceof UncheckedIOException) {
      return UNREACHABLE;
    }
    return FAILED;
  }
}

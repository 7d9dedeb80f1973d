package io.modelgate.bench;

import java.io.PrintWriter;
import java.time.Duration;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code --jit-settle}, for the benchmarks that measure servers and clients inside this JVM: before
 * the first measurement, unrecorded load until the JIT compilers are quiet ({@link JitSettling}).
 */
final class JitSettleOption {
  /** The compilers' busy share of a slice under which the JIT counts as settled, percent. */
  static final int QUIET_PERCENT = 3;

  @Option(names = "--jit-settle", defaultValue = "120", description = "Before measuring, most seconds of unrecorded load, in slices, until the JIT compilers were busy under " + QUIET_PERCENT + "%% of a slice; the output says whether they settled. 0: none. Default: ${DEFAULT-VALUE}.")
  int seconds;

  /** The command this option is mixed into, for its usage errors. */
  @Spec(Spec.Target.MIXEE) CommandSpec command;

  /**
   * Runs {@code slice} until the compilers are quiet or {@code --jit-settle} has passed, and
   * prints how it ended (nothing when the option is 0).
   */
  JitSettling.Outcome settle(JitSettling.Slice slice, PrintWriter out) throws InterruptedException {
    if (seconds < 0) {
      throw new ParameterException(command.commandLine(), "--jit-settle " + seconds + " (expected: seconds >= 0)");
    }
    JitSettling.Outcome outcome = JitSettling.settle(slice, Duration.ofSeconds(seconds), QUIET_PERCENT / 100.0);
    if (seconds > 0) {
      out.printf("  %s%n", describe(outcome));
      out.flush();
    }
    return outcome;
  }

  String describe(JitSettling.Outcome outcome) {
    return outcome.describe(QUIET_PERCENT / 100.0);
  }

  boolean enabled() {
    return seconds > 0;
  }
}

package io.modelgate.bench;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;

/**
 * How a benchmark starts another JVM (a server under test, a flood's load generator): this JVM's
 * own {@code java}, with the options the launcher gave this JVM for its JDK ({@code
 * bin/jvm-options.sh}: native access and {@code sun.misc.Unsafe} allowed, compact object headers
 * on JDK 25, the tenuring threshold), so that the child runs as {@code bin/modelgate} would run it
 * on the same JDK. Options of other kinds (heap, agents, debugging ports) are not passed on: each
 * caller sets the child's heap itself.
 */
final class ChildJvm {
  /** The beginnings of the launcher's options (bin/jvm-options.sh) that a child takes over. */
  static final List<String> INHERITED = List.of("--enable-native-access=", "--sun-misc-unsafe-memory-access=",
      "-XX:+UseCompactObjectHeaders", "-XX:-UseCompactObjectHeaders", "-XX:MaxTenuringThreshold=");

  private ChildJvm() {}

  /** The {@code java} command and the inherited options: the start of a child's command line. */
  static List<String> command() {
    List<String> command = new ArrayList<>();
    command.add(ProcessHandle.current().info().command().orElse("java"));
    command.addAll(inherited(ManagementFactory.getRuntimeMXBean().getInputArguments()));
    return command;
  }

  /** Those of {@code arguments} (a JVM's input arguments) that a child takes over, in order. */
  static List<String> inherited(List<String> arguments) {
    List<String> kept = new ArrayList<>();
    for (String argument : arguments) {
      for (String prefix : INHERITED) {
        if (argument.startsWith(prefix)) {
          kept.add(argument);
          break;
        }
      }
    }
    return kept;
  }
}

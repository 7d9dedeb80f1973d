package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

class ChildJvmTest {
  @Test
  void aChild_takesTheLaunchersOptionsForTheJdk_andNotTheHeapAgentsOrProperties() {
    // What bin/modelgate-bench passes on JDK 25 (bin/jvm-options.sh), then a user's options.
    List<String> parent = List.of("-XX:MaxTenuringThreshold=2", "--enable-native-access=ALL-UNNAMED",
        "--sun-misc-unsafe-memory-access=allow", "-XX:+UseCompactObjectHeaders", "-Xms1g", "-Xmx1g",
        "-agentlib:jdwp=transport=dt_socket,server=y,address=5005", "-Dmodelgate.x=1", "-XX:+UseZGC");

    assertThat(ChildJvm.inherited(parent)).containsExactly("-XX:MaxTenuringThreshold=2",
        "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow", "-XX:+UseCompactObjectHeaders");
  }

  @Test
  void onJdk17_theLauncherGivesOnlyTheTenuringThreshold_andAChildTakesThat() {
    assertThat(ChildJvm.inherited(List.of("-XX:MaxTenuringThreshold=2", "-Xmx1g"))).containsExactly("-XX:MaxTenuringThreshold=2");
    assertThat(ChildJvm.inherited(List.of())).isEmpty();
  }

  @Test
  void theCommand_startsWithThisJvmsJava() {
    List<String> command = ChildJvm.command();
    assertThat(command.get(0)).endsWith("java");
    assertThat(command.subList(1, command.size())).allMatch(o -> ChildJvm.INHERITED.stream().anyMatch(o::startsWith));
  }
}

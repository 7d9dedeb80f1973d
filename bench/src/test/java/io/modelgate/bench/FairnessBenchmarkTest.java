package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The fairness benchmark's options; CI runs the benchmark itself briefly (.ci/run). */
class FairnessBenchmarkTest {
  private final StringWriter errors = new StringWriter();

  private int run(String... args) {
    CommandLine command = new CommandLine(new FairnessBenchmark());
    command.setErr(new PrintWriter(errors, true));
    command.setOut(new PrintWriter(new StringWriter(), true));
    return command.execute(args);
  }

  @Test
  void aFloodsCpus_thatAreNotACpuList_areRefusedBeforeAnythingStarts() {
    assertThat(run("--flood-cpus", "all")).isEqualTo(2);
    assertThat(errors.toString()).contains("--flood-cpus all (expected: a CPU list such as 8-15 or 2,3, with --flood-process)");
  }

  @Test
  void aFloodsCpus_needTheFloodInAJvmOfItsOwn() {
    assertThat(run("--flood-cpus", "1", "--no-flood-process")).isEqualTo(2);
    assertThat(errors.toString()).contains("with --flood-process");
  }

  @Test
  void noEventLoops_orNoFloodConnections_areRefused() {
    assertThat(run("--event-loops", "0")).isEqualTo(2);
    assertThat(errors.toString()).contains("--event-loops 0 (expected: 1 or more each)");
  }

  @Test
  void theCpusThisJvmRunsOn_areNamed() {
    // Linux: the kernel's list (0-1, 0,2-3); elsewhere how many, in parentheses.
    assertThat(FairnessBenchmark.allowedCpus()).matches("[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*|\\([0-9]+\\)");
  }
}

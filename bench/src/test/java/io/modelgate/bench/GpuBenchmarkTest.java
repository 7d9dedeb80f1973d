package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code gpu --provider cpu}: the GPU benchmark's rehearsal runs every part on the CPU, and the
 * gateway's answers agree with ONNX Runtime's own (the check the GPU run makes of CUDA).
 */
class GpuBenchmarkTest {
  @TempDir Path out;

  @Test
  void rehearsalOnTheCpu_runsEveryPart_andTheGatewayAnswersAsOnnxRuntimeDoes() throws Exception {
    StringWriter text = new StringWriter();
    CommandLine command = new CommandLine(new GpuBenchmark());
    command.setOut(new PrintWriter(text, true));
    int exit = command.execute("--provider", "cpu", "--model", "mlp", "--iterations", "5", "--batches", "1,8",
        "--concurrency", "1,4", "--instances", "2", "--warmup", "0", "--duration", "1", "--max-batch-size", "16",
        "--rows-per-request", "2", "--event-loop-threads", "1", "--connections", "2", "--out", out.toString());
    String report = text.toString();
    assertThat(exit).as(report).isZero();
    assertThat(report)
        .contains("| cpu | 0.00 | yes |")
        .contains("Gateway mlp_off: 64 single-row requests sent together, largest abs difference from the CPU 0.00 (within 1e-3)")
        .contains("Gateway mlp_on: 64 single-row requests sent together, largest abs difference from the CPU 0.00 (within 1e-3)")
        .contains("Gateway cnn_mnist_cpu: the demo's labelled digits 62/62 right")
        .contains("ONNX Runtime's profile of 20 runs at batch 8");
    // Every scenario ran and none failed: the transport alone at the two concurrencies, one and two
    // rows a request; at each (both are the two largest) the gateway batching off and on, and with two
    // instances each; then two-row requests batched with one and two instances.
    assertThat(report.lines().filter(line -> line.matches("\\| [14] \\| [12] \\| .*"))).hasSize(4);
    assertThat(report.lines().filter(line -> line.startsWith("| mlp_")))
        .hasSize(4 + 4 + 4)
        .allSatisfy(line -> assertThat(line).endsWith("| 0 |"));
    assertThat(Files.readString(out.resolve("gpu.md"))).isEqualTo(report.substring(report.indexOf("# GPU benchmark")));
  }
}

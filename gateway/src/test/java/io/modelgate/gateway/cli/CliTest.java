package io.modelgate.gateway.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.Gateway;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code modelgate infer} against a gateway on loopback. */
class CliTest {
  @TempDir static Path root;
  static Gateway gateway;

  @BeforeAll
  static void start() throws Exception {
    gateway = Gateway.netty(Gateway.standardRepository(root), 16 << 20);
  }

  @AfterAll
  static void stop() {
    gateway.close();
  }

  private record Run(int exitCode, String out, String err) {}

  private static Run run(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    CommandLine cli = ModelgateCli.commandLine();
    cli.setOut(new PrintWriter(out));
    cli.setErr(new PrintWriter(err));
    int code = cli.execute(args);
    return new Run(code, out.toString(), err.toString());
  }

  private static String target() {
    return "localhost:" + gateway.server.port();
  }

  @Test
  void infer_sendsADigit_andPrintsTheVersionAndThePrediction() {
    MnistDigits.Digit digit = MnistDigits.get(7);
    Run run = run("infer", "--target", target(), "--model", "cnn_mnist", "--digit", "7");
    assertThat(run.exitCode()).as(run.err()).isZero();
    assertThat(run.out())
        .contains("model cnn_mnist version 2 answered in")
        .contains("output_probs FP32 [1, 10]")
        .contains("digit #7: label " + digit.label() + ", predicted " + digit.label());
  }

  @Test
  void infer_aNamedVersion() {
    Run run = run("infer", "--target", target(), "--model", "cnn_mnist", "--version", "1");
    assertThat(run.out()).contains("model cnn_mnist version 1 answered in");
  }

  @Test
  void infer_anyOtherModel_getsRandomInputsFromItsMetadata() {
    Run run = run("infer", "--target", target(), "--model", "affine");
    assertThat(run.exitCode()).as(run.err()).isZero();
    assertThat(run.out()).contains("model affine version 1").contains("y FP32 [1, 3]").contains("z FP32 [1, 3]");
  }

  @Test
  void infer_errorsPrintTheStatus_andExitNonZero() {
    Run run = run("infer", "--target", target(), "--model", "nope");
    assertThat(run.exitCode()).isEqualTo(1);
    assertThat(run.err()).contains("NOT_FOUND: unknown model 'nope'");
  }

  @Test
  void serve_help_documentsTheOptions() {
    Run run = run("serve", "--help");
    assertThat(run.exitCode()).isZero();
    assertThat(run.out()).contains("--model-repository").contains("--grpc-port").contains("--max-inbound-message-size");
  }
}

package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.proto.inference.ModelInferRequest;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class LoadCommandTest {
  @TempDir Path dir;

  /** A repository serving cnn_mnist as model {@code m}, version 1; returns its root. */
  private Path cnnMnistAsModelM() throws Exception {
    Path root = dir.resolve("models");
    Files.createDirectories(root.resolve("m").resolve("1"));
    Files.write(root.resolve("m").resolve("1").resolve("model.onnx"), BenchModels.byName("cnn_mnist").onnx());
    return root;
  }

  /** One cnn_mnist row for model {@code m}, in protobuf JSON (for {@code --input-file}). */
  private Path cnnMnistRow() throws Exception {
    Path json = dir.resolve("row.json");
    Files.writeString(json, com.google.protobuf.util.JsonFormat.printer().print(BenchModels.byName("cnn_mnist").request("m")));
    return json;
  }

  @Test
  void writeGrpcFrame_writesOneLengthPrefixedMessage_forH2load() throws Exception {
    Path json = dir.resolve("row.json");
    Files.writeString(json, "{\"modelName\":\"m\",\"id\":\"1\",\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[\"1\",\"2\"]}],"
        + "\"rawInputContents\":[\"AAAAAAAAAAA=\"]}");
    Path frame = dir.resolve("m.grpc");
    StringWriter out = new StringWriter();
    CommandLine cli = new CommandLine(new LoadCommand());
    cli.setOut(new PrintWriter(out));
    int code = cli.execute("--model", "m", "--input-file", json.toString(), "--write-grpc-frame", frame.toString());
    assertThat(code).as(out.toString()).isZero();
    byte[] bytes = Files.readAllBytes(frame);
    ByteBuffer header = ByteBuffer.wrap(bytes, 0, 5);
    assertThat(header.get()).isZero();
    int length = header.getInt();
    assertThat(length).isEqualTo(bytes.length - 5);
    ModelInferRequest request = ModelInferRequest.parseFrom(Arrays.copyOfRange(bytes, 5, bytes.length));
    assertThat(request.getModelName()).isEqualTo("m");
    assertThat(request.getInputs(0).getShapeList()).containsExactly(1L, 2L);
  }

  @Test
  void apiKey_isSentWithEveryCall_andAServerWithACallersFileRefusesCallsWithoutOne() throws Exception {
    Path root = cnnMnistAsModelM();
    Path json = cnnMnistRow();
    String key = "mgk_test-" + java.util.UUID.randomUUID();
    Path callers = dir.resolve("callers.yaml");
    Files.writeString(callers, "tenants:\n  team:\n    api_keys: [" + io.modelgate.gateway.callers.CallerPolicy.hash(key) + "]\n");
    try (BenchGateway gateway = BenchGateway.start(root, 1, false, callers)) {
      String target = "127.0.0.1:" + gateway.server().port();
      String[] load = {"--target", target, "--model", "m", "--input-file", json.toString(), "--concurrency", "2",
          "--warmup", "0", "--duration", "1"};

      StringWriter with = new StringWriter();
      CommandLine cli = new CommandLine(new LoadCommand());
      cli.setOut(new PrintWriter(with));
      String[] withKey = Arrays.copyOf(load, load.length + 2);
      withKey[load.length] = "--api-key";
      withKey[load.length + 1] = key;
      assertThat(cli.execute(withKey)).as(with.toString()).isZero();
      assertThat(gateway.server().usage().latency("team", "m", "1", 0.5)).as("the tenant's calls were counted").isPositive();

      StringWriter without = new StringWriter();
      cli = new CommandLine(new LoadCommand());
      cli.setOut(new PrintWriter(without));
      assertThat(cli.execute(load)).isEqualTo(1);
      assertThat(without.toString()).contains("UNAUTHENTICATED");
    }
  }

  @Test
  void overTls_callsAreAnswered_throughGoaways_andAMutualTlsPortRefusesAClientWithoutItsCertificate() throws Exception {
    Path root = cnnMnistAsModelM();
    Path json = cnnMnistRow();
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(Files.createDirectories(dir.resolve("pki")));
    io.modelgate.gateway.stats.StatsRegistry stats =
        new io.modelgate.gateway.stats.StatsRegistry(java.time.Duration.ofSeconds(5), java.time.Clock.systemUTC(), false);
    io.modelgate.gateway.server.GatewayServer server = io.modelgate.gateway.testing.Gateway.server(root, stats,
        new io.modelgate.gateway.server.ServerSettings("127.0.0.1", 0, 1 << 20, 1, java.time.Duration.ofSeconds(5),
            new io.modelgate.gateway.tls.TlsSettings(certs.serverChain, certs.serverKey, certs.caCert))
            // Connections past a second are asked to go (GOAWAY): the client reconnects over TLS, losing no call.
            .withConnections(new io.modelgate.gateway.server.ConnectionSettings(java.time.Duration.ofSeconds(1), null,
                java.time.Duration.ofMinutes(1), java.time.Duration.ofSeconds(10))),
        io.modelgate.gateway.testing.Gateway.adminSettings(dir.resolve(".state"), 0));
    try {
      String target = "127.0.0.1:" + server.port();
      // Mutual TLS: the lean unary connections and, for the model's metadata, a grpc-java channel.
      StringWriter mutual = new StringWriter();
      CommandLine cli = new CommandLine(new LoadCommand());
      cli.setOut(new PrintWriter(mutual));
      assertThat(cli.execute("--target", target, "--model", "m", "--concurrency", "2", "--warmup", "0", "--duration", "3",
          "--tls-ca", certs.caCert.toString(), "--tls-cert", certs.clientChain.toString(), "--tls-key", certs.clientKey.toString()))
          .as(mutual.toString()).isZero();
      assertThat(mutual.toString()).doesNotContain("UNAVAILABLE");
      assertThat(stats.prometheus().get("modelgate.connections.opened").tag("port", "inference").functionCounter().count())
          .as("TLS connections, reconnections after GOAWAY included").isGreaterThanOrEqualTo(4);
      double served = stats.prometheus().get("modelgate.requests").tag("model", "m").tag("code", "OK").counter().count();
      assertThat(served).as("calls answered over TLS").isPositive();

      // Without the client certificate the port takes no call.
      StringWriter without = new StringWriter();
      cli = new CommandLine(new LoadCommand());
      cli.setOut(new PrintWriter(without));
      assertThat(cli.execute("--target", target, "--model", "m", "--input-file", json.toString(), "--concurrency", "2",
          "--warmup", "0", "--duration", "1", "--tls-ca", certs.caCert.toString())).isEqualTo(1);
      assertThat(without.toString()).contains("UNAVAILABLE");
      assertThat(stats.prometheus().get("modelgate.requests").tag("model", "m").tag("code", "OK").counter().count())
          .isEqualTo(served);

      // A client certificate without its key is a usage error, said before any call.
      StringWriter half = new StringWriter();
      cli = new CommandLine(new LoadCommand());
      cli.setErr(new PrintWriter(half));
      assertThat(cli.execute("--target", target, "--model", "m", "--tls-ca", certs.caCert.toString(),
          "--tls-cert", certs.clientChain.toString())).isEqualTo(2);
      assertThat(half.toString()).contains("--tls-cert and --tls-key go together");
    } finally {
      server.stop();
      stats.close();
    }
  }

  @Test
  void jitSettle_runsTheSameLoadUnrecordedFirst_andSaysHowItEnded() throws Exception {
    Path root = cnnMnistAsModelM();
    Path json = cnnMnistRow();
    Path results = dir.resolve("out");
    try (BenchGateway gateway = BenchGateway.start(root, 1, false)) {
      StringWriter out = new StringWriter();
      CommandLine cli = new CommandLine(new LoadCommand());
      cli.setOut(new PrintWriter(out));
      int code = cli.execute("--target", "127.0.0.1:" + gateway.server().port(), "--model", "m", "--input-file",
          json.toString(), "--concurrency", "2", "--jit-settle", "1", "--warmup", "0", "--duration", "1",
          "--label", "settled", "--out", results.toString());
      assertThat(code).as(out.toString()).isZero();
      assertThat(out.toString()).containsPattern(java.util.regex.Pattern.quote(LoadCommand.SETTLING_ENDED)
          + "JIT (settled|NOT settled) after \\d+ s of further warm-up \\((\\d+) slices?");
      long sent = new com.fasterxml.jackson.databind.ObjectMapper().readTree(results.resolve("settled.json").toFile())
          .get("result").get("sent").asLong();
      long served = gateway.stats().find("m", 1).statistics().getInferenceCount();
      assertThat(served - sent).as("calls of the unrecorded slice (%d served, %d recorded)", served, sent)
          .isGreaterThanOrEqualTo(50);
    }
  }

  @Test
  void jitSettle_isRefusedWithASweep_whoseRatesWarmUpEachOnItsOwn() {
    StringWriter err = new StringWriter();
    CommandLine cli = new CommandLine(new LoadCommand());
    cli.setErr(new PrintWriter(err));
    assertThat(cli.execute("--model", "m", "--sweep", "--jit-settle", "10")).isEqualTo(2);
    assertThat(err.toString()).contains("--jit-settle 10: not with --sweep");
  }

  @Test
  void backOff_isRefusedOutsideClosedLoopUnaryCalls() {
    StringWriter err = new StringWriter();
    CommandLine cli = new CommandLine(new LoadCommand());
    cli.setErr(new PrintWriter(err));
    int code = cli.execute("--model", "m", "--rate", "100", "--back-off");
    assertThat(code).isEqualTo(2);
    assertThat(err.toString()).contains("--back-off applies to closed-loop unary calls");
  }
}

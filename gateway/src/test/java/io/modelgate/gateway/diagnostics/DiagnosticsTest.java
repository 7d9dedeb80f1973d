package io.modelgate.gateway.diagnostics;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.control.StateStore;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.gateway.tracing.TraceSettings;
import io.modelgate.proto.admin.v1.Diagnostics;
import io.modelgate.proto.admin.v1.GetDiagnosticsRequest;
import io.modelgate.proto.admin.v1.SetLogLevelRequest;
import io.modelgate.proto.admin.v1.SetTraceSampleRateRequest;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * Log levels and the trace sample rate set for a while through the admin API: in force at once,
 * back to what they were when their time runs out or when set back, audited, refused clearly.
 */
class DiagnosticsTest {
  /** A logger no other test sets, a package's. */
  private static final String LOGGER = "io.modelgate.gateway.routing";

  @TempDir Path root;

  @BeforeEach
  void model() {
    Gateway.write(root, "m", 1, Gateway.affine());
  }

  private static ch.qos.logback.classic.Logger logger(String name) {
    return ((LoggerContext) LoggerFactory.getILoggerFactory()).getLogger(name);
  }

  private List<String> audit(String action) throws IOException {
    return Files.readAllLines(root.resolve(".state").resolve(StateStore.AUDIT_FILE)).stream()
        .filter(line -> line.contains("\"action\":\"" + action + "\"")).toList();
  }

  /** How many audit records of {@code action} there are so far (0 before the log exists). */
  private long auditLines(String action) {
    try {
      return audit(action).size();
    } catch (IOException e) {
      return 0;
    }
  }

  private static void refused(Runnable call, Status.Code code, String message) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(message);
    });
  }

  private Gateway open(TraceSettings traces) throws IOException {
    return Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve(".state"), -1).withTraces(traces), Clock.systemUTC());
  }

  @Test
  void aLogLevelSetForAWhile_holdsUntilSetBackOrRunOut_thenIsWhatItWas_andEachChangeIsAudited() throws Exception {
    assertThat(logger(LOGGER).getLevel()).as("inherited from the root").isNull();
    try (Gateway gateway = open(TraceSettings.OFF)) {
      Diagnostics set = gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder()
          .setLogger(LOGGER).setLevel("debug").setForMs(Duration.ofHours(1).toMillis()).build());
      assertThat(logger(LOGGER).getLevel()).isEqualTo(Level.DEBUG);
      assertThat(LoggerFactory.getLogger(LOGGER + ".RoutingTable").isDebugEnabled()).as("the package's loggers").isTrue();
      assertThat(set.getLogLevelsList()).singleElement().satisfies(level -> {
        assertThat(level.getLogger()).isEqualTo(LOGGER);
        assertThat(level.getLevel()).isEqualTo("DEBUG");
        assertThat(level.getWas()).isEqualTo("INHERITED");
        assertThat(level.getSetBy()).endsWith("admin"); // the admin token, on its connection
        assertThat(level.getNote()).as("a logger the server has").isEmpty();
        assertThat(level.getUntilMs()).isGreaterThan(System.currentTimeMillis() + Duration.ofMinutes(59).toMillis());
      });
      assertThat(gateway.stats.scrape()).contains("modelgate_log_levels_set 1.0");

      // Set again: the new level, and still back to what was there before either.
      gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).setLevel("TRACE").build());
      assertThat(gateway.admin().getDiagnostics(GetDiagnosticsRequest.getDefaultInstance()).getLogLevelsList())
          .singleElement().satisfies(level -> {
            assertThat(level.getLevel()).isEqualTo("TRACE");
            assertThat(level.getWas()).isEqualTo("INHERITED");
            assertThat(level.getUntilMs()).as("the default, 15 minutes")
                .isLessThanOrEqualTo(System.currentTimeMillis() + Duration.ofMinutes(15).toMillis());
          });
      assertThat(gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).build())
          .getLogLevelsList()).isEmpty();
      assertThat(logger(LOGGER).getLevel()).isNull();
      refused(() -> gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).build()),
          Status.Code.FAILED_PRECONDITION, "logger " + LOGGER + " has no level set through the admin API");

      // One that runs out.
      Level root = logger("ROOT").getLevel();
      gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("ROOT").setLevel("WARN").setForMs(300).build());
      assertThat(logger("ROOT").getLevel()).isEqualTo(Level.WARN);
      eventually("the root's level back to what it was", () -> logger("ROOT").getLevel() == root);
      eventually("the report empty, and the level that ran out audited", () ->
          gateway.admin().getDiagnostics(GetDiagnosticsRequest.getDefaultInstance()).getLogLevelsCount() == 0
              && auditLines("SetLogLevel") >= 5);
      assertThat(audit("SetLogLevel")).hasSizeGreaterThanOrEqualTo(5).satisfies(lines -> {
        assertThat(lines.get(0)).contains(LOGGER + " DEBUG for 1h").contains("then INHERITED").contains("admin\"");
        assertThat(lines.get(2)).contains(LOGGER + " back to INHERITED from TRACE: set back by ");
        assertThat(lines.get(4)).contains("ROOT back to " + root + " from WARN: ran out (set by ")
            .contains("\"caller\":\"" + io.modelgate.gateway.diagnostics.Diagnostics.TIMER + "\"");
      });

      refused(() -> gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).setLevel("LOUD").build()),
          Status.Code.INVALID_ARGUMENT, "level: 'LOUD' (expected: one of TRACE, DEBUG, INFO, WARN, ERROR, OFF");
      // A name no logger has: taken, and said so.
      assertThat(gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("io.modelgate.gatway")
          .setLevel("DEBUG").build()).getLogLevelsList()).singleElement()
          .satisfies(level -> assertThat(level.getNote()).isEqualTo(
              io.modelgate.gateway.diagnostics.Diagnostics.NEW_LOGGER));
      gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("io.modelgate.gatway").build());
      // At most 100 at once.
      for (int i = 0; i < io.modelgate.gateway.diagnostics.Diagnostics.MOST_LOGGERS; i++) {
        gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("test.many.l" + i).setLevel("DEBUG").build());
      }
      refused(() -> gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("test.many.more").setLevel("DEBUG")
          .build()), Status.Code.FAILED_PRECONDITION, "100 loggers have a level set for a while, the most at once");
      for (int i = 0; i < io.modelgate.gateway.diagnostics.Diagnostics.MOST_LOGGERS; i++) {
        gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("test.many.l" + i).build());
      }
      refused(() -> gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger("a..b").setLevel("DEBUG").build()),
          Status.Code.INVALID_ARGUMENT, "logger: 'a..b' (expected: a logger's or package's name");
      refused(() -> gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).setLevel("DEBUG")
          .setForMs(Duration.ofHours(25).toMillis()).build()), Status.Code.INVALID_ARGUMENT, "(expected: up to 24h");
      assertThat(logger(LOGGER).getLevel()).isNull();

      // A level still set when the server stops is set back.
      gateway.admin().setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).setLevel("ERROR").build());
    }
    assertThat(logger(LOGGER).getLevel()).isNull();
  }

  @Test
  void aTraceSampleRateSetForAWhile_tracesCallsInNoTrace_untilSetBack_andNeedsAnEndpoint() throws Exception {
    // A collector that takes every export (an empty OTLP answer is a valid one).
    com.sun.net.httpserver.HttpServer collector =
        com.sun.net.httpserver.HttpServer.create(new java.net.InetSocketAddress("127.0.0.1", 0), 0);
    collector.createContext(TraceSettings.TRACES_PATH, exchange -> {
      exchange.getRequestBody().readAllBytes();
      exchange.getResponseHeaders().add("Content-Type", "application/x-protobuf");
      exchange.sendResponseHeaders(200, -1);
      exchange.close();
    });
    collector.start();
    try {
      tracedForAWhile(collector);
    } finally {
      collector.stop(0);
    }
    try (Gateway gateway = open(TraceSettings.OFF)) {
      assertThat(gateway.admin().getDiagnostics(GetDiagnosticsRequest.getDefaultInstance()).getTracing()).isFalse();
      refused(() -> gateway.admin().setTraceSampleRate(SetTraceSampleRateRequest.newBuilder().setSampleRate(1).build()),
          Status.Code.FAILED_PRECONDITION, "started without --trace-endpoint");
    }
  }

  private void tracedForAWhile(com.sun.net.httpserver.HttpServer collector) throws Exception {
    try (Gateway gateway = open(TraceSettings.to(URI.create("http://127.0.0.1:" + collector.getAddress().getPort()), 0))) {
      gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
      assertThat(gateway.server.tracing().spans("recorded")).isZero();
      Diagnostics set = gateway.admin().setTraceSampleRate(SetTraceSampleRateRequest.newBuilder()
          .setSampleRate(1).setForMs(Duration.ofHours(1).toMillis()).build());
      assertThat(set.getTraceSampleRate()).isEqualTo(1.0);
      assertThat(set.getTraceSampleRateConfigured()).isZero();
      assertThat(set.getTraceSampleRateSet().getSetBy()).endsWith("admin");
      assertThat(gateway.stats.scrape()).contains("modelgate_trace_sample_rate 1.0");
      gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
      assertThat(gateway.server.tracing().spans("recorded")).isEqualTo(2); // the call and its run of the model

      Diagnostics back = gateway.admin().setTraceSampleRate(SetTraceSampleRateRequest.newBuilder().setRestore(true).build());
      assertThat(back.getTraceSampleRate()).isZero();
      assertThat(back.hasTraceSampleRateSet()).isFalse();
      gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
      assertThat(gateway.server.tracing().spans("recorded")).isEqualTo(2);
      refused(() -> gateway.admin().setTraceSampleRate(SetTraceSampleRateRequest.newBuilder().setRestore(true).build()),
          Status.Code.FAILED_PRECONDITION, "nothing to set back");
      refused(() -> gateway.admin().setTraceSampleRate(SetTraceSampleRateRequest.newBuilder().setSampleRate(2).build()),
          Status.Code.INVALID_ARGUMENT, "sample_rate: 2.0 (expected: 0 to 1)");

      gateway.admin().setTraceSampleRate(SetTraceSampleRateRequest.newBuilder().setSampleRate(0.5).setForMs(200).build());
      // The rate goes back first, then the audit record is written: waited for both.
      eventually("the rate back to the server's, audited", () -> gateway.server.tracing().sampleRate() == 0
          && auditLines("SetTraceSampleRate") == 4);
      assertThat(audit("SetTraceSampleRate")).hasSize(4).satisfies(lines -> {
        assertThat(lines.get(0)).contains("1.0 for 1h").contains("then 0.0, the server").contains("--trace-sample-rate");
        assertThat(lines.get(1)).contains("back to 0.0 from 1.0: set back by ");
        assertThat(lines.get(3)).contains("back to 0.0 from 0.5: ran out (set by ");
      });
    }
  }

  @Test
  void aViewerReadsWhatIsSet_anOperatorSetsIt() throws Exception {
    String viewer = "viewer-token-0123456789abcdef";
    String operator = "operator-token-0123456789abcdef";
    Path tokens = Files.writeString(root.resolve("tokens.yaml"), "tokens:\n"
        + "  grafana: {hash: " + CallerPolicy.hash(viewer) + ", role: viewer}\n"
        + "  oncall: {hash: " + CallerPolicy.hash(operator) + ", role: operator}\n");
    try (Gateway gateway = Gateway.inProcessWithAdminTokens(root, tokens)) {
      assertThat(gateway.adminAs(viewer).getDiagnostics(GetDiagnosticsRequest.getDefaultInstance()).getLogLevelsCount())
          .isZero();
      refused(() -> gateway.adminAs(viewer).setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).setLevel("DEBUG")
          .build()), Status.Code.PERMISSION_DENIED, "SetLogLevel needs the role operator; token 'grafana' has viewer");
      assertThat(gateway.adminAs(operator).setLogLevel(SetLogLevelRequest.newBuilder().setLogger(LOGGER).setLevel("DEBUG")
          .build()).getLogLevels(0).getSetBy()).endsWith("token:oncall");
    }
    assertThat(logger(LOGGER).getLevel()).isNull();
  }
}

package io.modelgate.gateway.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ListValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.protobuf.util.JsonFormat;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Grafana dashboard and the Prometheus alert rules in {@code deploy/} against a real gateway:
 * every metric they use is one a real scrape exports (a FAILED version included), the dashboard is
 * well formed, and, where {@code promtool} is installed (CI installs it), every expression parses
 * as PromQL and the rules pass {@code promtool check rules} and their unit tests.
 */
class DeployArtifactsTest {
  private static final Path DEPLOY = Path.of("..", "deploy");
  private static final Path DASHBOARD = DEPLOY.resolve("grafana/modelgate-dashboard.json");
  private static final Path RULES = DEPLOY.resolve("prometheus/modelgate-alerts.yml");
  private static final Path RULE_TESTS = DEPLOY.resolve("prometheus/modelgate-alerts.test.yml");
  private static final Pattern METRIC =
      Pattern.compile("\\b((?:modelgate|jvm|process|grpc_server|system)_[a-z0-9_]+)\\b");

  @TempDir static Path root;
  static Gateway gateway;
  static Set<String> exported;

  @BeforeAll
  static void scrape() throws Exception {
    Gateway.write(root, "good", 1, Gateway.affine());
    Gateway.config(root, "good", "drift:\n  sample_rate: 1.0\n  reference: requests\n");
    Gateway.write(root, "broken", 1, "not a model".getBytes(StandardCharsets.UTF_8));
    // The admin port with TLS, so that the certificate's expiry and its file's reload failures are exported.
    gateway = Gateway.netty(root, 1 << 20,
        io.modelgate.gateway.testing.TestCertificates.create(Files.createDirectories(root.resolve("pki"))));
    gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("good").build());
    try {
      gateway.blocking().modelInfer(ModelInferRequest.newBuilder().setModelName("nowhere").build());
    } catch (io.grpc.StatusRuntimeException expected) {
      // Counted as rejected before routing.
    }
    // An admin call, on the admin port's own threads (modelgate-admin-*).
    gateway.admin().listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance());
    // The drift gauges appear once the profiler has seen the first request.
    gateway.server.drift().flush().get(10, TimeUnit.SECONDS);
    // jvm_gc_pause_seconds appears with the first collection, reported asynchronously.
    System.gc();
    String text = scrapeText();
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!text.contains("jvm_gc_pause_seconds_count") && System.nanoTime() < until) {
      Thread.sleep(20);
      text = scrapeText();
    }
    exported = new TreeSet<>();
    // Exported only by the replica that judges a fleet's rollouts (EtcdControlStoreTest scrapes them there).
    exported.addAll(io.modelgate.gateway.control.FleetDrift.SERIES);
    for (String line : text.lines().toList()) {
      if (!line.isEmpty() && !line.startsWith("#")) {
        int end = line.indexOf('{');
        exported.add(line.substring(0, end >= 0 ? end : line.indexOf(' ')));
      }
    }
  }

  private static String scrapeText() throws IOException, InterruptedException {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + gateway.server.metricsPort() + "/metrics"))
                .timeout(Duration.ofSeconds(10))
                .build(),
            HttpResponse.BodyHandlers.ofString())
        .body();
  }

  @AfterAll
  static void stop() {
    gateway.close();
  }

  private static Struct dashboard() throws IOException {
    Struct.Builder dashboard = Struct.newBuilder();
    JsonFormat.parser().merge(Files.readString(DASHBOARD), dashboard);
    return dashboard.build();
  }

  private static List<String> dashboardExpressions(Struct dashboard) {
    List<String> exprs = new ArrayList<>();
    for (Value panel : dashboard.getFieldsOrThrow("panels").getListValue().getValuesList()) {
      Struct p = panel.getStructValue();
      if (p.getFieldsOrThrow("type").getStringValue().equals("row")) {
        continue;
      }
      for (Value target : p.getFieldsOrThrow("targets").getListValue().getValuesList()) {
        exprs.add(target.getStructValue().getFieldsOrThrow("expr").getStringValue());
      }
    }
    return exprs;
  }

  private static Set<String> metricsIn(String text) {
    Set<String> names = new TreeSet<>();
    Matcher m = METRIC.matcher(text);
    while (m.find()) {
      names.add(m.group(1));
    }
    return names;
  }

  @Test
  void aRealScrape_hasTheDocumentedSeries_forFailedVersionsToo() {
    assertThat(exported)
        .contains(
            "modelgate_version_state",
            "modelgate_version_model_file",
            "modelgate_queue_depth",
            "modelgate_batch_large_total",
            "modelgate_queue_capacity",
            "modelgate_routing_weight",
            "modelgate_routing_revision",
            "modelgate_routing_degraded",
            "modelgate_model_folder_gone",
            "modelgate_rollout_running",
            "modelgate_rollout_step_percent",
            "modelgate_state_store_healthy",
            "modelgate_control_store_up",
            "modelgate_control_store_down_since_seconds",
            "modelgate_control_store_applied_revision",
            "modelgate_control_judge",
            "modelgate_rollouts_unjudged",
            "modelgate_requests_rejected_total",
            "modelgate_stats_memory_bytes",
            "modelgate_stats_rotation_failures_total",
            "modelgate_drift_score",
            "modelgate_drift_drifted",
            "modelgate_drift_threshold",
            "modelgate_drift_samples_total",
            "modelgate_usage_requests_total",
            "modelgate_usage_refused_total",
            "modelgate_usage_rows_total",
            "modelgate_usage_compute_seconds_total",
            "modelgate_usage_bytes_total",
            "modelgate_tls_certificate_expiry_timestamp_seconds",
            "modelgate_connections_opened_total",
            "modelgate_connections_open",
            "modelgate_config_reload_failures_total",
            "modelgate_threads_cpu_seconds_total",
            "modelgate_threads_run_queue_wait_seconds_total",
            "jvm_memory_used_bytes",
            "process_cpu_usage",
            "grpc_server_processing_duration_seconds_count");
  }

  @Test
  void theScrape_hasTheEventLoopsCpuAndWaits_byWhatTheThreadsDo() throws Exception {
    // Every group has both series, whatever ran.
    List<String> lines = scrapeText().lines().filter(line -> line.startsWith("modelgate_threads_")).toList();
    for (String group : List.of("event_loop", "model", "drift", "admin", "gc", "jit", "other")) {
      assertThat(lines).anyMatch(line -> line.startsWith("modelgate_threads_cpu_seconds_total{threads=\"" + group + "\"}"));
      assertThat(lines).anyMatch(line -> line.startsWith("modelgate_threads_run_queue_wait_seconds_total{threads=\"" + group + "\"}"));
    }
    // The call was read and answered on an event loop (modelgate-io-*) and batched and run on the
    // version's threads (modelgate-model-*), the admin call on the admin port's (modelgate-admin-*):
    // each group ran, by their names as the kernel keeps them.
    for (String group : List.of("event_loop", "model", "admin")) {
      String line = lines.stream().filter(l -> l.startsWith("modelgate_threads_cpu_seconds_total{threads=\"" + group + "\"}"))
          .findFirst().orElseThrow();
      assertThat(Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1))).as(group).isPositive();
    }
  }

  @Test
  void theScrape_saysWhichJavaRuntimeServes() throws Exception {
    assertThat(scrapeText().lines().filter(line -> line.startsWith("jvm_info{")).toList())
        .singleElement()
        .asString()
        .contains("version=\"" + System.getProperty("java.runtime.version") + "\"")
        .endsWith(" 1");
  }

  @Test
  void theDashboard_isWellFormed_andUsesOnlyExportedMetrics() throws Exception {
    Struct dashboard = dashboard();
    for (String field : List.of("uid", "title", "panels", "templating", "schemaVersion")) {
      assertThat(dashboard.containsFields(field)).as("dashboard field " + field).isTrue();
    }
    Set<Double> ids = new HashSet<>();
    for (Value panel : dashboard.getFieldsOrThrow("panels").getListValue().getValuesList()) {
      Struct p = panel.getStructValue();
      String title = p.getFieldsOrThrow("title").getStringValue();
      assertThat(ids.add(p.getFieldsOrThrow("id").getNumberValue())).as("unique id of " + title).isTrue();
      Struct grid = p.getFieldsOrThrow("gridPos").getStructValue();
      assertThat(grid.getFieldsOrThrow("w").getNumberValue() + grid.getFieldsOrThrow("x").getNumberValue())
          .as("width of " + title).isLessThanOrEqualTo(24);
      if (!p.getFieldsOrThrow("type").getStringValue().equals("row")) {
        ListValue targets = p.getFieldsOrThrow("targets").getListValue();
        assertThat(targets.getValuesCount()).as("targets of " + title).isPositive();
        assertThat(p.getFieldsOrThrow("datasource").getStructValue().getFieldsOrThrow("uid").getStringValue())
            .isEqualTo("${datasource}");
      }
    }
    List<String> exprs = dashboardExpressions(dashboard);
    assertThat(exprs).hasSizeGreaterThan(10);
    for (String expr : exprs) {
      assertThat(metricsIn(expr)).as(expr).isNotEmpty();
      assertThat(exported).as("metrics of " + expr).containsAll(metricsIn(expr));
    }
  }

  @Test
  void theAlertRules_useOnlyExportedMetrics() throws Exception {
    Set<String> used = metricsIn(Files.readString(RULES));
    assertThat(used).hasSizeGreaterThan(5);
    assertThat(exported).containsAll(used);
  }

  private static boolean promtoolPresent() {
    try {
      return new ProcessBuilder("promtool", "--version").redirectErrorStream(true).start().waitFor() == 0;
    } catch (IOException | InterruptedException e) {
      return false;
    }
  }

  private static String promtool(String... args) throws Exception {
    List<String> command = new ArrayList<>(List.of("promtool"));
    command.addAll(List.of(args));
    Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(process.exitValue()).as(String.join(" ", command) + ":\n" + output).isZero();
    return output;
  }

  @Test
  void promtool_checksTheRules_theirUnitTests_andEveryDashboardExpression() throws Exception {
    if (!promtoolPresent()) {
      // CI installs promtool (Debian's prometheus package) and must not skip this check.
      assertThat(System.getenv("CI")).as("promtool is required in CI").isNotEqualTo("true");
      return;
    }
    assertThat(promtool("check", "rules", RULES.toString())).contains("SUCCESS");
    assertThat(promtool("test", "rules", RULE_TESTS.toString())).contains("SUCCESS");
    // Every dashboard expression, with its template variables filled, as a recording rule.
    StringBuilder rules = new StringBuilder("groups:\n  - name: dashboard\n    rules:\n");
    int i = 0;
    for (String expr : dashboardExpressions(dashboard())) {
      String filled = expr.replace("$model", ".*").replace("\"", "\\\"");
      rules.append("      - record: dashboard:expr_").append(i++).append('\n')
          .append("        expr: \"").append(filled).append("\"\n");
    }
    Path file = root.resolve("dashboard-rules.yml");
    Files.writeString(file, rules);
    assertThat(promtool("check", "rules", file.toString())).contains("SUCCESS");
  }
}

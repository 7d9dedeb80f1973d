package io.modelgate.gateway.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.control.ControlSettings;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.yaml.snakeyaml.Yaml;

/**
 * The Kubernetes manifests in {@code deploy/kubernetes}: every one parses, passes the Kubernetes
 * API's schemas (npm's kubernetes-models, offline; CI installs it, elsewhere that part is skipped
 * unless it is installed), and fits the gateway: the flags it passes parse, the grace period
 * covers the stop sequence, probes are the right ones, Services and budgets select the pods.
 */
class KubernetesManifestsTest {
  private static final Path DIR = Path.of("..", "deploy", "kubernetes");
  private static final List<Map<String, Object>> objects = new ArrayList<>();

  @BeforeAll
  static void parse() throws IOException {
    try (Stream<Path> files = Files.list(DIR)) {
      for (Path file : files.filter(f -> f.toString().endsWith(".yaml")).sorted().toList()) {
        for (Object doc : new Yaml().loadAll(Files.readString(file))) {
          if (doc != null) {
            objects.add(map(doc));
          }
        }
      }
    }
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> map(Object o) {
    return (Map<String, Object>) o;
  }

  @SuppressWarnings("unchecked")
  private static List<Object> list(Object o) {
    return (List<Object>) o;
  }

  /** The value at a path of keys (and list indexes). */
  private static Object at(Object node, Object... path) {
    Object current = node;
    for (Object step : path) {
      current = step instanceof Integer i ? list(current).get(i) : map(current).get(step);
      if (current == null) {
        return null;
      }
    }
    return current;
  }

  private static Map<String, Object> object(String kind, String name) {
    return objects.stream()
        .filter(o -> kind.equals(o.get("kind")) && name.equals(at(o, "metadata", "name")))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no " + kind + " " + name + " in " + DIR));
  }

  @Test
  void everyManifestPassesTheKubernetesSchemas() throws Exception {
    Path validator = DIR.resolve("validate");
    if (!Files.isDirectory(validator.resolve("node_modules/kubernetes-models"))) {
      if ("true".equals(System.getenv("CI"))) {
        throw new AssertionError("kubernetes-models is not installed: npm install --prefix deploy/kubernetes/validate --no-package-lock");
      }
      Assumptions.abort("kubernetes-models not installed (npm install --prefix deploy/kubernetes/validate --no-package-lock)");
    }
    Process node = new ProcessBuilder("node", validator.resolve("validate.mjs").toString(), DIR.toString())
        .redirectErrorStream(true).start();
    String output = new String(node.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(node.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(node.exitValue()).as(output).isZero();
    assertThat(output).contains(objects.size() + " objects checked, 0 failed");
  }

  @Test
  void theKustomizationListsEveryManifest() throws IOException {
    List<Object> resources =
        list(objects.stream().filter(o -> "Kustomization".equals(o.get("kind"))).findFirst().orElseThrow().get("resources"));
    try (Stream<Path> files = Files.list(DIR)) {
      List<String> manifests = files.map(f -> f.getFileName().toString())
          .filter(n -> n.endsWith(".yaml") && !n.equals("kustomization.yaml")).sorted().toList();
      assertThat(resources).containsExactlyInAnyOrderElementsOf(manifests);
    }
  }

  @Test
  void theDeployment_fitsTheGateway() throws Exception {
    Map<String, Object> deployment = object("Deployment", "modelgate");
    Object pod = at(deployment, "spec", "template", "spec");
    Object container = at(pod, "containers", 0);
    List<String> args = list(at(container, "args")).stream().map(String::valueOf).toList();

    // The flags parse as the CLI parses them.
    String store = flag(args, "--control-store");
    assertThat(ControlSettings.parseStore(store)).hasSize(3);
    Duration delay = Duration.parse("PT" + flag(args, "--shutdown-delay").toUpperCase());
    Duration drain = Duration.parse("PT" + flag(args, "--drain-timeout").toUpperCase());
    // Connections end after a few minutes, so that clients find replicas added since (deploy/README.md).
    Duration age = Duration.parse("PT" + flag(args, "--max-connection-age").toUpperCase());
    assertThat(new io.modelgate.gateway.server.ConnectionSettings(age, null, Duration.ofMinutes(1), Duration.ofSeconds(10)).maxAge())
        .isBetween(Duration.ofMinutes(1), Duration.ofMinutes(30));
    int preStop = (Integer) at(container, "lifecycle", "preStop", "sleep", "seconds");
    int grace = (Integer) at(pod, "terminationGracePeriodSeconds");
    assertThat(grace).as("grace period covers preStop, shutdown delay and drain").isGreaterThan(preStop + (int) delay.toSeconds() + (int) drain.toSeconds());
    int readinessPeriod = (Integer) at(container, "readinessProbe", "periodSeconds");
    int readinessFailures = (Integer) at(container, "readinessProbe", "failureThreshold");
    assertThat(delay.toSeconds()).as("NOT_SERVING long enough for readiness to notice").isGreaterThanOrEqualTo((long) readinessPeriod * readinessFailures);

    // Readiness on gRPC health of the inference port; liveness on /livez, which stays up without READY models.
    assertThat(at(container, "readinessProbe", "grpc", "port")).isEqualTo(8001);
    assertThat(at(container, "livenessProbe", "httpGet", "path")).isEqualTo("/livez");
    assertThat(list(at(container, "ports")).stream().map(p -> at(p, "containerPort")).toList()).containsExactly(8001, 8002, 8003);
    assertThat(args).contains("--replica=$(POD_NAME)", "--admin-token-file=/etc/modelgate/admin-token", "--model-repository=/models");
    assertThat(at(pod, "securityContext", "runAsUser")).isEqualTo(10001);
    assertThat(at(container, "securityContext", "readOnlyRootFilesystem")).isEqualTo(true);
    assertThat(at(deployment, "spec", "template", "metadata", "annotations", "prometheus.io/scrape")).isEqualTo("true");
    assertThat(at(deployment, "spec", "template", "metadata", "annotations", "prometheus.io/port")).isEqualTo("8002");
    List<Object> volumes = list(at(pod, "volumes"));
    assertThat(volumes).anySatisfy(v -> assertThat(at(v, "secret", "secretName")).isEqualTo("modelgate-admin-token"));
    assertThat(resources(container)).containsKeys("cpu", "memory");

    // The Services and the budget select these pods; the gRPC one is headless.
    Object labels = at(deployment, "spec", "template", "metadata", "labels");
    Map<String, Object> grpc = object("Service", "modelgate");
    assertThat(at(grpc, "spec", "clusterIP")).isEqualTo("None");
    assertThat(map(labels)).containsAllEntriesOf(map(at(grpc, "spec", "selector")));
    assertThat(map(labels)).containsAllEntriesOf(map(at(object("Service", "modelgate-admin"), "spec", "selector")));
    assertThat(map(labels)).containsAllEntriesOf(map(at(object("PodDisruptionBudget", "modelgate"), "spec", "selector", "matchLabels")));

    // The etcd members are the ones --control-store names.
    Map<String, Object> etcd = object("StatefulSet", "etcd");
    assertThat(at(etcd, "spec", "replicas")).isEqualTo(3);
    for (int i = 0; i < 3; i++) {
      assertThat(store).contains("etcd-" + i + "." + at(etcd, "spec", "serviceName") + ":2379");
    }
  }

  @Test
  void theAutoscaler_scalesTheDeployment_withinWhatTheBudgetAndTheStopSequenceNeed() {
    Map<String, Object> deployment = object("Deployment", "modelgate");
    Map<String, Object> autoscaler = object("HorizontalPodAutoscaler", "modelgate");
    Object pod = at(deployment, "spec", "template", "spec");

    // It scales this Deployment, which leaves its replica count to it (an apply would reset it).
    assertThat(at(autoscaler, "spec", "scaleTargetRef", "kind")).isEqualTo("Deployment");
    assertThat(at(autoscaler, "spec", "scaleTargetRef", "apiVersion")).isEqualTo(deployment.get("apiVersion"));
    assertThat(at(autoscaler, "spec", "scaleTargetRef", "name")).isEqualTo(at(deployment, "metadata", "name"));
    assertThat(map(deployment.get("spec"))).doesNotContainKey("replicas");

    // A voluntary disruption at the minimum still leaves replicas serving.
    int min = (Integer) at(autoscaler, "spec", "minReplicas");
    int maxUnavailable = (Integer) at(object("PodDisruptionBudget", "modelgate"), "spec", "maxUnavailable");
    assertThat(min).isGreaterThan(maxUnavailable + 1);
    assertThat((Integer) at(autoscaler, "spec", "maxReplicas")).isGreaterThan(min);

    // On CPU utilisation, which needs the container's CPU request.
    Object metric = at(autoscaler, "spec", "metrics", 0);
    assertThat(at(metric, "resource", "name")).isEqualTo("cpu");
    assertThat((Integer) at(metric, "resource", "target", "averageUtilization")).isBetween(50, 90);
    assertThat(resources(at(pod, "containers", 0))).containsKey("cpu");

    // Scale-down takes one replica at a time, and the next only once the one before has had its
    // whole grace period to drain.
    int grace = (Integer) at(pod, "terminationGracePeriodSeconds");
    List<Object> down = list(at(autoscaler, "spec", "behavior", "scaleDown", "policies"));
    assertThat(down).allSatisfy(policy -> {
      assertThat(at(policy, "type")).isEqualTo("Pods");
      assertThat(at(policy, "value")).isEqualTo(1);
      assertThat((Integer) at(policy, "periodSeconds")).isGreaterThanOrEqualTo(grace);
    });
  }

  private static Map<String, Object> resources(Object container) {
    return map(at(container, "resources", "requests"));
  }

  private static String flag(List<String> args, String name) {
    return args.stream().filter(a -> a.startsWith(name + "=")).map(a -> a.substring(name.length() + 1)).findFirst()
        .orElseThrow(() -> new AssertionError("no " + name + " in " + args));
  }
}

package io.modelgate.gateway.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import inference.GrpcPredictV2;
import io.grpc.ManagedChannel;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.modelgate.gateway.demo.DemoRepository;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.HttpProbe;
import io.modelgate.gateway.testing.Tensors;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Runs the container image for real. {@code mvn -Pimage package} builds it and runs this test
 * after it (elsewhere it is skipped). Podman cannot start containers on the CI machines (no
 * cgroup v2, setrlimit refused), so the test does what a runtime does: unpacks the image's layers,
 * in order, into a root filesystem, gives it /proc and the few devices a JVM opens, and starts the
 * image's entrypoint and arguments there, chrooted, as the image's user, with the image's ports,
 * and the demo's models at {@code /models}. Then a client compiled from KServe's official proto,
 * gRPC health, and the HTTP probes check it, and it stops on SIGTERM.
 */
class ContainerImageTest {
  @Test
  void theImage_runsAsItsUser_fromScratch_andServesTheDemoMountedAtModels() throws Exception {
    String image = System.getProperty("modelgate.image");
    Assumptions.assumeTrue(image != null, "the image test runs with -Pimage, after the image is built");
    Path tar = Path.of(image);
    assertThat(tar).exists();
    Path work = tar.resolveSibling("image-run");
    Path rootfs = work.resolve("rootfs");
    Assumptions.assumeTrue("root".equals(System.getProperty("user.name")),
        "starting the image without a container runtime takes chroot and mount: run as root (CI does)");
    if (Files.isDirectory(rootfs.resolve("proc"))) {
      // A run killed before its cleanup: release its /proc before removing the tree.
      new ProcessBuilder("umount", "-l", rootfs.resolve("proc").toString()).start().waitFor();
    }
    run(List.of("rm", "-rf", work.toString()));
    Files.createDirectories(rootfs);
    Path oci = Files.createDirectories(work.resolve("oci"));
    run(List.of("tar", "-xf", tar.toString(), "-C", oci.toString()));

    // index -> manifest -> config and layers, as a runtime reads them.
    JsonObject index = json(oci.resolve("index.json"));
    JsonObject manifest = json(blob(oci, index.getAsJsonArray("manifests").get(0).getAsJsonObject()));
    JsonObject config = json(blob(oci, manifest.getAsJsonObject("config"))).getAsJsonObject("config");
    for (JsonElement layer : manifest.getAsJsonArray("layers")) {
      run(List.of("tar", "-xzf", blob(oci, layer.getAsJsonObject()).toString(), "-C", rootfs.toString()));
    }
    assertThat(config.get("User").getAsString()).isEqualTo("10001:10001");
    // The JVM options the launcher gives the same JDK (README, JVM options), in an argument file the
    // entrypoint names; the JVM refuses to start below if the image's runtime does not take them.
    assertThat(strings(config.getAsJsonArray("Entrypoint"))).contains("@/opt/java/modelgate-jvm-options");
    List<String> jvmOptions = Files.readAllLines(rootfs.resolve("opt/java/modelgate-jvm-options"));
    assertThat(jvmOptions).contains("-XX:MaxTenuringThreshold=2");
    if (Runtime.version().feature() >= 25) {  // the image's runtime is the building JDK's, this one
      assertThat(jvmOptions).contains("--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow",
          "-XX:+UseCompactObjectHeaders");
    }
    assertThat(config.getAsJsonObject("ExposedPorts").keySet()).containsExactlyInAnyOrder("8001/tcp", "8002/tcp", "8003/tcp");
    assertThat(config.getAsJsonObject("Volumes").keySet()).contains("/models");
    // Nothing but the runtime, its libraries, the application and a user: no shell, no package manager.
    assertThat(rootfs.resolve("bin/sh")).doesNotExist();
    assertThat(rootfs.resolve("models")).isEmptyDirectory();

    DemoRepository.materialize(rootfs.resolve("models"));
    // The inference port serves TLS, with a certificate mounted as an operator would mount one.
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(Files.createDirectories(work.resolve("pki")));
    Path tls = Files.createDirectories(rootfs.resolve("etc/modelgate-tls"));
    Files.copy(certs.serverChain, tls.resolve("server.pem"));
    Files.copy(certs.serverKey, tls.resolve("server.key"));
    for (Path file : new Path[] {tls.resolve("server.pem"), tls.resolve("server.key")}) {
      Files.setPosixFilePermissions(file, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
    }
    Files.createDirectories(rootfs.resolve("proc"));
    Files.createDirectories(rootfs.resolve("dev"));
    int grpc = freePort();
    int metrics = freePort();
    int admin = freePort();
    List<String> command = new ArrayList<>(List.of("env", "-i", "JAVA_TOOL_OPTIONS=-Xmx512m", onPath("chroot"), "--userspec=10001:10001", rootfs.toString()));
    command.addAll(strings(config.getAsJsonArray("Entrypoint")));
    command.addAll(strings(config.getAsJsonArray("Cmd")));
    command.addAll(List.of("--grpc-port", Integer.toString(grpc), "--metrics-port", Integer.toString(metrics), "--admin-port", Integer.toString(admin),
        "--tls-cert", "/etc/modelgate-tls/server.pem", "--tls-key", "/etc/modelgate-tls/server.key"));
    Process process = null;
    run(List.of("mount", "-t", "proc", "proc", rootfs.resolve("proc").toString()));
    try {
      for (String[] device : new String[][] {{"null", "1", "3"}, {"zero", "1", "5"}, {"random", "1", "8"}, {"urandom", "1", "9"}}) {
        run(List.of("mknod", "-m", "666", rootfs.resolve("dev").resolve(device[0]).toString(), "c", device[1], device[2]));
      }
      Path log = work.resolve("container.log");
      process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
      while (!HttpProbe.ready(metrics)) {
        assertThat(process.isAlive()).as("the container exited: %s", Files.readString(log)).isTrue();
        assertThat(System.nanoTime()).as("not ready within 90 s: %s", Files.readString(log)).isLessThan(deadline);
        Thread.sleep(200);
      }
      // It runs as the image's user, with the JVM options given through the environment.
      String status = Files.readString(Path.of("/proc", Long.toString(process.pid()), "status"));
      assertThat(status).containsPattern("Uid:\\s+10001\\s");
      assertThat(Files.readString(log)).contains("Picked up JAVA_TOOL_OPTIONS: -Xmx512m");
      // and a runtime told what the application does: no JVM warnings (native access, sun.misc.Unsafe
      // on JDK 24 and later) among the log's lines.
      assertThat(Files.readString(log)).doesNotContain("WARNING: ");
      // TLS runs on BoringSSL: its native library and what it links load from the image.
      assertThat(Files.readString(log)).contains("TLS through BoringSSL");

      ManagedChannel channel = io.grpc.Grpc.newChannelBuilderForAddress("localhost", grpc,
          io.grpc.TlsChannelCredentials.newBuilder().trustManager(certs.caCert.toFile()).build()).build();
      try {
        assertThat(HealthGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .check(HealthCheckRequest.newBuilder().setService("").build()).getStatus())
            .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
        inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub kserve =
            inference.GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
        assertThat(kserve.serverReady(GrpcPredictV2.ServerReadyRequest.getDefaultInstance()).getReady()).isTrue();
        assertThat(kserve.modelReady(GrpcPredictV2.ModelReadyRequest.newBuilder().setName("cnn_mnist").build()).getReady()).isTrue();
        int right = 0;
        for (int i = 0; i < 62; i++) {
          MnistDigits.Digit digit = MnistDigits.get(i);
          GrpcPredictV2.InferTensorContents.Builder contents = GrpcPredictV2.InferTensorContents.newBuilder();
          for (float p : digit.pixels()) {
            contents.addFp32Contents(p);
          }
          GrpcPredictV2.ModelInferResponse response = kserve.modelInfer(GrpcPredictV2.ModelInferRequest.newBuilder()
              .setModelName("cnn_mnist")
              .addInputs(GrpcPredictV2.ModelInferRequest.InferInputTensor.newBuilder()
                  .setName("input_image").setDatatype("FP32").addAllShape(List.of(1L, 1L, 28L, 28L)).setContents(contents))
              .build());
          if (Tensors.argmax(Tensors.floats(response.getRawOutputContents(0))) == digit.label()) {
            right++;
          }
        }
        assertThat(right).isEqualTo(62);
      } finally {
        channel.shutdownNow();
      }
      assertThat(HttpProbe.get(metrics, "/metrics")).contains("modelgate_version_state{model=\"cnn_mnist\",state=\"READY\",version=\"2\"} 1.0");

      process.destroy();
      assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
      assertThat(Files.readString(log)).contains("stopped");
    } finally {
      if (process != null && process.isAlive()) {
        process.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
      }
      run(List.of("umount", "-l", rootfs.resolve("proc").toString()));
    }
  }

  private static String onPath(String program) {
    for (String dir : (System.getenv().getOrDefault("PATH", "") + ":/usr/sbin:/sbin").split(":")) {
      if (Files.isExecutable(Path.of(dir, program))) {
        return Path.of(dir, program).toString();
      }
    }
    throw new AssertionError(program + " not found");
  }

  private static JsonObject json(Path file) throws IOException {
    return JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
  }

  private static Path blob(Path oci, JsonObject descriptor) {
    String[] digest = descriptor.get("digest").getAsString().split(":", 2);
    return oci.resolve("blobs").resolve(digest[0]).resolve(digest[1]);
  }

  private static List<String> strings(JsonArray array) {
    List<String> out = new ArrayList<>();
    if (array != null) {
      array.forEach(e -> out.add(e.getAsString()));
    }
    return out;
  }

  private static void run(List<String> command) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as("%s: %s", command, output).isZero();
  }

  private static int freePort() throws IOException {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }


}

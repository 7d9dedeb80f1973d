package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import java.io.OutputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Health follows readiness continuously, per server and per model, over gRPC and HTTP. */
class HealthTest {
  @TempDir Path root;
  Gateway gateway;
  final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

  @BeforeEach
  void start() throws Exception {
    Gateway.write(root, "a", 1, Gateway.affine());
    Gateway.write(root, "b", 1, Gateway.affine());
    gateway = Gateway.netty(root, 1 << 20);
  }

  @AfterEach
  void stop() {
    gateway.close();
  }

  private ServingStatus health(String service) {
    return HealthGrpc.newBlockingStub(gateway.channel)
        .check(HealthCheckRequest.newBuilder().setService(service).build())
        .getStatus();
  }

  private HttpResponse<String> get(String path) throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + gateway.server.metricsPort() + path))
            .timeout(Duration.ofSeconds(10))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  /** Makes the model's only version fail while serving: its batcher meets a defect. */
  private void fail(String model) throws Exception {
    io.modelgate.runtime.repository.ModelVersion version =
        gateway.repository.model(model).orElseThrow().version(1).orElseThrow();
    io.modelgate.runtime.repository.LoadedVersion loaded = version.serving();
    java.util.concurrent.CompletableFuture<Void> answered = new java.util.concurrent.CompletableFuture<>();
    loaded.scheduler().submit(
        io.modelgate.runtime.execution.InferenceRequest.of(
            io.modelgate.runtime.tensor.RequestDecoder.decode(
                io.modelgate.gateway.testing.Tensors.affine(1, 2, 3).setModelName(model).build(), loaded.signature()),
            System.nanoTime(),
            () -> {
              throw new IllegalStateException("defect");
            },
            new io.modelgate.runtime.execution.InferenceCallback() {
              @Override
              public void onSuccess(io.modelgate.runtime.execution.InferenceResult result) {
                answered.complete(null);
              }

              @Override
              public void onFailure(io.modelgate.runtime.error.InferenceException error) {
                answered.complete(null);
              }
            }));
    answered.get(10, java.util.concurrent.TimeUnit.SECONDS);
    long until = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(10);
    while (version.state() != io.modelgate.runtime.repository.VersionState.FAILED && System.nanoTime() < until) {
      Thread.sleep(5);
    }
  }

  @Test
  void health_followsVersionStates_overallAndPerModel() throws Exception {
    assertThat(health("")).isEqualTo(ServingStatus.SERVING);
    assertThat(health("inference.GRPCInferenceService")).isEqualTo(ServingStatus.SERVING);
    assertThat(health("a")).isEqualTo(ServingStatus.SERVING);
    assertThat(get("/readyz").statusCode()).isEqualTo(200);

    fail("a");
    assertThat(health("a")).isEqualTo(ServingStatus.NOT_SERVING);
    assertThat(health("b")).isEqualTo(ServingStatus.SERVING);
    assertThat(health("")).isEqualTo(ServingStatus.SERVING);

    fail("b");
    // No READY version left: not ready, but alive.
    assertThat(health("")).isEqualTo(ServingStatus.NOT_SERVING);
    assertThat(health("inference.GRPCInferenceService")).isEqualTo(ServingStatus.NOT_SERVING);
    HttpResponse<String> readyz = get("/readyz");
    assertThat(readyz.statusCode()).isEqualTo(503);
    assertThat(readyz.body()).contains("no model version is READY");
    assertThat(get("/livez").statusCode()).isEqualTo(200);

    gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("b").setVersion(1).build());
    assertThat(health("")).isEqualTo(ServingStatus.SERVING);
    assertThat(health("b")).isEqualTo(ServingStatus.SERVING);
    assertThat(get("/readyz").statusCode()).isEqualTo(200);
  }

  @Test
  void aHalfSentHttpRequest_doesNotBlockOtherScrapes() throws Exception {
    try (Socket slow = new Socket("127.0.0.1", gateway.server.metricsPort())) {
      OutputStream out = slow.getOutputStream();
      out.write("GET /metr".getBytes(StandardCharsets.US_ASCII));
      out.flush();
      for (int i = 0; i < 3; i++) {
        HttpResponse<String> metrics = get("/metrics");
        assertThat(metrics.statusCode()).isEqualTo(200);
        assertThat(metrics.body()).contains("modelgate_requests_total");
      }
    }
    assertThat(get("/nowhere").statusCode()).isEqualTo(404);
  }
}

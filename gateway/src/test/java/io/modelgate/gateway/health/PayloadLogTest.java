package io.modelgate.gateway.health;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.util.JsonFormat;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.health.v1.PayloadRecord;
import io.modelgate.proto.inference.ModelInferRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Sampled payload logs, end to end through the gateway: every sampled request and its answer as
 * one JSON line; the sample rate holds; redaction keeps the shape and drops the data; files rotate
 * and the oldest go; a disk that is full fails no request.
 */
class PayloadLogTest {
  @TempDir Path root;

  private void model(String name, String payloadLog) throws Exception {
    Gateway.write(root, name, 1, Gateway.affine());
    Files.writeString(root.resolve(name).resolve("model.yaml"), "max_batch_size: 0\npayload_log:\n" + payloadLog);
  }

  private Path logs(String model) {
    return root.resolve(".state/payloads").resolve(model);
  }

  private static List<PayloadRecord> records(Path dir) throws Exception {
    List<PayloadRecord> records = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return records;
    }
    try (Stream<Path> files = Files.list(dir)) {
      for (Path file : files.sorted().toList()) {
        for (String line : Files.readAllLines(file)) {
          PayloadRecord.Builder record = PayloadRecord.newBuilder();
          JsonFormat.parser().merge(line, record);
          records.add(record.build());
        }
      }
    }
    return records;
  }

  private static ModelInferRequest request(String model, int i) {
    return Tensors.affine(i, i + 1, i + 2).setModelName(model).setId("r" + i).build();
  }

  @Test
  void everySampledRequest_isOneJsonLine_withItsAnswer_andRedactedTensorsKeepTheirShapeButNotTheirData() throws Exception {
    model("all", "  sample_rate: 1.0\n");
    model("redacted", "  sample_rate: 1.0\n  drop: [x]\n  tensors: [y]\n");
    model("none", "  sample_rate: 0\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      for (int i = 0; i < 20; i++) {
        for (String model : List.of("all", "redacted", "none")) {
          gateway.blocking().modelInfer(request(model, i));
        }
      }
      // A request that fails is logged with its status.
      assertThatThrownBy(() -> gateway.blocking().modelInfer(ModelInferRequest.newBuilder().setModelName("all").setId("bad")
              .addInputs(Tensors.input("x", "FP32", 1, 4)).addRawInputContents(Tensors.rawFloats(1, 2, 3, 4)).build()))
          .isInstanceOf(StatusRuntimeException.class);
    }
    List<PayloadRecord> all = records(logs("all"));
    assertThat(all).hasSize(21);
    PayloadRecord first = all.stream().filter(r -> r.getId().equals("r3")).findFirst().orElseThrow();
    assertThat(first.getModel()).isEqualTo("all");
    assertThat(first.getVersion()).isEqualTo("1");
    assertThat(first.getStatus()).isEqualTo("OK");
    assertThat(first.getLatencyMs()).isPositive();
    assertThat(first.getTime()).isNotEmpty();
    // The caller is the peer (in-process here), not the server itself.
    assertThat(first.getCaller()).isNotEmpty().isNotEqualTo("internal");
    assertThat(first.getTenant()).isEqualTo("anonymous");
    assertThat(first.getRequest().getInputs(0).getContents().getFp32ContentsList()).containsExactly(3f, 4f, 5f);
    assertThat(Tensors.floats(first.getResponse().getRawOutputContents(0))).hasSize(3);
    assertThat(first.getResponse().getOutputsList()).extracting(o -> o.getName()).containsExactlyInAnyOrder("y", "z");
    PayloadRecord bad = all.stream().filter(r -> r.getId().equals("bad")).findFirst().orElseThrow();
    assertThat(bad.getStatus()).isEqualTo("INVALID_ARGUMENT");
    assertThat(bad.getMessage()).isNotEmpty();
    assertThat(bad.hasResponse()).isFalse();

    List<PayloadRecord> redacted = records(logs("redacted"));
    assertThat(redacted).hasSize(20);
    for (PayloadRecord r : redacted) {
      // x: name, type and shape, no data.
      assertThat(r.getRequest().getInputs(0).getName()).isEqualTo("x");
      assertThat(r.getRequest().getInputs(0).getShapeList()).containsExactly(1L, 3L);
      assertThat(r.getRequest().getInputs(0).getContents().getFp32ContentsCount()).isZero();
      for (int o = 0; o < r.getResponse().getOutputsCount(); o++) {
        boolean y = r.getResponse().getOutputs(o).getName().equals("y");
        assertThat(r.getResponse().getRawOutputContents(o).isEmpty()).as(r.getResponse().getOutputs(o).getName()).isEqualTo(!y);
      }
    }
    assertThat(records(logs("none"))).isEmpty();
  }

  /** Whether this process holds {@code file} open (Linux: its descriptors in /proc). */
  private static boolean heldOpen(Path file) {
    try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
      return fds.anyMatch(fd -> {
        try {
          return Files.readSymbolicLink(fd).equals(file.toAbsolutePath());
        } catch (Exception gone) {
          return false; // closed meanwhile, or the listing's own
        }
      });
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  void aModelRemovedFromTheRepository_closesItsFile_andTakesItsCounters_itsRecordsStay() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(Files.isDirectory(Path.of("/proc/self/fd")), "Linux: open files in /proc");
    model("gone", "  sample_rate: 1.0\n");
    model("kept", "  sample_rate: 1.0\n");
    io.modelgate.gateway.testing.TestClock clock = new io.modelgate.gateway.testing.TestClock();
    try (Gateway gateway = Gateway.inProcess(root, java.time.Duration.ofSeconds(10), root.resolve(".state"), clock)) {
      for (int i = 0; i < 3; i++) {
        gateway.blocking().modelInfer(request("gone", i));
        gateway.blocking().modelInfer(request("kept", i));
      }
      Path current = logs("gone").resolve(PayloadLog.CURRENT);
      io.modelgate.gateway.testing.Eventually.eventually("three records of each model written", () ->
          gateway.stats.scrape().contains("modelgate_payload_log_records_total{model=\"gone\",outcome=\"written\"} 3.0")
              && gateway.stats.scrape().contains("modelgate_payload_log_records_total{model=\"kept\",outcome=\"written\"} 3.0"));
      assertThat(heldOpen(current)).isTrue();

      Gateway.deleteModel(root, "gone");
      gateway.blocking().withCallCredentials(Gateway.bearer(Gateway.ADMIN_TOKEN)).repositoryModelUnload(
          io.modelgate.proto.inference.RepositoryModelUnloadRequest.newBuilder().setModelName("gone").build());
      clock.millis += io.modelgate.gateway.server.VersionRetirement.AFTER.toMillis();
      gateway.stats.rotate();
      assertThat(gateway.repository.model("gone")).isEmpty();
      assertThat(gateway.stats.scrape()).doesNotContain("modelgate_payload_log_records_total{model=\"gone\"")
          .contains("modelgate_payload_log_records_total{model=\"kept\",outcome=\"written\"} 3.0");
      io.modelgate.gateway.testing.Eventually.eventually("the removed model's file closed", () -> !heldOpen(current));
      assertThat(heldOpen(logs("kept").resolve(PayloadLog.CURRENT))).isTrue();
      assertThat(records(logs("gone"))).extracting(PayloadRecord::getId).containsExactly("r0", "r1", "r2");
    }
  }

  @Test
  void streamedAnswers_areLoggedAsUnaryOnesAre_failuresWithTheirStatus() throws Exception {
    model("streamed", "  sample_rate: 1.0\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      java.util.concurrent.CopyOnWriteArrayList<io.modelgate.proto.inference.ModelStreamInferResponse> answers =
          new java.util.concurrent.CopyOnWriteArrayList<>();
      java.util.concurrent.CompletableFuture<io.grpc.Status> end = new java.util.concurrent.CompletableFuture<>();
      io.grpc.stub.StreamObserver<ModelInferRequest> requests = gateway.async().modelStreamInfer(
          new io.grpc.stub.StreamObserver<>() {
            @Override
            public void onNext(io.modelgate.proto.inference.ModelStreamInferResponse value) {
              answers.add(value);
            }

            @Override
            public void onError(Throwable t) {
              end.complete(io.grpc.Status.fromThrowable(t));
            }

            @Override
            public void onCompleted() {
              end.complete(io.grpc.Status.OK);
            }
          });
      for (int i = 0; i < 5; i++) {
        requests.onNext(request("streamed", i));
      }
      requests.onNext(ModelInferRequest.newBuilder().setModelName("streamed").setId("bad")
          .addInputs(Tensors.input("x", "FP32", 1, 4)).addRawInputContents(Tensors.rawFloats(1, 2, 3, 4)).build());
      requests.onCompleted();
      assertThat(end.get(30, java.util.concurrent.TimeUnit.SECONDS).isOk()).isTrue();
      assertThat(answers).hasSize(6);
    }
    List<PayloadRecord> logged = records(logs("streamed"));
    assertThat(logged).hasSize(6);
    PayloadRecord ok = logged.stream().filter(r -> r.getId().equals("r2")).findFirst().orElseThrow();
    assertThat(ok.getStatus()).isEqualTo("OK");
    assertThat(ok.getRequest().getInputs(0).getContents().getFp32ContentsList()).containsExactly(2f, 3f, 4f);
    assertThat(ok.getResponse().getId()).isEqualTo("r2");
    assertThat(ok.getResponse().getOutputsList()).extracting(o -> o.getName()).containsExactlyInAnyOrder("y", "z");
    assertThat(Tensors.floats(ok.getResponse().getRawOutputContents(0))).hasSize(3);
    PayloadRecord bad = logged.stream().filter(r -> r.getId().equals("bad")).findFirst().orElseThrow();
    assertThat(bad.getStatus()).isEqualTo("INVALID_ARGUMENT");
    assertThat(bad.hasResponse()).isFalse();
  }

  @Test
  void theSampleRateHolds() throws Exception {
    model("quarter", "  sample_rate: 0.25\n");
    int requests = 2000;
    try (Gateway gateway = Gateway.inProcess(root)) {
      for (int i = 0; i < requests; i++) {
        gateway.blocking().modelInfer(request("quarter", i));
      }
    }
    // Binomial(2000, 0.25): mean 500, standard deviation 19.4; five of them either side.
    assertThat(records(logs("quarter")).size()).isBetween(403, 597);
  }

  @Test
  void filesRotateBySize_andOnlyTheNewestAreKept() throws Exception {
    model("small", "  sample_rate: 1.0\n  max_file_kb: 1\n  max_files: 2\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      for (int i = 0; i < 60; i++) {
        gateway.blocking().modelInfer(request("small", i));
      }
    }
    List<Path> files;
    try (Stream<Path> listed = Files.list(logs("small"))) {
      files = listed.sorted().toList();
    }
    // Two rotated files and the current one.
    assertThat(files).extracting(p -> p.getFileName().toString())
        .hasSize(3)
        .contains(io.modelgate.gateway.health.PayloadLog.CURRENT)
        .filteredOn(n -> !n.equals(io.modelgate.gateway.health.PayloadLog.CURRENT))
        .allMatch(n -> n.matches("payloads-\\d{8}-\\d{6}-\\d{3}-\\d{6}\\.jsonl"));
    for (Path file : files) {
      assertThat(Files.size(file)).isLessThanOrEqualTo(2048);
    }
    List<PayloadRecord> kept = records(logs("small"));
    assertThat(kept.size()).isBetween(1, 59);
    // The newest are kept: the last request is there.
    assertThat(kept).extracting(PayloadRecord::getId).contains("r59");
  }

  @Test
  void aFullDisk_failsNoRequest_andIsCounted() throws Exception {
    model("full", "  sample_rate: 1.0\n");
    Path dir = Files.createDirectories(logs("full"));
    Files.createSymbolicLink(dir.resolve(io.modelgate.gateway.health.PayloadLog.CURRENT), Path.of("/dev/full"));
    String scrape;
    try (Gateway gateway = Gateway.inProcess(root)) {
      for (int i = 0; i < 30; i++) {
        assertThat(gateway.blocking().modelInfer(request("full", i)).getModelVersion()).isEqualTo("1");
      }
      long deadline = System.nanoTime() + 30_000_000_000L;
      do {
        scrape = gateway.stats.scrape();
        Thread.sleep(10);
      } while (!scrape.contains("modelgate_payload_log_records_total{model=\"full\",outcome=\"failed\"} 30.0")
          && System.nanoTime() < deadline);
    }
    assertThat(scrape).contains("modelgate_payload_log_records_total{model=\"full\",outcome=\"failed\"} 30.0");
  }
}

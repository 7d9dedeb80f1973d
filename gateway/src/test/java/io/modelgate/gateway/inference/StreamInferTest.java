package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.StreamCollector;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StreamInferTest {
  @TempDir static Path root;
  static Gateway gateway;

  @BeforeAll
  static void start() throws IOException {
    gateway = Gateway.inProcess(Gateway.standardRepository(root));
  }

  @AfterAll
  static void stop() {
    gateway.close();
  }

  private static ModelInferRequest bad(String id) {
    return ModelInferRequest.newBuilder()
        .setModelName("affine")
        .setId(id)
        .addInputs(Tensors.input("x", "FP32", 1, 2))
        .addRawInputContents(Tensors.rawFloats(1, 2))
        .build();
  }

  @Test
  void goodBadGood_theFailureIsInBand_andTheStreamStaysOpen() throws Exception {
    StreamCollector collector = new StreamCollector();
    StreamObserver<ModelInferRequest> requests = gateway.async().modelStreamInfer(collector);

    requests.onNext(Tensors.affine(1, 2, 3).setId("first").build());
    ModelStreamInferResponse first = collector.next();
    requests.onNext(bad("second"));
    ModelStreamInferResponse second = collector.next();
    requests.onNext(Tensors.affine(4, 5, 6).setId("third").build());
    ModelStreamInferResponse third = collector.next();
    requests.onCompleted();

    assertThat(first.getErrorMessage()).isEmpty();
    assertThat(first.getInferResponse().getId()).isEqualTo("first");
    assertThat(first.getInferResponse().getModelVersion()).isEqualTo("1");
    assertThat(Tensors.floats(first.getInferResponse().getRawOutputContents(0))).containsExactly(3, 5, 7);

    assertThat(second.getErrorMessage())
        .isEqualTo("input 'x': shape [1,2] has 2 at dimension 1 (expected: 3, model shape [-1,3])");
    assertThat(second.getInferResponse().getId()).isEqualTo("second");
    assertThat(second.getInferResponse().getModelName()).isEqualTo("affine");
    assertThat(second.getInferResponse().getParametersMap().get("error_code").getStringParam())
        .isEqualTo("INVALID_ARGUMENT");
    assertThat(second.getInferResponse().getRawOutputContentsCount()).isZero();

    assertThat(third.getErrorMessage()).isEmpty();
    assertThat(third.getInferResponse().getId()).isEqualTo("third");
    assertThat(Tensors.floats(third.getInferResponse().getRawOutputContents(0))).containsExactly(9, 11, 13);

    assertThat(collector.end.get(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);
  }

  @Test
  void manyRequestsInFlight_allAnswered_thenTheStreamCompletes() throws Exception {
    StreamCollector collector = new StreamCollector();
    StreamObserver<ModelInferRequest> requests = gateway.async().modelStreamInfer(collector);
    int n = 300;
    for (int i = 0; i < n; i++) {
      requests.onNext(
          i % 10 == 3 ? bad("r" + i) : Tensors.affine(i, 0, 0).setId("r" + i).build());
    }
    requests.onCompleted();
    assertThat(collector.end.get(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);
    List<ModelStreamInferResponse> all = List.copyOf(collector.responses);
    assertThat(all).hasSize(n);
    assertThat(all.stream().map(r -> r.getInferResponse().getId()).distinct().count()).isEqualTo(n);
    for (ModelStreamInferResponse response : all) {
      int i = Integer.parseInt(response.getInferResponse().getId().substring(1));
      if (i % 10 == 3) {
        assertThat(response.getErrorMessage()).isNotEmpty();
      } else {
        assertThat(Tensors.floats(response.getInferResponse().getRawOutputContents(1))[0]).isEqualTo(2f * i);
      }
    }
  }

  @Test
  void unknownModelInAStream_isReportedInBand() throws Exception {
    StreamCollector collector = new StreamCollector();
    StreamObserver<ModelInferRequest> requests = gateway.async().modelStreamInfer(collector);
    requests.onNext(Tensors.affine(1, 2, 3).setModelName("nope").setId("x").build());
    ModelStreamInferResponse response = collector.next();
    requests.onCompleted();
    assertThat(response.getErrorMessage()).startsWith("unknown model 'nope'");
    assertThat(response.getInferResponse().getId()).isEqualTo("x");
    assertThat(response.getInferResponse().getParametersMap().get("error_code").getStringParam())
        .isEqualTo("NOT_FOUND");
    assertThat(collector.end.get(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);
  }

  @Test
  void tritonGrpcErrorHeader_endsTheStreamWithTheStatus() throws Exception {
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("triton_grpc_error", Metadata.ASCII_STRING_MARSHALLER), "true");
    StreamCollector collector = new StreamCollector();
    StreamObserver<ModelInferRequest> requests =
        gateway
            .async()
            .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers))
            .modelStreamInfer(collector);
    requests.onNext(Tensors.affine(1, 2, 3).setId("ok").build());
    assertThat(collector.next().getErrorMessage()).isEmpty();
    requests.onNext(bad("bad"));
    Status end = collector.end.get(30, TimeUnit.SECONDS);
    assertThat(end.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
    assertThat(end.getDescription()).contains("input 'x'");
    assertThat(collector.responses).isEmpty();
    try {
      requests.onNext(Tensors.affine(1, 2, 3).build());
    } catch (IllegalStateException | StatusRuntimeException e) {
      // A closed call may refuse further messages; either way nothing more arrives.
    }
  }
}

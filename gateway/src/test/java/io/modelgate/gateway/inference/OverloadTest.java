package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Overload is refused at once, on the request's own thread, and never queued beyond capacity. */
class OverloadTest {
  @TempDir Path root;

  record Outcome(Status status, boolean answeredDuringTheCall, Thread thread, Throwable error) {}

  private static final io.grpc.Metadata.Key<String> PUSHBACK =
      io.grpc.Metadata.Key.of("grpc-retry-pushback-ms", io.grpc.Metadata.ASCII_STRING_MARSHALLER);

  @Test
  void aFullQueue_refusesOnTheRequestThread_beforeTheCallReturns() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Gateway.config(root, "slow", "max_batch_size: 0\nqueue_capacity: 2\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      ModelInferRequest request =
          ModelInferRequest.newBuilder()
              .setModelName("slow")
              .addInputs(Tensors.input("x", "FP32", 1, 3))
              .addRawInputContents(Tensors.rawFloats(1, 2, 3))
              .build();
      List<CompletableFuture<Outcome>> outcomes = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        CompletableFuture<Outcome> outcome = new CompletableFuture<>();
        boolean[] inCall = {true};
        // In-process with direct executors, the service runs inside this call on this thread.
        gateway.async().modelInfer(
            request,
            new StreamObserver<ModelInferResponse>() {
              @Override
              public void onNext(ModelInferResponse value) {}

              @Override
              public void onError(Throwable t) {
                outcome.complete(new Outcome(Status.fromThrowable(t), inCall[0], Thread.currentThread(), t));
              }

              @Override
              public void onCompleted() {
                outcome.complete(new Outcome(Status.OK, inCall[0], Thread.currentThread(), null));
              }
            });
        inCall[0] = false;
        outcomes.add(outcome);
      }
      int refused = 0;
      int ok = 0;
      for (CompletableFuture<Outcome> outcome : outcomes) {
        Outcome o = outcome.get(60, TimeUnit.SECONDS);
        if (o.status().getCode() == Status.Code.RESOURCE_EXHAUSTED) {
          refused++;
          assertThat(o.answeredDuringTheCall()).as("refused before the call returned").isTrue();
          assertThat(o.thread()).isSameAs(Thread.currentThread());
          assertThat(o.status().getDescription()).contains("queue of 2 requests is full");
          // It says when to retry, both ways a client may read it.
          com.google.rpc.RetryInfo retry = io.grpc.protobuf.StatusProto.fromThrowable(o.error()).getDetails(0)
              .unpack(com.google.rpc.RetryInfo.class);
          assertThat(retry.getRetryDelay().getSeconds() * 1_000_000_000L + retry.getRetryDelay().getNanos())
              .isBetween(1_000_000L, 10_000_000_000L);
          assertThat(Long.parseLong(Status.trailersFromThrowable(o.error()).get(PUSHBACK))).isBetween(1L, 10_000L);
        } else {
          assertThat(o.status().getCode()).isEqualTo(Status.Code.OK);
          ok++;
        }
      }
      // One runs while two wait; sent faster than the model runs, most are refused (how many
      // depends on the machine; that each refusal is immediate does not).
      assertThat(refused).isPositive();
      assertThat(ok).isGreaterThanOrEqualTo(3);
      assertThat(refused + ok).isEqualTo(200);
    }
  }

  /**
   * A stock grpc-java client whose retry policy lists RESOURCE_EXHAUSTED, and nothing else of
   * ours, gets through a full queue: each refusal carries {@code grpc-retry-pushback-ms}, which the
   * client obeys instead of its own backoff (set here to 20 s, past the calls' deadline, so only
   * pushback can retry them in time).
   */
  @Test
  void aStockClientWithARetryPolicy_retriesWhenTheRefusalSays_andEveryCallIsServed() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Gateway.config(root, "slow", "max_batch_size: 0\nqueue_capacity: 1\n");
    try (Gateway gateway = Gateway.netty(root, 64 << 20)) {
      ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("slow")
          .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3)).build();
      // One call first, so that the version's pace is known and the hint is the queue's time.
      gateway.blocking().modelInfer(request);
      java.util.Map<String, Object> retryPolicy = java.util.Map.of(
          "maxAttempts", 5.0, "initialBackoff", "20s", "maxBackoff", "20s", "backoffMultiplier", 1.0,
          "retryableStatusCodes", List.of("RESOURCE_EXHAUSTED"));
      java.util.Map<String, Object> serviceConfig = java.util.Map.of("methodConfig", List.of(java.util.Map.of(
          "name", List.of(java.util.Map.of("service", "inference.GRPCInferenceService", "method", "ModelInfer")),
          "retryPolicy", retryPolicy)));
      io.grpc.ManagedChannel retrying = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", gateway.server.port())
          .usePlaintext().defaultServiceConfig(serviceConfig).enableRetry().build();
      try {
        java.util.concurrent.atomic.AtomicInteger refusedAttempts = new java.util.concurrent.atomic.AtomicInteger();
        java.util.Set<String> pushbacks = java.util.concurrent.ConcurrentHashMap.newKeySet();
        io.grpc.ClientStreamTracer.Factory attempts = new io.grpc.ClientStreamTracer.Factory() {
          @Override
          public io.grpc.ClientStreamTracer newClientStreamTracer(io.grpc.ClientStreamTracer.StreamInfo info,
              io.grpc.Metadata headers) {
            return new io.grpc.ClientStreamTracer() {
              @Override
              public void inboundTrailers(io.grpc.Metadata trailers) {
                String pushback = trailers.get(PUSHBACK);
                if (pushback != null) {
                  refusedAttempts.incrementAndGet();
                  pushbacks.add(pushback);
                }
              }
            };
          }
        };
        io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceFutureStub stub =
            io.modelgate.proto.inference.GRPCInferenceServiceGrpc.newFutureStub(retrying)
                .withInterceptors(new io.grpc.ClientInterceptor() {
                  @Override
                  public <Q, R> io.grpc.ClientCall<Q, R> interceptCall(io.grpc.MethodDescriptor<Q, R> method,
                      io.grpc.CallOptions options, io.grpc.Channel next) {
                    return next.newCall(method, options.withStreamTracerFactory(attempts));
                  }
                })
                .withDeadlineAfter(15, TimeUnit.SECONDS);
        // One runs and one waits; the rest are refused at first, more than once some of them.
        List<com.google.common.util.concurrent.ListenableFuture<ModelInferResponse>> calls = new ArrayList<>();
        for (int round = 0; round < 3 && refusedAttempts.get() == 0; round++) {
          calls.clear();
          for (int i = 0; i < 4; i++) {
            calls.add(stub.modelInfer(request));
          }
          for (var call : calls) {
            assertThat(call.get(30, TimeUnit.SECONDS).getOutputsCount()).isEqualTo(2);
          }
        }
        assertThat(refusedAttempts.get()).as("attempts refused, then retried").isPositive();
        assertThat(pushbacks).allSatisfy(ms -> assertThat(Long.parseLong(ms)).isBetween(1L, 10_000L));
      } finally {
        retrying.shutdownNow();
      }
    }
  }

  /**
   * A stream's refusals say when to retry too: in-band, in the {@code retry_after_ms} response
   * parameter; and, when the client asked that errors end the stream, in the same trailers a unary
   * refusal has.
   */
  @Test
  void aStreamsRefusals_sayWhenToRetry_inBandAndWhenTheErrorEndsTheStream() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine());
    Gateway.config(root, "slow", "max_batch_size: 0\nqueue_capacity: 2\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      ModelInferRequest.Builder request = ModelInferRequest.newBuilder().setModelName("slow")
          .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3));
      io.modelgate.gateway.testing.StreamCollector collector = new io.modelgate.gateway.testing.StreamCollector();
      java.util.Collection<io.modelgate.proto.inference.ModelStreamInferResponse> responses = collector.responses;
      CompletableFuture<Status> end = collector.end;
      StreamObserver<ModelInferRequest> stream = gateway.async().modelStreamInfer(collector);
      for (int i = 0; i < 50; i++) {
        stream.onNext(request.setId("r" + i).build());
      }
      stream.onCompleted();
      assertThat(end.get(60, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);
      int refused = 0;
      for (io.modelgate.proto.inference.ModelStreamInferResponse response : responses) {
        ModelInferResponse answer = response.getInferResponse();
        if (response.getErrorMessage().isEmpty()) {
          assertThat(answer.getParametersMap()).doesNotContainKey(InferenceService.RETRY_AFTER_MS_PARAMETER);
          continue;
        }
        refused++;
        assertThat(response.getErrorMessage()).contains("queue of 2 requests is full");
        assertThat(answer.getParametersOrThrow(InferenceService.ERROR_CODE_PARAMETER).getStringParam())
            .isEqualTo("RESOURCE_EXHAUSTED");
        assertThat(answer.getParametersOrThrow(InferenceService.RETRY_AFTER_MS_PARAMETER).getInt64Param())
            .isBetween(1L, 10_000L);
      }
      assertThat(responses).hasSize(50);
      assertThat(refused).isPositive();

      io.grpc.Metadata headers = new io.grpc.Metadata();
      headers.put(io.grpc.Metadata.Key.of("triton_grpc_error", io.grpc.Metadata.ASCII_STRING_MARSHALLER), "true");
      CompletableFuture<Status> aborted = new CompletableFuture<>();
      java.util.concurrent.atomic.AtomicReference<Throwable> error = new java.util.concurrent.atomic.AtomicReference<>();
      StreamObserver<ModelInferRequest> strict = gateway.async()
          .withInterceptors(io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(headers))
          .modelStreamInfer(new StreamObserver<>() {
            @Override
            public void onNext(io.modelgate.proto.inference.ModelStreamInferResponse value) {}

            @Override
            public void onError(Throwable t) {
              error.set(t);
              aborted.complete(Status.fromThrowable(t));
            }

            @Override
            public void onCompleted() {
              aborted.complete(Status.OK);
            }
          });
      for (int i = 0; i < 50 && !aborted.isDone(); i++) {
        strict.onNext(request.setId("s" + i).build());
      }
      assertThat(aborted.get(60, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
      assertThat(Long.parseLong(Status.trailersFromThrowable(error.get()).get(PUSHBACK))).isBetween(1L, 10_000L);
      assertThat(io.grpc.protobuf.StatusProto.fromThrowable(error.get()).getDetails(0)
          .is(com.google.rpc.RetryInfo.class)).isTrue();
    }
  }

  @Test
  void requestsPastTheServersRequestMemory_areRefusedAtOnce_andTheirBytesAreLetGoWhenAnswered() throws Exception {
    Gateway.write(root, "slow", 1, Gateway.slowAffine(300));
    Gateway.config(root, "slow", "max_batch_size: 0\nqueue_capacity: 64\n");
    ModelInferRequest request = ModelInferRequest.newBuilder().setModelName("slow")
        .addInputs(Tensors.input("x", "FP32", 1, 3)).addRawInputContents(Tensors.rawFloats(1, 2, 3)).build();
    int size = request.getSerializedSize();
    // Room for two such requests at once, and the queue room for 64.
    io.modelgate.gateway.server.AdminSettings admin =
        Gateway.adminSettings(root.resolve(".state"), -1).withRequestMemory(2L * size + size / 2);
    try (Gateway gateway = Gateway.inProcess(root, java.time.Duration.ofSeconds(10), java.time.Duration.ZERO, admin,
        java.time.Clock.systemUTC())) {
      List<CompletableFuture<Status>> outcomes = new ArrayList<>();
      for (int i = 0; i < 20; i++) {
        io.modelgate.gateway.testing.Outcome<ModelInferResponse> outcome = new io.modelgate.gateway.testing.Outcome<>();
        gateway.async().modelInfer(request, outcome);
        outcomes.add(outcome.status);
      }
      int ok = 0;
      int refused = 0;
      for (CompletableFuture<Status> outcome : outcomes) {
        Status status = outcome.get(60, TimeUnit.SECONDS);
        if (status.isOk()) {
          ok++;
        } else {
          assertThat(status.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
          assertThat(status.getDescription()).contains("would pass its limit of " + (2 * size + size / 2) + " bytes (--request-memory)");
          refused++;
        }
      }
      // The first two are held while the model runs (tens of ms a call); the queue alone would
      // have taken all twenty.
      assertThat(ok).isGreaterThanOrEqualTo(2);
      assertThat(refused).isPositive();
      assertThat(ok + refused).isEqualTo(20);
      io.modelgate.gateway.testing.Eventually.eventually("request bytes still held after every answer",
          () -> gateway.stats.scrape().contains("modelgate_request_memory_held_bytes 0.0"));
      assertThat(gateway.stats.scrape()).contains("modelgate_request_memory_limit_bytes " + (2 * size + size / 2) + ".0");
      // Let go, the bytes make room again.
      assertThat(gateway.blocking().modelInfer(request).getModelVersion()).isEqualTo("1");
    }
  }
}

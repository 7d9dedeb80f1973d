package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Outcome;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.testing.TestModels;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Requests whose values the model refuses, sent among good ones to a batching version: only they
 * fail, {@code INVALID_ARGUMENT}, and the good requests batched with them are answered.
 */
class FailingRequestTest {
  @TempDir Path root;

  private static ModelInferRequest lookup(long id) {
    return ModelInferRequest.newBuilder()
        .setModelName("lookup")
        .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("ids").setDatatype("INT64").addShape(1).addShape(1)
            .setContents(InferTensorContents.newBuilder().addInt64Contents(id)))
        .build();
  }

  @Test
  void requestsTheModelRefuses_failAlone_andTheGoodRequestsOfTheirBatchesAreAnswered() throws Exception {
    Gateway.write(root, "lookup", 1, TestModels.lookup());
    // Batches of up to 64 rows, gathered for up to 20 ms: 200 calls at once form a few.
    Gateway.config(root, "lookup", "max_batch_size: 64\nmax_queue_delay_us: 20000\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      List<CompletableFuture<ModelInferResponse>> calls = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        Outcome<ModelInferResponse> call = new Outcome<>();
        calls.add(call.answer);
        gateway.async().modelInfer(lookup(i % 5 == 4 ? 1000 + i : i % 10), call);
      }
      for (int i = 0; i < 200; i++) {
        CompletableFuture<ModelInferResponse> call = calls.get(i);
        if (i % 5 == 4) {
          int id = 1000 + i;
          org.assertj.core.api.Assertions.assertThatThrownBy(() -> call.get(30, TimeUnit.SECONDS))
              .as("call %d, id %d", i, id)
              .cause()
              .satisfies(e -> assertThat(Status.fromThrowable(e).getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
              .hasMessageContaining("ONNX Runtime refused the inputs of model 'lookup' version 1")
              .hasMessageContaining(String.valueOf(id));
        } else {
          ByteBuffer y = call.get(30, TimeUnit.SECONDS).getRawOutputContents(0).asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
          int id = i % 10;
          assertThat(new float[] {y.getFloat(), y.getFloat()}).as("call %d, id %d", i, id).containsExactly(id, 10 * id);
        }
      }
      double executions = gateway.stats.prometheus().get("modelgate.batch.rows").tags("model", "lookup", "version", "1").summary().count();
      assertThat(executions).as("batches formed, so good and bad requests shared them").isLessThan(200);
      assertThat(gateway.stats.prometheus().get("modelgate.batch.reruns").tags("model", "lookup", "version", "1").counter().count())
          .as("runs beyond the first of batches run again in parts").isPositive();

      // The usage charged adds up to the model's measured time, the failed runs included: each bad
      // request pays for the runs that failed because of it. (An execution is recorded once all its
      // requests are answered: read again until the last is.)
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      double charged;
      double executed;
      do {
        executed = gateway.blocking()
            .modelStatistics(io.modelgate.proto.inference.ModelStatisticsRequest.newBuilder().setName("lookup").setVersion("1").build())
            .getModelStats(0).getBatchStatsList().stream().mapToLong(b -> b.getComputeInfer().getNs()).sum() / 1e9;
        charged = gateway.admin().getUsage(io.modelgate.proto.admin.v1.GetUsageRequest.newBuilder().setSince("2000-01-01").build())
            .getRecordsList().stream().mapToDouble(io.modelgate.proto.admin.v1.UsageRecord::getComputeSeconds).sum();
      } while (Math.abs(charged - executed) > executed * 0.01 && System.nanoTime() < until && sleep());
      assertThat(charged).as("compute charged to callers, s").isCloseTo(executed, org.assertj.core.api.Assertions.within(executed * 0.01));
    }
  }

  private static boolean sleep() throws InterruptedException {
    Thread.sleep(20);
    return true;
  }

  /** On a stream the same: each bad request answered in-band with its error, each good one with its rows. */
  @Test
  void onAStream_eachBadRequestIsAnsweredWithItsError_andEachGoodOneWithItsRows() throws Exception {
    Gateway.write(root, "lookup", 1, TestModels.lookup());
    Gateway.config(root, "lookup", "max_batch_size: 64\nmax_queue_delay_us: 20000\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      io.modelgate.gateway.testing.StreamCollector collector = new io.modelgate.gateway.testing.StreamCollector();
      io.grpc.stub.StreamObserver<ModelInferRequest> stream = gateway.async().modelStreamInfer(collector);
      for (int i = 0; i < 100; i++) {
        stream.onNext(lookup(i % 4 == 3 ? -50 : i % 10).toBuilder().setId("r" + i).build());
      }
      java.util.Map<String, io.modelgate.proto.inference.ModelStreamInferResponse> answers = new java.util.HashMap<>();
      for (int i = 0; i < 100; i++) {
        io.modelgate.proto.inference.ModelStreamInferResponse answer = collector.next();
        // A failed request's id comes back with its error, as a served one's with its outputs.
        answers.put(answer.getInferResponse().getId(), answer);
      }
      stream.onCompleted();
      for (int i = 0; i < 100; i++) {
        io.modelgate.proto.inference.ModelStreamInferResponse answer = answers.get("r" + i);
        assertThat(answer).as("request r%d answered", i).isNotNull();
        if (i % 4 == 3) {
          assertThat(answer.getErrorMessage()).as("r%d", i).contains("ONNX Runtime refused the inputs of model 'lookup' version 1");
        } else {
          assertThat(answer.getErrorMessage()).as("r%d", i).isEmpty();
          ByteBuffer y = answer.getInferResponse().getRawOutputContents(0).asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
          assertThat(new float[] {y.getFloat(), y.getFloat()}).as("r%d", i).containsExactly(i % 10, 10 * (i % 10));
        }
      }
    }
  }
}

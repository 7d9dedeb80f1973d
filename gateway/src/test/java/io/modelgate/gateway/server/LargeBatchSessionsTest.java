package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A version with a second session for large batches: what the scrape says of the sessions. */
class LargeBatchSessionsTest {
  @TempDir Path root;

  private static double large(Gateway gateway, String session) {
    String prefix = "modelgate_batch_large_total{model=\"affine\",session=\"" + session + "\",version=\"1\"} ";
    return gateway.stats.scrape().lines()
        .filter(line -> line.startsWith(prefix))
        .mapToDouble(line -> Double.parseDouble(line.substring(prefix.length())))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no series " + prefix));
  }

  @Test
  void largeBatches_areCountedByTheSessionThatRanThem_theFirstTriedFourInSixtyFour() throws Exception {
    Gateway.write(root, "affine", 1, Gateway.affine());
    Gateway.config(root, "affine", "max_batch_size: 8\nlarge_batch_rows: 2\nlarge_batch_intra_op_threads: 2\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      double second = large(gateway, "second");
      double first = large(gateway, "first");
      // The load's warm-up ran a large batch of zeros on each session, so no client's is the first.
      assertThat(second).isEqualTo(1);
      assertThat(first).isEqualTo(1);
      InferTensorContents.Builder values = InferTensorContents.newBuilder();
      for (int i = 0; i < 9; i++) {
        values.addFp32Contents(i);
      }
      ModelInferRequest threeRows = ModelInferRequest.newBuilder()
          .setModelName("affine")
          .addInputs(Tensors.input("x", "FP32", 3, 3).setContents(values))
          .build();
      // One at a time: each batch is one request of three rows, a large batch.
      for (int i = 0; i < 64; i++) {
        ModelInferResponse answer = gateway.blocking().modelInfer(threeRows);
        assertThat(answer.getOutputs(0).getShapeList()).containsExactly(3L, 3L);
      }
      // Too few runs to compare: the second session keeps them, the first tries the last 4 of 64.
      assertThat(large(gateway, "second") - second).isEqualTo(60);
      assertThat(large(gateway, "first") - first).isEqualTo(4);
    }
  }
}

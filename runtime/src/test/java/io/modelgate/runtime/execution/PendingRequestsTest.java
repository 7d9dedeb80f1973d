package io.modelgate.runtime.execution;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.RequestDecoder;
import io.modelgate.runtime.tensor.TensorSpec;
import io.modelgate.runtime.testing.Requests;
import io.modelgate.runtime.testing.Requests.Answer;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/**
 * How the batcher's pending list chooses a batch among many lanes, directly (the scheduler's tests
 * drive it through a ring): every lane waiting is told apart, however many wait at once.
 */
class PendingRequestsTest {
  private static final ModelSignature SIGNATURE = new ModelSignature(
      List.of(new TensorSpec("x", DataType.FP32, new long[] {-1, 1})),
      List.of(new TensorSpec("y", DataType.FP32, new long[] {-1, 1})),
      1024);

  private static InferenceRequest oneRow(String lane, int weight) {
    return InferenceRequest.inLane(lane, weight, RequestDecoder.decode(Requests.fp32("x", new long[] {1, 1}, 1f), SIGNATURE),
        System.nanoTime(), Long.MAX_VALUE, null, new Answer());
  }

  /** Adds as the batcher does: the list grows first where it must. */
  private static void add(PendingRequests pending, InferenceRequest request) {
    assertThat(pending.hasRoom()).isTrue();
    pending.add(request);
  }

  /** Rows of each lane in {@code batch}, by lane ("null" for requests without one). */
  private static Map<String, Integer> rowsByLane(Batch batch) {
    Map<String, Integer> rows = new TreeMap<>();
    for (int i = 0; i < batch.size(); i++) {
      rows.merge(String.valueOf(batch.get(i).lane()), batch.get(i).decoded().rows(), Integer::sum);
    }
    return rows;
  }

  @Test
  void manyLanesWithBacklogs_eachGetsItsShareOfABatch_farBeyondTheTablesFirstSize() {
    int lanes = 10 * PendingRequests.INITIAL_LANES;
    PendingRequests pending = new PendingRequests(new BatchPolicy(lanes, 0, List.of()), lanes, 4 * lanes);
    // Three one-row requests for each lane, one lane after another: every lane has a backlog
    // (3 rows against a share of 1 in a batch of as many rows as lanes).
    for (int lane = 0; lane < lanes; lane++) {
      for (int request = 0; request < 3; request++) {
        add(pending, oneRow("tenant-" + lane, 1));
      }
    }
    Batch batch = new Batch(lanes);
    for (int round = 0; round < 3; round++) {
      pending.choose(batch);
      Map<String, Integer> rows = rowsByLane(batch);
      // One row each: none left out for the lanes counted last, none given twice to the first.
      assertThat(rows).as("round %d", round).hasSize(lanes);
      assertThat(rows.values()).as("round %d", round).containsOnly(1);
      pending.take(batch);
    }
    assertThat(pending.isEmpty()).isTrue();
  }

  @Test
  void manyLanes_withWeightsAndAnonymousRequests_shareInProportion() {
    // 40 lanes of weight 1, one of weight 40 and requests without a lane (weight 1), all with a
    // backlog: in a batch of 82 rows the heavy lane's share is 82 * 40/81 = 40 and every other
    // lane's, the unnamed one among them, 1 (rounded down, so that the shares fit: rounded up they
    // would be 41 and 2, and the lanes counted first would fill the batch before the heavy one's
    // turn). The row left goes to the oldest request not yet placed (the unnamed lane's second).
    PendingRequests pending = new PendingRequests(new BatchPolicy(82, 0, List.of()), 82, 1024);
    for (int request = 0; request < 3; request++) {
      add(pending, oneRow(null, 1));
      for (int lane = 0; lane < 40; lane++) {
        add(pending, oneRow("tenant-" + lane, 1));
      }
    }
    for (int request = 0; request < 60; request++) {
      add(pending, oneRow("heavy", 40));
    }
    Batch batch = new Batch(82);
    pending.choose(batch);
    Map<String, Integer> rows = rowsByLane(batch);
    assertThat(rows).hasSize(42);
    assertThat(rows.get("heavy")).isEqualTo(40);
    assertThat(rows.get("null")).isEqualTo(2);
    for (int lane = 0; lane < 40; lane++) {
      assertThat(rows.get("tenant-" + lane)).as("tenant-%d", lane).isEqualTo(1);
    }
    assertThat(rows.values().stream().mapToInt(Integer::intValue).sum()).isEqualTo(82);
  }

  @Test
  void theLanesCountedAreThoseWaitingNow_notThoseOfEarlierBatches() {
    PendingRequests pending = new PendingRequests(new BatchPolicy(4, 0, List.of()), 4, 1024);
    // A batch's count with many lanes, then one with two: the second count knows only those two.
    for (int lane = 0; lane < 3 * PendingRequests.INITIAL_LANES; lane++) {
      add(pending, oneRow("tenant-" + lane, 1));
    }
    Batch batch = new Batch(4);
    while (!pending.isEmpty()) {
      pending.choose(batch);
      pending.take(batch);
    }
    for (int request = 0; request < 4; request++) {
      add(pending, oneRow("a", 1));
      add(pending, oneRow("b", 1));
    }
    pending.choose(batch);
    assertThat(rowsByLane(batch)).containsExactlyEntriesOf(new TreeMap<>(Map.of("a", 2, "b", 2)));
  }
}

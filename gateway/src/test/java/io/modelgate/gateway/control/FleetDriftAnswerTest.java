package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import io.modelgate.proto.admin.v1.DriftSketchSet;
import io.modelgate.proto.admin.v1.DriftSketches;
import io.modelgate.proto.admin.v1.DriftSketchesAnswer;
import org.junit.jupiter.api.Test;

/** An answer of drift sketches is bounded to what etcd takes in one value. */
class FleetDriftAnswerTest {
  private static DriftSketches version(long number, int kilobytes) {
    return DriftSketches.newBuilder().setVersion(number)
        .setReference(DriftSketchSet.newBuilder().addNumeric(ByteString.copyFrom(new byte[kilobytes * 1024])))
        .build();
  }

  @Test
  void anAnswerWithinTheLimit_isSentWhole() {
    DriftSketchesAnswer answer = DriftSketchesAnswer.newBuilder().setReplica("r1")
        .addVersions(version(1, 300)).addVersions(version(2, 300)).build();
    assertThat(Fleet.bounded(answer)).isSameAs(answer);
  }

  @Test
  void theVersionsThatWouldTakeAnAnswerOverTheLimit_areLeftOut_sayingHowLarge() {
    DriftSketchesAnswer answer = DriftSketchesAnswer.newBuilder().setReplica("r1").addMissing("4: not loaded")
        .addVersions(version(1, 600)).addVersions(version(2, 600)).addVersions(version(3, 100)).build();
    DriftSketchesAnswer bounded = Fleet.bounded(answer);
    assertThat(bounded.getSerializedSize()).isLessThanOrEqualTo(Fleet.ANSWER_LIMIT_BYTES);
    assertThat(bounded.getVersionsList()).extracting(DriftSketches::getVersion).containsExactly(1L, 3L);
    assertThat(bounded.getMissingList()).containsExactly("4: not loaded",
        "2: its sketches take 601 KB, more than an answer may carry through etcd (1024 KB with the versions before it)");
    assertThat(bounded.getReplica()).isEqualTo("r1");
  }
}

package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.StepSamples;
import org.junit.jupiter.api.Test;

class RolloutEvidenceTest {
  @Test
  void anotherReplicasSamples_addTheAnswersTheyStandFor() {
    // This replica: every answer (3). Another: 2 latencies and an error, one in 16 of 48 answers,
    // published through the fleet's snapshot as the judge reads them.
    VersionStats.Samples mine = new VersionStats.Samples(new long[] {100, 200, 300}, 0, 1_000);
    VersionStats.Samples theirs = new VersionStats.Samples(new long[] {400, 500}, 1, 1_000, 48);
    StepSamples published = Fleet.step(theirs, 1_000);
    assertThat(published.getAnswers()).isEqualTo(48);

    VersionStats.Samples both = RolloutEvidence.plus(mine, published);
    assertThat(both.latenciesMicros()).containsExactlyInAnyOrder(100, 200, 300, 400, 500);
    assertThat(both.errors()).isEqualTo(1);
    assertThat(both.answers()).isEqualTo(3 + 48);
    assertThat(both.fromMillis()).isEqualTo(1_000);

    // A replica of before the field: each of its samples one answer.
    VersionStats.Samples old = RolloutEvidence.plus(mine, published.toBuilder().clearAnswers().build());
    assertThat(old.answers()).isEqualTo(3 + 3);
  }
}

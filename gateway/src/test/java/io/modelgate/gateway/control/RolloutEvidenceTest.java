package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.admin.v1.StepSamples;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.gateway.rollout.RolloutJudge;
import java.util.Arrays;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;

class RolloutEvidenceTest {
  @Test
  void aVersionsPublishedGoldenResult_isAScoreWhereAnyReplicaHasOne_elseAFailure_elseNone_elsePending() {
    io.modelgate.proto.admin.v1.GoldenResult done = io.modelgate.proto.admin.v1.GoldenResult.newBuilder()
        .setState("DONE").setScore(0.5).setPassed(1).setExamples(2).build();
    io.modelgate.proto.admin.v1.GoldenResult failed =
        io.modelgate.proto.admin.v1.GoldenResult.newBuilder().setState("FAILED").setError("unreadable").build();
    io.modelgate.proto.admin.v1.GoldenResult none = io.modelgate.proto.admin.v1.GoldenResult.newBuilder().setState("NONE").build();
    io.modelgate.proto.admin.v1.GoldenResult pending = io.modelgate.proto.admin.v1.GoldenResult.newBuilder().setState("PENDING").build();
    java.util.function.BiFunction<Long, io.modelgate.proto.admin.v1.GoldenResult, io.modelgate.proto.admin.v1.ReplicaSnapshot> of =
        (version, golden) -> {
          var snapshot = io.modelgate.proto.admin.v1.ReplicaSnapshot.newBuilder().setModel("m").setVersion(version);
          return (golden == null ? snapshot : snapshot.setGolden(golden)).build();
        };
    assertThat(RolloutEvidence.published(List.of(of.apply(2L, pending), of.apply(2L, done), of.apply(2L, failed)), 2))
        .isEqualTo(done);
    assertThat(RolloutEvidence.published(List.of(of.apply(2L, none), of.apply(2L, failed)), 2)).isEqualTo(failed);
    assertThat(RolloutEvidence.published(List.of(of.apply(2L, pending), of.apply(2L, none)), 2)).isEqualTo(none);
    // Another version's, a replica of before the field, or one that has not run it: not yet known.
    assertThat(RolloutEvidence.published(List.of(of.apply(1L, done), of.apply(2L, null), of.apply(2L, pending)), 2)
        .getState()).isEqualTo("PENDING");
    assertThat(RolloutEvidence.published(List.of(), 2).getState()).isEqualTo("PENDING");
  }

  @Test
  void anotherReplicasSamples_addTheAnswersTheyStandFor() {
    // This replica: every answer (32). Another: 2 latencies and an error, one in 16 of 48
    // answers, published through the fleet's snapshot as the judge reads them.
    VersionStats.Samples mine = new VersionStats.Samples(spread(32, 100, 420), 0, 1_000);
    VersionStats.Samples theirs = new VersionStats.Samples(new long[] {400, 500}, 1, 1_000, 48);
    StepSamples published = Fleet.step(theirs, 1_000);
    assertThat(published.getAnswers()).isEqualTo(48);
    assertThat(RolloutEvidence.samples(published).answers()).isEqualTo(48);

    // This replica's every answer weighs what one of the other's samples does (16 answers): of its
    // 32 latencies, 100 to 410 µs, two are kept, each the middle of its half.
    VersionStats.Samples both = VersionStats.Samples.pooled(List.of(mine, RolloutEvidence.samples(published)));
    assertThat(both.latenciesMicros()).containsExactlyInAnyOrder(180, 340, 400, 500);
    assertThat(both.errors()).isEqualTo(1);
    assertThat(both.answers()).isEqualTo(32 + 48);
    assertThat(both.fromMillis()).isEqualTo(1_000);

    // A replica of before the field: each of its samples one answer, as each of this one's.
    VersionStats.Samples old = RolloutEvidence.samples(published.toBuilder().clearAnswers().build());
    assertThat(old.answers()).isEqualTo(3);
    VersionStats.Samples evenly = VersionStats.Samples.pooled(List.of(mine, old));
    assertThat(evenly.latenciesMicros()).hasSize(32 + 2).contains(400, 500);
    assertThat(evenly.answers()).isEqualTo(32 + 3);
  }

  /** {@code count} latencies spread evenly over {@code from} to {@code to} µs. */
  private static long[] spread(int count, long from, long to) {
    return LongStream.range(0, count).map(i -> from + (to - from) * i / count).toArray();
  }

  private static VersionStats.Samples pool(VersionStats.Samples... replicas) {
    return VersionStats.Samples.pooled(Arrays.asList(replicas));
  }

  @Test
  void anEqualCandidate_onReplicasOfDifferentSpeeds_isJudgedByAnswersNotBySamples() {
    // A rollout's 90% step on two replicas: a busy one (100-200 µs a call, 16,384 samples of each
    // version, each standing for many answers) and a slow, quiet one (1-2 ms, every answer kept).
    // The busy one's answers outweigh the slow one's a thousand to one for both versions alike:
    // an equal candidate. Put side by side as samples, though, the slow replica's would be 5% of
    // the candidate's pool and 0.6% of the baseline's — past the candidate's p99, short of the
    // baseline's.
    VersionStats.Samples busyBaseline = new VersionStats.Samples(spread(16_384, 100, 200), 0, 0, 100_000);
    VersionStats.Samples busyCandidate = new VersionStats.Samples(spread(16_384, 100, 200), 0, 0, 900_000);
    VersionStats.Samples slowBaseline = new VersionStats.Samples(spread(100, 1_000, 2_000), 0, 0, 100);
    VersionStats.Samples slowCandidate = new VersionStats.Samples(spread(900, 1_000, 2_000), 0, 0, 900);
    Thresholds thresholds = Thresholds.newBuilder().setMinSamples(100).setMaxP99Ratio(1.1).setSignificance(1e-6).build();

    VersionStats.Samples baseline = pool(busyBaseline, slowBaseline);
    VersionStats.Samples candidate = pool(busyCandidate, slowCandidate);
    assertThat(baseline.answers()).isEqualTo(100_100);
    assertThat(candidate.answers()).isEqualTo(900_900);
    // The slow replica keeps one in 6.1 of its baseline's samples (100,000 / 16,384 answers a
    // sample) and one in 55 of its candidate's (900,000 / 16,384): a thousandth of each pool, as
    // of each version's answers.
    assertThat(baseline.latenciesMicros()).hasSize(16_384 + 16);
    assertThat(candidate.latenciesMicros()).hasSize(16_384 + 16);
    RolloutJudge.Judgement pooled = RolloutJudge.judge(thresholds, baseline, candidate);
    assertThat(pooled.verdict()).as(pooled.reason()).isEqualTo(RolloutJudge.Verdict.PASS);
    assertThat(pooled.evidence().getP99Ratio()).isEqualTo(1.0);

    // Side by side, unweighed, the same answers fail the candidate.
    VersionStats.Samples unweighedBaseline = new VersionStats.Samples(
        LongStream.concat(Arrays.stream(busyBaseline.latenciesMicros()), Arrays.stream(slowBaseline.latenciesMicros())).toArray(), 0);
    VersionStats.Samples unweighedCandidate = new VersionStats.Samples(
        LongStream.concat(Arrays.stream(busyCandidate.latenciesMicros()), Arrays.stream(slowCandidate.latenciesMicros())).toArray(), 0);
    RolloutJudge.Judgement sideBySide = RolloutJudge.judge(thresholds, unweighedBaseline, unweighedCandidate);
    assertThat(sideBySide.verdict()).as(sideBySide.reason()).isEqualTo(RolloutJudge.Verdict.FAIL);
  }

  @Test
  void pooledErrors_areWeighedAsTheLatenciesAre() {
    // A busy replica: 1% errors, each sample 100 answers; a quiet one: half its answers failed.
    VersionStats.Samples busy = new VersionStats.Samples(spread(990, 1_000, 2_000), 10, 0, 100_000);
    VersionStats.Samples quiet = new VersionStats.Samples(spread(100, 100, 200), 100, 0, 200);
    VersionStats.Samples pooled = pool(busy, quiet);
    // The quiet one's 200 answers are 2 samples' worth: one latency, one error.
    assertThat(pooled.latenciesMicros().length).isEqualTo(990 + 1);
    assertThat(pooled.errors()).isEqualTo(10 + 1);
    assertThat(pooled.answers()).isEqualTo(100_200);
  }
}

package io.modelgate.runtime.onnx;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class SessionChoiceTest {
  private static final int ROWS = 32;

  /** Runs {@code batches} large batches, each taking {@code firstNanosPerRow} or {@code secondNanosPerRow}; returns how many ran on the second. */
  private static int run(SessionChoice choice, int batches, long firstNanosPerRow, long secondNanosPerRow) {
    int onSecond = 0;
    for (int i = 0; i < batches; i++) {
      boolean second = choice.second();
      choice.ran(second, ROWS, ROWS * (second ? secondNanosPerRow : firstNanosPerRow));
      onSecond += second ? 1 : 0;
    }
    return onSecond;
  }

  @Test
  void aSecondSessionThatIsFaster_keepsTheLargeBatches_butOneInSixteen() {
    SessionChoice choice = new SessionChoice();
    int batches = 25 * SessionChoice.EXPLORE_PERIOD;
    int onSecond = run(choice, batches, 20_000, 11_000);
    assertThat(choice.choosesSecond()).isTrue();
    assertThat(batches - onSecond).isEqualTo(25 * SessionChoice.EXPLORE_RUNS);
    assertThat(choice.nanosPerRow(true)).isEqualTo(11_000);
    assertThat(choice.nanosPerRow(false)).isEqualTo(20_000);
  }

  @Test
  void aSecondSessionNoFasterThanTheFirst_givesTheLargeBatchesToTheFirst_onceEachRanEnough() {
    SessionChoice choice = new SessionChoice();
    // The first session runs the last 4 batches of each cycle of 64, the first of them not counted
    // (its caches cold): 3 counted a cycle, so the 8 that a comparison needs come in the third.
    run(choice, 2 * SessionChoice.EXPLORE_PERIOD, 17_000, 17_500);
    assertThat(choice.choosesSecond()).isTrue();
    run(choice, SessionChoice.EXPLORE_PERIOD, 17_000, 17_500);
    assertThat(choice.choosesSecond()).isFalse();
    // From then on the second session runs the last 4 of each cycle.
    assertThat(run(choice, 25 * SessionChoice.EXPLORE_PERIOD, 17_000, 17_500)).isEqualTo(25 * SessionChoice.EXPLORE_RUNS);
  }

  @Test
  void theFirstRunAfterAChangeOfSession_isNotCounted() {
    SessionChoice choice = new SessionChoice();
    // The second session's runs, then the first's tried: each first run after a change is cold and slow.
    for (int i = 0; i < 4 * SessionChoice.EXPLORE_PERIOD; i++) {
      boolean second = choice.second();
      boolean cold = i > 0 && second != (i - 1) % SessionChoice.EXPLORE_PERIOD < SessionChoice.EXPLORE_PERIOD - SessionChoice.EXPLORE_RUNS;
      choice.ran(second, ROWS, ROWS * (cold ? 40_000L : second ? 10_000L : 20_000L));
    }
    assertThat(choice.nanosPerRow(true)).isEqualTo(10_000);
    assertThat(choice.nanosPerRow(false)).isEqualTo(20_000);
    assertThat(choice.choosesSecond()).isTrue();
  }

  @Test
  void theChoiceFollowsTheMachine_andWaitsForAClearGainBeforeGoingBack() {
    SessionChoice choice = new SessionChoice();
    run(choice, 1_600, 17_000, 18_000);
    assertThat(choice.choosesSecond()).isFalse();
    // 10% faster on the second: inside the band between the thresholds, the first keeps them.
    run(choice, 3_200, 17_000, 15_300);
    assertThat(choice.choosesSecond()).isFalse();
    // Cores free again: the second's time a row halves, and it takes the large batches back.
    run(choice, 3_200, 17_000, 8_500);
    assertThat(choice.choosesSecond()).isTrue();
    // And gives them up when it is slower again.
    run(choice, 3_200, 17_000, 19_000);
    assertThat(choice.choosesSecond()).isFalse();
  }

  @Test
  void oneLongRun_aPauseOrACollection_doesNotDecide() {
    SessionChoice choice = new SessionChoice();
    // Ends with the second session's first run of a cycle (not counted: it follows the first's).
    run(choice, 25 * SessionChoice.EXPLORE_PERIOD + 1, 20_000, 11_000);
    double before = choice.nanosPerRow(true);
    // A run of the second session 100 times as long counts as four times its average.
    choice.ran(true, ROWS, ROWS * 1_100_000L);
    assertThat(choice.nanosPerRow(true))
        .isEqualTo(before + (SessionChoice.MAX_SAMPLE * before - before) / (SessionChoice.HORIZON_CYCLES * SessionChoice.CHOSEN_COUNTED));
    assertThat(choice.choosesSecond()).isTrue();
  }

  @Test
  void timesAreComparedARowAtATime_whateverTheBatchSizes() {
    SessionChoice choice = new SessionChoice();
    for (int i = 0; i < 1_600; i++) {
      boolean second = choice.second();
      // The second session gets batches four times as large, in under twice the time: faster a row.
      int rows = second ? 64 : 16;
      choice.ran(second, rows, second ? 64 * 10_000L : 16 * 20_000L);
    }
    assertThat(choice.choosesSecond()).isTrue();
  }

  @Test
  void startedOnTheFirst_runsLargeBatchesThereUntilTheSecondMeasuresClearlyFaster() {
    SessionChoice choice = new SessionChoice(false);
    assertThat(choice.choosesSecond()).isFalse();
    // The first batch goes to the first session, and a cycle tries the second only on its last 4.
    int onSecond = 0;
    for (int i = 0; i < SessionChoice.EXPLORE_PERIOD; i++) {
      if (choice.second()) {
        onSecond++;
      }
    }
    assertThat(onSecond).isEqualTo(SessionChoice.EXPLORE_RUNS);
    // A second session at 55% of the first's time a row takes them once both have run enough.
    run(choice, 25 * SessionChoice.EXPLORE_PERIOD, 20_000, 11_000);
    assertThat(choice.choosesSecond()).isTrue();
  }
}

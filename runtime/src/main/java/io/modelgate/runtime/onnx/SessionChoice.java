package io.modelgate.runtime.onnx;

/**
 * Which of a version's two sessions a large batch runs on ({@code large_batch_rows} rows or more),
 * chosen by what each one measured on such batches: the model's time a row, wall clock, as a
 * moving average. The second session (more intra-op threads) takes the large batches while its time
 * a row is at most {@link #TO_FIRST} of the first session's; once it is slower than that, the
 * first takes them, until the second's time is back under {@link #TO_SECOND} of the first's. The
 * last {@link #EXPLORE_RUNS} large batches of every {@link #EXPLORE_PERIOD} run on the session not
 * chosen, so that both figures stay current as load and the machine change. The first run after a
 * change of session is not counted: it finds the caches filled by the other session's run (for
 * cnn_mnist under load it took 4–25% longer a row than the runs after it), which would make
 * whichever session is tried look worse than it is.
 *
 * <p>Why: more threads shorten a batch only where a core is free for them. On a machine whose cores
 * the event loops and other work already fill, the second session's threads wait for a core and
 * wake each other, and a batch takes as long as on one thread while costing more CPU (measured in
 * BENCHMARKS.md, "A second session only where it is faster"). Wall time a row is what shows it:
 * threads that wait for a core stretch it.
 *
 * <p>Threading: one instance per executor, used by that executor's thread only. Nothing is
 * allocated after construction.
 */
final class SessionChoice {
  /** Large batches in a cycle of choosing and trying: the last {@link #EXPLORE_RUNS} try the other session. */
  static final int EXPLORE_PERIOD = 64;
  /** Large batches a cycle that run on the session not chosen (one in sixteen). */
  static final int EXPLORE_RUNS = 4;
  /** Counted runs each session makes on large batches before the figures are compared. */
  static final int MIN_RUNS = 8;
  /**
   * Cycles each session's moving average spans, whichever session is chosen: a counted run of the
   * chosen session weighs 1 / (this × its 59 counted runs a cycle), one of the other 1 / (this × 3),
   * so that both figures cover the same stretch of time and a passing slowdown of the machine
   * (which slows both sessions) does not show in one figure only.
   */
  static final int HORIZON_CYCLES = 8;
  /** Counted runs a cycle of the session chosen, and of the other (each one's first run is cold). */
  static final int CHOSEN_COUNTED = EXPLORE_PERIOD - EXPLORE_RUNS - 1;
  static final int TRIED_COUNTED = EXPLORE_RUNS - 1;
  /** A run is counted at most this many times its session's average: a pause is not a trend. */
  static final double MAX_SAMPLE = 4;
  /** The second session keeps large batches while its time a row is at most this share of the first's. */
  static final double TO_FIRST = 0.95;
  /** The second session takes large batches back once its time a row is under this share of the first's. */
  static final double TO_SECOND = 0.85;

  /** Nanoseconds a row on large batches: [0] the first session, [1] the second; NaN until counted. */
  private final double[] nanosPerRow = {Double.NaN, Double.NaN};
  private final long[] runs = new long[2];
  private boolean second;
  /** Where the next large batch falls in the cycle of {@link #EXPLORE_PERIOD}. */
  private int position;
  /** The session of the last large batch: 0 the first, 1 the second, -1 none yet. */
  private int last = -1;

  /** Large batches on the second session until the figures say otherwise. */
  SessionChoice() {
    this(true);
  }

  /** Large batches on the second session ({@code second}) or the first until the figures say otherwise. */
  SessionChoice(boolean second) {
    this.second = second;
  }

  /** Whether the next large batch runs on the second session. */
  boolean second() {
    boolean explore = position >= EXPLORE_PERIOD - EXPLORE_RUNS;
    position = position + 1 == EXPLORE_PERIOD ? 0 : position + 1;
    return explore != second;
  }

  /** A large batch of {@code rows} rows ran on the second session or not, in {@code nanos}. */
  void ran(boolean onSecond, int rows, long nanos) {
    int i = onSecond ? 1 : 0;
    boolean cold = last != i;
    last = i;
    if (cold) {
      return;
    }
    double sample = (double) nanos / Math.max(1, rows);
    double average = nanosPerRow[i];
    double weight = 1.0 / (HORIZON_CYCLES * (onSecond == second ? CHOSEN_COUNTED : TRIED_COUNTED));
    nanosPerRow[i] = runs[i] == 0 ? sample : average + weight * (Math.min(sample, MAX_SAMPLE * average) - average);
    runs[i]++;
    if (runs[0] >= MIN_RUNS && runs[1] >= MIN_RUNS) {
      double ratio = nanosPerRow[1] / nanosPerRow[0];
      if (second && ratio > TO_FIRST) {
        second = false;
      } else if (!second && ratio < TO_SECOND) {
        second = true;
      }
    }
  }

  /** Whether large batches currently go to the second session (those that try the other aside). */
  boolean choosesSecond() {
    return second;
  }

  /** The moving average of a session's time a row on large batches, ns; NaN before its first counted run. */
  double nanosPerRow(boolean onSecond) {
    return nanosPerRow[onSecond ? 1 : 0];
  }
}

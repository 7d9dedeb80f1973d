package io.modelgate.gateway.stats;

import java.util.Arrays;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A version's recent answers kept for rollout decisions, at several rates, so that a step of any
 * length is judged on samples from its whole span at bounded memory: level 0 keeps every answer
 * (the last {@value #FINE} of them), and each coarser level a random one in 16 of the level
 * before it ({@value #COARSE} each): one in 16, 256 and 4,096 answers. At 5,000 answers a second
 * every answer covers the last 3.3 s, one in 16 the last 26 s, one in 256 7 min and one in 4,096
 * the last 1.9 hours.
 *
 * <p>A sample is one {@code long}: milliseconds since the owner's epoch in the high 32 bits, the
 * latency in µs in the low 32 ({@link #ERROR} for a failed answer). {@link #record} is called by
 * any thread, concurrently, and allocates nothing: one random draw an answer, and a slot written at
 * each level that keeps it (newest wins where two writers race for a slot). A level is a uniform
 * random sample of the answers it spans: chosen independently of their latency, order and batch.
 *
 * <p>Memory: {@code 8 × (16,384 + 3 × 8,192)} bytes = 320 KiB a version, fixed at creation.
 */
final class SampleLevels {
  /** Every answer: the finest level's length. */
  static final int FINE = 1 << 14;
  /** Each coarser level's length. */
  static final int COARSE = 1 << 13;
  /** log2 of how many answers of the level before each coarser level keeps one of. */
  private static final int STEP_BITS = 4;
  static final int LEVELS = 4;
  /** The low 32 bits of a failed answer's sample. */
  static final long ERROR = 0xFFFFFFFFL;
  private static final long EMPTY = Long.MIN_VALUE;

  private final AtomicLongArray[] rings = new AtomicLongArray[LEVELS];
  private final AtomicLong[] cursors = new AtomicLong[LEVELS];

  SampleLevels() {
    this(FINE, COARSE);
  }

  /** Levels of other lengths (powers of two), for tests. */
  SampleLevels(int fine, int coarse) {
    if (Integer.bitCount(fine) != 1 || Integer.bitCount(coarse) != 1) {
      throw new IllegalArgumentException("lengths must be powers of two: " + fine + ", " + coarse);
    }
    for (int level = 0; level < LEVELS; level++) {
      rings[level] = new AtomicLongArray(level == 0 ? fine : coarse);
      cursors[level] = new AtomicLong();
      for (int i = 0; i < rings[level].length(); i++) {
        rings[level].setPlain(i, EMPTY);
      }
    }
  }

  /** How many answers a sample of {@code level} stands for: 1, 16, 256, 4,096. */
  static long oneIn(int level) {
    return 1L << (STEP_BITS * level);
  }

  static long footprintBytes() {
    return 8L * (FINE + (LEVELS - 1) * (long) COARSE);
  }

  /** One answer: {@code sample} as the class comment says. Any thread. */
  void record(long sample) {
    put(0, sample);
    int draw = ThreadLocalRandom.current().nextInt();
    for (int level = 1; level < LEVELS && (draw & ((1 << (STEP_BITS * level)) - 1)) == 0; level++) {
      put(level, sample);
    }
  }

  private void put(int level, long sample) {
    AtomicLongArray ring = rings[level];
    ring.setRelease((int) (cursors[level].getAndIncrement() & (ring.length() - 1)), sample);
  }

  /**
   * The samples at or after {@code since} (ms since the owner's epoch) of the finest level that
   * holds every answer it kept since then; where none reaches back that far, those of the level
   * reaching back furthest, complete only from a later time ({@link Read#fromMillis}).
   *
   * @param epochMillis the owner's epoch, to give {@link Read#fromMillis} in ms since the epoch
   */
  Read since(long since, long epochMillis) {
    Read furthest = null;
    for (int level = 0; level < LEVELS; level++) {
      Read read = read(level, since, epochMillis);
      if (read.fromMillis == epochMillis + since) {
        return read;
      }
      if (furthest == null || read.fromMillis < furthest.fromMillis) {
        furthest = read;
      }
    }
    return furthest;
  }

  private Read read(int level, long since, long epochMillis) {
    AtomicLongArray ring = rings[level];
    int size = ring.length();
    long end = cursors[level].get();
    long start = Math.max(0, end - size);
    long[] latencies = new long[(int) (end - start)];
    int n = 0;
    long errors = 0;
    long oldest = Long.MAX_VALUE;
    for (long i = end - 1; i >= start; i--) {
      long sample = ring.getAcquire((int) (i & (size - 1)));
      if (sample == EMPTY || (sample >>> 32) < since) {
        continue;
      }
      oldest = Math.min(oldest, sample >>> 32);
      long micros = sample & ERROR;
      if (micros == ERROR) {
        errors++;
      } else {
        latencies[n++] = micros;
      }
    }
    // Where the ring has wrapped and every slot it holds is in the range, its oldest millisecond's
    // samples may have been overwritten in part: complete only after it.
    long from = start > 0 && oldest != Long.MAX_VALUE && n + errors == end - start ? oldest + 1 : since;
    return new Read(Arrays.copyOf(latencies, n), errors, epochMillis + Math.max(from, since), oneIn(level));
  }

  /**
   * One level's samples: latencies (µs) of successful answers and a count of failed ones, complete
   * from {@code fromMillis} (ms since the epoch), each standing for {@code oneIn} answers.
   */
  record Read(long[] latenciesMicros, long errors, long fromMillis, long oneIn) {}
}

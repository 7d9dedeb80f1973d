package io.modelgate.gateway.routing;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Picks an index with probability proportional to its weight in constant time: Vose's alias
 * method, built once per policy. Immutable; {@link #pick()} is thread-safe and allocates nothing.
 */
final class WeightedChoice {
  private final double[] probability;
  private final int[] alias;

  /** @param weights non-negative, at least one positive */
  WeightedChoice(long[] weights) {
    int n = weights.length;
    double total = 0;
    for (long weight : weights) {
      total += weight;
    }
    if (n == 0 || total <= 0) {
      throw new IllegalArgumentException("weights: at least one must be > 0");
    }
    probability = new double[n];
    alias = new int[n];
    double[] scaled = new double[n];
    Deque<Integer> small = new ArrayDeque<>();
    Deque<Integer> large = new ArrayDeque<>();
    for (int i = 0; i < n; i++) {
      scaled[i] = weights[i] * n / total;
      (scaled[i] < 1.0 ? small : large).push(i);
    }
    while (!small.isEmpty() && !large.isEmpty()) {
      int less = small.pop();
      int more = large.pop();
      probability[less] = scaled[less];
      alias[less] = more;
      scaled[more] = scaled[more] + scaled[less] - 1.0;
      (scaled[more] < 1.0 ? small : large).push(more);
    }
    while (!large.isEmpty()) {
      probability[large.pop()] = 1.0;
    }
    while (!small.isEmpty()) {
      // Only rounding leaves entries here; they stand for themselves.
      probability[small.pop()] = 1.0;
    }
  }

  int pick() {
    ThreadLocalRandom random = ThreadLocalRandom.current();
    return pick(random.nextInt(probability.length), random.nextDouble());
  }

  /** The pick for a uniform column {@code column} and a uniform {@code coin} in [0, 1). */
  int pick(int column, double coin) {
    return coin < probability[column] ? column : alias[column];
  }
}

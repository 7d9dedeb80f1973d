package io.modelgate.gateway.inference;

import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.tensor.OutputTensor;

/**
 * Pairs a primary answer with its shadow's and records how they compare on the shadow version:
 * the largest absolute difference over the float outputs both produced, and whether the argmax of
 * each row of the first such output agrees. The two answers arrive on any threads, in any order;
 * the comparison runs once both are in, off the primary's path (the primary's response is written
 * before it is compared).
 */
final class ShadowComparison {
  private final VersionStats shadowStats;
  private final long primaryVersion;
  private final java.time.Clock clock;
  private OutputTensor[] primary;
  private OutputTensor[] shadow;
  private boolean over;

  private ShadowComparison(VersionStats shadowStats, long primaryVersion, java.time.Clock clock) {
    this.shadowStats = shadowStats;
    this.primaryVersion = primaryVersion;
    this.clock = clock;
  }

  /**
   * The comparison of {@code primary}'s answer with {@code shadow}'s (the route's shadow for this
   * request, or null when it is not sampled), or null when there is nothing to compare.
   */
  static ShadowComparison of(io.modelgate.runtime.repository.ModelVersion shadow,
      io.modelgate.runtime.repository.ModelVersion primary, java.time.Clock clock) {
    if (shadow == null || shadow == primary) {
      return null;
    }
    return new ShadowComparison(InferenceService.statsOf(shadow.loadedOrNull()), primary.number(), clock);
  }

  void primary(InferenceResult result) {
    OutputTensor[] other;
    synchronized (this) {
      if (over) {
        return;
      }
      primary = result.outputs();
      other = shadow;
      if (other != null) {
        over = true;
      }
    }
    if (other != null) {
      compare(result.outputs(), other);
    }
  }

  void shadow(InferenceResult result) {
    OutputTensor[] other;
    synchronized (this) {
      if (over) {
        return;
      }
      shadow = result.outputs();
      other = primary;
      if (other != null) {
        over = true;
      }
    }
    if (other != null) {
      compare(other, result.outputs());
    }
  }

  /** The primary failed: nothing to compare with. */
  synchronized void primaryFailed() {
    over = true;
  }

  void shadowFailed() {
    synchronized (this) {
      over = true;
    }
    if (shadowStats != null) {
      shadowStats.recordShadowFailure(primaryVersion);
    }
  }

  private void compare(OutputTensor[] a, OutputTensor[] b) {
    if (shadowStats == null) {
      return;
    }
    double maxDiff = 0;
    boolean agreed = true;
    boolean compared = false;
    boolean argmaxDone = false;
    for (OutputTensor x : a) {
      OutputTensor y = find(b, x.name());
      if (y == null || x.dataType() != y.dataType() || x.data().size() != y.data().size()) {
        continue;
      }
      if (!x.isFloatingPoint()) {
        compared = true;
        if (!x.data().equals(y.data())) {
          agreed = false;
        }
        continue;
      }
      double[] xs = x.toDoubles();
      double[] ys = y.toDoubles();
      compared = true;
      for (int i = 0; i < xs.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(xs[i] - ys[i]));
      }
      if (!argmaxDone && x.shape().length > 0) {
        argmaxDone = true;
        int width = x.rowWidth();
        for (int row = 0; row + width <= xs.length; row += width) {
          if (OutputTensor.argmax(xs, row, width) != OutputTensor.argmax(ys, row, width)) {
            agreed = false;
          }
        }
      }
    }
    if (compared) {
      shadowStats.recordShadow(primaryVersion, agreed, maxDiff, clock.millis());
    } else {
      shadowStats.recordShadowFailure(primaryVersion);
    }
  }

  private static OutputTensor find(OutputTensor[] outputs, String name) {
    for (OutputTensor output : outputs) {
      if (output.name().equals(name)) {
        return output;
      }
    }
    return null;
  }
}

package io.modelgate.runtime.repository;

import java.util.List;

/**
 * A model's drift profiling, from the {@code drift} mapping of its {@code model.yaml}. Immutable and
 * validated.
 *
 * @param sampleRate the share of answered requests profiled, 0 to 1 ({@code sample_rate})
 * @param reference where each version's reference profile comes from: {@link Reference#GOLDEN}
 *     (its golden set, run when it loads), {@link Reference#REQUESTS} (its first {@code
 *     referenceRequests} profiled requests), or null: the golden set when the model has one, else
 *     the first requests
 * @param referenceRequests requests in a reference taken from traffic ({@code reference_requests})
 * @param window the window whose scores are exported and alerted on: {@code 1m}, {@code 5m} or
 *     {@code 15m}
 * @param ksThreshold a numeric feature drifts when the Kolmogorov–Smirnov statistic (0 to 1) of
 *     its window against the reference exceeds this ({@code ks_threshold}) and is significant
 * @param psiThreshold a class distribution drifts when its population stability index exceeds
 *     this ({@code psi_threshold})
 * @param maxFeatures input rows of at most this many elements are profiled element by element;
 *     wider ones by summary statistics ({@code max_features})
 * @param minSamples a window with fewer profiled requests has no score ({@code min_samples})
 */
public record DriftSettings(
    double sampleRate,
    Reference reference,
    int referenceRequests,
    String window,
    double ksThreshold,
    double psiThreshold,
    int maxFeatures,
    int minSamples) {
  public static final int DEFAULT_REFERENCE_REQUESTS = 1000;
  public static final String DEFAULT_WINDOW = "5m";
  public static final double DEFAULT_KS_THRESHOLD = 0.2;
  public static final double DEFAULT_PSI_THRESHOLD = 0.2;
  public static final int DEFAULT_MAX_FEATURES = 32;
  public static final int MAX_FEATURES_LIMIT = 256;
  public static final int DEFAULT_MIN_SAMPLES = 100;
  public static final List<String> WINDOWS = List.of("1m", "5m", "15m");

  /** Where a version's reference profile comes from. */
  public enum Reference {
    GOLDEN,
    REQUESTS;

    public String configName() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  public DriftSettings {
    if (!(sampleRate >= 0 && sampleRate <= 1)) {
      throw new IllegalArgumentException("drift.sample_rate: " + sampleRate + " (expected: 0 to 1)");
    }
    if (referenceRequests < 1) {
      throw new IllegalArgumentException("drift.reference_requests: " + referenceRequests + " (expected: at least 1)");
    }
    if (!WINDOWS.contains(window)) {
      throw new IllegalArgumentException("drift.window: '" + window + "' (expected one of: " + WINDOWS + ")");
    }
    if (!(ksThreshold > 0 && ksThreshold < 1)) {
      throw new IllegalArgumentException("drift.ks_threshold: " + ksThreshold + " (expected: above 0 and below 1)");
    }
    if (!(psiThreshold > 0)) {
      throw new IllegalArgumentException("drift.psi_threshold: " + psiThreshold + " (expected: above 0)");
    }
    if (maxFeatures < 0 || maxFeatures > MAX_FEATURES_LIMIT) {
      throw new IllegalArgumentException(
          "drift.max_features: " + maxFeatures + " (expected: 0 to " + MAX_FEATURES_LIMIT + ")");
    }
    if (minSamples < 1) {
      throw new IllegalArgumentException("drift.min_samples: " + minSamples + " (expected: at least 1)");
    }
  }

  /** Every default, at {@code sampleRate}. */
  public static DriftSettings sampled(double sampleRate) {
    return new DriftSettings(sampleRate, null, DEFAULT_REFERENCE_REQUESTS, DEFAULT_WINDOW, DEFAULT_KS_THRESHOLD,
        DEFAULT_PSI_THRESHOLD, DEFAULT_MAX_FEATURES, DEFAULT_MIN_SAMPLES);
  }
}

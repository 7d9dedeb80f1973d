package io.modelgate.gateway.health;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.InputTensor;
import io.modelgate.runtime.tensor.OutputTensor;
import io.modelgate.runtime.tensor.RequestDecoder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.datasketches.kll.KllDoublesSketch;
import org.apache.datasketches.kll.KllSketch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The statistics of drift profiles, their memory bound, and the hand-off that drops when behind. */
class DriftProfileTest {
  @TempDir Path root;

  private static KllDoublesSketch sketch(double... values) {
    KllDoublesSketch sketch = KllDoublesSketch.newHeapInstance(DriftProfile.K);
    for (double v : values) {
      sketch.update(v);
    }
    return sketch;
  }

  @Test
  void ks_isTheLargestDifferenceOfTheCumulativeDistributions_evenForRepeatedValues() {
    double[] zeros = new double[3000];
    assertThat(DriftProfile.ks(sketch(new double[62]), sketch(zeros))).isZero();
    assertThat(DriftProfile.ks(sketch(1, 2, 3), sketch(4, 5, 6))).isEqualTo(1.0);
    // {0, 0, 1, 1} against {0, 1, 1, 1}: P(X <= 0) is 1/2 against 1/4.
    assertThat(DriftProfile.ks(sketch(0, 0, 1, 1), sketch(0, 1, 1, 1))).isEqualTo(0.25);
  }

  @Test
  void theKsNeededToDiffer_shrinksWithTheValuesSeen_toTheSketchesRankErrors() {
    // Sketches that hold every value they saw are exact: c(α)·√((n₁ + n₂)/(n₁·n₂)) alone.
    double[] fifty = java.util.stream.IntStream.range(0, 50).mapToDouble(i -> i).toArray();
    KllDoublesSketch a = sketch(fifty);
    assertThat(a.isEstimationMode()).isFalse();
    assertThat(DriftProfile.significantKs(a, sketch(fifty))).isCloseTo(1.9495 * Math.sqrt(2.0 / 50), within(1e-3));

    // 100,000 values each, compacted: the rank errors (about 0.02 each) are most of it.
    java.util.Random random = new java.util.Random(7);
    KllDoublesSketch reference = sketch(random.doubles(100_000).map(u -> random.nextGaussian()).toArray());
    KllDoublesSketch same = sketch(random.doubles(100_000).map(u -> random.nextGaussian()).toArray());
    KllDoublesSketch shifted = sketch(random.doubles(100_000).map(u -> random.nextGaussian() + 0.3).toArray());
    double needed = DriftProfile.significantKs(reference, same);
    assertThat(needed).isBetween(0.045, 0.06);
    // The same distribution does not differ; one shifted by 0.3 standard deviations (KS 0.12) does,
    // where DataSketches' own threshold, which counts the values each sketch retains, needs 0.18.
    assertThat(DriftProfile.ks(reference, same)).isLessThan(needed);
    double dataSketches = org.apache.datasketches.quantilescommon.KolmogorovSmirnov.computeKSThreshold(reference, shifted,
        DriftProfile.SIGNIFICANCE);
    assertThat(dataSketches).isGreaterThan(0.17);
    assertThat(DriftProfile.ks(reference, shifted)).isCloseTo(0.119, within(0.02)).isGreaterThan(needed).isLessThan(dataSketches);
  }

  @Test
  void psi_isZeroForTheSameShares_andGrowsWithTheirDifference() {
    assertThat(DriftProfile.psi(new long[] {10, 20, 30}, new long[] {100, 200, 300})).isCloseTo(0, within(1e-3));
    // Half and half against all in the first class (smoothed by half an observation).
    double shifted = DriftProfile.psi(new long[] {500, 500}, new long[] {1000, 0});
    assertThat(shifted).isGreaterThan(3);
    assertThat(DriftProfile.psi(new long[] {500, 500}, new long[] {600, 400})).isCloseTo(0.0405, within(1e-3));
    assertThat(DriftProfile.psi(new long[] {0, 0}, new long[] {1, 2})).isNaN();
  }

  @Test
  void memory_staysUnderItsBound_whateverTheTraffic() throws Exception {
    Gateway.write(root, "affine", 1, Gateway.affine());
    Gateway.config(root, "affine", "max_batch_size: 0\ndrift:\n  sample_rate: 1.0\n");
    try (Gateway gateway = Gateway.inProcess(root)) {
      ModelVersion version = gateway.repository.models().iterator().next().versions().get(0);
      LoadedVersion loaded = version.serving();
      InputTensor[] inputs = RequestDecoder.decode(Tensors.affine(1, 2, 3).build(), loaded.signature()).inputs();
      OutputTensor[] outputs = {new OutputTensor("y", DataType.FP32, new long[] {1, 3}, Tensors.rawFloats(1, 2, 3))};
      DriftProfile profile = new DriftProfile(loaded.settings().drift(), loaded.signature(), inputs, outputs);
      java.util.Random random = new java.util.Random(1);
      long now = 1_800_000_000_000L;
      // 20 minutes at 5,000 a second of distinct values, in every interval.
      for (int second = 0; second < 1200; second++) {
        for (int i = 0; i < 5000; i += 50) {
          InputTensor[] x = RequestDecoder.decode(Tensors.affine((float) random.nextGaussian(), (float) random.nextGaussian(),
              (float) random.nextGaussian()).build(), loaded.signature()).inputs();
          profile.observe(x, outputs, now + second * 1000L);
        }
      }
      profile.referenceFromRequests(1);
      profile.observe(inputs, outputs, now + 1_200_000);
      // x: 3 elements; y: class and top score. 6 + 15 + 1 + 1 sets and the reference.
      long numeric = 4;
      long bound = 24 * (numeric * KllSketch.getMaxSerializedSizeBytes(DriftProfile.K, 1L << 40,
          KllSketch.SketchType.DOUBLES_SKETCH, false) + 8 * 3);
      System.out.printf("drift profile of 4 numeric features and 3 classes: %d bytes (bound %d)%n", profile.bytes(), bound);
      assertThat(profile.bytes()).isPositive().isLessThanOrEqualTo(bound);
    }
  }

  @Test
  void theHandOff_dropsAndCountsWhenTheProfilerIsBehind_andNeverBlocks() throws Exception {
    Gateway.write(root, "affine", 1, Gateway.affine());
    Gateway.config(root, "affine", "max_batch_size: 0\ndrift:\n  sample_rate: 1.0\n  reference: requests\n");
    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10))) {
      Drift drift = gateway.server.drift();
      ModelVersion version = gateway.repository.models().iterator().next().versions().get(0);
      LoadedVersion loaded = version.serving();
      InputTensor[] inputs = RequestDecoder.decode(Tensors.affine(1, 2, 3).build(), loaded.signature()).inputs();
      OutputTensor[] outputs = {new OutputTensor("y", DataType.FP32, new long[] {1, 3}, Tensors.rawFloats(1, 2, 3))};
      CountDownLatch release = new CountDownLatch(1);
      CountDownLatch held = new CountDownLatch(1);
      drift.onDriftThread(() -> {
        held.countDown();
        try {
          release.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      });
      assertThat(held.await(10, TimeUnit.SECONDS)).isTrue();
      int offered = Drift.QUEUE + 1000;
      for (int i = 0; i < offered; i++) {
        drift.offer(version, loaded, inputs, outputs);
      }
      release.countDown();
      drift.flush().get(10, TimeUnit.SECONDS);
      var report = drift.report("affine", 1).get(10, TimeUnit.SECONDS).getVersions(0);
      assertThat(report.getDropped()).isEqualTo(1000);
      assertThat(report.getProfiled()).isEqualTo(Drift.QUEUE);
      assertThat(gateway.stats.prometheus().scrape())
          .contains("modelgate_drift_samples_total{model=\"affine\",outcome=\"dropped\",version=\"1\"} 1000.0");
    }
  }
}

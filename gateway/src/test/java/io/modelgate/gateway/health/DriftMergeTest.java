package io.modelgate.gateway.health;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.TestClock;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.DriftSketches;
import io.modelgate.proto.admin.v1.DriftSketchesAnswer;
import io.modelgate.proto.admin.v1.FeatureDrift;
import io.modelgate.proto.admin.v1.GetDriftRequest;
import io.modelgate.proto.admin.v1.VersionDrift;
import io.modelgate.proto.admin.v1.WindowDrift;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A fleet's drift merged ({@link DriftMerge}) from four replicas' own profiles of the affine model,
 * each with a reference of 200 requests and a last minute of 60 whose first element is shifted by
 * 0.25 (uniform values on a grid, so the Kolmogorov–Smirnov statistic is about 0.25 give or take a
 * sketch's error). Alone, a replica's 60 requests against its 200 cannot tell such a shift from
 * chance at p = 0.001 (the difference needed is about 0.31: 1.95·√(260/12,000) and the
 * reference's rank error); the fleet's 240 against its 800 can (about 0.19).
 */
class DriftMergeTest {
  @TempDir Path root;

  private static final double SHIFT = 0.25;

  /** {@code count} requests whose first element is (i + 0.5) / count + shift, i = 0 .. count − 1. */
  private static void send(Gateway replica, int count, double shift) {
    for (int i = 0; i < count; i++) {
      replica.blocking().modelInfer(Tensors.affine((float) ((i + 0.5) / count + shift), 1, 2).build());
    }
  }

  private static WindowDrift lastMinute(VersionDrift drift, String feature) {
    FeatureDrift found = drift.getFeaturesList().stream().filter(f -> (f.getTensor() + "." + f.getFeature()).equals(feature))
        .findFirst().orElseThrow();
    return found.getWindowsList().stream().filter(w -> w.getWindow().equals("1m")).findFirst().orElseThrow();
  }

  private static List<String> drifted(VersionDrift drift) {
    List<String> found = new ArrayList<>();
    for (FeatureDrift f : drift.getFeaturesList()) {
      if (f.getWindowsList().stream().anyMatch(w -> w.getWindow().equals("1m") && w.getDrifted())) {
        found.add(f.getTensor() + "." + f.getFeature());
      }
    }
    return found;
  }

  @Test
  void aShiftTooSmallForAnyReplicasSample_isSignificantInTheFleetsMergedSketches_andOnlyLikeSketchesMerge() throws Exception {
    Gateway.write(root, "affine", 1, Gateway.affine());
    Gateway.config(root, "affine",
        "max_batch_size: 0\ndrift:\n  sample_rate: 1.0\n  reference_requests: 200\n  window: 1m\n  ks_threshold: 0.1\n  min_samples: 50\n");
    TestClock clock = new TestClock();
    Map<String, DriftSketches> byReplica = new LinkedHashMap<>();
    List<Gateway> replicas = new ArrayList<>();
    try {
      for (int r = 0; r < 4; r++) {
        replicas.add(Gateway.inProcess(root, Duration.ofSeconds(10), root.resolve(".state-" + r), clock));
      }
      for (Gateway replica : replicas) {
        send(replica, 200, 0);
        // Profiled at the clock's time when the drift thread takes them: before it moves on.
        replica.server.drift().flush().get(10, TimeUnit.SECONDS);
      }
      // The reference's requests leave the last minute; the shifted ones fill it.
      clock.millis += 120_000;
      for (int r = 0; r < replicas.size(); r++) {
        Gateway replica = replicas.get(r);
        send(replica, 60, SHIFT);
        replica.server.drift().flush().get(10, TimeUnit.SECONDS);
        VersionDrift alone = replica.admin().getDrift(GetDriftRequest.newBuilder().setModel("affine").build()).getVersions(0);
        assertThat(alone.getReferenceSamples()).isEqualTo(200);
        WindowDrift x = lastMinute(alone, "x.[0]");
        assertThat(x.getSamples()).isEqualTo(60);
        assertThat(x.getScore()).as("replica %d's KS", r).isBetween(SHIFT - 0.04, SHIFT + 0.04);
        assertThat(x.getScore()).as("replica %d's KS against what is significant", r).isLessThan(x.getSignificant());
        assertThat(drifted(alone)).as("replica %d alone", r).isEmpty();
        DriftSketchesAnswer answer = replica.server.drift().sketches("affine", 0).get(10, TimeUnit.SECONDS);
        assertThat(answer.getMissingList()).isEmpty();
        byReplica.put("r" + r, answer.getVersions(0));
      }
    } finally {
      for (Gateway replica : replicas) {
        replica.close();
      }
    }

    VersionDrift merged = DriftMerge.merge(1, byReplica, List.of("r4: did not answer within 6000 ms"));
    assertThat(merged.getState()).isEqualTo("READY");
    assertThat(merged.getReplica()).isEqualTo(DriftMerge.FLEET);
    assertThat(merged.getMergedFromList()).containsExactly("r0", "r1", "r2", "r3");
    assertThat(merged.getNotMergedList()).containsExactly("r4: did not answer within 6000 ms");
    assertThat(merged.getReferenceSamples()).isEqualTo(800);
    assertThat(merged.getProfiled()).isEqualTo(4 * 260);
    assertThat(merged.getReference()).startsWith("merged from 4 replicas' references: r0: the first 200 profiled requests (200); ");
    WindowDrift x = lastMinute(merged, "x.[0]");
    assertThat(x.getSamples()).isEqualTo(240);
    assertThat(x.getScore()).isBetween(SHIFT - 0.04, SHIFT + 0.04);
    assertThat(x.getScore()).isGreaterThan(x.getSignificant());
    // The input's first element alone: the others are constant, and so are the outputs' classes
    // and top scores (the constant third element's, 2·2 + 1 and 2·2).
    assertThat(drifted(merged)).containsExactly("x.[0]");

    // Sketches laid out otherwise, or of another model file, are named and left out.
    Map<String, DriftSketches> unlike = new LinkedHashMap<>(byReplica);
    unlike.put("r1", byReplica.get("r1").toBuilder().removeFeatures(0).build());
    unlike.put("r2", byReplica.get("r2").toBuilder().setModelSha256("0123456789abcdef0123").build());
    VersionDrift partly = DriftMerge.merge(1, unlike, List.of());
    assertThat(partly.getMergedFromList()).containsExactly("r0", "r3");
    assertThat(partly.getNotMergedList()).containsExactly(
        "r1: its features are laid out otherwise than r0's (another model file, or rows of another shape)",
        "r2: it serves another model.onnx (sha256 0123456789ab..., not " + byReplica.get("r0").getModelSha256().substring(0, 12) + "...)");
    assertThat(lastMinute(partly, "x.[0]").getSamples()).isEqualTo(120);

    // The fleet's last minute as one reference (admin drift baseline --merged): the like replicas' merged.
    List<String> left = new ArrayList<>();
    DriftSketches reference = DriftMerge.reference(1, unlike, "1m", left, "the fleet's 1m window");
    assertThat(reference.getReference().getCount()).isEqualTo(120);
    assertThat(reference.getReferenceSource()).isEqualTo("the fleet's 1m window, merged from 2 replicas: r0 (60), r3 (60)");
    assertThat(reference.getFeaturesList()).isEqualTo(byReplica.get("r0").getFeaturesList());
    assertThat(left).hasSize(2);

    // Sketches that do not read are left out, not merged in part.
    Map<String, DriftSketches> broken = new LinkedHashMap<>(byReplica);
    broken.put("r3", byReplica.get("r3").toBuilder().setWindows(0,
        byReplica.get("r3").getWindows(0).toBuilder().setNumeric(0, com.google.protobuf.ByteString.copyFromUtf8("not a sketch"))).build());
    VersionDrift without = DriftMerge.merge(1, broken, List.of());
    assertThat(without.getMergedFromList()).containsExactly("r0", "r1", "r2");
    assertThat(without.getNotMergedList()).singleElement().asString().startsWith("r3: its sketches do not read (numeric feature 0's sketch");

    // One replica's model file changed within the last minute (its outputs unscored there): the
    // fleet's outputs are unscored in that window too, its inputs still scored.
    Map<String, DriftSketches> reloaded = new LinkedHashMap<>(byReplica);
    reloaded.put("r1", byReplica.get("r1").toBuilder().setWindows(0,
        byReplica.get("r1").getWindows(0).toBuilder().setOutputsUnscored(true)).build());
    VersionDrift afterReload = DriftMerge.merge(1, reloaded, List.of());
    assertThat(lastMinute(afterReload, "x.[0]").getScored()).isTrue();
    assertThat(lastMinute(afterReload, "y.top_score").getScored()).isFalse();
    assertThat(lastMinute(afterReload, "y.class").getScored()).isFalse();
    assertThat(lastMinute(merged, "y.top_score").getScored()).isTrue();

    // Nothing to merge: waiting, with why.
    VersionDrift none = DriftMerge.merge(1, Map.of(), List.of("r0: no request profiled yet"));
    assertThat(none.getState()).isEqualTo("WAITING");
    assertThat(none.getNotMergedList()).containsExactly("r0: no request profiled yet");
  }
}

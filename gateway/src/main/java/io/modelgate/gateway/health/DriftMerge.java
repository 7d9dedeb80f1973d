package io.modelgate.gateway.health;

import io.modelgate.proto.admin.v1.DriftFeatureSlot;
import io.modelgate.proto.admin.v1.DriftSketches;
import io.modelgate.proto.admin.v1.VersionDrift;
import io.modelgate.runtime.repository.DriftSettings;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A fleet's drift of one version as one: every replica's sketches of each window merged (KLL
 * sketches merge, class counts add), every replica's reference likewise, and the merged windows
 * scored against the merged reference by the same steps as one replica's ({@link DriftProfile#scores}).
 * Each replica samples only what it serves; merged, the windows hold the fleet's sample, so a shift
 * that no replica's own window is large enough to call significant can be.
 *
 * <p>Sketches merge only where laid out alike (the same features, from the same model file): the
 * first replica's layout is the one merged (the asking replica's own, when it has one); a replica
 * laid out otherwise is named among those not merged, with why.
 *
 * <p>Stateless; any thread.
 */
public final class DriftMerge {
  /** Name of the merged entry's replica in a report. */
  public static final String FLEET = "fleet (merged)";

  private DriftMerge() {}

  /**
   * Merges {@code byReplica} (each replica's sketches of {@code version}, the asking replica's
   * first) into one entry of a report; {@code notMerged} (each "replica: why") is carried into it
   * with the replicas left out here.
   */
  public static VersionDrift merge(long version, Map<String, DriftSketches> byReplica, List<String> notMerged) {
    VersionDrift.Builder out = VersionDrift.newBuilder().setVersion(version).setReplica(FLEET);
    List<String> left = new ArrayList<>(notMerged);
    Map<String, DriftSketches> alike = alike(byReplica, left);
    DriftSketches first = alike.isEmpty() ? null : alike.values().iterator().next();
    if (first == null) {
      return out.setState("WAITING").addAllNotMerged(left).build();
    }
    DriftSettings settings;
    try {
      settings = new DriftSettings(first.getSampleRate(), null, DriftSettings.DEFAULT_REFERENCE_REQUESTS,
          first.getWindow(), first.getKsThreshold(), first.getPsiThreshold(), DriftSettings.DEFAULT_MAX_FEATURES,
          first.getMinSamples());
    } catch (IllegalArgumentException e) {
      return out.setState("WAITING").addAllNotMerged(left)
          .addNotMerged(byReplica.keySet().iterator().next() + ": its drift settings are not valid (" + e.getMessage() + ")")
          .build();
    }
    Layout layout = Layout.of(first);
    List<DriftProfile.Feature> features = layout.features();
    int numeric = layout.numeric();
    int[] classWidths = layout.classWidths();
    DriftProfile.Sketches reference = new DriftProfile.Sketches(numeric, classWidths);
    DriftProfile.Sketches[] windows = new DriftProfile.Sketches[DriftSettings.WINDOWS.size()];
    boolean[] outputsUnscored = new boolean[windows.length];
    for (int i = 0; i < windows.length; i++) {
      windows[i] = new DriftProfile.Sketches(numeric, classWidths);
    }
    boolean referenceOutputsPending = false;
    List<String> merged = new ArrayList<>();
    List<String> references = new ArrayList<>();
    long profiled = 0;
    long dropped = 0;
    for (Map.Entry<String, DriftSketches> e : alike.entrySet()) {
      DriftSketches s = e.getValue();
      DriftProfile.Sketches ref = null;
      DriftProfile.Sketches[] mine = new DriftProfile.Sketches[windows.length];
      try {
        if (s.getWindowsCount() != windows.length) {
          throw new IllegalArgumentException(s.getWindowsCount() + " windows, where " + windows.length + " were expected");
        }
        if (s.hasReference()) {
          ref = DriftProfile.Sketches.fromProto(s.getReference(), numeric, classWidths);
        }
        for (int i = 0; i < windows.length; i++) {
          mine[i] = DriftProfile.Sketches.fromProto(s.getWindows(i), numeric, classWidths);
        }
      } catch (IllegalArgumentException bad) {
        left.add(e.getKey() + ": its sketches do not read (" + bad.getMessage() + ")");
        continue;
      }
      if (ref != null) {
        ref.addTo(reference);
        referenceOutputsPending |= s.getReference().getOutputsUnscored();
        references.add(e.getKey() + ": " + s.getReferenceSource() + " (" + ref.count + ")");
      }
      for (int i = 0; i < windows.length; i++) {
        mine[i].addTo(windows[i]);
        outputsUnscored[i] |= s.getWindows(i).getOutputsUnscored();
      }
      merged.add(e.getKey());
      profiled += s.getProfiled();
      dropped += s.getDropped();
    }
    out.addAllMergedFrom(merged).addAllNotMerged(left)
        .setSampleRate(settings.sampleRate())
        .setWindow(settings.window())
        .setProfiled(profiled)
        .setDropped(dropped);
    if (merged.isEmpty()) {
      return out.setState("WAITING").build();
    }
    if (references.isEmpty()) {
      return out.setState("FORMING").setForming("each replica's own (none has one yet)").build();
    }
    out.setReference("merged from " + (references.size() == 1 ? "1 replica's reference: " : references.size() + " replicas' references: ")
            + String.join("; ", references))
        .setReferenceSamples(reference.count);
    if (references.size() < merged.size()) {
      int forming = merged.size() - references.size();
      out.setForming(forming == 1 ? "the reference of 1 replica still forming (its windows are merged)"
          : "the references of " + forming + " replicas still forming (their windows are merged)");
    }
    out.setState("READY");
    boolean pending = referenceOutputsPending;
    int firstOutputSlot = first.getFirstOutputSlot();
    Drift.addFeatures(out, features, settings, window -> {
      int i = DriftSettings.WINDOWS.indexOf(window);
      return DriftProfile.scores(features, firstOutputSlot, window, reference, windows[i],
          outputsUnscored[i] || pending, settings);
    });
    return out.build();
  }

  /**
   * The fleet's {@code window} (1m, 5m or 15m) of a version as one reference: every replica's of
   * {@code byReplica} laid out alike merged, with the first's layout and model file, for every
   * replica to take ({@code admin drift baseline --merged}). Those left out are added to {@code
   * left}, each "replica: why".
   *
   * @throws io.modelgate.runtime.error.InferenceException FAILED_PRECONDITION when no replica's
   *     window holds a request
   */
  public static DriftSketches reference(long version, Map<String, DriftSketches> byReplica, String window,
      List<String> left, String source) {
    int index = DriftSettings.WINDOWS.indexOf(window);
    Map<String, DriftSketches> alike = alike(byReplica, left);
    DriftSketches first = alike.isEmpty() ? null : alike.values().iterator().next();
    if (first == null) {
      throw io.modelgate.runtime.error.InferenceException.failedPrecondition("version " + version + " has no drift"
          + " sketches on any replica" + (left.isEmpty() ? "" : " (" + String.join("; ", left) + ")"));
    }
    Layout layout = Layout.of(first);
    DriftProfile.Sketches merged = new DriftProfile.Sketches(layout.numeric(), layout.classWidths());
    boolean outputsUnscored = false;
    List<String> from = new ArrayList<>();
    for (Map.Entry<String, DriftSketches> e : alike.entrySet()) {
      DriftSketches s = e.getValue();
      DriftProfile.Sketches mine;
      try {
        if (s.getWindowsCount() != DriftSettings.WINDOWS.size()) {
          throw new IllegalArgumentException(s.getWindowsCount() + " windows, where " + DriftSettings.WINDOWS.size() + " were expected");
        }
        mine = DriftProfile.Sketches.fromProto(s.getWindows(index), layout.numeric(), layout.classWidths());
      } catch (IllegalArgumentException bad) {
        left.add(e.getKey() + ": its sketches do not read (" + bad.getMessage() + ")");
        continue;
      }
      if (mine.count == 0) {
        left.add(e.getKey() + ": no request in its last " + window);
        continue;
      }
      mine.addTo(merged);
      outputsUnscored |= s.getWindows(index).getOutputsUnscored();
      from.add(e.getKey() + " (" + mine.count + ")");
    }
    if (merged.count == 0) {
      throw io.modelgate.runtime.error.InferenceException.failedPrecondition("version " + version
          + " has profiled no request in the last " + window + " on any replica" + (left.isEmpty() ? "" : " (" + String.join("; ", left) + ")"));
    }
    return DriftSketches.newBuilder()
        .setVersion(version)
        .addAllFeatures(first.getFeaturesList())
        .setFirstOutputSlot(first.getFirstOutputSlot())
        .setModelSha256(first.getModelSha256())
        .setReference(merged.toProto(outputsUnscored))
        .setReferenceSource(source + ", merged from " + from.size() + (from.size() == 1 ? " replica: " : " replicas: ")
            + String.join(", ", from))
        .build();
  }

  /**
   * The sketches of {@code byReplica} laid out as the first's, of the same model file; each other
   * added to {@code left} with why.
   */
  private static Map<String, DriftSketches> alike(Map<String, DriftSketches> byReplica, List<String> left) {
    Map<String, DriftSketches> alike = new LinkedHashMap<>();
    DriftSketches first = null;
    String firstName = null;
    for (Map.Entry<String, DriftSketches> e : byReplica.entrySet()) {
      DriftSketches s = e.getValue();
      if (first == null) {
        first = s;
        firstName = e.getKey();
        alike.put(e.getKey(), s);
      } else if (!sameLayout(s, first)) {
        left.add(e.getKey() + ": its features are laid out otherwise than " + firstName
            + "'s (another model file, or rows of another shape)");
      } else if (!s.getModelSha256().isEmpty() && !first.getModelSha256().isEmpty()
          && !s.getModelSha256().equals(first.getModelSha256())) {
        left.add(e.getKey() + ": it serves another model.onnx (sha256 " + abbreviated(s.getModelSha256()) + ", not "
            + abbreviated(first.getModelSha256()) + ")");
      } else {
        alike.put(e.getKey(), s);
      }
    }
    return alike;
  }

  /** Whether two replicas' sketches are laid out alike (the same features in the same slots). */
  static boolean sameLayout(DriftSketches a, DriftSketches b) {
    return a.getFeaturesList().equals(b.getFeaturesList()) && a.getFirstOutputSlot() == b.getFirstOutputSlot();
  }

  /** Features and slot counts as a replica's sketches lay them out. */
  record Layout(List<DriftProfile.Feature> features, int numeric, int[] classWidths) {
    static Layout of(DriftSketches sketches) {
      List<DriftProfile.Feature> features = new ArrayList<>();
      int numeric = 0;
      List<Integer> widths = new ArrayList<>();
      for (DriftFeatureSlot slot : sketches.getFeaturesList()) {
        features.add(new DriftProfile.Feature(slot.getTensor(), slot.getFeature(), slot.getClasses(), slot.getSlot(), slot.getWidth()));
        if (slot.getClasses()) {
          widths.add(slot.getWidth());
        } else {
          numeric = Math.max(numeric, slot.getSlot() + 1);
        }
      }
      return new Layout(List.copyOf(features), numeric, widths.stream().mapToInt(Integer::intValue).toArray());
    }
  }

  private static String abbreviated(String sha256) {
    return sha256.length() > 12 ? sha256.substring(0, 12) + "..." : sha256;
  }
}

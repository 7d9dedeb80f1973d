package io.modelgate.gateway.rollout;

import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.RepositoryFolder;
import java.util.List;

/**
 * What a rollout's spec says, and what it asks of the model's versions: its defaults, its checks
 * on its own (steps, thresholds, the three versions told apart), and the versions' states and
 * files it needs to start. Stateless; any thread. The {@code ControlPlane} starts and judges
 * rollouts with it; the admin service checks a spec with it before loading a control's copy.
 */
public final class RolloutSpecs {
  private RolloutSpecs() {}

  /** The rank test's allowed slowdown where a spec sets none: 5%. */
  public static final double DEFAULT_LATENCY_MARGIN = 0.05;

  /** Thresholds a spec leaves at 0 (the latency margin: unset) take these. */
  public static Thresholds withDefaults(Thresholds t) {
    Thresholds.Builder b = t.toBuilder();
    if (t.getMinSamples() == 0) {
      b.setMinSamples(200);
    }
    if (t.getMaxP99Ratio() == 0) {
      b.setMaxP99Ratio(1.10);
    }
    if (t.getMaxErrorRateIncrease() == 0) {
      b.setMaxErrorRateIncrease(0.01);
    }
    if (t.getSignificance() == 0) {
      b.setSignificance(0.01);
    }
    if (!t.hasLatencyMargin()) {
      b.setLatencyMargin(DEFAULT_LATENCY_MARGIN);
    }
    return b.build();
  }

  /** A spec with its defaults filled in: steps 5, 25, 50, 100 and a 60 s interval. */
  public static RolloutSpec withDefaults(RolloutSpec spec) {
    RolloutSpec.Builder b = spec.toBuilder();
    if (spec.getStepsCount() == 0) {
      b.addAllSteps(List.of(5, 25, 50, 100));
    }
    if (spec.getIntervalS() == 0) {
      b.setIntervalS(60);
    }
    if (spec.getShadowRate() == 0 && spec.getThresholds().getMinShadowAgreement() > 0) {
      b.setShadowRate(1.0);
    }
    return b.setThresholds(withDefaults(spec.getThresholds())).build();
  }

  /**
   * {@code requested} with its defaults filled in ({@link #withDefaults(RolloutSpec)}), checked
   * for what it says on its own (the versions' states are checked when it starts).
   *
   * @throws InferenceException INVALID_ARGUMENT for a malformed spec
   */
  public static RolloutSpec validated(RolloutSpec requested) {
    RolloutSpec spec = withDefaults(requested);
    validate(spec);
    return spec;
  }

  private static void validate(RolloutSpec spec) {
    if (spec.getBaseline() == spec.getCandidate()) {
      throw InferenceException.invalidArgument(
          "baseline and candidate are both version " + spec.getBaseline() + " (expected: two versions)");
    }
    if (spec.getControl() < 0 || (spec.getControl() != 0
        && (spec.getControl() == spec.getBaseline() || spec.getControl() == spec.getCandidate()))) {
      throw InferenceException.invalidArgument(
          "control version " + spec.getControl() + " (expected: a third version, a copy of the baseline's model,"
              + " neither baseline " + spec.getBaseline() + " nor candidate " + spec.getCandidate() + ")");
    }
    int previous = 0;
    for (int step : spec.getStepsList()) {
      if (step <= previous || step > 100) {
        throw InferenceException.invalidArgument(
            "steps " + spec.getStepsList() + " (expected: increasing percentages from 1 to 100, ending at 100)");
      }
      previous = step;
    }
    if (previous != 100 || spec.getSteps(0) == 100) {
      throw InferenceException.invalidArgument(
          "steps " + spec.getStepsList()
              + " (expected: one or more steps below 100, where the candidate is judged, then 100)");
    }
    Thresholds t = spec.getThresholds();
    if (t.getMaxP99Ratio() < 1 || t.getSignificance() <= 0 || t.getSignificance() >= 1 || t.getMaxErrorRateIncrease() < 0
        || t.getMaxAccuracyDrop() < 0 || t.getMaxAccuracyDrop() > 1
        || t.getLatencyMargin() < 0 || t.getLatencyMargin() > 1
        || t.getMinShadowAgreement() < 0 || t.getMinShadowAgreement() > 1
        || spec.getShadowRate() < 0 || spec.getShadowRate() > 1
        || (t.getMinShadowAgreement() > 0 && spec.getShadowRate() == 0)) {
      throw InferenceException.invalidArgument(
          "thresholds " + t.toString().replace('\n', ' ')
              + " (expected: max_p99_ratio >= 1, 0 < significance < 1, max_error_rate_increase >= 0, 0 <= latency_margin <= 1,"
              + " 0 <= max_accuracy_drop <= 1, 0 <= min_shadow_agreement <= 1, 0 < shadow_rate <= 1)");
    }
  }

  /**
   * The largest step at which a rollout's control takes the candidate's share (from the baseline,
   * which keeps the rest): above it, the candidate is judged against the baseline.
   */
  public static final int MAX_CONTROLLED_STEP = 50;

  /**
   * A first step below this share, without a control, is noted when the rollout starts: the
   * candidate then runs rarely, which alone makes a model compute slower.
   */
  public static final int LOW_STEP = 25;

  /**
   * That {@code control} loaded the model file {@code baseline} loaded: the same SHA-256, taken
   * as each loaded (both READY).
   */
  public static void sameModel(Model model, long baseline, long control) {
    String a = model.version(baseline).map(ModelVersion::loadedOrNull).map(LoadedVersion::modelSha256).orElse("");
    String b = model.version(control).map(ModelVersion::loadedOrNull).map(LoadedVersion::modelSha256).orElse("");
    if (a.isEmpty() || !a.equals(b)) {
      throw InferenceException.failedPrecondition("control version " + control + " of model '" + model.name()
          + "' is not a copy of baseline version " + baseline + ": it loaded a " + RepositoryFolder.MODEL_FILE
          + " of sha256 " + b + ", the baseline one of sha256 " + a + " (expected: the baseline's file, loaded as another version)");
    }
  }

  /**
   * That version {@code number} of {@code model}, a rollout's {@code role} (baseline, candidate,
   * control), is READY.
   *
   * @throws InferenceException NOT_FOUND where it does not exist, FAILED_PRECONDITION where it is
   *     not READY
   */
  public static void requireReady(Model model, long number, String role) {
    ModelVersion version =
        model
            .version(number)
            .orElseThrow(
                () -> InferenceException.notFound(role + " version " + number + " of model '" + model.name() + "' does not exist"));
    if (!version.isReady()) {
      throw InferenceException.failedPrecondition(
          role + " version " + number + " of model '" + model.name() + "' is " + version.state() + ", not READY");
    }
  }

  /**
   * That the spec's control (if it names one) is READY and loaded the baseline's model file; with
   * {@code copy_control}, that it is the gateway's copy of the baseline.
   *
   * @throws InferenceException INVALID_ARGUMENT for a copy without its number, NOT_FOUND or
   *     FAILED_PRECONDITION as {@link #requireReady} and {@link #sameModel} say
   */
  public static void requireControl(Model model, RolloutSpec spec) {
    if (spec.getCopyControl() && spec.getControl() == 0) {
      throw InferenceException.invalidArgument(
          "copy_control without the control's number (the admin service loads the copy and names it)");
    }
    if (spec.getControl() == 0) {
      return;
    }
    requireReady(model, spec.getControl(), "control");
    ModelVersion control = model.version(spec.getControl()).orElseThrow();
    if (spec.getCopyControl() && control.copyOf() != spec.getBaseline()) {
      throw InferenceException.failedPrecondition("control version " + spec.getControl() + " of model '"
          + model.name() + "' is not the gateway's copy of baseline version " + spec.getBaseline());
    }
    sameModel(model, spec.getBaseline(), spec.getControl());
  }

  /**
   * What a rollout of {@code spec} (with its defaults) does, in words, for its START decision:
   * its first phase or step, its versions, and a note where its first step is low without a control.
   */
  public static String described(RolloutSpec spec) {
    boolean shadowPhase = spec.getThresholds().getMinShadowAgreement() > 0;
    return (shadowPhase
            ? String.format("shadow phase, candidate %d gets a copy of %.0f%% of requests and goes live at %d%%"
                    + " if at least %.2f%% of %d copies agree with the primary answer",
                spec.getCandidate(), spec.getShadowRate() * 100, spec.getSteps(0),
                spec.getThresholds().getMinShadowAgreement() * 100, spec.getThresholds().getMinSamples())
            : "candidate " + spec.getCandidate() + " at " + spec.getSteps(0) + "%")
        + ", baseline " + spec.getBaseline()
        + (spec.getControl() == 0 ? "" : ", control " + spec.getControl()
            + (spec.getCopyControl() ? " (the baseline's model, loaded again by the gateway)" : " (the baseline's model)")
            + " at the candidate's share up to " + MAX_CONTROLLED_STEP + "%")
        + (spec.getControl() == 0 && spec.getSteps(0) < LOW_STEP
            ? "; note: at a first step below " + LOW_STEP + "% without a control the candidate runs rarely"
                + " and computes slower than the busy baseline, whatever its model (see --control)"
            : "");
  }
}

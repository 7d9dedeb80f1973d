package io.modelgate.gateway.health;

import io.modelgate.runtime.repository.DriftSettings;
import io.modelgate.runtime.tensor.DataType;
import io.modelgate.runtime.tensor.InputTensor;
import io.modelgate.runtime.tensor.ModelSignature;
import io.modelgate.runtime.tensor.OutputTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.apache.datasketches.kll.KllDoublesSketch;
import org.apache.datasketches.quantilescommon.QuantileSearchCriteria;

/**
 * What one load of one version has seen and answered, in streaming sketches, and a reference to
 * compare it with.
 *
 * <p>Features: per numeric input, each element of a row when a row has at most {@code
 * max_features} elements, else the row's summary statistics ({@link #SUMMARY}: mean, standard
 * deviation, minimum, maximum, L2 norm and, for rows of two or more axes, the centroid of |x| over
 * the last two axes, from 0 to 1); per floating-point output, the predicted class (argmax of the
 * last axis, up to {@link #MAX_CLASSES} classes) and the top score, or the value of a one-wide
 * output. Numeric features are KLL sketches ({@link #K}); classes a fixed histogram.
 *
 * <p>Windows: six intervals of 10 s (the last minute) and fifteen whole minutes, like the latency
 * statistics; a window is compared with the reference by the Kolmogorov–Smirnov statistic
 * (numeric) or the population stability index (classes).
 *
 * <p>Memory is bounded: (6 + 15 + 1 + 1) sets of sketches plus the reference, each at most {@link
 * #K}-sized KLL sketches (a few KB whatever the count) and class histograms.
 *
 * <p>Not thread-safe: owned by the drift thread ({@link Drift}).
 */
final class DriftProfile {
  /** KLL accuracy parameter: about 2% rank error, a few KB per sketch. */
  static final int K = 128;
  /** Classes histogrammed per output; wider outputs keep only their top score. */
  static final int MAX_CLASSES = 1024;
  static final long FINE_MILLIS = 10_000;
  static final int FINE = 6;
  static final int MINUTES = 15;
  /** p-value below which a Kolmogorov–Smirnov difference counts as significant. */
  static final double SIGNIFICANCE = 0.001;
  static final List<String> SUMMARY = List.of("mean", "std", "min", "max", "l2_norm", "centroid_y", "centroid_x");

  /** One feature: a numeric sketch slot or a class histogram slot. */
  record Feature(String tensor, String name, boolean classes, int slot, int width) {
    String statistic() {
      return classes ? "psi" : "ks";
    }
  }

  /** How the features of one tensor are taken. */
  private record Plan(boolean input, int index, String tensor, Mode mode, int width, int firstSlot, int classSlot, int classes) {}

  private enum Mode { ELEMENTS, SUMMARY, SUMMARY_2D, CLASSES, VALUE, TOP }

  /** One set of sketches: a time interval, a window or a reference. */
  static final class Sketches {
    final KllDoublesSketch[] numeric;
    final long[][] classes;
    long count;

    private Sketches(KllDoublesSketch[] numeric, long[][] classes, long count) {
      this.numeric = numeric;
      this.classes = classes;
      this.count = count;
    }

    Sketches(int numericFeatures, int[] classWidths) {
      numeric = new KllDoublesSketch[numericFeatures];
      for (int i = 0; i < numericFeatures; i++) {
        numeric[i] = KllDoublesSketch.newHeapInstance(K);
      }
      classes = new long[classWidths.length][];
      for (int i = 0; i < classWidths.length; i++) {
        classes[i] = new long[classWidths[i]];
      }
    }

    void reset() {
      for (KllDoublesSketch sketch : numeric) {
        sketch.reset();
      }
      for (long[] histogram : classes) {
        java.util.Arrays.fill(histogram, 0);
      }
      count = 0;
    }

    void addTo(Sketches target) {
      for (int i = 0; i < numeric.length; i++) {
        if (!numeric[i].isEmpty()) {
          target.numeric[i].merge(numeric[i]);
        }
      }
      for (int i = 0; i < classes.length; i++) {
        for (int c = 0; c < classes[i].length; c++) {
          target.classes[i][c] += classes[i][c];
        }
      }
      target.count += count;
    }

    /** These sketches as sent to another replica ({@link DriftMerge}). */
    io.modelgate.proto.admin.v1.DriftSketchSet toProto(boolean outputsUnscored) {
      io.modelgate.proto.admin.v1.DriftSketchSet.Builder out =
          io.modelgate.proto.admin.v1.DriftSketchSet.newBuilder().setCount(count).setOutputsUnscored(outputsUnscored);
      for (KllDoublesSketch sketch : numeric) {
        out.addNumeric(com.google.protobuf.ByteString.copyFrom(sketch.toByteArray()));
      }
      for (long[] histogram : classes) {
        io.modelgate.proto.admin.v1.DriftClassCounts.Builder counts = io.modelgate.proto.admin.v1.DriftClassCounts.newBuilder();
        for (long c : histogram) {
          counts.addCounts(c);
        }
        out.addClasses(counts);
      }
      return out.build();
    }

    /**
     * Sketches another replica sent ({@link #toProto}), laid out as {@code numericFeatures} sketches
     * and classes of {@code classWidths}.
     *
     * @throws IllegalArgumentException when they are laid out otherwise, or a sketch does not parse
     */
    static Sketches fromProto(io.modelgate.proto.admin.v1.DriftSketchSet set, int numericFeatures, int[] classWidths) {
      if (set.getNumericCount() != numericFeatures || set.getClassesCount() != classWidths.length) {
        throw new IllegalArgumentException(set.getNumericCount() + " numeric and " + set.getClassesCount()
            + " class features, where " + numericFeatures + " and " + classWidths.length + " were laid out");
      }
      KllDoublesSketch[] numeric = new KllDoublesSketch[numericFeatures];
      for (int i = 0; i < numericFeatures; i++) {
        try {
          numeric[i] = KllDoublesSketch.heapify(org.apache.datasketches.memory.Memory.wrap(set.getNumeric(i).toByteArray()));
        } catch (RuntimeException e) {
          throw new IllegalArgumentException("numeric feature " + i + "'s sketch does not parse: " + e.getMessage(), e);
        }
      }
      long[][] classes = new long[classWidths.length][];
      for (int i = 0; i < classWidths.length; i++) {
        if (set.getClasses(i).getCountsCount() != classWidths[i]) {
          throw new IllegalArgumentException("class feature " + i + " has " + set.getClasses(i).getCountsCount()
              + " classes, where " + classWidths[i] + " were laid out");
        }
        classes[i] = set.getClasses(i).getCountsList().stream().mapToLong(Long::longValue).toArray();
      }
      return new Sketches(numeric, classes, set.getCount());
    }

    /** Bytes these sketches would take serialized (their retained items), for the memory bound. */
    long bytes() {
      long bytes = 0;
      for (KllDoublesSketch sketch : numeric) {
        bytes += sketch.getSerializedSizeBytes();
      }
      for (long[] histogram : classes) {
        bytes += 8L * histogram.length;
      }
      return bytes;
    }
  }

  /** A feature's comparison with the reference over one window. NaN score: not enough samples. */
  record Score(Feature feature, String window, long samples, double score, double significant, boolean drifted) {}

  /** Thresholds and minimum samples are read from it; a reload may replace it ({@link #settings(DriftSettings)}). */
  private DriftSettings settings;
  final List<Feature> features;
  private final List<Plan> plans;
  private final int numericCount;
  /** Numeric slots from this one on are outputs' (inputs' come first); every class slot is an output's. */
  private final int firstOutputSlot;
  private final int[] classWidths;
  private final double[] values;

  private final Sketches[] fine = new Sketches[FINE];
  private final Sketches[] minutes = new Sketches[MINUTES];
  private Sketches filling;
  private int fineAt;
  private int minuteAt;
  /** The fine interval being filled, as epoch millis / FINE_MILLIS. */
  private long fineIndex = Long.MIN_VALUE;

  /** The reference, once complete; null before. */
  private Sketches reference;
  private String referenceSource = "";
  /**
   * The outputs are another model file's than the reference's and the windows' ({@link
   * #outputsChanged}): not scored until a reference forms again ({@link #completeReference}) and
   * each window no longer reaches back before the change.
   */
  private boolean outputsPending;
  /** Ends the source of a reference formed for the outputs alone. */
  private static final String FOR_OUTPUTS = ", for the outputs";
  /** {@link #outputsChangedAt} of a profile whose outputs have always been its first load's. */
  private static final long NEVER = Long.MIN_VALUE;
  /** When the outputs last changed (epoch ms), or {@link #NEVER}. */
  private long outputsChangedAt = NEVER;
  /** The reference being formed is for the outputs only: the inputs' stays ({@link #outputsChanged}). */
  private boolean formingOutputs;
  /** Sketches being filled as a reference (from requests or a golden run); null when none is. */
  private Sketches forming;
  private long formingTarget;
  private String formingSource = "";

  private ByteBuffer scratch = ByteBuffer.allocate(4096).order(ByteOrder.LITTLE_ENDIAN);

  /**
   * The profile of a version with {@code signature}, its features laid out from the shapes of its
   * first observation ({@code inputs}, {@code outputs}).
   */
  DriftProfile(DriftSettings settings, ModelSignature signature, InputTensor[] inputs, OutputTensor[] outputs) {
    this.settings = settings;
    List<Feature> laid = new ArrayList<>();
    List<Plan> planned = new ArrayList<>();
    List<Integer> widths = new ArrayList<>();
    int numeric = 0;
    for (int i = 0; i < inputs.length; i++) {
      InputTensor input = inputs[i];
      if (input == null || !numericType(input.dataType())) {
        continue;
      }
      long[] rowShape = rowShape(input.shape(), signature.batches() ? signature.inputAxis(i) : ModelSignature.NO_AXIS);
      int width = (int) product(rowShape);
      String name = input.spec().name();
      if (width <= settings.maxFeatures()) {
        planned.add(new Plan(true, i, name, Mode.ELEMENTS, width, numeric, -1, 0));
        for (int e = 0; e < width; e++) {
          laid.add(new Feature(name, "[" + e + "]", false, numeric + e, 0));
        }
        numeric += width;
      } else {
        boolean twoD = rowShape.length >= 2;
        int count = twoD ? SUMMARY.size() : SUMMARY.size() - 2;
        planned.add(new Plan(true, i, name, twoD ? Mode.SUMMARY_2D : Mode.SUMMARY, width, numeric, -1, 0));
        for (int f = 0; f < count; f++) {
          laid.add(new Feature(name, SUMMARY.get(f), false, numeric + f, 0));
        }
        numeric += count;
      }
    }
    int outputsFrom = numeric;
    for (OutputTensor output : outputs) {
      if (!output.isFloatingPoint()) {
        continue;
      }
      int width = output.rowWidth();
      String name = output.name();
      if (width == 1) {
        planned.add(new Plan(false, -1, name, Mode.VALUE, 1, numeric, -1, 0));
        laid.add(new Feature(name, "value", false, numeric++, 0));
      } else if (width <= MAX_CLASSES) {
        planned.add(new Plan(false, -1, name, Mode.CLASSES, width, numeric, widths.size(), width));
        laid.add(new Feature(name, "class", true, widths.size(), width));
        laid.add(new Feature(name, "top_score", false, numeric++, 0));
        widths.add(width);
      } else {
        planned.add(new Plan(false, -1, name, Mode.TOP, width, numeric, -1, 0));
        laid.add(new Feature(name, "top_score", false, numeric++, 0));
      }
    }
    this.features = List.copyOf(laid);
    this.plans = List.copyOf(planned);
    this.numericCount = numeric;
    this.firstOutputSlot = outputsFrom;
    this.classWidths = widths.stream().mapToInt(Integer::intValue).toArray();
    this.values = new double[Math.max(numeric, 1)];
    for (int i = 0; i < FINE; i++) {
      fine[i] = newSketches();
    }
    for (int i = 0; i < MINUTES; i++) {
      minutes[i] = newSketches();
    }
    filling = newSketches();
  }

  private Sketches newSketches() {
    return new Sketches(numericCount, classWidths);
  }

  private static boolean numericType(DataType type) {
    return switch (type) {
      case BOOL, UINT8, INT8, INT16, INT32, INT64, FP32, FP64 -> true;
      default -> false;
    };
  }

  /** The shape of one row: without the batch axis when it is the first, else the whole tensor. */
  private static long[] rowShape(long[] shape, int batchAxis) {
    if (batchAxis == 0 && shape.length > 0) {
      return java.util.Arrays.copyOfRange(shape, 1, shape.length);
    }
    return shape;
  }

  private static long product(long[] shape) {
    long product = 1;
    for (long d : shape) {
      product *= d;
    }
    return product;
  }

  /**
   * The settings of a new load of the same version (a reload); its {@code max_features} must be
   * this profile's, which laid its features out.
   */
  void settings(DriftSettings next) {
    if (next.maxFeatures() != settings.maxFeatures()) {
      throw new IllegalArgumentException("max_features " + next.maxFeatures() + " (the profile's: " + settings.maxFeatures() + ")");
    }
    settings = next;
  }

  // ---- observing ----

  /**
   * Adds one request and its answer to the interval of {@code nowMillis}, and to the reference
   * being formed, if any.
   */
  void observe(InputTensor[] inputs, OutputTensor[] outputs, long nowMillis) {
    rotate(nowMillis);
    Sketches target = fine[fineAt];
    add(target, inputs, outputs);
    if (forming != null && formingTarget > 0) {
      add(forming, inputs, outputs);
      if (forming.count >= formingTarget) {
        completeReference();
      }
    }
  }

  /** Adds an observation to the reference being formed by a golden run (not to any window). */
  void observeReference(InputTensor[] inputs, OutputTensor[] outputs) {
    if (forming != null) {
      add(forming, inputs, outputs);
    }
  }

  private void add(Sketches target, InputTensor[] inputs, OutputTensor[] outputs) {
    for (Plan plan : plans) {
      if (plan.input()) {
        if (plan.index() < inputs.length && inputs[plan.index()] != null) {
          addInput(target, plan, inputs[plan.index()]);
        }
      } else {
        for (OutputTensor output : outputs) {
          if (output.name().equals(plan.tensor())) {
            addOutput(target, plan, output);
          }
        }
      }
    }
    target.count++;
  }

  private void addInput(Sketches target, Plan plan, InputTensor input) {
    int n = input.elementCount();
    if (n == 0 || n % plan.width() != 0) {
      return;
    }
    double[] row = elements(input);
    long[] shape = input.shape();
    int h = shape.length >= 2 ? (int) shape[shape.length - 2] : 1;
    int w = shape.length >= 1 ? (int) shape[shape.length - 1] : 1;
    for (int from = 0; from < n; from += plan.width()) {
      switch (plan.mode()) {
        case ELEMENTS -> {
          for (int e = 0; e < plan.width(); e++) {
            target.numeric[plan.firstSlot() + e].update(row[from + e]);
          }
        }
        case SUMMARY, SUMMARY_2D -> summarize(target, plan, row, from, h, w);
        default -> throw new IllegalStateException(plan.mode().name());
      }
    }
  }

  /**
   * The summary features of one row, in one pass without divisions: mean, standard deviation,
   * minimum, maximum, L2 norm and, laid out as images of {@code h} × {@code w}, the centroid of |x|.
   */
  private void summarize(Sketches target, Plan plan, double[] x, int from, int h, int w) {
    int width = plan.width();
    double sum = 0;
    double squares = 0;
    double min = Double.POSITIVE_INFINITY;
    double max = Double.NEGATIVE_INFINITY;
    boolean images = plan.mode() == Mode.SUMMARY_2D && h > 0 && w > 0 && width % (h * w) == 0;
    double mass = 0;
    double ys = 0;
    double xs = 0;
    int i = from;
    int end = from + width;
    while (i < end) {
      // One image row (or the whole row when it is not laid out as images).
      int rowEnd = images ? i + w : end;
      int y = images ? ((i - from) / w) % h : 0;
      double rowMass = 0;
      for (int col = 0; i < rowEnd; i++, col++) {
        double v = x[i];
        sum += v;
        squares += v * v;
        if (v < min) {
          min = v;
        }
        if (v > max) {
          max = v;
        }
        double m = v < 0 ? -v : v;
        rowMass += m;
        xs += m * col;
      }
      mass += rowMass;
      ys += rowMass * y;
    }
    double mean = sum / width;
    int slot = plan.firstSlot();
    target.numeric[slot].update(mean);
    target.numeric[slot + 1].update(Math.sqrt(Math.max(0, squares / width - mean * mean)));
    target.numeric[slot + 2].update(min);
    target.numeric[slot + 3].update(max);
    target.numeric[slot + 4].update(Math.sqrt(squares));
    if (images) {
      target.numeric[slot + 5].update(mass == 0 ? 0.5 : ys / mass / Math.max(1, h - 1));
      target.numeric[slot + 6].update(mass == 0 ? 0.5 : xs / mass / Math.max(1, w - 1));
    }
  }

  private void addOutput(Sketches target, Plan plan, OutputTensor output) {
    double[] v = output.toDoubles();
    int width = output.rowWidth();
    if (plan.mode() == Mode.VALUE) {
      for (double value : v) {
        target.numeric[plan.firstSlot()].update(value);
      }
      return;
    }
    if (width != plan.width()) {
      return;
    }
    for (int row = 0; row + width <= v.length; row += width) {
      int best = OutputTensor.argmax(v, row, width);
      target.numeric[plan.firstSlot()].update(v[row + best]);
      if (plan.mode() == Mode.CLASSES) {
        target.classes[plan.classSlot()][best]++;
      }
    }
  }

  /** The elements of a numeric input as doubles, into a reused array when it fits. */
  private double[] elements(InputTensor input) {
    int bytes = input.byteSize();
    if (scratch.capacity() < bytes) {
      scratch = ByteBuffer.allocate(Integer.highestOneBit(bytes - 1) << 1).order(ByteOrder.LITTLE_ENDIAN);
    }
    scratch.clear();
    input.copyTo(scratch);
    scratch.flip();
    int n = input.elementCount();
    double[] out = n <= elementBuffer.length ? elementBuffer : (elementBuffer = new double[n]);
    switch (input.dataType()) {
      case FP32 -> {
        if (floats.length < n) {
          floats = new float[n];
        }
        scratch.asFloatBuffer().get(floats, 0, n);
        for (int i = 0; i < n; i++) {
          out[i] = floats[i];
        }
      }
      case FP64 -> {
        for (int i = 0; i < n; i++) {
          out[i] = scratch.getDouble();
        }
      }
      case INT64 -> {
        for (int i = 0; i < n; i++) {
          out[i] = scratch.getLong();
        }
      }
      case INT32 -> {
        for (int i = 0; i < n; i++) {
          out[i] = scratch.getInt();
        }
      }
      case INT16 -> {
        for (int i = 0; i < n; i++) {
          out[i] = scratch.getShort();
        }
      }
      case INT8 -> {
        for (int i = 0; i < n; i++) {
          out[i] = scratch.get();
        }
      }
      case UINT8, BOOL -> {
        for (int i = 0; i < n; i++) {
          out[i] = scratch.get() & 0xff;
        }
      }
      default -> throw new IllegalStateException(input.dataType().wireName());
    }
    return out;
  }

  private double[] elementBuffer = new double[1024];
  private float[] floats = new float[1024];

  // ---- time ----

  /** Closes the intervals that ended before {@code nowMillis}. */
  void rotate(long nowMillis) {
    long index = Math.floorDiv(nowMillis, FINE_MILLIS);
    if (fineIndex == Long.MIN_VALUE || index - fineIndex > (long) (MINUTES + 2) * FINE) {
      // First use, or idle for longer than every window: start empty.
      for (Sketches s : fine) {
        s.reset();
      }
      for (Sketches s : minutes) {
        s.reset();
      }
      filling.reset();
      fineIndex = index;
      return;
    }
    while (fineIndex < index) {
      fine[fineAt].addTo(filling);
      fineIndex++;
      if (Math.floorMod(fineIndex * FINE_MILLIS, 60_000L) == 0) {
        minuteAt = (minuteAt + 1) % MINUTES;
        Sketches evicted = minutes[minuteAt];
        minutes[minuteAt] = filling;
        evicted.reset();
        filling = evicted;
      }
      fineAt = (fineAt + 1) % FINE;
      fine[fineAt].reset();
    }
  }

  /** The sketches of a window ({@code 1m}, {@code 5m} or {@code 15m}) ending now, as a new set. */
  Sketches window(String window, long nowMillis) {
    rotate(nowMillis);
    Sketches sum = newSketches();
    if (window.equals("1m")) {
      for (Sketches s : fine) {
        s.addTo(sum);
      }
      return sum;
    }
    int wholeMinutes = (window.equals("5m") ? 5 : 15) - 1;
    fine[fineAt].addTo(sum);
    filling.addTo(sum);
    for (int i = 0; i < wholeMinutes; i++) {
      minutes[Math.floorMod(minuteAt - i, MINUTES)].addTo(sum);
    }
    return sum;
  }

  // ---- the reference ----

  /** Starts forming a reference from the next {@code requests} observations. */
  void referenceFromRequests(long requests) {
    forming = newSketches();
    formingTarget = requests;
    formingSource = "the first " + requests + " profiled requests";
    formingOutputs = false;
  }

  /** Starts forming a reference from a golden run's examples; {@link #completeReference} ends it. */
  void referenceFromGolden(String source) {
    forming = newSketches();
    formingTarget = 0;
    formingSource = source;
    formingOutputs = false;
  }

  /**
   * The version now answers from another model file (a reload): what the windows and the reference
   * hold of its outputs is the old file's. The outputs are not scored until a reference forms again
   * — from the next {@code requests} observations for the outputs alone (the inputs' reference
   * stays: the traffic is the same world's) where {@code fromRequests}, else by the golden run the
   * caller expects — and, in each window, until the window no longer reaches back to {@code
   * nowMillis}. Without a reference yet, the one being formed starts again.
   */
  void outputsChanged(long nowMillis, long requests, boolean fromRequests) {
    outputsChangedAt = nowMillis;
    if (reference == null) {
      if (fromRequests) {
        referenceFromRequests(requests);
      }
      return;
    }
    outputsPending = true;
    if (fromRequests) {
      forming = newSketches();
      formingTarget = requests;
      formingSource = "the first " + requests + " profiled requests since the model file changed" + FOR_OUTPUTS;
      formingOutputs = true;
    }
  }

  /** The reference being formed becomes the reference (if it has any observation). */
  void completeReference() {
    if (forming != null && forming.count > 0) {
      if (formingOutputs && reference != null) {
        // The inputs' reference stays; the outputs' is the new file's.
        Sketches merged = newSketches();
        for (int i = 0; i < numericCount; i++) {
          merged.numeric[i] = i < firstOutputSlot ? reference.numeric[i] : forming.numeric[i];
        }
        for (int i = 0; i < classWidths.length; i++) {
          merged.classes[i] = forming.classes[i];
        }
        merged.count = reference.count;
        reference = merged;
        String outputs = formingSource.substring(0, formingSource.length() - FOR_OUTPUTS.length());
        referenceSource = referenceSource.replaceAll("; outputs: .*$", "") + "; outputs: " + outputs + " (" + forming.count + ")";
      } else {
        reference = forming;
        referenceSource = formingSource;
      }
      outputsPending = false;
    }
    forming = null;
    formingOutputs = false;
  }

  /** Abandons the reference being formed (a golden run that failed). */
  void abandonReference() {
    forming = null;
    formingOutputs = false;
  }

  /** Makes {@code sketches} (a window) the reference. */
  void setReference(Sketches sketches, String source) {
    reference = sketches;
    referenceSource = source;
    forming = null;
    formingOutputs = false;
  }

  boolean formingReference() {
    return forming != null;
  }

  String referenceSource() {
    return reference == null ? "" : referenceSource;
  }

  String formingSource() {
    return forming == null ? "" : formingSource + " (" + forming.count + " so far)";
  }

  long referenceSamples() {
    return reference == null ? 0 : reference.count;
  }

  boolean hasReference() {
    return reference != null;
  }

  // ---- scores ----

  /** Every feature's score over {@code window}, against the reference; empty without one. */
  List<Score> scores(String window, long nowMillis) {
    if (reference == null) {
      return List.of();
    }
    return scores(features, firstOutputSlot, window, reference, window(window, nowMillis), outputsUnscored(window, nowMillis), settings);
  }

  /**
   * Whether the outputs are left unscored over {@code window}: after a change of model file, while
   * their reference forms again, or while the window still holds the old file's answers.
   */
  boolean outputsUnscored(String window, long nowMillis) {
    return outputsPending || (outputsChangedAt != NEVER && nowMillis - outputsChangedAt < windowMillis(window));
  }

  /**
   * Every feature's score over {@code window}: {@code current} against {@code reference} (both laid
   * out as {@code features}, numeric slots from {@code firstOutputSlot} on the outputs'), by {@code
   * settings}' thresholds and minimum samples; the outputs' NaN where {@code outputsUnscored}. One
   * path for a profile's own scores and a fleet's merged ones ({@link DriftMerge}).
   */
  static List<Score> scores(List<Feature> features, int firstOutputSlot, String window, Sketches reference,
      Sketches current, boolean outputsUnscored, DriftSettings settings) {
    List<Score> scores = new ArrayList<>(features.size());
    for (Feature feature : features) {
      if (outputsUnscored && (feature.classes() || feature.slot() >= firstOutputSlot)) {
        scores.add(new Score(feature, window, current.count, Double.NaN, Double.NaN, false));
      } else {
        scores.add(score(feature, window, reference, current, settings));
      }
    }
    return scores;
  }

  /** How far back a window ({@code 1m}, {@code 5m}, {@code 15m}) reaches, ms. */
  private static long windowMillis(String window) {
    return switch (window) {
      case "1m" -> 60_000L;
      case "5m" -> 300_000L;
      default -> 900_000L;
    };
  }

  private static Score score(Feature feature, String window, Sketches reference, Sketches current, DriftSettings settings) {
    long samples = current.count;
    if (samples < settings.minSamples()) {
      return new Score(feature, window, samples, Double.NaN, Double.NaN, false);
    }
    if (feature.classes()) {
      double psi = psi(reference.classes[feature.slot()], current.classes[feature.slot()]);
      if (Double.isNaN(psi)) {
        return new Score(feature, window, samples, Double.NaN, Double.NaN, false);
      }
      return new Score(feature, window, samples, psi, Double.NaN, psi > settings.psiThreshold());
    }
    KllDoublesSketch ref = reference.numeric[feature.slot()];
    KllDoublesSketch cur = current.numeric[feature.slot()];
    if (ref.isEmpty() || cur.isEmpty()) {
      return new Score(feature, window, samples, Double.NaN, Double.NaN, false);
    }
    double ks = ks(ref, cur);
    double significant = significantKs(ref, cur);
    return new Score(feature, window, samples, ks, significant, ks > settings.ksThreshold() && ks > significant);
  }

  /**
   * The Kolmogorov–Smirnov statistic two sketches must exceed to differ at p = {@link
   * #SIGNIFICANCE}: c(α)·√((n₁ + n₂)/(n₁·n₂)) over the values each has seen, c(α) = √(−ln(α/2)/2)
   * (1.95), plus each sketch's rank error ({@code getNormalizedRankError(false)}, about 0.02 at
   * {@link #K}) where it has compacted — one that still holds every value it has seen is exact.
   * A sketch's distribution is within its rank error of its values', so the statistic of the
   * values themselves is at least the sketches' less both errors. (DataSketches' own {@code
   * KolmogorovSmirnov.computeKSThreshold} counts the values a sketch retains where this counts those
   * it has seen: at most about 400 at {@code K}, which holds its threshold above about 0.18 however
   * many requests the windows hold, and made any {@code ks_threshold} below that unreachable.)
   */
  static double significantKs(KllDoublesSketch a, KllDoublesSketch b) {
    double n1 = a.getN();
    double n2 = b.getN();
    return KS_FACTOR * Math.sqrt((n1 + n2) / (n1 * n2)) + rankError(a) + rankError(b);
  }

  /** c(α) of {@link #significantKs} at {@link #SIGNIFICANCE}. */
  private static final double KS_FACTOR = Math.sqrt(-0.5 * Math.log(0.5 * SIGNIFICANCE));

  private static double rankError(KllDoublesSketch sketch) {
    return sketch.isEstimationMode() ? sketch.getNormalizedRankError(false) : 0;
  }

  /**
   * The two-sample Kolmogorov–Smirnov statistic of two sketches: the largest difference between
   * their cumulative distributions, P(X ≤ x), over every value either retains. (DataSketches'
   * own {@code computeKSDelta} compares ranks of different inclusivity, which reports a difference
   * between two sketches of the same constant.)
   */
  static double ks(KllDoublesSketch a, KllDoublesSketch b) {
    double largest = 0;
    for (KllDoublesSketch points : new KllDoublesSketch[] {a, b}) {
      for (double x : points.getSortedView().getQuantiles()) {
        double difference = Math.abs(a.getRank(x, QuantileSearchCriteria.INCLUSIVE) - b.getRank(x, QuantileSearchCriteria.INCLUSIVE));
        largest = Math.max(largest, difference);
      }
    }
    return largest;
  }

  /**
   * The population stability index of {@code current} against {@code reference}: the sum over
   * classes of (q − p)·ln(q / p), each share smoothed by half an observation so that an empty class
   * does not make it infinite. NaN when either is empty.
   */
  static double psi(long[] reference, long[] current) {
    long n = 0;
    long m = 0;
    for (int c = 0; c < reference.length; c++) {
      n += reference[c];
      m += current[c];
    }
    if (n == 0 || m == 0) {
      return Double.NaN;
    }
    double smoothing = 0.5;
    double pTotal = n + smoothing * reference.length;
    double qTotal = m + smoothing * current.length;
    double psi = 0;
    for (int c = 0; c < reference.length; c++) {
      double p = (reference[c] + smoothing) / pTotal;
      double q = (current[c] + smoothing) / qTotal;
      psi += (q - p) * Math.log(q / p);
    }
    return psi;
  }

  /**
   * What this profile holds, for another replica to merge with its own ({@link DriftMerge}): its
   * layout, thresholds, reference (if any) and the 1m, 5m and 15m windows ending at {@code
   * nowMillis}.
   */
  io.modelgate.proto.admin.v1.DriftSketches.Builder sketches(long nowMillis) {
    io.modelgate.proto.admin.v1.DriftSketches.Builder out = io.modelgate.proto.admin.v1.DriftSketches.newBuilder()
        .setFirstOutputSlot(firstOutputSlot)
        .setWindow(settings.window())
        .setKsThreshold(settings.ksThreshold())
        .setPsiThreshold(settings.psiThreshold())
        .setMinSamples(settings.minSamples())
        .addAllFeatures(slots());
    if (reference != null) {
      out.setReference(reference.toProto(outputsPending)).setReferenceSource(referenceSource);
    }
    for (String window : DriftSettings.WINDOWS) {
      out.addWindows(window(window, nowMillis).toProto(outputsUnscored(window, nowMillis)));
    }
    return out;
  }

  /** This profile's features as {@link #sketches} sends them: to compare another's layout with. */
  List<io.modelgate.proto.admin.v1.DriftFeatureSlot> slots() {
    List<io.modelgate.proto.admin.v1.DriftFeatureSlot> slots = new ArrayList<>(features.size());
    for (Feature feature : features) {
      slots.add(io.modelgate.proto.admin.v1.DriftFeatureSlot.newBuilder().setTensor(feature.tensor())
          .setFeature(feature.name()).setClasses(feature.classes()).setSlot(feature.slot()).setWidth(feature.width()).build());
    }
    return slots;
  }

  int firstOutputSlot() {
    return firstOutputSlot;
  }

  /**
   * Makes {@code set} (sketches laid out as this profile's, another replica's or a fleet's) the reference.
   *
   * @throws IllegalArgumentException when they are laid out otherwise, or do not parse
   */
  void setReference(io.modelgate.proto.admin.v1.DriftSketchSet set, String source) {
    setReference(Sketches.fromProto(set, numericCount, classWidths), source);
  }

  /** Bytes held by every set of sketches (the serialized size of their retained items). */
  long bytes() {
    long bytes = filling.bytes();
    for (Sketches s : fine) {
      bytes += s.bytes();
    }
    for (Sketches s : minutes) {
      bytes += s.bytes();
    }
    if (reference != null) {
      bytes += reference.bytes();
    }
    if (forming != null) {
      bytes += forming.bytes();
    }
    return bytes;
  }
}

package io.modelgate.runtime.execution;

import io.modelgate.runtime.error.InferenceException;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * The batcher's pending list: the requests it has taken off the ring and not yet placed in a batch,
 * in arrival order, and how the next batch is chosen among them.
 *
 * <p>A batch starts with the oldest request and adds, in arrival order, requests that may share its
 * execution ({@link io.modelgate.runtime.tensor.DecodedRequest#canShareBatchWith}) while the rows
 * fit. When requests of more than one lane (tenant) wait, the lanes take turns and share. A lane's
 * share of a batch is its weight's part of the weights of the lanes waiting ({@link
 * InferenceRequest#laneWeight}; equal weights: an equal share), rounded down, at least one row —
 * so that the shares fit in the batch and no lane's share is taken by those counted before it:
 *
 * <ul>
 *   <li>Light lanes go first: when some lanes have no more rows pending than their share of a
 *       batch and others have more (a backlog), the light lanes' requests run as a batch of their
 *       own. The batch after it serves everyone, so a backlog is never starved.
 *   <li>Otherwise the batch starts with the oldest request of a lane other than the one that
 *       started the previous batch, each lane may place up to its share of the batch's rows, and a
 *       last pass gives the rows no lane claimed to the oldest of the rest.
 * </ul>
 *
 * A tenant sending within its share thus waits for the batch being run and its own small one, not
 * for another tenant's backlog; the cost is at most one extra execution for every batch of the
 * backlog, and only while a light lane has requests waiting. With executors reserved for light
 * lanes ({@link #chooseWithoutBacklog}), it does not wait for the backlog's batch either.
 *
 * <p>Every lane waiting is told apart, however many: the lanes' table starts small and grows with
 * the lanes waiting at once, which the pending requests bound.
 *
 * <p>Threads: the batcher thread only. The list grows on demand up to the queue capacity (the
 * scheduler's admission count bounds what can be pending), and the lanes' table with it, so memory
 * follows the backlog; nothing is allocated per batch once they have grown.
 */
final class PendingRequests {
  /** Lanes the table holds before it first grows. */
  static final int INITIAL_LANES = 16;

  private final BatchPolicy policy;
  private final int maxLength;
  private InferenceRequest[] pending;
  private boolean[] taken;
  private int count;
  /** Pending requests with a lane (not the shared one); 0 means one lane and no fair pass. */
  private int laned;

  // The batch being chosen: the pending index of each of its requests, and how many were chosen.
  private final int[] batchIndex;
  private int chosen;
  private final boolean[] preferred;

  // The lanes among the pending requests, by slot in the order first counted ({@link #countLanes}).
  private String[] lanes = new String[INITIAL_LANES];
  /** Rows a lane has placed in the batch being chosen. */
  private int[] laneRows = new int[INITIAL_LANES];
  /** Rows a lane has pending. */
  private int[] lanePending = new int[INITIAL_LANES];
  /** A lane's weight (that of the first of its requests counted). */
  private int[] laneWeight = new int[INITIAL_LANES];
  /**
   * A lane's share of the batch being chosen, in rows: the most it places in a fair pass, and the
   * pending rows within which it is light.
   */
  private int[] laneShare = new int[INITIAL_LANES];
  // A lane's slot by its name: open addressing over twice as many places as slots, each place
  // valid only while its count is the current one, so that a new count clears it all at once.
  private int[] indexSlot = new int[2 * INITIAL_LANES];
  private int[] indexCount = new int[2 * INITIAL_LANES];
  /** The current count of lanes (never 0, which marks a place never used). */
  private int lanesCounted = 1;
  /** The slot of the lane without a name (requests without a tenant), valid while {@link #nullCounted} is current. */
  private int nullSlot;
  private int nullCounted;
  /** Whether the last batch held only light lanes: the next one must serve the heavy ones. */
  private boolean lightLast;
  private int laneCount;
  private String servedLast;

  /**
   * @param batchCapacity the most requests one batch holds
   * @param maxLength the most requests that can be pending (the queue capacity)
   */
  PendingRequests(BatchPolicy policy, int batchCapacity, int maxLength) {
    this.policy = Objects.requireNonNull(policy, "policy");
    int initial = Math.min(Math.max(2 * batchCapacity, 16), Math.max(maxLength, 1));
    this.maxLength = Math.max(initial, maxLength);
    this.pending = new InferenceRequest[initial];
    this.taken = new boolean[initial];
    this.batchIndex = new int[batchCapacity];
    this.preferred = new boolean[policy.maxBatchSize() + 1];
    for (int size : policy.preferredBatchSizes()) {
      preferred[size] = true;
    }
  }

  int size() {
    return count;
  }

  boolean isEmpty() {
    return count == 0;
  }

  /** Whether another request fits, growing the list when it may. */
  boolean hasRoom() {
    if (count < pending.length) {
      return true;
    }
    if (pending.length >= maxLength) {
      return false;
    }
    int length = (int) Math.min(maxLength, 2L * pending.length);
    pending = Arrays.copyOf(pending, length);
    taken = Arrays.copyOf(taken, length);
    return true;
  }

  /** Whether no request more can be taken: the batch should run with what it has. */
  boolean isFull() {
    return count == maxLength;
  }

  /** Appends a request; the caller checked {@link #hasRoom()}. */
  void add(InferenceRequest request) {
    pending[count++] = request;
    if (request.lane() != null) {
      laned++;
    }
  }

  InferenceRequest oldest() {
    return pending[0];
  }

  /**
   * Answers the cancelled and expired requests; they never run. Returns how many were answered.
   *
   * @param name the version, for the message
   */
  int dropAbandoned(long nowNanos, String name) {
    int kept = 0;
    for (int i = 0; i < count; i++) {
      InferenceRequest request = pending[i];
      // Expiry first: a call whose deadline passed is also cancelled by the transport, and it
      // must be counted as DEADLINE_EXCEEDED, not as the caller's cancellation.
      if (request.isExpired(nowNanos)) {
        request.fail(
            InferenceException.deadlineExceeded(
                "deadline passed after "
                    + TimeUnit.NANOSECONDS.toMicros(nowNanos - request.arrivalNanos())
                    + " us in the queue of "
                    + name
                    + "; the request was not executed"));
        forget(request);
      } else if (request.isCancelled()) {
        request.fail(InferenceException.cancelled("request cancelled by the caller"));
        forget(request);
      } else {
        pending[kept++] = request;
      }
    }
    int dropped = count - kept;
    Arrays.fill(pending, kept, count, null);
    count = kept;
    return dropped;
  }

  /** Answers every pending request with {@code error}; returns how many. */
  int failAll(InferenceException error) {
    int failed = count;
    for (int i = 0; i < count; i++) {
      pending[i].fail(error);
      pending[i] = null;
    }
    count = 0;
    laned = 0;
    return failed;
  }

  /** The earliest of {@code dueNanos} and the pending requests' deadlines. */
  long wakeAt(long dueNanos) {
    long wakeAt = dueNanos;
    for (int i = 0; i < count; i++) {
      InferenceRequest request = pending[i];
      if (request.hasDeadline() && request.deadlineNanos() - wakeAt < 0) {
        wakeAt = request.deadlineNanos();
      }
    }
    return wakeAt;
  }

  // ---- choosing a batch ----

  /**
   * Fills the cleared {@code batch} with the next batch as the class describes, leaving the
   * requests pending until {@link #take} (or {@link #release}).
   */
  void choose(Batch batch) {
    batch.clear();
    chosen = 0;
    if (count == 0) {
      return;
    }
    if (!policy.merges()) {
      pick(batch, nextInTurn());
      return;
    }
    int limit = policy.maxBatchSize();
    if (laned == 0 || countLanes(limit) <= 1) {
      lightLast = false;
      pick(batch, 0);
      fill(batch, limit, false, false);
      return;
    }
    if (!lightLast && hasLightAndHeavy()) {
      // The lanes within their share run on their own, ahead of the heavy ones' backlog.
      lightLast = true;
      fill(batch, limit, false, true);
      return;
    }
    lightLast = false;
    int first = nextInTurn();
    int lane = laneOf(pending[first]);
    laneRows[lane] += pending[first].decoded().rows();
    pick(batch, first);
    fill(batch, limit, true, false);
    fill(batch, limit, false, false);
  }

  /**
   * As {@link #choose}, for an executor reserved for tenants without a backlog: only requests of
   * lanes whose pending rows are within their share of a batch (a lane alone: within a whole
   * batch), oldest first. The batch stays empty when every lane waiting has a backlog. Without
   * lanes there is no backlog to keep apart from: as {@link #choose}.
   */
  void chooseWithoutBacklog(Batch batch) {
    if (laned == 0) {
      choose(batch);
      return;
    }
    batch.clear();
    chosen = 0;
    if (count == 0) {
      return;
    }
    int limit = Math.max(1, policy.maxBatchSize());
    countLanes(limit);
    if (!policy.merges()) {
      for (int i = 0; i < count; i++) {
        int lane = laneOf(pending[i]);
        if (lanePending[lane] <= laneShare[lane]) {
          pick(batch, i);
          return;
        }
      }
      return;
    }
    fill(batch, limit, false, true);
  }

  /**
   * Keeps the longest prefix of the chosen batch whose rows are a preferred size; returns whether
   * there was one (the batch should run now).
   */
  boolean keepPreferredPrefix(Batch batch) {
    if (batch.rows() >= policy.maxBatchSize()) {
      return false;
    }
    int best = 0;
    int rows = 0;
    for (int i = 0; i < batch.size(); i++) {
      rows += batch.get(i).decoded().rows();
      if (rows < preferred.length && preferred[rows]) {
        best = i + 1;
      }
    }
    if (best > 0) {
      batch.truncate(best);
    }
    return best > 0;
  }

  /** Removes the requests left in the chosen {@code batch} from the pending list. */
  void take(Batch batch) {
    for (int j = batch.size(); j < chosen; j++) {
      taken[batchIndex[j]] = false;
    }
    int kept = 0;
    for (int i = 0; i < count; i++) {
      if (taken[i]) {
        taken[i] = false;
        forget(pending[i]);
      } else {
        pending[kept++] = pending[i];
      }
    }
    Arrays.fill(pending, kept, count, null);
    count = kept;
    chosen = 0;
    if (batch.size() > 0) {
      servedLast = batch.get(0).lane();
    }
  }

  /** Gives the chosen requests back to the pending list and clears {@code batch}. */
  void release(Batch batch) {
    for (int j = 0; j < chosen; j++) {
      taken[batchIndex[j]] = false;
    }
    chosen = 0;
    batch.clear();
  }

  /** Adds the pending request at {@code index} to the batch. */
  private void pick(Batch batch, int index) {
    taken[index] = true;
    batchIndex[chosen++] = index;
    batch.add(pending[index]);
  }

  /** Without batching: the oldest request of a lane other than the one served last, if any. */
  private int nextInTurn() {
    if (laned == 0 || !Objects.equals(pending[0].lane(), servedLast)) {
      return 0;
    }
    for (int i = 1; i < count; i++) {
      if (!Objects.equals(pending[i].lane(), servedLast)) {
        return i;
      }
    }
    return 0;
  }

  /**
   * One pass in arrival order: adds every request not yet chosen that fits the rows, may share the
   * first one's execution and, with {@code fair}, keeps its lane within the lane's share of the
   * batch (a lane's first request is always allowed). With {@code lightOnly}, only requests of
   * light lanes ({@link #hasLightAndHeavy}). The lanes' shares are those {@link #countLanes} set.
   */
  private void fill(Batch batch, int limit, boolean fair, boolean lightOnly) {
    for (int i = 0; i < count && !batch.isFull() && batch.rows() < limit; i++) {
      if (taken[i]) {
        continue;
      }
      InferenceRequest candidate = pending[i];
      int rows = candidate.decoded().rows();
      if (batch.size() > 0
          && (batch.rows() + rows > limit
              || !batch.get(0).decoded().canShareBatchWith(candidate.decoded()))) {
        continue;
      }
      if (fair || lightOnly) {
        int lane = laneOf(candidate);
        if (lightOnly && lanePending[lane] > laneShare[lane]) {
          continue;
        }
        if (fair) {
          if (laneRows[lane] > 0 && laneRows[lane] + rows > laneShare[lane]) {
            continue;
          }
          laneRows[lane] += rows;
        }
      }
      pick(batch, i);
    }
  }

  /**
   * Whether some lanes are light — their pending rows within their share of a batch — while others
   * are heavy (beyond it).
   */
  private boolean hasLightAndHeavy() {
    boolean light = false;
    boolean heavy = false;
    for (int i = 0; i < laneCount; i++) {
      if (lanePending[i] <= laneShare[i]) {
        light = true;
      } else {
        heavy = true;
      }
    }
    return light && heavy;
  }

  /**
   * Counts the lanes among the pending requests, the rows each has pending and each one's share of
   * a batch of {@code limit} rows, and zeroes their rows placed for a fair pass.
   */
  private int countLanes(int limit) {
    laneCount = 0;
    if (++lanesCounted == 0) {
      // Wrapped round after 2^32 counts: clear the places once, so that none looks current.
      Arrays.fill(indexCount, 0);
      nullCounted = 0;
      lanesCounted = 1;
    }
    for (int i = 0; i < count; i++) {
      // The slot first: counting a new lane may grow the table (Java reads an array before the index).
      int lane = laneOf(pending[i]);
      lanePending[lane] += Math.max(1, pending[i].decoded().rows());
    }
    long weights = 0;
    for (int i = 0; i < laneCount; i++) {
      weights += laneWeight[i];
    }
    for (int i = 0; i < laneCount; i++) {
      laneShare[i] = (int) Math.max(1, limit * (long) laneWeight[i] / weights);
    }
    Arrays.fill(laneRows, 0, laneCount, 0);
    return laneCount;
  }

  /**
   * The slot of {@code request}'s lane in the current count, adding it (with the request's weight)
   * when it is new to the count; the table grows when it is full.
   */
  private int laneOf(InferenceRequest request) {
    String lane = request.lane();
    if (lane == null) {
      if (nullCounted != lanesCounted) {
        nullSlot = addLane(null, request.laneWeight());
        nullCounted = lanesCounted;
      }
      return nullSlot;
    }
    int mask = indexSlot.length - 1;
    int place = spread(lane.hashCode()) & mask;
    while (indexCount[place] == lanesCounted) {
      int slot = indexSlot[place];
      if (lane.equals(lanes[slot])) {
        return slot;
      }
      place = (place + 1) & mask;
    }
    if (laneCount == lanes.length) {
      growLanes();
      return laneOf(request);
    }
    int slot = addLane(lane, request.laneWeight());
    indexSlot[place] = slot;
    indexCount[place] = lanesCounted;
    return slot;
  }

  /** A new slot for {@code lane}; the caller indexes it (a named lane) and made room. */
  private int addLane(String lane, int weight) {
    if (laneCount == lanes.length) {
      growLanes();
    }
    lanes[laneCount] = lane;
    laneRows[laneCount] = 0;
    lanePending[laneCount] = 0;
    laneWeight[laneCount] = weight;
    return laneCount++;
  }

  /** Doubles the lanes' table, keeping the current count's slots, and indexes them again. */
  private void growLanes() {
    int length = 2 * lanes.length;
    lanes = Arrays.copyOf(lanes, length);
    laneRows = Arrays.copyOf(laneRows, length);
    lanePending = Arrays.copyOf(lanePending, length);
    laneWeight = Arrays.copyOf(laneWeight, length);
    laneShare = Arrays.copyOf(laneShare, length);
    indexSlot = new int[2 * length];
    indexCount = new int[2 * length];
    int mask = indexSlot.length - 1;
    for (int slot = 0; slot < laneCount; slot++) {
      if (lanes[slot] != null) {
        int place = spread(lanes[slot].hashCode()) & mask;
        while (indexCount[place] == lanesCounted) {
          place = (place + 1) & mask;
        }
        indexSlot[place] = slot;
        indexCount[place] = lanesCounted;
      }
    }
  }

  private static int spread(int hash) {
    return hash ^ (hash >>> 16);
  }

  private void forget(InferenceRequest request) {
    if (request.lane() != null) {
      laned--;
    }
  }
}

package io.modelgate.gateway.control;

import io.modelgate.proto.admin.v1.AdminState;
import io.modelgate.proto.admin.v1.AuditRecord;
import io.modelgate.proto.admin.v1.ControlStoreStatus;
import io.modelgate.proto.admin.v1.ModelControl;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.runtime.error.InferenceException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

/**
 * The control store of one process: the state directory ({@link StateStore}), {@code state.json}
 * rewritten whole and durably on every change, {@code audit.log} appended. There is no other
 * writer, so revisions are this process's own count of changes per model since it started.
 *
 * <p>Threading: called under the {@link ControlPlane}'s lock; {@link #status} from any thread.
 */
public final class FileControlStore implements ControlStore {
  private final StateStore files;
  private final String replica;
  /** Written under the caller's lock. */
  private final Map<String, Stored> records = new TreeMap<>();
  private volatile long downSinceMs;
  private volatile String error = "";
  private volatile long revision;
  /** Written under the caller's lock; the revision is this process's count of access changes. */
  private volatile StoredAccess access = StoredAccess.NONE;

  public FileControlStore(StateStore files, String replica) {
    this.files = files;
    this.replica = replica;
  }

  public StateStore files() {
    return files;
  }

  @Override
  public Map<String, Stored> load() throws IOException {
    AdminState saved = files.load();
    Map<String, ModelControl.Builder> models = new LinkedHashMap<>();
    for (RoutingPolicy policy : saved.getPoliciesList()) {
      models.computeIfAbsent(policy.getModel(), m -> ModelControl.newBuilder().setModel(m)).setPolicy(policy);
    }
    for (RoutingPolicy policy : saved.getHistoryList()) {
      models.computeIfAbsent(policy.getModel(), m -> ModelControl.newBuilder().setModel(m)).addHistory(policy);
    }
    for (Rollout rollout : saved.getRolloutsList()) {
      models.computeIfAbsent(rollout.getModel(), m -> ModelControl.newBuilder().setModel(m)).setRollout(rollout);
    }
    for (ModelControl loads : saved.getLoadsList()) {
      models.computeIfAbsent(loads.getModel(), m -> ModelControl.newBuilder().setModel(m)).addAllLoads(loads.getLoadsList());
    }
    if (saved.hasAccess()) {
      access = new StoredAccess(saved.getAccess(), 1);
    }
    records.clear();
    for (Map.Entry<String, ModelControl.Builder> e : models.entrySet()) {
      records.put(e.getKey(), new Stored(e.getValue().build(), ++revision));
    }
    return Map.copyOf(records);
  }

  @Override
  public long commit(ModelControl next, long expectedRevision, List<AuditRecord> audit) {
    return replace(next.getModel(), next, expectedRevision, audit);
  }

  @Override
  public void forget(String model, long expectedRevision, AuditRecord audit) {
    replace(model, null, expectedRevision, List.of(audit));
  }

  /** Writes ({@code next}) or deletes (null) {@code model}'s record by compare-and-swap; its new revision. */
  private long replace(String model, ModelControl next, long expectedRevision, List<AuditRecord> audit) {
    Stored current = records.get(model);
    long at = current == null ? 0 : current.revision();
    if (at != expectedRevision) {
      throw new Conflict(current == null ? new Stored(ModelControl.newBuilder().setModel(model).build(), 0) : current);
    }
    long written = ++revision;
    if (next == null) {
      records.remove(model);
    } else {
      records.put(model, new Stored(next, written));
    }
    try {
      files.save(state());
      for (AuditRecord record : audit) {
        files.audit(record.toBuilder().setReplica(replica).build());
      }
      up();
    } catch (UncheckedIOException e) {
      if (current == null) {
        records.remove(model);
      } else {
        records.put(model, current);
      }
      down(e);
      throw InferenceException.unavailable(
          "the state directory cannot be written, so the change was not made: " + e.getMessage());
    }
    return written;
  }

  @Override
  public StoredAccess access() {
    return access;
  }

  @Override
  public long commitAccess(io.modelgate.proto.admin.v1.ManagedAccess next, long expectedRevision, AuditRecord audit) {
    {
      StoredAccess current = access;
      if (current.revision() != expectedRevision) {
        throw new AccessConflict();
      }
      access = new StoredAccess(next, current.revision() + 1);
      try {
        files.save(state());
        files.audit(audit.toBuilder().setReplica(replica).build());
        up();
      } catch (UncheckedIOException e) {
        access = current;
        down(e);
        throw InferenceException.unavailable(
            "the state directory cannot be written, so the change was not made: " + e.getMessage());
      }
      return current.revision() + 1;
    }
  }

  private AdminState state() {
    AdminState.Builder state = AdminState.newBuilder();
    StoredAccess managed = access;
    if (managed.revision() > 0) {
      state.setAccess(managed.access());
    }
    for (Stored stored : records.values()) {
      ModelControl control = stored.control();
      if (control.getPolicy().getRevision() > 0) {
        state.addPolicies(control.getPolicy());
      }
      state.addAllHistory(control.getHistoryList());
      if (control.hasRollout()) {
        state.addRollouts(control.getRollout());
      }
      if (control.getLoadsCount() > 0) {
        state.addLoads(ModelControl.newBuilder().setModel(control.getModel()).addAllLoads(control.getLoadsList()));
      }
    }
    return state.build();
  }

  @Override
  public void audit(AuditRecord record) {
    try {
      files.audit(record.toBuilder().setReplica(replica).build());
      up();
    } catch (UncheckedIOException e) {
      down(e);
      throw InferenceException.unavailable("the audit log cannot be written: " + e.getMessage());
    }
  }

  private void up() {
    downSinceMs = 0;
    error = "";
  }

  private void down(Exception e) {
    if (downSinceMs == 0) {
      downSinceMs = System.currentTimeMillis();
    }
    error = String.valueOf(e.getMessage());
  }

  @Override
  public void watch(Consumer<Map<String, Stored>> changes) {
    // One writer: nothing to watch.
  }

  @Override
  public ControlStoreStatus status() {
    long since = downSinceMs;
    return ControlStoreStatus.newBuilder()
        .setKind("file")
        .setTarget(files.directory().toString())
        .setUp(since == 0)
        .setDownSinceMs(since)
        .setError(error)
        .setAppliedRevision(revision)
        .setJudge(replica)
        .build();
  }

  @Override
  public void putUsage(String hour, io.modelgate.proto.admin.v1.UsageReport report) {
    // One process: the ledger in the state directory is the record.
  }

  @Override
  public List<io.modelgate.proto.admin.v1.UsageReport> usage(String fromHour, String toHour) {
    return List.of();
  }

  @Override
  public long deleteUsageBefore(String hour) {
    return 0;
  }

  @Override
  public void publish(io.modelgate.proto.admin.v1.ReplicaSnapshot snapshot) {
    // One process: nobody to publish to.
  }

  @Override
  public void unpublish(String model, long version) {
    // Nothing published.
  }

  @Override
  public List<io.modelgate.proto.admin.v1.ReplicaSnapshot> snapshots(String model) {
    return List.of();
  }

  @Override
  public boolean shared() {
    return false;
  }

  @Override
  public boolean judges() {
    return true;
  }

  @Override
  public void close() {}
}

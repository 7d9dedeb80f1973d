package io.modelgate.runtime.repository;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.NavigableMap;
import java.util.Optional;
import java.util.TreeMap;

/**
 * A model and its versions, by number. The set of versions is an immutable snapshot; readers never
 * lock.
 */
public final class Model {
  private final String name;
  private volatile Snapshot snapshot;
  private final VersionEvents events;
  /**
   * Set, under this model's lock, when its repository has removed it ({@link
   * ModelRepository#removeIfGone}): no version may be loaded on it any more (a load that reached it
   * just before looks the model up again).
   */
  private boolean removed;

  /** The versions by number, and the same newest first (for the lookup every routed request makes). */
  private record Snapshot(NavigableMap<Long, ModelVersion> byNumber, ModelVersion[] newestFirst) {
    static Snapshot of(TreeMap<Long, ModelVersion> versions) {
      return new Snapshot(Collections.unmodifiableNavigableMap(versions),
          versions.descendingMap().values().toArray(new ModelVersion[0]));
    }
  }

  Model(String name, List<ModelVersion> versions, VersionEvents events) {
    this.name = name;
    this.events = events;
    TreeMap<Long, ModelVersion> map = new TreeMap<>();
    for (ModelVersion version : versions) {
      map.put(version.number(), version);
    }
    this.snapshot = Snapshot.of(map);
  }

  /** The version numbered {@code number}, added in state LOADING if it is new. */
  synchronized ModelVersion versionOrAdd(long number, java.nio.file.Path directory) {
    ModelVersion existing = snapshot.byNumber().get(number);
    if (existing != null) {
      return existing;
    }
    TreeMap<Long, ModelVersion> copy = new TreeMap<>(snapshot.byNumber());
    ModelVersion added = new ModelVersion(name, number, directory, events);
    copy.put(number, added);
    snapshot = Snapshot.of(copy);
    return added;
  }

  /** Under this model's lock. */
  void markRemoved() {
    removed = true;
  }

  /** Whether its repository has removed it; under this model's lock. */
  boolean removed() {
    return removed;
  }

  /** Whether every version is out of memory: UNAVAILABLE (unloaded, or never loaded) or FAILED. */
  boolean allOut() {
    for (ModelVersion version : snapshot.newestFirst()) {
      VersionState state = version.state();
      if (state != VersionState.UNAVAILABLE && state != VersionState.FAILED) {
        return false;
      }
    }
    return true;
  }

  public String name() {
    return name;
  }

  /** All versions, lowest number first. */
  public List<ModelVersion> versions() {
    return List.copyOf(snapshot.byNumber().values());
  }

  public Optional<ModelVersion> version(long number) {
    return Optional.ofNullable(snapshot.byNumber().get(number));
  }

  /** The highest-numbered READY version, if any, copies aside ({@link ModelVersion#copyOf}). */
  public Optional<ModelVersion> latestReady() {
    return Optional.ofNullable(latestReadyOrNull());
  }

  /** The highest-numbered READY version, or null: {@link #latestReady} without allocating. */
  public ModelVersion latestReadyOrNull() {
    for (ModelVersion version : snapshot.newestFirst()) {
      if (version.isReady() && !version.isCopy()) {
        return version;
      }
    }
    return null;
  }

  /** READY versions, lowest number first. */
  public List<ModelVersion> readyVersions() {
    List<ModelVersion> ready = new ArrayList<>();
    for (ModelVersion version : snapshot.byNumber().values()) {
      if (version.isReady()) {
        ready.add(version);
      }
    }
    return ready;
  }

  /** {@code 1: READY, 2: FAILED (reason)}, for messages. */
  public String describeVersions() {
    NavigableMap<Long, ModelVersion> versions = snapshot.byNumber();
    if (versions.isEmpty()) {
      return "no versions";
    }
    StringBuilder sb = new StringBuilder();
    for (ModelVersion version : versions.values()) {
      if (sb.length() > 0) {
        sb.append("; ");
      }
      sb.append(version.number()).append(": ").append(version.state());
      if (!version.reason().isEmpty()) {
        sb.append(" (").append(version.reason()).append(')');
      }
    }
    return sb.toString();
  }
}

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
  private volatile NavigableMap<Long, ModelVersion> versions;
  private final VersionEvents events;

  Model(String name, List<ModelVersion> versions, VersionEvents events) {
    this.name = name;
    this.events = events;
    TreeMap<Long, ModelVersion> map = new TreeMap<>();
    for (ModelVersion version : versions) {
      map.put(version.number(), version);
    }
    this.versions = Collections.unmodifiableNavigableMap(map);
  }

  /** The version numbered {@code number}, added in state LOADING if it is new. */
  synchronized ModelVersion versionOrAdd(long number, java.nio.file.Path directory) {
    ModelVersion existing = versions.get(number);
    if (existing != null) {
      return existing;
    }
    TreeMap<Long, ModelVersion> copy = new TreeMap<>(versions);
    ModelVersion added = new ModelVersion(name, number, directory, events);
    copy.put(number, added);
    versions = Collections.unmodifiableNavigableMap(copy);
    return added;
  }

  public String name() {
    return name;
  }

  /** All versions, lowest number first. */
  public List<ModelVersion> versions() {
    return List.copyOf(versions.values());
  }

  public Optional<ModelVersion> version(long number) {
    return Optional.ofNullable(versions.get(number));
  }

  /** The highest-numbered READY version, if any. */
  public Optional<ModelVersion> latestReady() {
    for (ModelVersion version : versions.descendingMap().values()) {
      if (version.isReady()) {
        return Optional.of(version);
      }
    }
    return Optional.empty();
  }

  /** READY versions, lowest number first. */
  public List<ModelVersion> readyVersions() {
    List<ModelVersion> ready = new ArrayList<>();
    for (ModelVersion version : versions.values()) {
      if (version.isReady()) {
        ready.add(version);
      }
    }
    return ready;
  }

  /** {@code 1: READY, 2: FAILED (reason)}, for messages. */
  public String describeVersions() {
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

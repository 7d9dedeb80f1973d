package io.modelgate.runtime.repository;

import io.modelgate.runtime.error.InferenceException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * One version of one model and its state. The state, its reason and what the version serves with
 * change together, as one immutable snapshot behind a volatile field: a reader sees a READY state
 * only together with its {@link LoadedVersion}. Only the repository changes the state.
 */
public final class ModelVersion {
  private final String model;
  private final long number;
  private final String numberText;
  private final String label;
  private volatile Path directory;
  private volatile long copyOf;
  private final VersionEvents events;
  private volatile Snapshot snapshot;
  private LoadedVersion unloading;

  private record Snapshot(VersionState state, String reason, LoadedVersion loaded) {}

  ModelVersion(String model, long number, Path directory, VersionEvents events) {
    this.events = Objects.requireNonNull(events, "events");
    this.model = Objects.requireNonNull(model, "model");
    this.number = number;
    this.numberText = Long.toString(number);
    this.label = "model '" + model + "' version " + number;
    this.directory = directory;
    this.snapshot = new Snapshot(VersionState.LOADING, "", null);
  }

  public String model() {
    return model;
  }

  public long number() {
    return number;
  }

  /** The version number as the protocol carries it, e.g. {@code "2"}. */
  public String numberText() {
    return numberText;
  }

  /** {@code model 'm' version 2}, for messages. */
  public String label() {
    return label;
  }

  /** The folder its model file is read from: its own, or for a {@linkplain #copyOf copy} the source's. */
  public Path directory() {
    return directory;
  }

  /**
   * The version whose model file this one loads (a rollout's control, made by the gateway), or 0
   * for a version of its own folder. A copy is never the model's latest READY version.
   */
  public long copyOf() {
    return copyOf;
  }

  /** Whether this version is a {@linkplain #copyOf copy} of another. */
  public boolean isCopy() {
    return copyOf != 0;
  }

  public VersionState state() {
    return snapshot.state();
  }

  /** Why the version is in its state; empty when READY. */
  public String reason() {
    return snapshot.reason();
  }

  public boolean isReady() {
    return snapshot.state() == VersionState.READY;
  }

  /**
   * What the version serves with.
   *
   * @throws InferenceException UNAVAILABLE, naming the state and its reason, unless READY
   */
  public LoadedVersion serving() {
    Snapshot current = snapshot;
    if (current.state() != VersionState.READY) {
      throw InferenceException.unavailable(describeUnavailable(current));
    }
    return current.loaded();
  }

  private String describeUnavailable(Snapshot current) {
    String text = label + " is " + current.state();
    return current.reason().isEmpty() ? text : text + ": " + current.reason();
  }

  /** What it serves with, or null unless READY. */
  LoadedVersion loaded() {
    return snapshot.loaded();
  }

  /** What it serves with, or null unless READY; for callers that handle absence themselves. */
  public LoadedVersion loadedOrNull() {
    return snapshot.loaded();
  }

  /**
   * Back to LOADING, for a version loaded again after it was unloaded or failed: from {@code
   * directory}, as a copy of version {@code copyOf} (0: of its own folder). Under the model's lock.
   */
  synchronized void loading(Path directory, long copyOf) {
    this.directory = directory;
    this.copyOf = copyOf;
    change(new Snapshot(VersionState.LOADING, "", null));
  }

  void ready(LoadedVersion loaded) {
    change(new Snapshot(VersionState.READY, "", Objects.requireNonNull(loaded)));
  }

  /** LOADING → UNAVAILABLE without loading, as the repository starts: {@link ModelRepository.LeftUnloaded}. */
  void leftUnloaded(String why) {
    change(new Snapshot(VersionState.UNAVAILABLE, why, null));
  }

  void failed(String reason) {
    change(new Snapshot(VersionState.FAILED, withoutServerPaths(reason), null));
  }

  private void change(Snapshot next) {
    snapshot = next;
    events.changed(this);
  }

  /**
   * {@code reason} with the repository's folder taken out of every path in it, so that clients,
   * who see the reason in their UNAVAILABLE status, learn {@code cnn/1/model.onnx} and not where
   * the server keeps its files. The server log keeps the full paths.
   */
  String withoutServerPaths(String reason) {
    if (directory == null || directory.getParent() == null || directory.getParent().getParent() == null) {
      return reason;
    }
    Path root = directory.getParent().getParent();
    String separator = directory.getFileSystem().getSeparator();
    String cleaned = reason.replace(root.toAbsolutePath().normalize() + separator, "");
    return cleaned.replace(root + separator, "");
  }

  /**
   * READY with {@code loaded} → FAILED with {@code reason}; returns false (changing nothing) when
   * the version no longer serves with it (unloading, reloaded). A null {@code loaded} matches a
   * version that was not READY yet.
   */
  synchronized boolean failedWhileServing(LoadedVersion loaded, String reason) {
    Snapshot current = snapshot;
    if (current.loaded() != loaded) {
      return false;
    }
    change(new Snapshot(VersionState.FAILED, withoutServerPaths(reason), null));
    return true;
  }

  /**
   * READY with {@code serving} → READY with {@code fresh}, a load of the same folder made while it
   * served ({@link ModelRepository#reloadVersion}): from here on requests get {@code fresh}.
   * Returns false (changing nothing) when the version no longer serves with {@code serving}
   * (failed or unloaded meanwhile).
   */
  synchronized boolean reloaded(LoadedVersion serving, LoadedVersion fresh) {
    Snapshot current = snapshot;
    if (current.state() != VersionState.READY || current.loaded() != serving) {
      return false;
    }
    change(new Snapshot(VersionState.READY, "", Objects.requireNonNull(fresh)));
    return true;
  }

  /**
   * READY → UNLOADING; keeps what it served with until {@link #unloaded}.
   *
   * @param why what requests refused meanwhile are told, e.g. "the server is stopping"
   */
  synchronized void unloading(LoadedVersion loaded, String why) {
    this.unloading = loaded;
    change(new Snapshot(VersionState.UNLOADING, why, null));
  }

  /** UNLOADING → UNAVAILABLE; returns what it served with, for closing, or null if not unloading. */
  synchronized LoadedVersion unloaded() {
    LoadedVersion loaded = unloading;
    unloading = null;
    if (loaded != null) {
      change(new Snapshot(VersionState.UNAVAILABLE, "unloaded", null));
    }
    return loaded;
  }

  @Override
  public String toString() {
    return label + " " + state();
  }
}

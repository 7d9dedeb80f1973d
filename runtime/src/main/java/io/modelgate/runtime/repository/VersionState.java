package io.modelgate.runtime.repository;

/** Where a model version is in its life. Transitions: LOADING → READY → UNLOADING → UNAVAILABLE, or LOADING → FAILED. */
public enum VersionState {
  /** Its session is being created. */
  LOADING,
  /** It serves requests. */
  READY,
  /** It accepts nothing new and completes what it has queued. */
  UNLOADING,
  /** It was unloaded and holds no session. */
  UNAVAILABLE,
  /** It could not be loaded; the reason says why. */
  FAILED
}

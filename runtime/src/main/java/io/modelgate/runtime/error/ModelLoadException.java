package io.modelgate.runtime.error;

/**
 * A model version could not be loaded. The message says what is wrong and, where it can, what to
 * do about it; it becomes the reason of the version's FAILED state.
 */
public final class ModelLoadException extends Exception {
  private static final long serialVersionUID = 1L;

  public ModelLoadException(String message) {
    super(message);
  }

  public ModelLoadException(String message, Throwable cause) {
    super(message, cause);
  }
}

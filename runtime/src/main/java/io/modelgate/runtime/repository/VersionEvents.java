package io.modelgate.runtime.repository;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Tells subscribers that a version changed state (LOADING, READY, UNLOADING, UNAVAILABLE, FAILED).
 * One per repository, shared by its versions.
 *
 * <p>Subscribers run on the thread that changed the state — a loader, an admin call, a failing
 * batcher — right after the change is visible, and must neither block nor throw (a throw is logged
 * and ignored). A subscriber added after a change does not hear of it: read the current states
 * after subscribing.
 */
public final class VersionEvents {
  private static final Logger log = LoggerFactory.getLogger(VersionEvents.class);

  private final List<Consumer<ModelVersion>> subscribers = new CopyOnWriteArrayList<>();

  /** Calls {@code subscriber} after each state change of any version, from then on. */
  public void subscribe(Consumer<ModelVersion> subscriber) {
    subscribers.add(subscriber);
  }

  void changed(ModelVersion version) {
    for (Consumer<ModelVersion> subscriber : subscribers) {
      try {
        subscriber.accept(version);
      } catch (RuntimeException e) {
        log.error("a subscriber to version states failed on {}", version, e);
      }
    }
  }
}

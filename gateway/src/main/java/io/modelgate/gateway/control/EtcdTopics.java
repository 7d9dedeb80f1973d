package io.modelgate.gateway.control;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.WatchOption;
import io.modelgate.gateway.control.ControlStore.Topic;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * What a replica follows of the fleet in etcd besides the models' records ({@link Topic}): who
 * follows each topic, and the watch of each that tells them when it changed. {@link
 * EtcdControlStore} owns it: its store thread reads the revision each watch starts after, starts
 * every watch again after an outage, a watch error or a new password, and tells every follower
 * every {@link ControlSettings#rereadEvery} in case a watch went quiet without failing.
 *
 * <p>Telling a follower hands its reread to the follower's own executor, a word that comes while
 * one is queued folded into it: the reread reads the topic whole (the word says only that it may
 * have changed), and never runs on the store's thread or etcd's.
 *
 * <p>Threading: {@link #add} from any thread; {@link #watching}, {@link #watch} and {@link #close}
 * on the store thread (or once it has ended); {@link #tell} from the store thread and etcd's
 * watch threads.
 */
final class EtcdTopics {
  /** A topic's key, or the prefix of its keys. */
  record Key(ByteSequence bytes, boolean prefix) {}

  private final Map<Topic, Key> keys;
  /** Who follows each topic; any thread adds. */
  private final Map<Topic, List<Follower>> followers = new ConcurrentHashMap<>();
  /** The watch of each topic followed; store thread. */
  private final Map<Topic, Watch.Watcher> watchers = new EnumMap<>(Topic.class);
  /** How many watches have been started, the number of each topic's current one among them; store thread. */
  private long started;
  private final Map<Topic, Long> current = new EnumMap<>(Topic.class);
  private volatile boolean closed;

  /** @param keys each topic's key or prefix */
  EtcdTopics(Map<Topic, Key> keys) {
    if (!keys.keySet().equals(Set.of(Topic.values()))) {
      throw new IllegalArgumentException("a key for every topic, not " + keys.keySet());
    }
    this.keys = Map.copyOf(keys);
  }

  /** One follower of a topic. Thread-safe. */
  static final class Follower {
    private final Executor executor;
    private final Runnable reread;
    private final AtomicBoolean queued = new AtomicBoolean();

    private Follower(Executor executor, Runnable reread) {
      this.executor = executor;
      this.reread = reread;
    }

    /** Hands the reread to its executor, unless one is queued there and not yet running. */
    void tell() {
      if (!queued.compareAndSet(false, true)) {
        return;
      }
      try {
        executor.execute(() -> {
          queued.set(false);
          reread.run();
        });
      } catch (RejectedExecutionException e) {
        queued.set(false); // its owner has stopped
      }
    }
  }

  /** Adds {@code reread}, on {@code executor}, to {@code topic}'s followers; returns it, to be told once. */
  Follower add(Topic topic, Executor executor, Runnable reread) {
    Follower follower = new Follower(executor, reread);
    followers.computeIfAbsent(topic, t -> new CopyOnWriteArrayList<>()).add(follower);
    return follower;
  }

  /** The topics someone follows. */
  Set<Topic> followed() {
    return followers.keySet();
  }

  /** Whether {@code topic} is watched. Store thread. */
  boolean watching(Topic topic) {
    return watchers.containsKey(topic);
  }

  /** {@code topic}'s key or prefix. */
  ByteSequence key(Topic topic) {
    return keys.get(topic).bytes();
  }

  /** A read of how many keys {@code topic} has: its answer's revision is the one to watch after. */
  GetOption count(Topic topic) {
    GetOption.Builder count = GetOption.builder().withCountOnly(true);
    return (keys.get(topic).prefix() ? count.isPrefix(true) : count).build();
  }

  /**
   * Watches {@code topic} with {@code client} from the revision after {@code revision} (that of a
   * read made just before: no change after it is missed), in place of any watch before, and tells
   * its followers, who read it then. {@code failed} is told of the watch's error on {@code
   * storeThread}, unless a watch of the topic started since (an error that the watch before it
   * told as it was being replaced is no news). Store thread.
   */
  void watch(Topic topic, Watch client, long revision, Executor storeThread, Consumer<Throwable> failed) {
    Watch.Watcher before = watchers.remove(topic);
    if (before != null) {
      before.close();
    }
    long number = ++started;
    current.put(topic, number);
    WatchOption.Builder option = WatchOption.builder().withRevision(revision + 1);
    if (keys.get(topic).prefix()) {
      option.isPrefix(true);
    }
    watchers.put(topic, client.watch(key(topic), option.build(), Watch.listener(
        response -> {
          if (!response.getEvents().isEmpty()) {
            tell(topic);
          }
        },
        failure -> storeThread.execute(() -> {
          if (!closed && current.get(topic) == number) {
            failed.accept(failure);
          }
        }))));
    tell(topic);
  }

  /** Tells each of {@code topic}'s followers to read it again. */
  void tell(Topic topic) {
    if (closed) {
      return;
    }
    for (Follower follower : followers.getOrDefault(topic, List.of())) {
      follower.tell();
    }
  }

  /** Tells every follower of every topic to read it again. */
  void tellAll() {
    for (Topic topic : followers.keySet()) {
      tell(topic);
    }
  }

  /** Ends every watch; no follower is told from now on. Store thread, or once it has ended. */
  void close() {
    closed = true;
    watchers.values().forEach(Watch.Watcher::close);
    watchers.clear();
  }
}

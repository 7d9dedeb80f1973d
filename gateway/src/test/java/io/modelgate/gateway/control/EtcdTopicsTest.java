package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.etcd.jetcd.ByteSequence;
import io.modelgate.gateway.control.ControlStore.Topic;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class EtcdTopicsTest {
  private static EtcdTopics topics() {
    Map<Topic, EtcdTopics.Key> keys = new EnumMap<>(Topic.class);
    for (Topic topic : Topic.values()) {
      keys.put(topic, new EtcdTopics.Key(ByteSequence.from("/t/" + topic, StandardCharsets.UTF_8), false));
    }
    return new EtcdTopics(keys);
  }

  @Test
  void wordsThatComeWhileAReadIsQueued_areFoldedIntoIt_andOnlyTheTopicsFollowersAreTold() {
    EtcdTopics topics = topics();
    ArrayDeque<Runnable> queue = new ArrayDeque<>();
    AtomicInteger access = new AtomicInteger();
    AtomicInteger diagnostics = new AtomicInteger();
    topics.add(Topic.ACCESS, queue::add, access::incrementAndGet);
    topics.add(Topic.DIAGNOSTICS, queue::add, diagnostics::incrementAndGet);

    topics.tell(Topic.ACCESS);
    topics.tell(Topic.ACCESS);
    topics.tell(Topic.ACCESS);
    assertThat(queue).as("one read queued for three words").hasSize(1);
    queue.poll().run();
    assertThat(access).hasValue(1);
    assertThat(diagnostics).hasValue(0);

    // A word once the read runs queues another: what changed meanwhile is read too.
    topics.tell(Topic.ACCESS);
    assertThat(queue).hasSize(1);
    queue.poll().run();
    assertThat(access).hasValue(2);

    topics.tellAll();
    assertThat(queue).hasSize(2);
    queue.forEach(Runnable::run);
    assertThat(access).hasValue(3);
    assertThat(diagnostics).hasValue(1);
    assertThat(topics.followed()).containsExactlyInAnyOrder(Topic.ACCESS, Topic.DIAGNOSTICS);
  }

  @Test
  void aFollowerWhoseExecutorHasStopped_isToldAgainOnceItTakesWork_andNoneOnceClosed() {
    EtcdTopics topics = topics();
    boolean[] stopped = {true};
    ArrayDeque<Runnable> queue = new ArrayDeque<>();
    AtomicInteger reads = new AtomicInteger();
    topics.add(Topic.DRIFT_BASELINES, task -> {
      if (stopped[0]) {
        throw new RejectedExecutionException("stopped");
      }
      queue.add(task);
    }, reads::incrementAndGet);
    topics.tell(Topic.DRIFT_BASELINES);
    stopped[0] = false;
    topics.tell(Topic.DRIFT_BASELINES);
    assertThat(queue).as("a refused hand-off holds nothing back").hasSize(1);

    queue.poll().run();
    topics.close();
    topics.tell(Topic.DRIFT_BASELINES);
    topics.tellAll();
    assertThat(queue).isEmpty();
    assertThat(reads).hasValue(1);
  }

  @Test
  void everyTopicNeedsItsKey() {
    assertThatThrownBy(() -> new EtcdTopics(Map.of(Topic.ACCESS,
        new EtcdTopics.Key(ByteSequence.from("/t/access", StandardCharsets.UTF_8), false))))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("a key for every topic");
  }

  /** A watch client that starts nothing: it keeps each watch's listener, for the test to speak as etcd. */
  private static final class Listeners implements io.etcd.jetcd.Watch {
    final java.util.List<io.etcd.jetcd.Watch.Listener> started = new java.util.ArrayList<>();

    @Override
    public Watcher watch(ByteSequence key, io.etcd.jetcd.options.WatchOption option, Listener listener) {
      started.add(listener);
      return new Watcher() {
        @Override
        public void close() {}

        @Override
        public boolean isClosed() {
          return false;
        }

        @Override
        public void requestProgress() {}
      };
    }

    @Override
    public void requestProgress() {}
  }

  @Test
  void aWatchsError_isToldOnTheStoresThread_butNotOnceAnotherWatchOfTheTopicReplacedIt() {
    EtcdTopics topics = topics();
    ArrayDeque<Runnable> storeThread = new ArrayDeque<>();
    java.util.List<String> told = new java.util.ArrayList<>();
    Listeners etcd = new Listeners();
    topics.watch(Topic.ACCESS, etcd, 7, storeThread::add, failure -> told.add("access " + failure.getMessage()));
    topics.watch(Topic.DIAGNOSTICS, etcd, 7, storeThread::add, failure -> told.add("diagnostics " + failure.getMessage()));

    etcd.started.get(0).onError(new RuntimeException("first"));
    assertThat(told).as("not on etcd's thread").isEmpty();
    storeThread.poll().run();
    assertThat(told).containsExactly("access first");

    // The access watch replaced (as etcd comes back, say) while an error of the one before is on its way.
    etcd.started.get(0).onError(new RuntimeException("before"));
    topics.watch(Topic.ACCESS, etcd, 9, storeThread::add, failure -> told.add("access " + failure.getMessage()));
    etcd.started.get(2).onError(new RuntimeException("now"));
    etcd.started.get(1).onError(new RuntimeException("other topic"));
    storeThread.forEach(Runnable::run);
    storeThread.clear();
    assertThat(told).containsExactly("access first", "access now", "diagnostics other topic");

    etcd.started.get(2).onError(new RuntimeException("closing"));
    topics.close();
    storeThread.forEach(Runnable::run);
    assertThat(told).as("none once closed").hasSize(3);
  }
}

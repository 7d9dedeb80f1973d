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
}

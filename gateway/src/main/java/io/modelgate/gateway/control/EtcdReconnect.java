package io.modelgate.gateway.control;

import io.etcd.jetcd.Client;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import java.lang.reflect.Field;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes a jetcd {@link Client} try to connect now instead of when gRPC's backoff says.
 *
 * <p>After a failed connection the gRPC channel inside the client waits longer before each
 * attempt, up to grpc-java's fixed cap of two minutes, and calls made meanwhile fail at once
 * without trying. So after an etcd outage of a few minutes a replica would go on refusing changes
 * for up to two minutes more. {@link ManagedChannel#resetConnectBackoff} ends the wait, but jetcd
 * (0.8) keeps its channel private and offers no way to shorten it (jetcd issue 1616). This class
 * reaches the channel by reflection, finding the fields by type: the client's connection manager,
 * and the manager's channel. Where a jetcd version has neither, {@link #available} is false,
 * {@link #now} does nothing and reconnection follows gRPC's backoff, as it would without this
 * class; a warning says so once.
 *
 * <p>Thread-safe: any thread may call {@link #now} and {@link #nowAndAwaitConnected}.
 */
final class EtcdReconnect {
  private static final Logger log = LoggerFactory.getLogger(EtcdReconnect.class);

  private final Object manager;
  private final Field channel;

  private EtcdReconnect(Object manager, Field channel) {
    this.manager = manager;
    this.channel = channel;
  }

  /** The reconnect of {@code client}; one that does nothing when its channel cannot be reached. */
  static EtcdReconnect of(Client client) {
    try {
      Field managerField = fieldNamedByType(client.getClass(), "ClientConnectionManager");
      if (managerField != null) {
        Object manager = managerField.get(client);
        Field channel = manager == null ? null : fieldOfType(manager.getClass(), ManagedChannel.class);
        if (channel != null) {
          return new EtcdReconnect(manager, channel);
        }
      }
    } catch (ReflectiveOperationException | RuntimeException e) {
      log.warn("the etcd client's channel cannot be reached ({}); after an outage it reconnects when gRPC's"
          + " backoff allows, up to two minutes after etcd returns", e.toString());
      return new EtcdReconnect(null, null);
    }
    log.warn("the etcd client ({}) has no channel this version of modelgate can reach; after an outage it"
        + " reconnects when gRPC's backoff allows, up to two minutes after etcd returns", client.getClass().getName());
    return new EtcdReconnect(null, null);
  }

  /** Whether {@link #now} reaches the client's channel. */
  boolean available() {
    return channel != null;
  }

  /**
   * Ends the channel's wait before its next connection attempt, if it is waiting; a channel
   * connected, connecting or not created yet is left as it is.
   */
  void now() {
    ManagedChannel current = channel();
    if (current != null) {
      current.resetConnectBackoff();
    }
  }

  /**
   * Ends the channel's wait as {@link #now} does, then waits, at most {@code timeoutMs}, until it
   * is connected or shut down. A call made right after {@link #now} fails without trying when the
   * channel has not connected yet: gRPC's channel reports the failure of its last attempt until
   * the next one succeeds. Returns at once when the channel is not reachable. Blocks the calling
   * thread; never call it on an event loop.
   *
   * @param timeoutMs the longest wait, milliseconds
   */
  void nowAndAwaitConnected(long timeoutMs) throws InterruptedException {
    ManagedChannel current = channel();
    if (current == null) {
      return;
    }
    current.resetConnectBackoff();
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
    ConnectivityState state = current.getState(true);
    while (state != ConnectivityState.READY && state != ConnectivityState.SHUTDOWN) {
      CountDownLatch changed = new CountDownLatch(1);
      current.notifyWhenStateChanged(state, changed::countDown);
      long left = deadline - System.nanoTime();
      if (left <= 0 || !changed.await(left, TimeUnit.NANOSECONDS)) {
        return;
      }
      state = current.getState(false);
    }
  }

  /** The client's channel; null when not created yet or not reachable. */
  ManagedChannel channel() {
    if (channel == null) {
      return null;
    }
    try {
      return (ManagedChannel) channel.get(manager);
    } catch (IllegalAccessException e) {
      // The field was made accessible when found.
      throw new IllegalStateException(e);
    }
  }

  private static Field fieldNamedByType(Class<?> type, String simpleName) {
    for (Field field : type.getDeclaredFields()) {
      if (field.getType().getSimpleName().equals(simpleName)) {
        field.setAccessible(true);
        return field;
      }
    }
    return null;
  }

  private static Field fieldOfType(Class<?> type, Class<?> fieldType) {
    for (Field field : type.getDeclaredFields()) {
      if (fieldType.isAssignableFrom(field.getType())) {
        field.setAccessible(true);
        return field;
      }
    }
    return null;
  }
}

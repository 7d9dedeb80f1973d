package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.channel.Channel;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * The limit in a listening channel's pipeline, fed accepted connections as Netty's acceptor is:
 * what it passes on, what it closes, and what it counts, on a clock the test moves.
 */
class ConnectionLimitTest {
  private final AtomicLong now = new AtomicLong(1_000_000_000L);
  private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

  /** A listening channel carrying {@code limit}; what it passes on is read back with {@code readInbound}. */
  private EmbeddedChannel listening(ConnectionLimit limit) {
    return new EmbeddedChannel(limit.bindTo(registry));
  }

  /** {@code count} connections accepted now; each returned open if passed on, closed if refused. */
  private static List<Channel> accept(EmbeddedChannel listening, int count) {
    List<Channel> connections = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      EmbeddedChannel connection = new EmbeddedChannel();
      listening.writeInbound(connection);
      connections.add(connection);
    }
    return connections;
  }

  private static long passedOn(EmbeddedChannel listening) {
    long passed = 0;
    while (listening.readInbound() != null) {
      passed++;
    }
    return passed;
  }

  private double refused(String reason) {
    return refused(reason, "inference");
  }

  private double refused(String reason, String port) {
    return registry.get("modelgate.connections.refused").tags("port", port, "reason", reason).functionCounter().count();
  }

  @Test
  void atTheLimit_aConnectionIsClosed_andAPlaceComesBackWhenOneEnds() {
    ConnectionLimit limit = new ConnectionLimit("inference", 2, 0, now::get);
    EmbeddedChannel listening = listening(limit);
    List<Channel> connections = accept(listening, 3);
    assertThat(passedOn(listening)).isEqualTo(2);
    assertThat(connections.get(0).isOpen()).isTrue();
    assertThat(connections.get(1).isOpen()).isTrue();
    assertThat(connections.get(2).isOpen()).as("the third, beyond the limit").isFalse();
    assertThat(limit.held()).isEqualTo(2);
    assertThat(refused("limit")).isEqualTo(1.0);
    assertThat(refused("rate")).isZero();
    assertThat(registry.get("modelgate.connections.held").tag("port", "inference").gauge().value()).isEqualTo(2.0);

    connections.get(0).close();
    assertThat(limit.held()).isEqualTo(1);
    List<Channel> next = accept(listening, 2);
    assertThat(passedOn(listening)).isEqualTo(1);
    assertThat(next.get(0).isOpen()).isTrue();
    assertThat(next.get(1).isOpen()).isFalse();
    assertThat(refused("limit")).isEqualTo(2.0);
  }

  @Test
  void pastTheRate_connectionsAreClosed_untilTheBucketRefills_andItHoldsOneSecondsWorth() {
    ConnectionLimit limit = new ConnectionLimit("inference", 1000, 4, now::get);
    EmbeddedChannel listening = listening(limit);
    // A full bucket: four at once, the fifth refused.
    List<Channel> burst = accept(listening, 5);
    assertThat(passedOn(listening)).isEqualTo(4);
    assertThat(burst.get(4).isOpen()).isFalse();
    assertThat(refused("rate")).isEqualTo(1.0);
    // A quarter of a second later, one more.
    now.addAndGet(TimeUnit.MILLISECONDS.toNanos(250));
    accept(listening, 2);
    assertThat(passedOn(listening)).isEqualTo(1);
    assertThat(refused("rate")).isEqualTo(2.0);
    // A minute idle fills the bucket to one second's worth, no more.
    now.addAndGet(TimeUnit.MINUTES.toNanos(1));
    accept(listening, 6);
    assertThat(passedOn(listening)).isEqualTo(4);
    assertThat(refused("rate")).isEqualTo(4.0);
    assertThat(refused("limit")).isZero();
    // Connections refused for the rate never held a place.
    assertThat(limit.held()).isEqualTo(9);
  }

  @Test
  void withoutARate_anyNumberAMomentIsTaken_upToTheLimit() {
    ConnectionLimit limit = new ConnectionLimit("inference", 500, 0, now::get);
    EmbeddedChannel listening = listening(limit);
    accept(listening, 501);
    assertThat(passedOn(listening)).isEqualTo(500);
    assertThat(refused("limit")).isEqualTo(1.0);
    assertThat(refused("rate")).isZero();
  }

  /**
   * On a plaintext port a refused connection is told why, in its protocol, on the acceptor's event
   * loop, and closed within {@link RefusalReply#TIMEOUT_MILLIS}; a hundred a second are told, the
   * rest closed at once; and a TLS port's refusals say nothing.
   */
  @Test
  void onAPlaintextPort_aRefusedConnectionIsToldWhy_aHundredASecond_theRestClosedAtOnce() {
    ConnectionLimit limit = new ConnectionLimit("metrics", 1000, 2, 0, RefusalReply.HTTP, now::get);
    EmbeddedChannel listening = listening(limit);
    listening.freezeTime();
    accept(listening, 2);
    assertThat(passedOn(listening)).isEqualTo(2);
    // Refused for the rate, in a burst: each unregistered, as Netty's acceptor hands them over.
    List<EmbeddedChannel> refused = new ArrayList<>();
    for (int i = 0; i < ConnectionLimit.REPLIES_PER_SECOND + 5; i++) {
      EmbeddedChannel connection = new EmbeddedChannel(false, false);
      listening.writeInbound(connection);
      refused.add(connection);
    }
    assertThat(passedOn(listening)).isZero();
    assertThat(refused("rate", "metrics")).isEqualTo(ConnectionLimit.REPLIES_PER_SECOND + 5.0);
    assertThat(refused.stream().filter(Channel::isOpen).count()).as("told why").isEqualTo(ConnectionLimit.REPLIES_PER_SECOND);
    EmbeddedChannel told = refused.get(0);
    assertThat(told.eventLoop()).as("on the acceptor's loop").isSameAs(listening.eventLoop());
    told.writeInbound(io.netty.buffer.Unpooled.copiedBuffer(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", java.nio.charset.StandardCharsets.US_ASCII));
    StringBuilder answer = new StringBuilder();
    for (io.netty.buffer.ByteBuf out; (out = told.readOutbound()) != null; out.release()) {
      answer.append(out.toString(java.nio.charset.StandardCharsets.US_ASCII));
    }
    assertThat(answer.toString())
        .startsWith("HTTP/1.1 503 Service Unavailable\r\n")
        .contains("retry-after: 1\r\n", "connection: close\r\n")
        .endsWith("\r\n\r\nmodelgate: the metrics port takes at most 2 new connections a second (--max-connection-rate);"
            + " try again after a back-off\n");
    assertThat(told.isOpen()).as("closed once answered").isFalse();
    // One that says nothing is closed when its time is up.
    EmbeddedChannel silent = refused.get(1);
    listening.advanceTimeBy(RefusalReply.TIMEOUT_MILLIS - 1, TimeUnit.MILLISECONDS);
    listening.runScheduledPendingTasks();
    assertThat(silent.isOpen()).isTrue();
    listening.advanceTimeBy(1, TimeUnit.MILLISECONDS);
    listening.runScheduledPendingTasks();
    assertThat(silent.isOpen()).as("after %d ms", RefusalReply.TIMEOUT_MILLIS).isFalse();
    // A second later (the rate's two taken again), the next refused is told why again.
    now.addAndGet(TimeUnit.SECONDS.toNanos(1));
    accept(listening, 2);
    assertThat(passedOn(listening)).isEqualTo(2);
    EmbeddedChannel next = new EmbeddedChannel(false, false);
    listening.writeInbound(next);
    assertThat(passedOn(listening)).isZero();
    assertThat(next.isOpen()).isTrue();
    assertThat(limit.held()).as("refused connections hold no place").isEqualTo(4);

    // A TLS port's refusals are closed at once.
    ConnectionLimit tls = new ConnectionLimit("inference", 1, 0, 0, RefusalReply.NONE, now::get);
    EmbeddedChannel tlsListening = listening(tls);
    accept(tlsListening, 1);
    EmbeddedChannel beyond = new EmbeddedChannel(false, false);
    tlsListening.writeInbound(beyond);
    assertThat(beyond.isOpen()).isFalse();
    assertThat(refused("limit")).isEqualTo(1.0);
  }

  /**
   * With a limit per client address, one more from an address holding its most is refused (its own
   * reason), holds no place, and the address's place comes back when one of its connections ends;
   * the address is forgotten with its last connection. (Embedded channels all come from one address.)
   */
  @Test
  void perAddress_oneMoreFromAnAddressIsRefused_andItsPlacesComeBack() {
    ConnectionLimit limit = new ConnectionLimit("inference", 100, 0, 2, RefusalReply.NONE, now::get);
    EmbeddedChannel listening = listening(limit);
    List<Channel> connections = accept(listening, 3);
    assertThat(passedOn(listening)).isEqualTo(2);
    assertThat(connections.get(2).isOpen()).as("the third from one address").isFalse();
    assertThat(refused("address")).isEqualTo(1.0);
    assertThat(refused("limit")).isZero();
    assertThat(limit.held()).isEqualTo(2);
    assertThat(limit.addresses()).isEqualTo(1);

    connections.get(0).close();
    List<Channel> next = accept(listening, 2);
    assertThat(passedOn(listening)).isEqualTo(1);
    assertThat(next.get(0).isOpen()).isTrue();
    assertThat(next.get(1).isOpen()).isFalse();
    assertThat(refused("address")).isEqualTo(2.0);

    connections.get(1).close();
    next.get(0).close();
    assertThat(limit.held()).isZero();
    assertThat(limit.addresses()).as("forgotten with its last connection").isZero();

    // The port's own limit is checked first: a refusal at it takes no place from the address.
    ConnectionLimit small = new ConnectionLimit("admin", 1, 0, 5, RefusalReply.NONE, now::get);
    EmbeddedChannel smallListening = listening(small);
    accept(smallListening, 2);
    assertThat(passedOn(smallListening)).isEqualTo(1);
    assertThat(registry.get("modelgate.connections.refused").tags("port", "admin", "reason", "limit").functionCounter().count())
        .isEqualTo(1.0);
    assertThat(small.addresses()).isEqualTo(1);
  }

  @Test
  void limitsOutOfRange_areRefused() {
    assertThatThrownBy(() -> new ConnectionLimit("inference", 0, 0)).hasMessage("max connections: 0 (expected: at least 1)");
    assertThatThrownBy(() -> new ConnectionLimit("inference", 1, -1))
        .hasMessage("max connection rate: -1 (expected: 0 for none, or at least 1)");
    assertThatThrownBy(() -> new ConnectionLimit("inference", 1, 0, -1, RefusalReply.NONE))
        .hasMessage("max connections per address: -1 (expected: 0 for none, or at least 1)");
  }
}

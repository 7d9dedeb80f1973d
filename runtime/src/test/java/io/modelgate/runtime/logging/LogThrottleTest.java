package io.modelgate.runtime.logging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The throttle on a clock the test moves. */
class LogThrottleTest {
  private final AtomicLong now = new AtomicLong(5_000_000_000L);

  @Test
  void theFirstPasses_thenOneAnInterval_sayingHowManyWereHeldBack() {
    LogThrottle throttle = new LogThrottle(Duration.ofSeconds(10), now::get);
    assertThat(throttle.pass()).isZero();
    for (int i = 0; i < 41; i++) {
      now.addAndGet(Duration.ofMillis(200).toNanos());
      assertThat(throttle.pass()).as("%d ms after the first", (i + 1) * 200).isEqualTo(-1);
    }
    now.set(5_000_000_000L + Duration.ofSeconds(10).toNanos() - 1);
    assertThat(throttle.pass()).isEqualTo(-1);
    now.incrementAndGet();
    assertThat(throttle.pass()).as("at 10 s: the 42 held back").isEqualTo(42);
    // A quiet hour, then one: it passes, nothing held back.
    now.addAndGet(Duration.ofHours(1).toNanos());
    assertThat(throttle.pass()).isZero();
    assertThat(throttle.pass()).isEqualTo(-1);
  }

  @Test
  void sinceSaysTheCountOrNothing() {
    assertThat(LogThrottle.since(0)).isEmpty();
    assertThat(LogThrottle.since(7)).isEqualTo(" (7 more since the last told)");
    assertThatThrownBy(() -> new LogThrottle(Duration.ZERO)).hasMessageContaining("expected: positive");
  }
}

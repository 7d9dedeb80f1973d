package io.modelgate.gateway.usage;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

/**
 * A tenant's latency window recorded from several threads at once (a version's executors and the
 * event loops that answer its refusals) while it is read. HdrHistogram's packed concurrent
 * recorder, used here before, livelocks in this case (a writer spins in {@code consolidateEntry}
 * while another resizes, and the version's executor hangs with it); the time limit only turns
 * such a hang into a failure.
 */
class LatencyWindowTest {
  private static final Clock CLOCK = Clock.fixed(Instant.parse("2026-12-02T10:00:05Z"), ZoneOffset.UTC);

  @Test
  void concurrentWritersAndReads_loseNothingAndNeverHang() {
    assertTimeoutPreemptively(Duration.ofMinutes(2), () -> {
      for (int round = 0; round < 100; round++) {
        LatencyWindow window = new LatencyWindow(CLOCK);
        int writers = 3;
        int each = 20_000;
        CountDownLatch start = new CountDownLatch(1);
        Thread[] threads = new Thread[writers];
        for (int w = 0; w < writers; w++) {
          long seed = round * 31L + w;
          threads[w] = new Thread(() -> {
            SplittableRandom random = new SplittableRandom(seed);
            try {
              start.await();
            } catch (InterruptedException e) {
              return;
            }
            for (int i = 0; i < each; i++) {
              // 50 µs to about 3 s, spread over the whole range so that the histogram grows.
              window.record(1_000L * (50 + (long) Math.exp(random.nextDouble() * 11)));
            }
          });
          threads[w].start();
        }
        start.countDown();
        for (int r = 0; r < 20; r++) {
          window.count(); // reads flip the recorder while the writers record
        }
        for (Thread thread : threads) {
          thread.join();
        }
        assertThat(window.count()).as("round %d", round).isEqualTo((long) writers * each);
      }
    });
  }

  @Test
  void quantiles_areTheRecordedLatencies_andExtremesAreKept() {
    LatencyWindow window = new LatencyWindow(CLOCK);
    for (int i = 1; i <= 100; i++) {
      window.record(i * 1_000_000L); // 1 to 100 ms
    }
    window.record(Duration.ofHours(3).toNanos()); // beyond the tracked range: counted at its top
    assertThat(window.count()).isEqualTo(101);
    assertThat(window.quantileSeconds(0.5)).isBetween(0.0495, 0.0515);
    assertThat(window.quantileSeconds(0.99)).isBetween(0.099, 0.1015);
    assertThat(window.quantileSeconds(1.0)).isGreaterThanOrEqualTo(3600 * 0.99);
  }
}

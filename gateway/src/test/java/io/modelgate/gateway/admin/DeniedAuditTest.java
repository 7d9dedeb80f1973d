package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.TestClock;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class DeniedAuditTest {
  @Test
  void atMostThirtyRefusalsAMinuteAreAuditedOneByOne_theRestAreCounted_andTheNextRecordSaysHowMany() {
    TestClock clock = new TestClock();
    List<String> records = new ArrayList<>();
    DeniedAudit audit = new DeniedAudit((caller, what) -> records.add(caller + ": " + what), clock, Runnable::run);
    for (int i = 0; i < 40; i++) {
      audit.accept("token:grafana", "SetRouting needs the role operator; token 'grafana' has viewer");
    }
    assertThat(records).hasSize(DeniedAudit.PER_MINUTE)
        .allMatch(r -> r.equals("token:grafana: SetRouting needs the role operator; token 'grafana' has viewer"));
    assertThat(audit.unaudited()).isEqualTo(10);

    // Within the same minute, still counted; a minute on, recorded with the number it did not record.
    clock.millis += 59_999;
    audit.accept("token:grafana", "SetRouting needs the role operator; token 'grafana' has viewer");
    assertThat(records).hasSize(DeniedAudit.PER_MINUTE);
    clock.millis += 1;
    audit.accept("token:ci", "LoadVersion needs the role operator; token 'ci' has viewer");
    assertThat(records).hasSize(DeniedAudit.PER_MINUTE + 1);
    assertThat(records.get(DeniedAudit.PER_MINUTE)).isEqualTo("token:ci: LoadVersion needs the role operator; token 'ci'"
        + " has viewer (before it, 11 refusals for a role not audited one by one: more than 30 a minute)");
    audit.accept("token:ci", "LoadVersion needs the role operator; token 'ci' has viewer");
    assertThat(records.get(DeniedAudit.PER_MINUTE + 1)).endsWith("has viewer");
    assertThat(audit.unaudited()).isEqualTo(11);
  }

  @Test
  void aWriterStuckOnItsStore_neverHoldsUpTheRefusedCall_andWhatItCannotQueueIsCounted() throws Exception {
    CountDownLatch release = new CountDownLatch(1);
    List<String> records = java.util.Collections.synchronizedList(new ArrayList<>());
    TestClock clock = new TestClock();
    try (DeniedAudit audit = new DeniedAudit((caller, what) -> {
      try {
        release.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      records.add(what);
    }, clock)) {
      // One record being written (stuck), 30 queued: across three minutes of refusals, the rest
      // are counted at once.
      for (int minute = 0; minute < 3; minute++) {
        for (int i = 0; i < DeniedAudit.PER_MINUTE; i++) {
          audit.accept("token:grafana", "refused " + minute + "/" + i);
        }
        clock.millis += 60_000;
      }
      assertThat(audit.unaudited()).isEqualTo(3L * DeniedAudit.PER_MINUTE - 1 - DeniedAudit.PER_MINUTE);
      release.countDown();
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (records.size() < DeniedAudit.PER_MINUTE + 1 && System.nanoTime() < until) {
        Thread.sleep(10);
      }
      assertThat(records).hasSize(DeniedAudit.PER_MINUTE + 1).startsWith("refused 0/0");
    }
  }
}

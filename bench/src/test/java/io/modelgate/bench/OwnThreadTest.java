package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class OwnThreadTest {
  @Test
  void phases_runTogether_eachOnAThreadOfItsOwn_whateverTheCommonPoolHas() throws Exception {
    // Three phases that each wait for the other two: run one after another, none would finish.
    CyclicBarrier together = new CyclicBarrier(3);
    CompletableFuture<String> one = OwnThread.supply("phase-one", () -> {
      together.await(30, TimeUnit.SECONDS);
      return Thread.currentThread().getName();
    });
    CompletableFuture<String> two = OwnThread.supply("phase-two", () -> {
      together.await(30, TimeUnit.SECONDS);
      return Thread.currentThread().getName();
    });
    together.await(30, TimeUnit.SECONDS);
    assertThat(one.get(30, TimeUnit.SECONDS)).isEqualTo("phase-one");
    assertThat(two.get(30, TimeUnit.SECONDS)).isEqualTo("phase-two");
  }

  @Test
  void aPhaseThatFails_failsItsFuture() {
    CompletableFuture<Void> failing = OwnThread.supply("failing", () -> {
      throw new java.io.IOException("the server went away");
    });
    assertThatThrownBy(() -> failing.get(30, TimeUnit.SECONDS)).isInstanceOf(ExecutionException.class)
        .hasRootCauseMessage("the server went away");
  }
}

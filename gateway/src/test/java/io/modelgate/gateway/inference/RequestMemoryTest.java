package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.execution.VersionScheduler;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class RequestMemoryTest {
  /** A version that has 40 requests waiting, served at 1 ms each. */
  private static final VersionScheduler VERSION = new VersionScheduler() {
    @Override
    public void submit(InferenceRequest request) {}

    @Override
    public long queuedCount() {
      return 40;
    }

    @Override
    public long nanosPerRequest() {
      return 1_000_000;
    }

    @Override
    public void drain(Duration timeout) {}
  };

  @Test
  void holdsUpToItsLimit_refusesPastIt_andLetsGo() {
    RequestMemory memory = new RequestMemory(10 << 20);
    memory.acquire(6 << 20, VERSION, true);
    memory.acquire(4 << 20, VERSION, true);
    assertThat(memory.held()).isEqualTo(10 << 20);
    assertThatThrownBy(() -> memory.acquire(1, VERSION, true)).isInstanceOfSatisfying(InferenceException.class, e -> {
      assertThat(e.code()).isEqualTo(ErrorCode.RESOURCE_EXHAUSTED);
      assertThat(e.getMessage()).isEqualTo("the server holds 10 MiB of requests not yet answered, and this one's 1 bytes"
          + " would pass its limit of 10 MiB (--request-memory); retry later or send smaller requests");
      // Once the version has served what waits: 40 requests at 1 ms.
      assertThat(e.retryAfter()).isEqualTo(Duration.ofMillis(40));
    });
    assertThat(memory.held()).as("a refusal holds nothing").isEqualTo(10 << 20);
    memory.release(4 << 20);
    memory.acquire(3 << 20, VERSION, true);
    assertThat(memory.held()).isEqualTo(9 << 20);
  }

  @Test
  void aRequestLargerThanTheLimit_isRefusedEvenWithNothingHeld() {
    RequestMemory memory = new RequestMemory(1 << 20);
    assertThatThrownBy(() -> memory.acquire(2 << 20, VERSION, true)).hasMessageContaining("this one's 2048 KiB");
    assertThat(memory.held()).isZero();
    assertThatThrownBy(() -> new RequestMemory(0)).hasMessage("request memory: 0 bytes (expected: at least 1)");
  }

  @Test
  void aQuarterIsKeptForTenantsWithNothingWaiting() {
    RequestMemory memory = new RequestMemory(40 << 20);
    memory.acquire(20 << 20, VERSION, false);
    memory.acquire(10 << 20, VERSION, false);
    // 30 of 40 MiB held: a tenant with requests waiting gets no more...
    assertThatThrownBy(() -> memory.acquire(1 << 20, VERSION, false)).hasMessage("the server holds 30 MiB of requests not yet"
        + " answered, and this one's 1024 KiB would pass 30 MiB, the part of its limit of 40 MiB not kept for tenants with"
        + " nothing waiting (--request-memory); retry later or send smaller requests");
    // ...one with nothing waiting gets the rest.
    memory.acquire(10 << 20, VERSION, true);
    assertThat(memory.held()).isEqualTo(40 << 20);
  }

  @Test
  void aMessageArriving_holdsItsBytesUntilWhole_andIsRefusedOncePastTheUnreservedPart() {
    RequestMemory memory = new RequestMemory(40 << 20);
    io.grpc.ServerStreamTracer first = memory.arrivals().newServerStreamTracer("m", new io.grpc.Metadata());
    io.grpc.ServerStreamTracer second = memory.arrivals().newServerStreamTracer("m", new io.grpc.Metadata());
    first.inboundWireSize(20 << 20);
    second.inboundWireSize(8 << 20);
    assertThat(memory.held()).isEqualTo(28 << 20);
    // 30 MiB is what a message may fill while it arrives: 3 MiB more is refused, and stays so.
    assertThatThrownBy(() -> second.inboundWireSize(3 << 20)).isInstanceOfSatisfying(io.grpc.StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(io.grpc.Status.Code.RESOURCE_EXHAUSTED);
      assertThat(e.getStatus().getDescription()).isEqualTo("the server holds 28 MiB of requests arriving or not yet answered"
          + " (this message's first 8192 KiB among them), and 3072 KiB more would pass 30 MiB, the part of its limit of 40 MiB a"
          + " message may fill while it arrives (--request-memory); retry later or send smaller requests");
      assertThat(e.getStackTrace()).isEmpty();
    });
    assertThatThrownBy(() -> second.inboundWireSize(1)).isInstanceOf(io.grpc.StatusRuntimeException.class);
    assertThat(memory.refusedArriving()).isEqualTo(1);
    assertThat(memory.held()).isEqualTo(28 << 20);
    // Whole, the first message's bytes are handed on to admission; the refused one's go at its reset.
    first.inboundMessageRead(1, 20 << 20, -1);
    assertThat(memory.held()).isEqualTo(8 << 20);
    second.streamClosed(io.grpc.Status.RESOURCE_EXHAUSTED);
    assertThat(memory.held()).isZero();
    // A stream that ends part way through a message lets go of what it gathered, once.
    io.grpc.ServerStreamTracer third = memory.arrivals().newServerStreamTracer("m", new io.grpc.Metadata());
    third.inboundWireSize(5 << 20);
    third.streamClosed(io.grpc.Status.CANCELLED);
    third.streamClosed(io.grpc.Status.CANCELLED);
    assertThat(memory.held()).isZero();
  }
}

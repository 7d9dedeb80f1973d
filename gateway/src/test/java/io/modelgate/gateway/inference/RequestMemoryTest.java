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

  @Test
  void aTenantWithABacklog_withinItsShareOfTheUnreservedPart_mayUseTheReserve_oneBeyondItMayNot() {
    RequestMemory memory = new RequestMemory(40 << 20);
    RequestMemory.Tenant a = memory.tenant("a", 1);
    RequestMemory.Tenant b = memory.tenant("b", 1);
    assertThat(memory.tenant("a", 1)).isSameAs(a);
    // Tenant a, alone, with requests waiting: its share is the whole unreserved 30 MiB.
    memory.acquire(10 << 20, VERSION, true, a);
    memory.acquire(10 << 20, VERSION, false, a);
    memory.acquire(10 << 20, VERSION, false, a);
    assertThatThrownBy(() -> memory.acquire(1 << 20, VERSION, false, a)).hasMessageContaining("would pass 30 MiB");
    assertThat(memory.tenantsHolding()).isEqualTo(1);
    // Tenant b, with requests waiting too, holds far less than half of 30 MiB: the reserve is open to it.
    memory.acquire(5 << 20, VERSION, false, b);
    memory.acquire(5 << 20, VERSION, false, b);
    assertThat(memory.held()).isEqualTo(40 << 20);
    assertThat(memory.tenantsHolding()).isEqualTo(2);
    assertThatThrownBy(() -> memory.acquire(1, VERSION, false, b)).hasMessageContaining("would pass its limit of 40 MiB");
    // a, past its 15 MiB share now that two tenants hold requests, keeps to the unreserved part.
    memory.release(10 << 20, a);
    assertThatThrownBy(() -> memory.acquire(10 << 20, VERSION, false, a)).hasMessage("the server holds 30 MiB of requests"
        + " not yet answered, and this one's 10 MiB would pass 30 MiB, the part of its limit of 40 MiB not kept for tenants with"
        + " nothing waiting or within their share (tenant 'a' would hold 30 MiB, past its share of 15 MiB: that part divided"
        + " among the tenants holding requests, its weight 1 of 2) (--request-memory); retry later or send smaller requests");
    assertThat(memory.held()).as("a refusal holds nothing").isEqualTo(30 << 20);
    // Everything answered: no tenant holds anything.
    memory.release(20 << 20, a);
    memory.release(5 << 20, b);
    memory.release(5 << 20, b);
    assertThat(memory.held()).isZero();
    assertThat(memory.tenantsHolding()).isZero();
  }

  @Test
  void aTenantsShareOfTheUnreservedPart_followsItsWeight() {
    RequestMemory memory = new RequestMemory(40 << 20);
    RequestMemory.Tenant gold = memory.tenant("gold", 3);
    RequestMemory.Tenant bronze = memory.tenant("bronze", 1);
    // Bronze, alone with requests waiting, holds 20 MiB of the unreserved 30.
    memory.acquire(20 << 20, VERSION, false, bronze);
    // Gold's share with both holding is 3/4 of 30 MiB (22.5 MiB; an equal share would be 15):
    // at 18 MiB it is within it and may use the reserve past the unreserved 30 MiB.
    memory.acquire(10 << 20, VERSION, false, gold);
    memory.acquire(8 << 20, VERSION, false, gold);
    assertThat(memory.held()).isEqualTo(38 << 20);
    assertThat(memory.tenantsHolding()).isEqualTo(4);
    // Past its share, each keeps to the unreserved part.
    assertThatThrownBy(() -> memory.acquire(5 << 20, VERSION, false, gold)).hasMessageContaining(
        "tenant 'gold' would hold 23 MiB, past its share of 22 MiB: that part divided among the tenants holding"
            + " requests, its weight 3 of 4)");
    assertThatThrownBy(() -> memory.acquire(1 << 20, VERSION, false, bronze)).hasMessageContaining(
        "tenant 'bronze' would hold 21 MiB, past its share of 7680 KiB: that part divided among the tenants holding"
            + " requests, its weight 1 of 4)");
    assertThat(memory.held()).as("refusals hold nothing").isEqualTo(38 << 20);
    // A callers file read again with another weight: a new count; what was held releases into its own.
    RequestMemory.Tenant reweighed = memory.tenant("gold", 1);
    assertThat(reweighed).isNotSameAs(gold);
    assertThat(memory.tenant("gold", 1)).isSameAs(reweighed);
    memory.release(18 << 20, gold);
    memory.release(20 << 20, bronze);
    assertThat(memory.held()).isZero();
    assertThat(memory.tenantsHolding()).isZero();
  }

  /** 10 s windows, 1 KiB a second: a watched message must gain 10 KiB in every 10 s. */
  private static final ReceiveTimeout SLOW = new ReceiveTimeout(Duration.ofSeconds(10), 1024);

  private final long[] nanos = {1_000_000_000L};

  private void advance(Duration by) {
    nanos[0] += by.toNanos();
  }

  /** A stream's tracer, and the context it gave the stream. */
  private record Stream(io.grpc.ServerStreamTracer tracer, io.grpc.Context.CancellableContext context) {}

  /** A stream's tracer as grpc-java drives it, its context filtered first, in a memory watching with {@link #SLOW}. */
  private Stream open() {
    RequestMemory memory = new RequestMemory(40 << 20, SLOW, () -> nanos[0]);
    this.memory = memory;
    io.grpc.ServerStreamTracer tracer =
        memory.arrivals().newServerStreamTracer("inference.GRPCInferenceService/ModelInfer", new io.grpc.Metadata());
    return new Stream(tracer, (io.grpc.Context.CancellableContext) tracer.filterContext(io.grpc.Context.ROOT));
  }

  /** The memory {@link #open} made. */
  private RequestMemory memory;

  @Test
  void aLargeMessageArrivingTooSlowly_isGivenUpAfterAWindowWithoutItsBytes_andItsNextBytesEndItWithTheReason() {
    Stream stream = open();
    stream.tracer().inboundWireSize(60 * 1024);
    advance(Duration.ofSeconds(60));
    // Below 64 KiB nothing is watched, however long it takes.
    assertThat(memory.sweep()).isZero();
    // Watched from its 64th KiB: a window from then.
    stream.tracer().inboundWireSize(8 * 1024);
    advance(Duration.ofSeconds(9));
    assertThat(memory.sweep()).isZero();
    assertThat(stream.context().isCancelled()).isFalse();
    // 9 KiB more in the window is short of its 10 KiB: given up, the stream left as it is.
    stream.tracer().inboundWireSize(9 * 1024);
    advance(Duration.ofSeconds(1));
    assertThat(memory.sweep()).isEqualTo(1);
    assertThat(memory.receiveTimeouts()).isEqualTo(1);
    assertThat(stream.context().isCancelled()).isFalse();
    // Its next bytes end it: grpc-java sends the status thrown from the tracer in trailers.
    assertThatThrownBy(() -> stream.tracer().inboundWireSize(512))
        .isInstanceOfSatisfying(io.grpc.StatusRuntimeException.class, e -> {
          assertThat(e.getStatus().getCode()).isEqualTo(io.grpc.Status.Code.DEADLINE_EXCEEDED);
          assertThat(e.getStatus().getDescription()).isEqualTo("the request message arrived too slowly: 9216 bytes in the"
              + " last 10 s, against at least 1024 bytes a second (--receive-timeout, --receive-min-rate), with 77 KiB of it"
              + " gathered");
        });
    // The bytes that ended it were not taken; the close lets go of what it gathered.
    assertThat(memory.held()).isEqualTo(77 * 1024);
    stream.tracer().streamClosed(io.grpc.Status.DEADLINE_EXCEEDED);
    assertThat(memory.held()).isZero();
    // Ended once: nothing is left to reset or count again.
    advance(Duration.ofSeconds(10));
    assertThat(memory.sweep()).isZero();
    assertThat(stream.context().isCancelled()).isFalse();
    assertThat(memory.receiveTimeouts()).isEqualTo(1);
  }

  @Test
  void aMessageGivenUpThatSendsNothingMore_hasItsStreamResetAfterAnotherWindow_notBefore() {
    Stream stream = open();
    stream.tracer().inboundWireSize(70 * 1024);
    advance(Duration.ofSeconds(10));
    assertThat(memory.sweep()).isEqualTo(1);
    // Within the next window (10 s here) it keeps its chance to learn why: its bytes come a frame
    // at a time.
    advance(Duration.ofMillis(9_999));
    assertThat(memory.sweep()).isZero();
    assertThat(stream.context().isCancelled()).isFalse();
    advance(Duration.ofMillis(1));
    assertThat(memory.sweep()).isZero();
    assertThat(stream.context().isCancelled()).isTrue();
    // grpc-java resets a stream whose context is cancelled; the context carries the reason.
    io.grpc.Status status = io.grpc.Contexts.statusFromCancelled(stream.context());
    assertThat(status.getCode()).isEqualTo(io.grpc.Status.Code.DEADLINE_EXCEEDED);
    assertThat(status.getDescription()).startsWith("the request message arrived too slowly: 0 bytes in the last 10 s");
    assertThat(memory.receiveTimeouts()).isEqualTo(1);
    stream.tracer().streamClosed(status);
    assertThat(memory.held()).isZero();
  }

  @Test
  void aMessageWholeJustAfterItWasGivenUp_leavesNoMarkForTheStreamsNextMessage() {
    Stream stream = open();
    stream.tracer().inboundWireSize(70 * 1024);
    advance(Duration.ofSeconds(10));
    assertThat(memory.sweep()).isEqualTo(1);
    // Its last bytes were already on their way: whole, it goes to the service as any other.
    stream.tracer().inboundMessageRead(1, 70 * 1024, -1);
    assertThat(memory.held()).isZero();
    // A streaming call's next message is not refused for the last one, nor reset.
    stream.tracer().inboundWireSize(100 * 1024);
    advance(Duration.ofSeconds(1));
    assertThat(memory.sweep()).isZero();
    stream.tracer().inboundWireSize(1024);
    assertThat(stream.context().isCancelled()).isFalse();
    assertThat(memory.held()).isEqualTo(101 * 1024);
  }

  @Test
  void aMessageThatKeepsItsRate_isLeftAlone_windowAfterWindow_untilItStalls() {
    Stream stream = open();
    stream.tracer().inboundWireSize(64 * 1024);
    for (int window = 0; window < 5; window++) {
      stream.tracer().inboundWireSize(10 * 1024);
      advance(Duration.ofSeconds(10));
      assertThat(memory.sweep()).as("window %d", window).isZero();
    }
    // A window with no byte at all, and none in the next.
    advance(Duration.ofSeconds(10));
    assertThat(memory.sweep()).isEqualTo(1);
    advance(Duration.ofSeconds(10));
    memory.sweep();
    assertThat(stream.context().isCancelled()).isTrue();
  }

  @Test
  void aMessageWholeBeforeItsWindowEnds_isNoLongerWatched_andTheStreamsNextMessageGetsAWindowOfItsOwn() {
    Stream stream = open();
    stream.tracer().inboundWireSize(100 * 1024);
    advance(Duration.ofSeconds(9));
    stream.tracer().inboundMessageRead(1, 100 * 1024, -1);
    advance(Duration.ofSeconds(5));
    assertThat(memory.sweep()).isZero();
    // A stream's second message (a streaming call), watched from its own 64th KiB.
    stream.tracer().inboundWireSize(70 * 1024);
    advance(Duration.ofSeconds(9));
    assertThat(memory.sweep()).isZero();
    advance(Duration.ofSeconds(1));
    assertThat(memory.sweep()).isEqualTo(1);
    advance(Duration.ofSeconds(10));
    memory.sweep();
    assertThat(stream.context().isCancelled()).isTrue();
  }

  @Test
  void withoutAReceiveTimeout_noMessageIsWatched_andACallKeepsItsContext() {
    RequestMemory memory = new RequestMemory(40 << 20, ReceiveTimeout.OFF, () -> nanos[0]);
    io.grpc.ServerStreamTracer tracer = memory.arrivals().newServerStreamTracer("m", new io.grpc.Metadata());
    assertThat(tracer.filterContext(io.grpc.Context.ROOT)).isSameAs(io.grpc.Context.ROOT);
    tracer.inboundWireSize(1 << 20);
    advance(Duration.ofHours(1));
    assertThat(memory.sweep()).isZero();
    assertThat(memory.startSweeping()).isSameAs(memory);
    memory.close();
  }

  @Test
  void aReceiveTimeoutIsValidated() {
    assertThatThrownBy(() -> new ReceiveTimeout(Duration.ofMillis(500), 1))
        .hasMessage("receive timeout: 500ms (expected: 0 for none, or 1s to 1h)");
    assertThatThrownBy(() -> new ReceiveTimeout(Duration.ofSeconds(1), -1))
        .hasMessage("receive min rate: -1 bytes a second (expected: 0 to 2147483647)");
    assertThat(new ReceiveTimeout(Duration.ofSeconds(30), 0).leastBytesPerWindow()).isEqualTo(1);
    assertThat(ReceiveTimeout.DEFAULT.leastBytesPerWindow()).isEqualTo(30 * 16 * 1024);
    assertThat(ReceiveTimeout.OFF.enabled()).isFalse();
  }
}

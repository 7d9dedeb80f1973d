package io.modelgate.gateway.status;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.modelgate.runtime.error.InferenceException;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class ErrorStatusTest {
  private static final io.grpc.Metadata.Key<String> PUSHBACK =
      io.grpc.Metadata.Key.of("grpc-retry-pushback-ms", io.grpc.Metadata.ASCII_STRING_MARSHALLER);

  @Test
  void refusalOverAQuota_carriesRetryInfo_andNoStackTrace() throws Exception {
    InferenceException refusal = InferenceException.overQuota("tenant 'a' is over 10 requests/s", Duration.ofMillis(250));
    StatusRuntimeException answer = ErrorStatus.exception(refusal, ErrorStatus.of(refusal));
    assertThat(answer.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
    assertThat(answer.getStatus().getDescription()).isEqualTo("tenant 'a' is over 10 requests/s");
    assertThat(answer.getStackTrace()).isEmpty();
    com.google.rpc.Status details = StatusProto.fromThrowable(answer);
    assertThat(details).isNotNull();
    assertThat(details.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED.value());
    RetryInfo retry = details.getDetails(0).unpack(RetryInfo.class);
    assertThat(retry.getRetryDelay().getNanos()).isEqualTo(250_000_000);
    assertThat(answer.getTrailers().get(PUSHBACK)).isEqualTo("250");
  }

  @Test
  void aFullQueue_saysWhenToRetry_inRetryInfoAndGrpcPushback_roundedUpToWholeMilliseconds() throws Exception {
    InferenceException full = InferenceException.resourceExhausted("queue full", Duration.ofNanos(1_200_001));
    StatusRuntimeException answer = ErrorStatus.exception(full, ErrorStatus.of(full));
    RetryInfo retry = StatusProto.fromThrowable(answer).getDetails(0).unpack(RetryInfo.class);
    assertThat(retry.getRetryDelay().getSeconds()).isZero();
    assertThat(retry.getRetryDelay().getNanos()).isEqualTo(1_200_001);
    assertThat(answer.getTrailers().get(PUSHBACK)).isEqualTo("2");
    assertThat(full.refusal()).as("counted by reason in usage").isEqualTo(io.modelgate.runtime.error.Refusal.QUEUE_FULL);
    InferenceException slow = InferenceException.resourceExhausted("queue full", Duration.ofSeconds(3));
    assertThat(ErrorStatus.exception(slow, ErrorStatus.of(slow)).getTrailers().get(PUSHBACK)).isEqualTo("3000");
  }

  @Test
  void otherFailures_carryTheirStatusAlone() {
    InferenceException draining = InferenceException.unavailable("unloading");
    assertThat(draining.refusal()).isNull();
    StatusRuntimeException answer = ErrorStatus.exception(draining, ErrorStatus.of(draining));
    assertThat(answer.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
    com.google.rpc.Status details = StatusProto.fromThrowable(answer);
    assertThat(details == null ? 0 : details.getDetailsCount()).as("no details").isZero();
    assertThat(answer.getTrailers().get(PUSHBACK)).as("no pushback").isNull();
    assertThat(answer.getStackTrace()).isEmpty();
  }
}

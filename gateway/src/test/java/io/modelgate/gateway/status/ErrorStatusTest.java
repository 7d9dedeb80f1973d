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
  }

  @Test
  void otherFailures_carryTheirStatusAlone() {
    InferenceException full = InferenceException.resourceExhausted("queue full");
    StatusRuntimeException answer = ErrorStatus.exception(full, ErrorStatus.of(full));
    assertThat(answer.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
    com.google.rpc.Status details = StatusProto.fromThrowable(answer);
    assertThat(details == null ? 0 : details.getDetailsCount()).as("no details").isZero();
    assertThat(answer.getStackTrace()).isEmpty();
  }
}

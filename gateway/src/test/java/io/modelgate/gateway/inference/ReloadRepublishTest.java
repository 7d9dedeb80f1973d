package io.modelgate.gateway.inference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.status.ErrorStatus;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelVersion;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The window a reload leaves, made to happen every time: a request that took a version's load from
 * routing just before the load was swapped out, and publishes after its drain began.
 */
class ReloadRepublishTest {
  @TempDir Path root;
  Gateway gateway;

  @AfterEach
  void stop() {
    if (gateway != null) {
      gateway.close();
    }
  }

  /** Captures the one answer, recording it as every answer is. */
  private static final class Captured extends RecordedAnswer {
    final CompletableFuture<InferenceResult> result = new CompletableFuture<>();

    Captured(VersionStats stats) {
      super(stats, System.nanoTime(), Clock.systemUTC(), false);
    }

    @Override
    public void onSuccess(InferenceResult value) {
      answered(Status.Code.OK, value);
      result.complete(value);
    }

    @Override
    public void onFailure(InferenceException error) {
      answered(ErrorStatus.of(error).getCode(), null);
      result.completeExceptionally(error);
    }
  }

  @Test
  void aRequestHoldingALoadSwappedOutByAReload_isPublishedToTheNewLoad_butOneOfAVersionUnloadedIsRefused()
      throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    gateway = Gateway.inProcess(root);
    ModelVersion version = gateway.repository.model("m").orElseThrow().version(1).orElseThrow();
    LoadedVersion taken = version.serving();
    // Loaded again from another file (y = 3x + 1) after the request took its load: the old one drained.
    Gateway.write(root, "m", 1, Gateway.affineTimes(3));
    assertThat(gateway.repository.reloadVersion("m", 1, Duration.ofSeconds(5)).reloaded()).isTrue();
    assertThatThrownBy(() -> taken.scheduler().refuseIfFull())
        .isInstanceOfSatisfying(InferenceException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE));

    Captured answer = new Captured(InferenceService.statsOf(taken));
    InferenceService.submit(Tensors.affine(1, 2, 3).setModelName("m").build(), version, taken, System.nanoTime(),
        () -> false, null, null, 1, answer);
    InferenceResult result = answer.result.get(10, TimeUnit.SECONDS);
    assertThat(result.outputs()[0].toDoubles()).containsExactly(4, 7, 10);

    // Unloaded, not reloaded: no load to go to, so the refusal stands.
    LoadedVersion current = version.serving();
    gateway.repository.unloadVersion("m", 1, Duration.ofSeconds(5));
    Captured refused = new Captured(InferenceService.statsOf(current));
    assertThatThrownBy(() -> InferenceService.submit(Tensors.affine(1, 2, 3).setModelName("m").build(), version,
            current, System.nanoTime(), () -> false, null, null, 1, refused))
        .isInstanceOfSatisfying(InferenceException.class, e -> {
          assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE);
          assertThat(e.getMessage()).contains("unloading");
        });
    assertThat(refused.result).isNotDone();
  }
}

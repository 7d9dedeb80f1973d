package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.UnloadVersionRequest;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One process (the state directory as its control store): a version an operator unloaded stays
 * unloaded when the server starts again — its memory stays free, as the operator meant — until an
 * operator loads it; one loaded again loads at the next start as any folder does.
 */
class UnloadsKeptAcrossRestartsTest {
  @TempDir Path root;

  private static ModelVersion version(Gateway gateway, long number) {
    return gateway.repository.model("m").orElseThrow().version(number).orElseThrow();
  }

  @Test
  void aVersionUnloadedBeforeAStop_isLeftUnloadedAtTheNextStart_untilLoadedAgain() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affine());
    Path state = root.resolve(".state");
    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10), state)) {
      gateway.admin().unloadVersion(UnloadVersionRequest.newBuilder().setModel("m").setVersion(1).build());
    }
    assertThat(Files.readString(state.resolve("state.json"))).contains("\"loads\"");

    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10), state)) {
      assertThat(version(gateway, 1).state()).isEqualTo(VersionState.UNAVAILABLE);
      assertThat(version(gateway, 1).reason()).startsWith("unloaded, as ")
          .endsWith(" (kept in the state directory; admin load loads it)");
      assertThat(version(gateway, 2).state()).isEqualTo(VersionState.READY);
      // Nothing is retried or owed in one process: its asks are its own.
      gateway.server.versions().reconcileLoads();
      assertThat(version(gateway, 1).state()).isEqualTo(VersionState.UNAVAILABLE);
      assertThat(gateway.admin().listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance())
          .getOwedLoadsList()).isEmpty();
      assertThat(gateway.admin().loadVersion(LoadVersionRequest.newBuilder().setModel("m").setVersion(1).build())
          .getState()).isEqualTo("READY");
      assertThat(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setModelVersion("1").build())
          .getModelVersion()).isEqualTo("1");
    }

    try (Gateway gateway = Gateway.inProcess(root, Duration.ofSeconds(10), state)) {
      assertThat(version(gateway, 1).state()).isEqualTo(VersionState.READY);
      assertThat(version(gateway, 2).state()).isEqualTo(VersionState.READY);
    }
  }
}

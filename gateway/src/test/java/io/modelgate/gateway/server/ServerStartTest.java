package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A server refuses to start on a repository whose versions would record statistics nowhere. */
class ServerStartTest {
  @TempDir Path root;

  @Test
  void aRepositoryLoadedWithoutTheServersStatistics_isRefusedAtStart() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    ModelRepository repository = ModelRepository.load(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
    try {
      assertThatThrownBy(() -> GatewayServer.start(
              new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5)),
              Gateway.adminSettings(root.resolve(".state"), -1), repository, stats))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("not to this server's statistics: load it with ModelRepository.load(root, defaults, stats)");
    } finally {
      repository.close(Duration.ofSeconds(5));
      stats.close();
    }
  }
}

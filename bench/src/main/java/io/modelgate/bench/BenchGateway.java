package io.modelgate.bench;

import io.modelgate.gateway.server.AdminSettings;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A gateway on a loopback port serving a temporary model repository, with client channels to it,
 * for the end-to-end cost benchmarks; closing it stops everything and deletes the repository.
 */
record BenchGateway(Path root, StatsRegistry stats, GatewayServer server, io.modelgate.bench.load.Connections channels)
    implements AutoCloseable {

  /**
   * Serves {@code root} (one ONNX Runtime thread per session, queues of 1,024) and opens {@code
   * connections} connections to it.
   *
   * @param background whether statistics rotate and rollouts are judged on their own threads
   */
  static BenchGateway start(Path root, int connections, boolean background) throws IOException {
    return start(root, connections, background, null);
  }

  /** As {@link #start(Path, int, boolean)}, with {@code callersFile} (null: none) deciding who may call. */
  static BenchGateway start(Path root, int connections, boolean background, Path callersFile) throws IOException {
    return start(root, connections, background, callersFile, new SchedulerSettings(1024, 1));
  }

  /** As {@link #start(Path, int, boolean, Path)}, every version scheduled with {@code scheduler}. */
  static BenchGateway start(Path root, int connections, boolean background, Path callersFile,
      SchedulerSettings scheduler) throws IOException {
    return start(root, connections, background, callersFile, scheduler, 1);
  }

  /** As {@link #start(Path, int, boolean, Path, SchedulerSettings)}, on {@code eventLoops} event loops. */
  static BenchGateway start(Path root, int connections, boolean background, Path callersFile,
      SchedulerSettings scheduler, int eventLoops) throws IOException {
    return start(root, connections, background, callersFile, scheduler, eventLoops, settings -> settings);
  }

  /** As {@link #start(Path, int, boolean, Path, SchedulerSettings, int)}, its admin settings changed by {@code admin}. */
  static BenchGateway start(Path root, int connections, boolean background, Path callersFile,
      SchedulerSettings scheduler, int eventLoops, java.util.function.UnaryOperator<AdminSettings> admin)
      throws IOException {
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), background);
    ModelRepository repository =
        ModelRepository.load(root, new ModelSettings(null, new SessionSettings(1, 1), scheduler), stats);
    GatewayServer server =
        GatewayServer.start(
            new ServerSettings("127.0.0.1", 0, 64 << 20, eventLoops, Duration.ofSeconds(10)),
            admin.apply(new AdminSettings("127.0.0.1", 0, java.util.UUID.randomUUID().toString(), null, "127.0.0.1", -1,
                root.resolve(".state")).withCallers(callersFile)),
            repository,
            stats);
    return new BenchGateway(root, stats, server,
        io.modelgate.bench.load.Connections.open("127.0.0.1:" + server.port(), connections));
  }

  @Override
  public void close() throws IOException {
    channels.close();
    server.stop();
    stats.close();
    try (var paths = Files.walk(root)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}

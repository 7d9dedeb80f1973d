package io.modelgate.gateway.server;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.control.ControlSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A start that fails part-way closes what it had made: a server that cannot start leaves no thread
 * of its own behind in a process that goes on (an embedding application, a test).
 */
class StartFailureTest {
  @TempDir Path root;

  private static boolean anyThread(String prefix) {
    return Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.isAlive() && t.getName().startsWith(prefix));
  }

  @Test
  void aControlStoreThatCannotBeMade_leavesNoWatcherOfTheCallersFileRunning() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Path callers = root.resolve("callers.yaml");
    Files.writeString(callers, "tenants:\n  a:\n    api_keys: [" + CallerPolicy.hash("mgk_start-failure-key-0123456789") + "]\n");
    // etcd with a password file that is not there: the control store fails as it is made, after
    // the callers file is followed.
    ControlSettings etcd = new ControlSettings(List.of(URI.create("http://127.0.0.1:1")), "/start/", "r", "root", null,
        root.resolve("no-such-password-file"), null, null, null, Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(200));
    AdminSettings admin = new AdminSettings("127.0.0.1", 0, Gateway.ADMIN_TOKEN, null, "127.0.0.1", -1,
        Files.createDirectories(root.resolve(".state")), etcd).withCallers(callers);
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);

    assertThatThrownBy(() -> Gateway.server(root, stats, new ServerSettings("127.0.0.1", 0, 1 << 20, 1, Duration.ofSeconds(5), null),
        admin))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("etcd password file")
        .hasMessageContaining("no-such-password-file");
    eventually("the callers file's watcher was left running", () -> !anyThread("modelgate-watch-callers-file"));
  }
}

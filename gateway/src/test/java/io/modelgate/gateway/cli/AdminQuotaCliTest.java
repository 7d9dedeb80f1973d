package io.modelgate.gateway.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.server.GatewayServer;
import io.modelgate.gateway.server.ServerSettings;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.gateway.testing.Gateway;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code modelgate admin quota set} against a real server with a callers file: what it leaves out
 * stays the file's, and the access table says which measures the admin API set.
 */
class AdminQuotaCliTest {
  @TempDir Path root;

  private record Run(int exitCode, String out, String err) {}

  private Run admin(GatewayServer server, String... args) throws Exception {
    Path token = root.resolve("admin-token");
    Files.writeString(token, Gateway.ADMIN_TOKEN);
    String[] prefix = {"admin", "--target", "localhost:" + server.adminPort(), "--token-file", token.toString()};
    String[] all = java.util.Arrays.copyOf(prefix, prefix.length + args.length);
    System.arraycopy(args, 0, all, prefix.length, args.length);
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    picocli.CommandLine cli = ModelgateCli.commandLine();
    cli.setOut(new PrintWriter(out));
    cli.setErr(new PrintWriter(err));
    int code = cli.execute(all);
    return new Run(code, out.toString(), err.toString());
  }

  private static String row(Run run, String tenant) {
    return run.out().lines().filter(l -> l.startsWith("  " + tenant + " ")).findFirst().orElseThrow(
        () -> new AssertionError("no row for " + tenant + " in:\n" + run.out() + run.err()));
  }

  @Test
  void quotaSet_leavesWhatItDoesNotName_toTheCallersFile() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Path callers = root.resolve("callers.yaml");
    Files.writeString(callers, "tenants:\n"
        + "  team:\n    api_keys: [" + CallerPolicy.hash("mgk_cli-quota-key-0123456789") + "]\n"
        + "    quota: {requests_per_second: 2, in_flight: 4}\n    weight: 2\n");
    StatsRegistry stats = new StatsRegistry(Duration.ofSeconds(5), Clock.systemUTC(), false);
    GatewayServer server = Gateway.server(root, stats, new ServerSettings("127.0.0.1", 0, 16 << 20, 1, Duration.ofSeconds(10)),
        Gateway.adminSettings(root.resolve(".state"), -1).withCallers(callers));
    try {
      Run weight = admin(server, "quota", "set", "team", "--weight", "5");
      assertThat(weight.exitCode()).as(weight.err()).isZero();
      assertThat(row(weight, "team")).containsPattern(
          "team +1 +5 +all +2 requests/s, 4 in flight \\(set through the admin API: weight\\)$");

      Run rate = admin(server, "quota", "set", "team", "--requests-per-second", "0", "--rows-per-second", "100");
      assertThat(rate.exitCode()).as(rate.err()).isZero();
      assertThat(row(rate, "team")).containsPattern(
          "team +1 +2 +all +100 rows/s, 4 in flight \\(set through the admin API: requests/s, rows/s\\)$");

      Run nothing = admin(server, "quota", "set", "team");
      assertThat(nothing.exitCode()).isNotZero();
      assertThat(nothing.err()).contains("INVALID_ARGUMENT: nothing to set");

      Run cleared = admin(server, "quota", "clear", "team");
      assertThat(row(cleared, "team")).containsPattern("team +1 +2 +all +2 requests/s, 4 in flight$");
    } finally {
      server.stop();
      stats.close();
    }
  }
}

package io.modelgate.gateway.cli;

import io.modelgate.gateway.callers.CallerPolicy;
import java.io.PrintWriter;
import java.security.SecureRandom;
import java.util.Base64;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code modelgate callers}: helpers for the callers file. */
@Command(
    name = "callers",
    mixinStandardHelpOptions = true,
    description = "Helpers for the callers file (--callers): who may call the inference port.",
    subcommands = {CallersCommand.NewKey.class})
final class CallersCommand implements Runnable {
  @Spec CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(spec.commandLine().getOut());
  }

  /** A new random API key and the hash the callers file keeps of it. */
  @Command(name = "new-key", description = {
      "Makes a random API key (256 bits) and prints it with the line for the callers file.",
      "Give the key to the tenant; keep only the hash: the server never needs the key itself."})
  static final class NewKey implements Runnable {
    @Spec CommandSpec spec;
    @Option(names = "--tenant", defaultValue = "<tenant>", description = "The tenant, for the printed line.") String tenant;
    @Option(names = "--admin-role", description = "Print the line for the admin tokens file (--admin-tokens) instead,"
        + " for a token named by --tenant with this role: viewer, operator or admin.") String adminRole;

    @Override
    public void run() {
      byte[] random = new byte[32];
      new SecureRandom().nextBytes(random);
      String key = "mgk_" + Base64.getUrlEncoder().withoutPadding().encodeToString(random);
      PrintWriter out = spec.commandLine().getOut();
      out.printf("key:  %s%n", key);
      out.printf("hash: %s%n", CallerPolicy.hash(key));
      if (adminRole != null) {
        if (!java.util.List.of("viewer", "operator", "admin").contains(adminRole)) {
          throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--admin-role: '" + adminRole
              + "' (expected: viewer, operator or admin)");
        }
        out.printf("in the admin tokens file:%n  tokens:%n    %s: {hash: %s, role: %s}%n", tenant, CallerPolicy.hash(key), adminRole);
        out.printf("the operator sends it as: authorization: Bearer %s (modelgate admin --token-file FILE)%n", key);
      } else {
        out.printf("in the callers file:%n  tenants:%n    %s:%n      api_keys: [%s]%n", tenant, CallerPolicy.hash(key));
        out.printf("the tenant sends it as: authorization: Bearer %s (or x-api-key: %s)%n", key, key);
      }
      out.flush();
    }
  }
}

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

    @Override
    public void run() {
      byte[] random = new byte[32];
      new SecureRandom().nextBytes(random);
      String key = "mgk_" + Base64.getUrlEncoder().withoutPadding().encodeToString(random);
      PrintWriter out = spec.commandLine().getOut();
      out.printf("key:  %s%n", key);
      out.printf("hash: %s%n", CallerPolicy.hash(key));
      out.printf("in the callers file:%n  tenants:%n    %s:%n      api_keys: [%s]%n", tenant, CallerPolicy.hash(key));
      out.printf("the tenant sends it as: authorization: Bearer %s (or x-api-key: %s)%n", key, key);
      out.flush();
    }
  }
}

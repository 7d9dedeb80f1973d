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
    subcommands = {CallersCommand.NewKey.class, CallersCommand.Check.class})
final class CallersCommand implements Runnable {
  @Spec CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(spec.commandLine().getOut());
  }

  /**
   * Reads a callers file as a server would and says what it allows, or why a server would not take
   * it: for a pipeline that checks a change before it reaches the servers.
   */
  @Command(name = "check", description = {
      "Reads a callers file (and the JWKS file it names) as the server does, and prints its tenants.",
      "For each: how it is identified, its models, quota and weight. Exit 0 when a server would take it; 1, with the"
          + " reason, when not."})
  static final class Check implements java.util.concurrent.Callable<Integer> {
    @Spec CommandSpec spec;
    @picocli.CommandLine.Parameters(paramLabel = "FILE", description = "The callers file.") java.nio.file.Path file;

    @Override
    public Integer call() throws java.io.IOException {
      CallerPolicy policy;
      try {
        policy = CallerPolicy.read(file);
      } catch (CallerPolicy.InvalidCallersException e) {
        spec.commandLine().getErr().printf("modelgate callers: %s: %s (a server keeps the file it has in force)%n",
            file, e.getMessage());
        return CliErrors.FAILED;
      }
      PrintWriter out = spec.commandLine().getOut();
      out.printf("%s: %d tenants, identified by %s%n", file, policy.tenants().size(),
          String.join(", ", policy.methods().stream().map(CallerPolicy.Method::configName).toList()));
      for (CallerPolicy.Tenant tenant : new java.util.TreeMap<>(policy.tenants()).values()) {
        CallerPolicy.Quota quota = tenant.quota();
        java.util.List<String> limits = new java.util.ArrayList<>();
        if (quota.requestsPerSecond() > 0) {
          limits.add(number(quota.requestsPerSecond()) + " requests/s");
        }
        if (quota.rowsPerSecond() > 0) {
          limits.add(number(quota.rowsPerSecond()) + " rows/s");
        }
        if (quota.inFlight() > 0) {
          limits.add(quota.inFlight() + " in flight");
        }
        out.printf("  %s: %d API keys, certificates %s, models %s, quota %s, weight %d%n", tenant.name(),
            tenant.keyHashes().size(), new java.util.TreeSet<>(tenant.certificates()),
            tenant.models().isEmpty() ? "all" : new java.util.TreeSet<>(tenant.models()),
            limits.isEmpty() ? "none" : String.join(", ", limits), tenant.weight());
      }
      out.flush();
      return 0;
    }

    private static String number(double value) {
      return value == Math.rint(value) && Math.abs(value) < 1e15 ? Long.toString((long) value) : Double.toString(value);
    }
  }

  /** A new random API key and the hash the callers file keeps of it. */
  @Command(name = "new-key", description = {
      "Makes a random API key (256 bits) and prints it with the line for the callers file.",
      "Give the key to the tenant; keep only the hash: the server never needs the key itself."})
  static final class NewKey implements Runnable {
    @Spec CommandSpec spec;
    @Option(names = "--tenant", defaultValue = "<tenant>", description = "The tenant, for the printed line. Default: ${DEFAULT-VALUE}, to fill in.") String tenant;
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

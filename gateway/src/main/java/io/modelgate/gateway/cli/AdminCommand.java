package io.modelgate.gateway.cli;

import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.rollout.RolloutSpecs;
import io.modelgate.proto.admin.v1.AbortRolloutRequest;
import io.modelgate.proto.admin.v1.Decision;
import io.modelgate.proto.admin.v1.Distribution;
import io.modelgate.proto.admin.v1.Evidence;
import io.modelgate.proto.admin.v1.GetRolloutRequest;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.GetStatsRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.ModelInfo;
import io.modelgate.proto.admin.v1.PromoteRequest;
import io.modelgate.proto.admin.v1.QuotaMeasure;
import io.modelgate.proto.admin.v1.RollbackRequest;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.ShadowRouting;
import io.modelgate.proto.admin.v1.StartRolloutRequest;
import io.modelgate.proto.admin.v1.StatsResponse;
import io.modelgate.proto.admin.v1.StickyRouting;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.proto.admin.v1.UnloadVersionRequest;
import io.modelgate.proto.admin.v1.VersionInfo;
import io.modelgate.proto.admin.v1.VersionStats;
import io.modelgate.proto.admin.v1.WatchStatsRequest;
import io.modelgate.proto.admin.v1.WindowStats;
import java.io.PrintWriter;
import java.time.Instant;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code modelgate admin}: routing, versions, statistics and rollouts of a running gateway. */
@Command(
    name = "admin",
    mixinStandardHelpOptions = true,
    description = "Operate a running gateway through its authenticated admin API (port 8003).",
    subcommands = {
      AdminCommand.Models.class,
      AdminCommand.Routes.class,
      AdminCommand.Stats.class,
      AdminCommand.Watch.class,
      AdminCommand.Promote.class,
      AdminCommand.Rollback.class,
      AdminCommand.RolloutCommand.class,
      AdminCommand.Load.class,
      AdminCommand.Unload.class,
      AdminCommand.Forget.class,
      AdminCommand.Validate.class,
      AdminCommand.DriftCommand.class,
      AdminCommand.UsageCommand.class,
      AdminCommand.Access.class,
      AdminCommand.TokenCommand.class,
      AdminCommand.QuotaCommand.class,
      AdminCommand.Connections.class,
      AdminCommand.LogCommand.class,
      AdminCommand.TraceCommand.class
    })
final class AdminCommand implements Runnable {
  @Spec CommandSpec spec;
  @Mixin AdminConnection connection;

  @Override
  public void run() {
    spec.commandLine().usage(spec.commandLine().getOut());
  }

  /**
   * Runs {@code action} against the admin API; prints a gRPC error as "CODE: message" (exit 1), an
   * unreachable server or unreadable token as one line (exit 3).
   */
  interface Action {
    void run(AdminConnection.Client client, PrintWriter out) throws Exception;
  }

  static int execute(AdminCommand admin, CommandSpec spec, Action action) throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    try (AdminConnection.Client client = admin.connection.connect()) {
      action.run(client, out);
      out.flush();
      return 0;
    } catch (StatusRuntimeException | java.io.IOException e) {
      err.printf("modelgate admin: %s%n", CliErrors.describe(e, admin.connection.target));
      err.flush();
      return CliErrors.exitCode(e);
    }
  }

  /**
   * A model's routing for {@code admin models}: its weights, and where the default finds no READY
   * version, that requests are refused.
   */
  static String routingLine(ModelInfo model) {
    RoutingPolicy policy = model.getRouting();
    boolean noneReady = model.getVersionsList().stream().noneMatch(v -> v.getState().equals("READY"));
    return weights(policy) + (policy.getWeightsCount() == 0 && noneReady ? "; none is READY: requests are refused UNAVAILABLE" : "");
  }

  static String weights(RoutingPolicy policy) {
    if (policy.getWeightsCount() == 0) {
      return "default (highest READY version takes 100%)";
    }
    long total = policy.getWeightsMap().values().stream().mapToLong(Integer::toUnsignedLong).sum();
    StringBuilder sb = new StringBuilder();
    policy.getWeightsMap().entrySet().stream()
        .sorted(Map.Entry.comparingByKey())
        .forEach(
            e -> {
              if (sb.length() > 0) {
                sb.append(", ");
              }
              sb.append("v").append(e.getKey()).append('=').append(Integer.toUnsignedLong(e.getValue()));
              sb.append(String.format(" (%.1f%%)", 100.0 * Integer.toUnsignedLong(e.getValue()) / total));
            });
    return sb.toString();
  }

  static void printPolicy(PrintWriter out, RoutingPolicy p) {
    out.printf("model %s, routing revision %d%n", p.getModel(), p.getRevision());
    out.printf("  weights: %s%n", weights(p));
    if (!p.getSticky().getParameter().isEmpty()) {
      out.printf("  sticky:  by request parameter '%s'%n", p.getSticky().getParameter());
    } else if (!p.getSticky().getHeader().isEmpty()) {
      out.printf("  sticky:  by header '%s'%n", p.getSticky().getHeader());
    }
    if (p.getShadow().getVersion() != 0) {
      out.printf("  shadow:  v%d, %.1f%% of requests%n", p.getShadow().getVersion(), p.getShadow().getSampleRate() * 100);
    }
    if (p.getRevision() > 0) {
      out.printf("  changed: %s by %s: %s%n", Instant.ofEpochMilli(p.getUpdatedAtMs()), p.getUpdatedBy(), p.getReason());
    }
  }

  @Command(name = "models", description = "Models, versions, states and weights.")
  static final class Models implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        io.modelgate.proto.admin.v1.ListModelsResponse response = client.call().listModels(ListModelsRequest.getDefaultInstance());
        List<ModelInfo> models = response.getModelsList();
        printControlStore(out, response.getReplica(), response.getControlStore());
        out.printf("%-20s %-8s %-12s %-8s %-9s %-5s %-12s %-15s %s%n", "MODEL", "VERSION", "STATE", "WEIGHT", "PROVIDER", "MBS",
            "SHA-256", "GOLDEN", "REASON");
        for (ModelInfo model : models) {
          RoutingPolicy policy = model.getRouting();
          for (VersionInfo v : model.getVersionsList()) {
            String weight =
                policy.getWeightsCount() == 0
                    ? "-"
                    : Long.toString(Integer.toUnsignedLong(policy.getWeightsOrDefault(v.getVersion(), 0)));
            out.printf("%-20s %-8d %-12s %-8s %-9s %-5s %-12s %-15s %s%n", model.getName(), v.getVersion(), v.getState(), weight,
                v.getExecutionProvider().isEmpty() ? "-" : v.getExecutionProvider(),
                v.getState().equals("READY") ? Integer.toString(v.getMaxBatchSize()) : "-",
                abbreviated(v.getModelSha256()),
                golden(v),
                v.getCopyOf() == 0 ? v.getReason()
                    : (v.getReason().isEmpty() ? "" : v.getReason() + "; ") + "a copy of v" + v.getCopyOf() + " (a rollout's control)");
          }
          out.printf("%-20s routing revision %d: %s%n", "", policy.getRevision(), routingLine(model));
          if (!model.getRoutingDegraded().isEmpty()) {
            out.printf("%-20s ROUTING IN PART, %s%n", "", model.getRoutingDegraded());
          }
          if (model.getFolderGone()) {
            out.printf("%-20s %s%n", "", folderGoneLine(model, System.currentTimeMillis()));
          }
        }
        for (io.modelgate.proto.admin.v1.OwedLoad owed : response.getOwedLoadsList()) {
          out.println(owedLine(owed, System.currentTimeMillis()));
        }
        for (String name : response.getModelsNotLoadedList()) {
          out.printf("NOT LOADED: model %s, a folder added to the repository since the start (admin load --model %s"
              + " loads it)%n", name, name);
        }
        for (String waiting : response.getPollWaitingList()) {
          out.printf("WAITING: %s (the repository poll, every %s, acts on it once it can)%n", waiting,
              io.modelgate.gateway.config.TimeSpans.format(java.time.Duration.ofMillis(response.getRepositoryPollMs())));
        }
        for (io.modelgate.proto.admin.v1.KeptModel kept : response.getModelsKeptList()) {
          out.println(keptLine(kept));
        }
      });
    }
  }

  /** What {@code admin models} says of a record the control store keeps for a model this replica does not have. */
  static String keptLine(io.modelgate.proto.admin.v1.KeptModel kept) {
    List<String> parts = new java.util.ArrayList<>();
    if (kept.getRoutingRevision() > 0) {
      parts.add("routing revision " + kept.getRoutingRevision());
    }
    if (!kept.getRolloutState().isEmpty()) {
      parts.add("a rollout " + kept.getRolloutState());
    }
    if (kept.getVersionLoads() > 0) {
      parts.add("the last load or unload of " + kept.getVersionLoads() + " version" + (kept.getVersionLoads() == 1 ? "" : "s"));
    }
    if (kept.getDriftReferenceVersionsCount() > 0) {
      parts.add("the fleet's drift reference" + (kept.getDriftReferenceVersionsCount() == 1 ? " of version " : "s of versions ")
          + kept.getDriftReferenceVersionsList().stream().map(String::valueOf).collect(java.util.stream.Collectors.joining(", ")));
    }
    String keeps = parts.isEmpty() ? "an empty record" : String.join(", ", parts);
    if (kept.getLoadedOnCount() > 0) {
      return "KEPT: model " + kept.getModel() + ", not in this replica's repository, loaded on replica "
          + String.join(", ", kept.getLoadedOnList()) + ": the control store keeps " + keeps + ", by which they route it";
    }
    return "KEPT: model " + kept.getModel() + ", not in this replica's repository: the control store keeps " + keeps
        + ", for a folder of that name (admin forget --model " + kept.getModel() + " drops it)";
  }

  /**
   * What {@code admin models} says of a model whose folder has gone: when it is removed, or that
   * the wait starts when its last version leaves memory; {@code nowMs} to say how long from now.
   */
  static String folderGoneLine(io.modelgate.proto.admin.v1.ModelInfo model, long nowMs) {
    String line = "FOLDER GONE from the repository: ";
    if (model.getRemovalDueUnixMs() == 0) {
      return line + "removed once no version of it has been in memory for 15 minutes (admin unload --model "
          + model.getName() + " takes it down)";
    }
    long minutes = Math.max(0, (model.getRemovalDueUnixMs() - nowMs + 59_999) / 60_000);
    return line + "removed at " + java.time.Instant.ofEpochMilli(model.getRemovalDueUnixMs()).truncatedTo(
        java.time.temporal.ChronoUnit.SECONDS) + (minutes == 0 ? ", within the minute" : ", in " + minutes + " min")
        + " (none of its versions in memory)";
  }

  /** One line of a load the replica owes, for {@code admin models}; {@code nowMs} to say when it tries next. */
  static String owedLine(io.modelgate.proto.admin.v1.OwedLoad owed, long nowMs) {
    String asked = switch (owed.getAsks()) {
      case "control" -> "the copied control of its running rollout";
      case "reload" -> "loaded again by " + owed.getAskedBy() + " on replica " + owed.getReplica();
      default -> "loaded by " + owed.getAskedBy() + " on replica " + owed.getReplica();
    };
    return String.format("NOT LOADED %sHERE: model %s version %d (%s): failure %d in a row, next try in %d s: %s",
        owed.getAsks().equals("reload") ? "AGAIN " : "", owed.getModel(), owed.getVersion(), asked, owed.getFailures(),
        Math.max(0, (owed.getNextTryMs() - nowMs + 999) / 1000), owed.getReason());
  }

  @Command(name = "connections", description = {
      "The connections each port of the replica holds, against its limits, and the client addresses holding the most."})
  static final class Connections implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Option(names = "--top", defaultValue = "10",
        description = "Client addresses listed per port, those holding the most first (1 to 1000). Default: ${DEFAULT-VALUE}.")
    int top;

    @Override
    public Integer call() throws Exception {
      if (top < 1 || top > 1000) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--top: " + top + " (expected: 1 to 1000)");
      }
      return execute(admin, spec, (client, out) -> {
        io.modelgate.proto.admin.v1.ConnectionsReport report = client.call()
            .getConnections(io.modelgate.proto.admin.v1.GetConnectionsRequest.newBuilder().setTop(top).build());
        out.printf("%-10s %6s %6s %11s %9s  %s%n", "PORT", "HELD", "LIMIT", "PER ADDRESS", "ADDRESSES", "REFUSED");
        for (io.modelgate.proto.admin.v1.PortConnections port : report.getPortsList()) {
          StringBuilder refused = new StringBuilder();
          port.getRefusedMap().entrySet().stream().sorted(java.util.Map.Entry.comparingByKey())
              .forEach(e -> refused.append(refused.length() == 0 ? "" : ", ").append(e.getKey()).append(' ').append(e.getValue()));
          out.printf("%-10s %6d %6d %11s %9d  %s%n", port.getPort(), port.getHeld(), port.getLimit(),
              port.getPerAddressLimit() == 0 ? "-" : Integer.toString(port.getPerAddressLimit()), port.getAddresses(), refused);
          for (io.modelgate.proto.admin.v1.AddressConnections address : port.getTopList()) {
            out.printf("  %-39s %6d%n", address.getAddress(), address.getHeld());
          }
        }
      });
    }
  }

  @Command(name = "log", description = {
      "A logger's level on the replica, for a while: it is what it was again when the time runs out (audited).",
      "Without --level, lists the levels set so."})
  static final class LogCommand implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Option(names = "--logger", defaultValue = "ROOT",
        description = "A logger or package: io.modelgate.gateway.admin.RepositoryPoll, io.grpc, ROOT. Default: ${DEFAULT-VALUE}.")
    String logger;

    @Option(names = "--level", description = "TRACE, DEBUG, INFO, WARN, ERROR or OFF.")
    String level;

    @Mixin ForAWhile time;

    @Override
    public Integer call() throws Exception {
      return time.setOrShow(admin, spec, "--level", level != null,
          client -> client.setLogLevel(io.modelgate.proto.admin.v1.SetLogLevelRequest.newBuilder().setLogger(logger)
              .setLevel(time.restore ? "" : level).setForMs(time.forHow.toMillis()).setFleet(time.fleet).build()));
    }
  }

  @Command(name = "trace", description = {
      "The share of calls arriving in no trace that start one (serve --trace-sample-rate) on the replica, for a while:",
      "it is the server's own again when the time runs out (audited). Without --sample-rate, shows it."})
  static final class TraceCommand implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Option(names = "--sample-rate", description = "0 to 1.")
    Double sampleRate;

    @Mixin ForAWhile time;

    @Override
    public Integer call() throws Exception {
      return time.setOrShow(admin, spec, "--sample-rate", sampleRate != null,
          client -> client.setTraceSampleRate(io.modelgate.proto.admin.v1.SetTraceSampleRateRequest.newBuilder()
              .setSampleRate(sampleRate == null ? 0 : sampleRate).setRestore(time.restore)
              .setForMs(time.forHow.toMillis()).setFleet(time.fleet).build()));
    }
  }

  /**
   * What {@code admin log} and {@code admin trace} share: how long a setting holds, setting it
   * back, for the fleet; and the one path that either sets and shows what is set, or only shows.
   */
  static final class ForAWhile {
    @Option(names = "--for", defaultValue = "15m", converter = Converters.TimeSpan.class,
        description = "How long it holds, at most 24h. Default: ${DEFAULT-VALUE}.")
    java.time.Duration forHow;

    @Option(names = "--restore", description = "Set it back now to what it was before (the server's own).")
    boolean restore;

    @Option(names = "--fleet", description = "For every replica of the fleet (kept in etcd), not this one alone.")
    boolean fleet;

    /** Sets ({@code set}) where {@code value} or {@link #restore} is given, else shows; prints what is set. */
    int setOrShow(AdminCommand admin, CommandSpec spec, String valueOption, boolean value,
        java.util.function.Function<io.modelgate.proto.admin.v1.AdminServiceGrpc.AdminServiceBlockingStub,
            io.modelgate.proto.admin.v1.Diagnostics> set) throws Exception {
      if (restore && value) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), valueOption + " and --restore: one or the other");
      }
      return execute(admin, spec, (client, out) -> printDiagnostics(out, value || restore
          ? set.apply(client.call())
          : client.call().getDiagnostics(io.modelgate.proto.admin.v1.GetDiagnosticsRequest.getDefaultInstance())));
    }
  }

  /** What a replica has set for a while: its log levels and its trace sample rate, and what is set for its fleet. */
  static void printDiagnostics(PrintWriter out, io.modelgate.proto.admin.v1.Diagnostics report) {
    out.printf("replica %s%n", report.getReplica());
    io.modelgate.proto.admin.v1.FleetDiagnostics fleet = report.getFleet();
    if (fleet.getLogLevelsCount() > 0 || fleet.hasTraceSampleRateSet()) {
      out.println("set for the fleet:");
      for (io.modelgate.proto.admin.v1.LogLevelSet set : fleet.getLogLevelsList()) {
        out.printf("  log level %s %s until %s (set by %s)%n", set.getLogger(), set.getLevel(),
            java.time.Instant.ofEpochMilli(set.getUntilMs()), set.getSetBy());
      }
      if (fleet.hasTraceSampleRateSet()) {
        io.modelgate.proto.admin.v1.TraceSampleRateSet set = fleet.getTraceSampleRateSet();
        out.printf("  trace sample rate %s until %s (set by %s)%n", set.getSampleRate(),
            java.time.Instant.ofEpochMilli(set.getUntilMs()), set.getSetBy());
      }
    }
    if (report.getLogLevelsCount() == 0) {
      out.println("log levels: the server's own (none set for a while)");
    } else {
      out.printf("%-50s %-6s %-9s %-25s %s%n", "LOGGER", "LEVEL", "THEN", "UNTIL", "SET BY");
      for (io.modelgate.proto.admin.v1.LogLevelSet set : report.getLogLevelsList()) {
        out.printf("%-50s %-6s %-9s %-25s %s%s%n", set.getLogger(), set.getLevel(), set.getWas(),
            java.time.Instant.ofEpochMilli(set.getUntilMs()), set.getSetBy(), set.getFleet() ? " (for the fleet)" : "");
        if (!set.getNote().isEmpty()) {
          out.printf("  %s%n", set.getNote());
        }
      }
    }
    if (!report.getTracing()) {
      out.println("trace sample rate: none (no --trace-endpoint: no call is traced)");
    } else if (report.hasTraceSampleRateSet()) {
      io.modelgate.proto.admin.v1.TraceSampleRateSet set = report.getTraceSampleRateSet();
      out.printf("trace sample rate: %s until %s (set by %s%s), then %s%n", set.getSampleRate(),
          java.time.Instant.ofEpochMilli(set.getUntilMs()), set.getSetBy(), set.getFleet() ? " for the fleet" : "",
          report.getTraceSampleRateConfigured());
    } else {
      out.printf("trace sample rate: %s (the server's own)%n", report.getTraceSampleRate());
    }
  }

  /**
   * A version's golden-set result in a column: score (passed/examples), its state, or "-" (no
   * golden set; or none to run, the version not in memory nor loading: a result belongs to a load).
   */
  static String golden(VersionInfo v) {
    io.modelgate.proto.admin.v1.GoldenResult g = v.getGolden();
    boolean loadable = v.getState().equals("READY") || v.getState().equals("LOADING");
    return switch (g.getState()) {
      case "", "NONE" -> "-";
      case "PENDING" -> loadable ? "PENDING" : "-";
      case "DONE" -> String.format("%.3f (%d/%d)", g.getScore(), g.getPassed(), g.getExamples());
      default -> g.getState();
    };
  }

  /** Which replica answered, and its control store as that replica sees it. */
  static void printControlStore(PrintWriter out, String replica, io.modelgate.proto.admin.v1.ControlStoreStatus store) {
    String state = store.getUp()
        ? store.getOutOfSpace() ? "up, but OUT OF SPACE: etcd refuses every write, so changes are refused (free it:"
            + " etcdctl compact, etcdctl defrag, etcdctl alarm disarm); traffic keeps the routing last applied" : "up"
        : "DOWN since " + Instant.ofEpochMilli(store.getDownSinceMs()) + " (" + store.getError()
            + "); changes are refused, traffic keeps the routing last applied";
    out.printf("replica %s; control store %s %s: %s; applied revision %d; rollouts judged by %s%n",
        replica, store.getKind(), store.getTarget(), state, store.getAppliedRevision(),
        store.getJudge().isEmpty() ? "(no replica yet)" : store.getJudge());
  }

  @Command(name = "routes", description = "Read or change a model's routing.",
      subcommands = {Routes.Get.class, Routes.Set.class})
  static final class Routes implements Runnable {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Override
    public void run() {
      spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "get", description = "Show a model's routing policy.")
    static final class Get implements Callable<Integer> {
      @ParentCommand Routes routes;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Option(names = "--model", required = true, description = "The model.") String model;

      @Override
      public Integer call() throws Exception {
        return execute(routes.admin, spec, (client, out) ->
            printPolicy(out, client.call().getRouting(GetRoutingRequest.newBuilder().setModel(model).build())));
      }
    }

    @Command(name = "set", description = "Replace a model's routing policy atomically.")
    static final class Set implements Callable<Integer> {
      @ParentCommand Routes routes;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Option(names = "--model", required = true, description = "The model whose policy is replaced.") String model;

      @Option(names = "--weights", required = true, split = ",", paramLabel = "VERSION=WEIGHT",
          description = "Relative weights, e.g. 1=90,2=10. Empty (\"\") returns to the default.")
      Map<Long, Integer> weights;

      @Option(names = "--sticky-parameter", description = "Keep requests with the same value of this request parameter on one version.")
      String stickyParameter;

      @Option(names = "--sticky-header", description = "Keep requests with the same value of this gRPC header on one version.")
      String stickyHeader;

      @Option(names = "--shadow", description = "Send a sampled copy of traffic to this version; its answers are discarded.")
      Long shadow;

      @Option(names = "--shadow-rate", defaultValue = "0.1", description = "Share of requests copied to the shadow. Default: ${DEFAULT-VALUE}.")
      double shadowRate;

      @Option(names = "--revision", description = "The revision this change replaces. Default: the current one.")
      Long revision;

      @Option(names = "--reason", defaultValue = "", description = "Recorded with the change and in the audit log.")
      String reason;

      @Override
      public Integer call() throws Exception {
        return execute(routes.admin, spec, (client, out) -> {
          long expected = revision != null ? revision
              : client.call().getRouting(GetRoutingRequest.newBuilder().setModel(model).build()).getRevision();
          RoutingPolicy.Builder policy = RoutingPolicy.newBuilder().setModel(model).setReason(reason);
          if (weights != null) {
            policy.putAllWeights(weights);
          }
          if (stickyParameter != null || stickyHeader != null) {
            policy.setSticky(StickyRouting.newBuilder()
                .setParameter(stickyParameter == null ? "" : stickyParameter)
                .setHeader(stickyHeader == null ? "" : stickyHeader));
          }
          if (shadow != null) {
            policy.setShadow(ShadowRouting.newBuilder().setVersion(shadow).setSampleRate(shadowRate));
          }
          printPolicy(out, client.call().setRouting(
              SetRoutingRequest.newBuilder().setPolicy(policy).setExpectedRevision(expected).build()));
        });
      }
    }
  }

  /**
   * When the report's windows end, against when it was made: statistics intervals close every 5 s,
   * and a call answered since the last close is in no window yet. Empty where nothing says.
   */
  static String windowsEnd(StatsResponse stats) {
    long through = 0;
    for (VersionStats v : stats.getVersionsList()) {
      for (WindowStats w : v.getWindowsList()) {
        through = Math.max(through, w.getThroughMs());
      }
    }
    if (through == 0) {
      return "";
    }
    return String.format("; windows end %s, %.1f s before this report (intervals close every 5 s)",
        Instant.ofEpochMilli(through).truncatedTo(java.time.temporal.ChronoUnit.SECONDS),
        Math.max(0, stats.getTimeMs() - through) / 1000.0);
  }

  static void printStats(PrintWriter out, StatsResponse stats, String window) {
    out.printf("%-16s %-4s %-6s %9s %9s %7s %9s %9s %9s %9s %9s %10s %10s %6s%n",
        "MODEL", "VER", "WINDOW", "REQUESTS", "REQ/S", "ERRORS", "P50 MS", "P90 MS", "P99 MS", "P99.9 MS",
        "MAX MS", "QUEUE P99", "COMPUTE P99", "ROWS");
    for (VersionStats v : stats.getVersionsList()) {
      for (WindowStats w : v.getWindowsList()) {
        if (!window.equals("all-windows") && !w.getWindow().equals(window)) {
          continue;
        }
        Distribution e2e = w.getEndToEndMs();
        out.printf("%-16s %-4d %-6s %9d %9.1f %7d %9.3f %9.3f %9.3f %9.3f %9.3f %10.3f %10.3f %6.1f%n",
            v.getModel(), v.getVersion(), w.getWindow(), w.getRequests(), w.getRequestsPerSecond(), w.getErrors(),
            e2e.getP50(), e2e.getP90(), e2e.getP99(), e2e.getP999(), e2e.getMax(), w.getQueueMs().getP99(),
            w.getComputeMs().getP99(), w.getBatchRows().getMean());
        if (w.getErrorsByCodeCount() > 0) {
          out.printf("%-16s %-4s %-6s errors by code: %s%n", "", "", "", w.getErrorsByCodeMap());
        }
        if (w.hasShadow() && (w.getShadow().getCompared() > 0 || w.getShadow().getFailed() > 0)) {
          out.printf("%-16s %-4s %-6s as shadow: %d compared, %d argmax agreed (%.2f%%)%s, %d failed%n", "", "", "",
              w.getShadow().getCompared(), w.getShadow().getArgmaxAgreed(),
              w.getShadow().getCompared() == 0 ? 0.0 : 100.0 * w.getShadow().getArgmaxAgreed() / w.getShadow().getCompared(),
              w.getWindow().equals("all") ? String.format(", max |diff| %.6g", w.getShadow().getMaxAbsDiff()) : "",
              w.getShadow().getFailed());
        }
      }
    }
  }

  /** The fleet's last minute per version, then each replica's row. */
  static void printFleetStats(PrintWriter out, io.modelgate.proto.admin.v1.FleetStatsResponse stats) {
    out.printf("fleet view from replica %s, last minute%n", stats.getReplica());
    out.printf("%-16s %-4s %-20s %9s %9s %7s %9s %9s %9s %9s %9s%n",
        "MODEL", "VER", "REPLICA", "REQUESTS", "REQ/S", "ERRORS", "P50 MS", "P90 MS", "P99 MS", "P99.9 MS", "MAX MS");
    for (io.modelgate.proto.admin.v1.FleetVersionStats v : stats.getVersionsList()) {
      printFleetRow(out, v.getModel(), v.getVersion(), "(fleet: " + v.getReplicasCount() + ")", v.getFleet());
      for (io.modelgate.proto.admin.v1.ReplicaWindowStats r : v.getReplicasList()) {
        printFleetRow(out, "", v.getVersion(), r.getReplica(), r.getWindow());
      }
      if (!v.getDifferentFiles().isEmpty()) {
        out.printf("%-16s %-4d DIFFERENT MODEL FILES (sha256): %s%n", "", v.getVersion(), v.getDifferentFiles());
      }
    }
  }

  private static void printFleetRow(PrintWriter out, String model, long version, String replica, WindowStats w) {
    Distribution e2e = w.getEndToEndMs();
    out.printf("%-16s %-4d %-20s %9d %9.1f %7d %9.3f %9.3f %9.3f %9.3f %9.3f%n", model, version, replica,
        w.getRequests(), w.getRequestsPerSecond(), w.getErrors(), e2e.getP50(), e2e.getP90(), e2e.getP99(),
        e2e.getP999(), e2e.getMax());
  }

  @Command(name = "stats", description = "Per-version latency, throughput and errors.")
  static final class Stats implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", defaultValue = "", description = "One model (default: every model).") String model;
    @Option(names = "--version", defaultValue = "0", description = "With --model: one version (default 0: every version).") long version;
    @Option(names = "--window", defaultValue = "all-windows", converter = Converters.StatsWindow.class,
        description = "1m, 5m, 15m, all, or all-windows. Default: ${DEFAULT-VALUE}.")
    String window;
    @Option(names = "--fleet", description = "The last minute of every replica sharing the control store, merged, with a row per replica.")
    boolean fleet;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        if (fleet) {
          printFleetStats(out, client.call().getFleetStats(GetStatsRequest.newBuilder().setModel(model).setVersion(version).build()));
          return;
        }
        StatsResponse stats = client.call().getStats(GetStatsRequest.newBuilder().setModel(model).setVersion(version).build());
        out.printf("replica %s%s%n", stats.getReplica(), windowsEnd(stats));
        printStats(out, stats, window);
      });
    }
  }

  @Command(
      name = "watch",
      description = {
        "Print statistics every interval until interrupted.",
        "On a terminal each report replaces the last one; piped or redirected, reports are appended."
      })
  static final class Watch implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", defaultValue = "", description = "One model (default: every model).") String model;
    @Option(names = "--window", defaultValue = "1m", converter = Converters.StatsWindow.class,
        description = "1m, 5m, 15m, all, or all-windows. Default: ${DEFAULT-VALUE}.") String window;
    @Option(names = "--interval", defaultValue = "5s", converter = Converters.TimeSpan.class,
        description = "Time between reports (e.g. 500ms, 5s, 1m). Default: ${DEFAULT-VALUE}.") java.time.Duration interval;
    @Option(names = "--count", defaultValue = "0", description = "Stop after this many reports (0: never). Default: ${DEFAULT-VALUE}.") int count;
    @Option(names = "--fleet", description = "The fleet view (every replica's last minute, merged, and a row per replica).")
    boolean fleet;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        boolean redrawFleet = System.console() != null;
        for (int n = 0; fleet && (count == 0 || n < count); n++) {
          if (n > 0) {
            Thread.sleep(interval.toMillis());
          }
          io.modelgate.proto.admin.v1.FleetStatsResponse report =
              client.call().getFleetStats(GetStatsRequest.newBuilder().setModel(model).build());
          if (redrawFleet) {
            out.print("\033[H\033[2J");
          }
          out.printf("-- %s (every %s, Ctrl-C to stop)%n", Instant.ofEpochMilli(report.getTimeMs()),
              io.modelgate.gateway.config.TimeSpans.format(interval));
          printFleetStats(out, report);
          out.flush();
        }
        if (fleet) {
          return;
        }
        Iterator<StatsResponse> reports = client.stub().watchStats(
            WatchStatsRequest.newBuilder().setModel(model).setIntervalMs((int) interval.toMillis()).build());
        boolean redraw = System.console() != null;
        for (int n = 0; reports.hasNext() && (count == 0 || n < count); n++) {
          StatsResponse report = reports.next();
          if (redraw) {
            // Cursor home and clear the screen: the report redraws in place.
            out.print("\033[H\033[2J");
          }
          out.printf("-- %s from replica %s (every %s, Ctrl-C to stop)%s%n", Instant.ofEpochMilli(report.getTimeMs()),
              report.getReplica(), io.modelgate.gateway.config.TimeSpans.format(interval), windowsEnd(report));
          printStats(out, report, window);
          out.flush();
        }
      });
    }
  }

  @Command(name = "validate", description = {
      "Run a model's golden set (<repo>/<model>/golden/*.jsonl) on its READY versions, or one, now:",
      "each version's score and its first failing examples."})
  static final class Validate implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", required = true, description = "The model whose golden set runs.") String model;
    @Option(names = "--version", defaultValue = "0", description = "One version (default: every READY one).") long version;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        io.modelgate.proto.admin.v1.ValidateResponse response = client.call().validate(
            io.modelgate.proto.admin.v1.ValidateRequest.newBuilder().setModel(model).setVersion(version).build());
        for (VersionInfo v : response.getVersionsList()) {
          io.modelgate.proto.admin.v1.GoldenResult g = v.getGolden();
          out.printf("model %s version %d: %s%s%n", v.getModel(), v.getVersion(), g.getState(),
              g.getState().equals("DONE")
                  ? String.format(", score %.4f: %d of %d golden examples as expected, in %.0f ms", g.getScore(), g.getPassed(),
                      g.getExamples(), g.getSeconds() * 1000)
                  : g.getError().isEmpty() ? "" : ": " + g.getError());
          for (String failing : g.getFailingList()) {
            out.printf("  failing: %s%n", failing);
          }
          if (g.getExamples() - g.getPassed() > g.getFailingCount()) {
            out.printf("  ... and %d more%n", g.getExamples() - g.getPassed() - g.getFailingCount());
          }
        }
      });
    }
  }

  @Command(name = "drift", description = {
      "How far what each version sees and answers has drifted from its reference: the most drifted features first.",
      "ks: Kolmogorov-Smirnov statistic (0 to 1) of a numeric feature; psi: population stability index of the predicted classes.",
      "A score marked * is over its threshold (and, for ks, significant at p = 0.001); - : too few requests in the window."},
      subcommands = {DriftCommand.Baseline.class})
  static final class DriftCommand implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", description = "The model (required).") String model;
    @Option(names = "--version", defaultValue = "0", description = "One version (default: every loaded one).") long version;
    @Option(names = "--all", description = "Every feature (default: the 10 most drifted of each version).") boolean all;
    @Option(names = "--fleet", description = "Every replica's, as each last published it (every 2 s): each version"
        + " once per replica.") boolean fleet;
    @Option(names = "--merged", description = "The fleet's as one: every replica's sketches of each window, and of its"
        + " reference, merged and scored (each replica is asked for them; a few seconds).") boolean merged;

    @Override
    public Integer call() throws Exception {
      if (model == null) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "Missing required option: '--model=<model>'");
      }
      return execute(admin, spec, (client, out) -> print(out, client.call().getDrift(
          io.modelgate.proto.admin.v1.GetDriftRequest.newBuilder().setModel(model).setVersion(version)
              .setFleet(fleet || merged).setMerged(merged).build()), all ? Integer.MAX_VALUE : 10));
    }

    static void print(PrintWriter out, io.modelgate.proto.admin.v1.DriftReport report, int most) {
      if (report.getReplica().startsWith("fleet of ")) {
        // Side by side ("fleet of 2: a, b") or merged ("fleet of 2 (a, b), merged on a").
        out.printf("%s%n", report.getReplica());
      }
      for (io.modelgate.proto.admin.v1.VersionDrift v : report.getVersionsList()) {
        String asOf = java.time.Instant.ofEpochMilli(v.getAsOfMs()).truncatedTo(java.time.temporal.ChronoUnit.SECONDS).toString();
        out.printf("model %s version %d%s: drift %s", report.getModel(), v.getVersion(),
            v.getReplica().isEmpty() ? ""
                : v.getReplica().equals(io.modelgate.gateway.health.DriftMerge.FLEET) ? " across the fleet (as of " + asOf + ")"
                : " on replica " + v.getReplica() + " (as of " + asOf + ")",
            v.getState());

        if (v.getState().equals("OFF")) {
          out.printf(" (no drift in its model.yaml)%n");
          continue;
        }
        out.printf(", sampling %s%% of requests: %d profiled, %d dropped%n", trim(v.getSampleRate() * 100), v.getProfiled(), v.getDropped());
        if (v.getReplica().equals(io.modelgate.gateway.health.DriftMerge.FLEET)) {
          out.printf("  merged from %s: %s%n", v.getMergedFromCount() == 1 ? "1 replica" : v.getMergedFromCount() + " replicas",
              v.getMergedFromCount() == 0 ? "none" : String.join(", ", v.getMergedFromList()));
          for (String left : v.getNotMergedList()) {
            out.printf("  not merged: %s%n", left);
          }
        }
        if (!v.getReference().isEmpty()) {
          out.printf("  reference: %s, %d requests%n", v.getReference(), v.getReferenceSamples());
        }
        if (!v.getForming().isEmpty()) {
          out.printf("  forming a reference from %s%n", v.getForming());
        }
        if (!v.getReload().isEmpty()) {
          out.printf("  profile %s%n", v.getReload());
        }
        if (v.getFeaturesCount() == 0) {
          continue;
        }
        String alerting = v.getWindow();
        java.util.List<io.modelgate.proto.admin.v1.FeatureDrift> features = new java.util.ArrayList<>(v.getFeaturesList());
        features.sort(java.util.Comparator.comparingDouble(
            (io.modelgate.proto.admin.v1.FeatureDrift f) -> -relative(f, alerting)));
        out.printf("  %-16s %-12s %-4s %9s  %-10s %-10s %-10s (samples %s)%n", "TENSOR", "FEATURE", "STAT", "THRESHOLD",
            "1m", "5m", "15m", samples(features.get(0)));
        for (int i = 0; i < Math.min(most, features.size()); i++) {
          io.modelgate.proto.admin.v1.FeatureDrift f = features.get(i);
          out.printf("  %-16s %-12s %-4s %9.3f ", f.getTensor(), f.getFeature(), f.getStatistic(), f.getThreshold());
          for (String window : java.util.List.of("1m", "5m", "15m")) {
            out.printf(" %-10s", f.getWindowsList().stream().filter(w -> w.getWindow().equals(window)).findFirst()
                .map(w -> !w.getScored() ? "-" : String.format("%.3f%s", w.getScore(), w.getDrifted() ? "*" : ""))
                .orElse("-"));
          }
          out.println();
        }
        if (features.size() > most) {
          out.printf("  ... and %d more features (--all)%n", features.size() - most);
        }
        out.printf("  alerting window: %s%n", alerting);
      }
    }

    /** A feature's score over its threshold in the alerting window; -1 when unscored. */
    private static double relative(io.modelgate.proto.admin.v1.FeatureDrift feature, String window) {
      return feature.getWindowsList().stream()
          .filter(w -> w.getWindow().equals(window) && w.getScored())
          .mapToDouble(w -> w.getScore() / feature.getThreshold())
          .findFirst()
          .orElse(-1);
    }

    private static String samples(io.modelgate.proto.admin.v1.FeatureDrift feature) {
      StringBuilder text = new StringBuilder();
      for (io.modelgate.proto.admin.v1.WindowDrift w : feature.getWindowsList()) {
        text.append(text.length() == 0 ? "" : " / ").append(w.getSamples());
      }
      return text.toString();
    }

    private static String trim(double value) {
      return value == Math.rint(value) ? String.valueOf((long) value) : String.valueOf(value);
    }

    @Command(name = "baseline", description = {
        "Make a version's recent traffic (or its golden set) its drift reference.",
        "Scores compare every window with the reference from then on."})
    static final class Baseline implements Callable<Integer> {
      @ParentCommand DriftCommand drift;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Option(names = "--model", required = true, description = "The model.") String model;
      @Option(names = "--version", required = true, description = "The version whose reference is replaced (READY).") long version;
      @Option(names = "--window", defaultValue = "15m", description = "The window taken: 1m, 5m or 15m. Default: ${DEFAULT-VALUE}.") String window;
      @Option(names = "--golden", description = "Run the golden set again and take it instead of a window.") boolean golden;
      @Option(names = "--fleet", description = {"On every replica of the fleet: this one at once, each other within"
          + " seconds from its own window (or golden run); each audits what it did."}) boolean fleet;
      @Option(names = "--merged", description = {"One reference for the whole fleet: every replica's window merged,"
          + " kept in etcd and taken by every replica of the same model file, each that starts later too."}) boolean merged;

      @Override
      public Integer call() throws Exception {
        return execute(drift.admin, spec, (client, out) -> {
          print(out, client.call().setDriftBaseline(io.modelgate.proto.admin.v1.SetDriftBaselineRequest.newBuilder()
              .setModel(model).setVersion(version).setWindow(window).setGolden(golden).setFleet(fleet || merged)
              .setMerged(merged).build()), 10);
          if (merged) {
            out.println("the fleet's reference, kept in etcd: every replica of the same model file takes it within seconds,"
                + " each that starts later once it has served (its audit log says so, or why not)");
          } else if (fleet) {
            out.println("asked of every replica of the fleet: each other sets it from its own "
                + (golden ? "golden run" : window + " window") + " within seconds (its audit log says so, or why not)");
          }
        });
      }
    }
  }

  /**
   * One CSV field (RFC 4180): as it is, or quoted, with its quotes doubled, when it holds a comma, a
   * quote or a line break (a fleet's replica list does).
   */
  static String csv(String field) {
    if (field.indexOf(',') < 0 && field.indexOf('"') < 0 && field.indexOf('\n') < 0 && field.indexOf('\r') < 0) {
      return field;
    }
    return '"' + field.replace("\"", "\"\"") + '"';
  }

  @Command(name = "usage", description = {
      "Usage for chargeback: per tenant, model and version, requests, errors, rows, bytes and compute seconds.",
      "Compute is each request's share of its batch's run of the model, by rows. Over whole hours (UTC) of the ledger"
          + " in this replica's state directory."})
  static final class UsageCommand implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--since", description = "A date (2026-12-01) or an instant (2026-12-01T10:00:00Z). Default: a day ago.")
    String since = "";
    @Option(names = "--until", description = "Same forms. Default: now.") String until = "";
    @Option(names = "--tenant", description = "One tenant (default: all).") String tenant = "";
    @Option(names = "--model", description = "One model (default: all).") String model = "";
    @Option(names = "--format", defaultValue = "table", description = "table, csv or json. Default: ${DEFAULT-VALUE}.")
    String format;
    @Option(names = "--fleet", description = "Every replica's usage, as shared in the fleet's etcd, instead of this replica's ledger.")
    boolean fleet;

    @Override
    public Integer call() throws Exception {
      if (!java.util.List.of("table", "csv", "json").contains(format)) {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--format: '" + format + "' (expected: table, csv or json)");
      }
      return execute(admin, spec, (client, out) -> {
        io.modelgate.proto.admin.v1.UsageReport report = client.call().getUsage(io.modelgate.proto.admin.v1.GetUsageRequest
            .newBuilder().setSince(since).setUntil(until).setTenant(tenant).setModel(model).setFleet(fleet).build());
        switch (format) {
          case "json" -> out.println(com.google.protobuf.util.JsonFormat.printer().preservingProtoFieldNames().print(report));
          case "csv" -> {
            out.println("since,until,replica,tenant,model,version,requests,errors,rows,bytes_in,bytes_out,compute_seconds");
            for (io.modelgate.proto.admin.v1.UsageRecord r : report.getRecordsList()) {
              out.printf("%s,%s,%s,%s,%s,%s,%d,%d,%d,%d,%d,%.6f%n", csv(report.getSince()), csv(report.getUntil()),
                  csv(report.getReplica()), csv(r.getTenant()), csv(r.getModel()), csv(r.getVersion()), r.getRequests(),
                  r.getErrorCount(), r.getRows(), r.getBytesIn(),
                  r.getBytesOut(), r.getComputeSeconds());
            }
          }
          default -> {
            out.printf("usage %s %s from %s:00 to %s:00 UTC%n", fleet ? "of the" : "on replica", report.getReplica(),
                report.getSince(), report.getUntil());
            if (report.getLedgersCount() > 1) {
              out.printf("(its state directory's ledger, also kept under %s)%n",
                  String.join(", ", report.getLedgersList().subList(1, report.getLedgersCount())));
            }
            out.printf("%-16s %-16s %-4s %10s %8s %10s %12s %12s %12s%n", "TENANT", "MODEL", "VER", "REQUESTS", "ERRORS",
                "ROWS", "BYTES IN", "BYTES OUT", "COMPUTE S");
            for (io.modelgate.proto.admin.v1.UsageRecord r : report.getRecordsList()) {
              out.printf("%-16s %-16s %-4s %10d %8d %10d %12d %12d %12.3f%n", r.getTenant(), r.getModel(), r.getVersion(),
                  r.getRequests(), r.getErrorCount(), r.getRows(), r.getBytesIn(), r.getBytesOut(), r.getComputeSeconds());
              if (!r.getErrorsMap().isEmpty()) {
                out.printf("%-38s errors: %s%n", "", new java.util.TreeMap<>(r.getErrorsMap()));
              }
            }
          }
        }
      });
    }
  }

  @Command(name = "access", description = "Who has access: admin tokens with their roles, tenants with their models and quotas (role admin).")
  static final class Access implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) ->
          printAccess(out, client.call().getAccess(io.modelgate.proto.admin.v1.GetAccessRequest.getDefaultInstance())));
    }
  }

  static void printAccess(PrintWriter out, io.modelgate.proto.admin.v1.AccessReport report) {
    out.printf("admin tokens%s:%n", report.getTokensFile().isEmpty() ? "" : " (file " + report.getTokensFile() + ")");
    for (io.modelgate.proto.admin.v1.AccessToken token : report.getTokensList()) {
      out.printf("  %-20s %-9s %s%n", token.getName(), token.getRole(), switch (token.getSource()) {
        case "server" -> "the server's own";
        case "file" -> "tokens file";
        case "api" -> "admin API, by " + token.getCreatedBy() + " at " + Instant.ofEpochMilli(token.getCreatedAtMs());
        default -> token.getSource();
      });
    }
    if (report.getCallersFile().isEmpty()) {
      out.println("callers: none (the inference port is open)");
      return;
    }
    out.printf("callers (%s), identified by %s:%n", report.getCallersFile(), String.join(", ", report.getIdentifyList()));
    out.printf("  %-16s %-8s %-6s %-24s %s%n", "TENANT", "KEYS", "WEIGHT", "MODELS", "QUOTA");
    for (io.modelgate.proto.admin.v1.AccessTenant t : report.getTenantsList()) {
      java.util.List<String> quota = new java.util.ArrayList<>();
      java.util.List<String> api = new java.util.ArrayList<>();
      measure(t, QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND, t.getRequestsPerSecond(), "requests/s", quota, api);
      measure(t, QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND, t.getRowsPerSecond(), "rows/s", quota, api);
      measure(t, QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT, t.getInFlight(), "in flight", quota, api);
      if (t.getWeightSetThroughApi()) {
        api.add("weight");
      }
      String text = quota.isEmpty() ? "none" : String.join(", ", quota);
      if (!api.isEmpty()) {
        text += " (set through the admin API: " + String.join(", ", api) + ")";
      }
      out.printf("  %-16s %-8d %-6d %-24s %s%n", t.getName(), t.getApiKeys(), Math.max(1, t.getWeight()),
          t.getModelsCount() == 0 ? "all" : String.join(",", t.getModelsList()), text);
      for (String certificate : t.getCertificatesList()) {
        out.printf("  %-16s certificate %s%n", "", certificate);
      }
    }
  }

  /** Adds a measure of a tenant's quota to the text where it limits, and to {@code api} where the admin API set it. */
  private static void measure(io.modelgate.proto.admin.v1.AccessTenant t, QuotaMeasure measure, double value, String unit,
      java.util.List<String> quota, java.util.List<String> api) {
    if (value > 0) {
      quota.add(trim(value) + " " + unit);
    }
    if (t.getSetThroughApiList().contains(measure)) {
      api.add(unit);
    }
  }

  private static String trim(double value) {
    return value == Math.rint(value) ? String.valueOf((long) value) : String.valueOf(value);
  }

  @Command(name = "token", description = "Make or revoke admin tokens (role admin); they are kept in the control store.",
      subcommands = {TokenCommand.Create.class, TokenCommand.Revoke.class})
  static final class TokenCommand implements Runnable {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Override
    public void run() {
      spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "create", description = "Make a token with a role; prints its secret, which is shown only once.")
    static final class Create implements Callable<Integer> {
      @ParentCommand TokenCommand parent;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Parameters(index = "0", paramLabel = "NAME", description = "Names the token in the audit log.") String name;
      @Option(names = "--role", required = true, description = "viewer, operator or admin.") String role;

      @Override
      public Integer call() throws Exception {
        return execute(parent.admin, spec, (client, out) -> {
          io.modelgate.proto.admin.v1.CreatedToken token = client.call().createToken(
              io.modelgate.proto.admin.v1.CreateTokenRequest.newBuilder().setName(name).setRole(role).build());
          out.printf("token %s (%s): %s%n", token.getName(), token.getRole(), token.getToken());
          out.println("keep it now: the server keeps only its SHA-256");
        });
      }
    }

    @Command(name = "revoke", description = "Revoke a token made with 'admin token create'.")
    static final class Revoke implements Callable<Integer> {
      @ParentCommand TokenCommand parent;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Parameters(index = "0", paramLabel = "NAME", description = "The token's name, as 'admin access' lists it.") String name;

      @Override
      public Integer call() throws Exception {
        return execute(parent.admin, spec, (client, out) -> printAccess(out, client.call().revokeToken(
            io.modelgate.proto.admin.v1.RevokeTokenRequest.newBuilder().setName(name).build())));
      }
    }
  }

  @Command(name = "quota", description = "Set or clear a tenant's quota in place of the callers file's (role admin).",
      subcommands = {QuotaCommand.Set.class, QuotaCommand.Clear.class})
  static final class QuotaCommand implements Runnable {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Override
    public void run() {
      spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "set", description = "Set a tenant's limits, and its weight, in place of the callers file's, each on its own:"
        + " a limit or weight left out stays the file's, 0 sets no limit.")
    static final class Set implements Callable<Integer> {
      @ParentCommand QuotaCommand parent;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Parameters(index = "0", paramLabel = "TENANT", description = "The tenant, as the callers file names it.") String tenant;
      @Option(names = "--requests-per-second", description = "Requests a second (0: no limit; left out: the callers file's).")
      Double requests;
      @Option(names = "--rows-per-second", description = "Rows a second (0: no limit; left out: the callers file's).")
      Double rows;
      @Option(names = "--in-flight", description = "Requests in flight (0: no limit; left out: the callers file's).")
      Integer inFlight;
      @Option(names = "--weight", defaultValue = "0",
          description = "Its weight where tenants contend for a version, 1 to 1000 (0 or left out: the callers file's).") int weight;

      @Override
      public Integer call() throws Exception {
        var request = io.modelgate.proto.admin.v1.SetQuotaRequest.newBuilder().setTenant(tenant).setWeight(weight);
        if (requests != null) {
          request.setRequestsPerSecond(requests);
        } else {
          request.addFromFile(QuotaMeasure.QUOTA_MEASURE_REQUESTS_PER_SECOND);
        }
        if (rows != null) {
          request.setRowsPerSecond(rows);
        } else {
          request.addFromFile(QuotaMeasure.QUOTA_MEASURE_ROWS_PER_SECOND);
        }
        if (inFlight != null) {
          request.setInFlight(inFlight);
        } else {
          request.addFromFile(QuotaMeasure.QUOTA_MEASURE_IN_FLIGHT);
        }
        return execute(parent.admin, spec, (client, out) -> printAccess(out, client.call().setQuota(request.build())));
      }
    }

    @Command(name = "clear", description = "Clear the quota set through the admin API; the callers file's applies again.")
    static final class Clear implements Callable<Integer> {
      @ParentCommand QuotaCommand parent;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Parameters(index = "0", paramLabel = "TENANT", description = "The tenant whose quota goes back to the callers file's.") String tenant;

      @Override
      public Integer call() throws Exception {
        return execute(parent.admin, spec, (client, out) -> printAccess(out, client.call().setQuota(
            io.modelgate.proto.admin.v1.SetQuotaRequest.newBuilder().setTenant(tenant).setClear(true).build())));
      }
    }
  }

  @Command(name = "promote", description = "Send 100%% of a model's traffic to one version.")
  static final class Promote implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", required = true, description = "The model.") String model;
    @Option(names = "--version", required = true, description = "The READY version that takes every request.") long version;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        long revision = client.call().getRouting(GetRoutingRequest.newBuilder().setModel(model).build()).getRevision();
        printPolicy(out, client.call().promote(
            PromoteRequest.newBuilder().setModel(model).setVersion(version).setExpectedRevision(revision).build()));
      });
    }
  }

  @Command(name = "rollback", description = "Restore the routing policy the current one replaced.")
  static final class Rollback implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", required = true, description = "The model.") String model;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        long revision = client.call().getRouting(GetRoutingRequest.newBuilder().setModel(model).build()).getRevision();
        printPolicy(out, client.call().rollback(
            RollbackRequest.newBuilder().setModel(model).setExpectedRevision(revision).build()));
      });
    }
  }

  /** The first 12 hex digits of a model file's SHA-256, as the CLI shows it; {@code -} for none. */
  static String abbreviated(String sha256) {
    return sha256.isEmpty() ? "-" : sha256.substring(0, Math.min(12, sha256.length()));
  }

  /** One line a version: {@code model M version N: STATE reason}. */
  private static void printVersions(PrintWriter out, List<VersionInfo> versions) {
    for (VersionInfo info : versions) {
      out.printf("model %s version %d: %s %s%n", info.getModel(), info.getVersion(), info.getState(), info.getReason());
    }
  }

  @Command(name = "load", description = {"Load a version from the model repository, or without --version every"
      + " version folder of the model that is not READY (a model folder added since the start included).",
      "With --reload, load a READY version again while it serves, from its folder and model.yaml as they are now (an"
          + " edited model.yaml, a replaced model.onnx): the new load is swapped in once warmed up, the old one"
          + " completes what it accepted; no request is refused. Where the new load fails, the version serves as"
          + " before. Without --version, every READY version of the model in turn. In a fleet, every replica that"
          + " has the version READY reloads it."})
  static final class Load implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", required = true, description = "The model (its folder in the repository).") String model;
    @Option(names = "--version", description = "The version; without it, every version folder of the model.")
    Long version;
    @Option(names = "--reload", description = "Load READY versions again while they serve (refused for a version a"
        + " running rollout names; without --version, while a rollout of the model runs).")
    boolean reload;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        List<VersionInfo> loaded = version != null
            ? List.of(client.call().loadVersion(
                LoadVersionRequest.newBuilder().setModel(model).setVersion(version).setReload(reload).build()))
            : client.call().loadModel(io.modelgate.proto.admin.v1.LoadModelRequest.newBuilder().setModel(model)
                .setReload(reload).build()).getVersionsList();
        if (!reload) {
          printVersions(out, loaded);
          return;
        }
        for (VersionInfo info : loaded) {
          if (info.getState().equals("READY") && info.getCopyOf() == 0) {
            out.printf("model %s version %d: %s, loaded again: model.onnx sha256 %s, max_batch_size %d%n",
                info.getModel(), info.getVersion(), info.getState(), abbreviated(info.getModelSha256()),
                info.getMaxBatchSize());
          } else {
            out.printf("model %s version %d: %s %s (not reloaded)%n", info.getModel(), info.getVersion(),
                info.getState(), info.getReason());
          }
        }
      });
    }
  }

  @Command(name = "unload", description = {"Drain, then unload a version that takes no traffic; or without --version"
      + " take the whole model down (its rollout aborted, then every READY version, those that take traffic included).",
      "In a fleet, every replica unloads it; a version this replica does not have READY that every replica is asked"
          + " to load has that ask withdrawn. A model taken down whose folder has gone from the repository is"
          + " removed 15 minutes later."})
  static final class Unload implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", required = true, description = "The model.") String model;
    @Option(names = "--version", description = "The version; without it, every READY version of the model.")
    Long version;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> {
        List<VersionInfo> unloaded = version != null
            ? List.of(client.call().unloadVersion(UnloadVersionRequest.newBuilder().setModel(model).setVersion(version).build()))
            : client.call().unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest.newBuilder().setModel(model).build())
                .getVersionsList();
        printVersions(out, unloaded);
      });
    }
  }

  @Command(name = "forget", description = {"Forget what the control store keeps for a model removed from the repository"
      + " (its routing, their history, its last rollout, its versions' last loads and unloads; in a fleet, its versions'"
      + " drift references), so that a model added"
      + " later under its name starts afresh.",
      "Refused while this replica's repository has the model (admin models says when a model whose folder has gone is"
      + " removed), while its rollout runs, or while another replica has it loaded. In a fleet, every replica that"
      + " lacks the model forgets it too."})
  static final class Forget implements Callable<Integer> {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;
    @Option(names = "--model", required = true, description = "The model removed from this replica's repository.") String model;

    @Override
    public Integer call() throws Exception {
      return execute(admin, spec, (client, out) -> out.printf("model %s: %s%n", model, client.call().forgetModel(
          io.modelgate.proto.admin.v1.ForgetModelRequest.newBuilder().setModel(model).build()).getForgotten()));
    }
  }

  @Command(name = "rollout", description = "Automated canary rollouts.",
      subcommands = {RolloutCommand.Start.class, RolloutCommand.Status.class, RolloutCommand.Abort.class})
  static final class RolloutCommand implements Runnable {
    @ParentCommand AdminCommand admin;
    @Spec CommandSpec spec;
    @Mixin HelpOption help;

    @Override
    public void run() {
      spec.commandLine().usage(spec.commandLine().getOut());
    }

    /** A version's samples, and the answers they stand for where those are more (one in N sampled). */
    static String samples(long samples, long answers) {
      return answers > samples ? String.format("%d (of ~%d answers)", samples, answers) : Long.toString(samples);
    }

    private static String golden(double score) {
      return score < 0 ? "-" : String.format("%.4f", score);
    }

    static void print(PrintWriter out, Rollout r) {
      RolloutSpec s = r.getSpec();
      out.printf("rollout of model %s: candidate v%d against baseline v%d, %s%n", r.getModel(), s.getCandidate(), s.getBaseline(), r.getState());
      out.printf("  steps %s%%, %d s each; thresholds: min %d samples, p99 <= %.2fx, error rate <= +%.2f%%, significance %.3g"
              + " of latencies above the baseline's + %s, golden score >= baseline's - %.4f%n",
          s.getStepsList(), s.getIntervalS(), s.getThresholds().getMinSamples(), s.getThresholds().getMaxP99Ratio(),
          s.getThresholds().getMaxErrorRateIncrease() * 100, s.getThresholds().getSignificance(),
          io.modelgate.gateway.rollout.RolloutJudge.percent(s.getThresholds().getLatencyMargin()), s.getThresholds().getMaxAccuracyDrop());
      if (s.getControl() != 0) {
        out.printf("  control v%d (the baseline's model%s) takes the candidate's share at steps up to %d%%; the candidate is judged against it there%n",
            s.getControl(), s.getCopyControl() ? ", loaded again by the gateway until the rollout ends" : "",
            RolloutSpecs.MAX_CONTROLLED_STEP);
      }
      if (s.getThresholds().getMinShadowAgreement() > 0) {
        out.printf("  shadow phase first: %.0f%% of requests copied to the candidate; live once %.2f%% of %d copies agree%n",
            s.getShadowRate() * 100, s.getThresholds().getMinShadowAgreement() * 100, s.getThresholds().getMinSamples());
      }
      if (r.getState().equals("RUNNING") && r.getShadowPhase()) {
        out.printf("  now in the shadow phase: the candidate gets copies, no traffic%n");
      } else if (r.getState().equals("RUNNING")) {
        out.printf("  now at step %d/%d: %d%% to the candidate%n", r.getStepIndex() + 1, s.getStepsCount(), s.getSteps(r.getStepIndex()));
      }
      out.printf("  %-24s %-5s %-9s %s%n", "TIME", "STEP", "VERDICT", "REASON");
      for (Decision d : r.getDecisionsList()) {
        out.printf("  %-24s %4d%% %-9s %s%n", Instant.ofEpochMilli(d.getTimeMs()), d.getStepPercent(), d.getVerdict(), d.getReason());
        if (d.hasEvidence()) {
          Evidence e = d.getEvidence();
          String label = "evidence";
          if (e.getReference() != 0 && e.getReference() != s.getBaseline()) {
            out.printf("  %-24s       %-9s against control v%d (the baseline's model at the candidate's share): its figures first%n",
                "", label, e.getReference());
            label = "";
          }
          if (e.getBaselineSamples() + e.getCandidateSamples() > 0 || e.getShadowCompared() == 0) {
            out.printf("  %-24s       %-9s samples %s vs %s; p50 %.3f vs %.3f ms; p99 %.3f vs %.3f ms (ratio %.2f); errors %.2f%% vs %.2f%%; U %.0f, z %.2f, p %.3g%n",
                "", label, samples(e.getBaselineSamples(), e.getBaselineAnswers()), samples(e.getCandidateSamples(), e.getCandidateAnswers()),
                e.getBaselineP50Ms(), e.getCandidateP50Ms(),
                e.getBaselineP99Ms(), e.getCandidateP99Ms(), e.getP99Ratio(), e.getBaselineErrorRate() * 100,
                e.getCandidateErrorRate() * 100, e.getMannWhitneyU(), e.getZ(), e.getPValue());
            label = "";
          }
          if (e.getSamplesFromMs() > 0) {
            out.printf("  %-24s       %-9s samples from %s, the step's last %.1f s (as far back as a version's samples reach)%n", "", label,
                Instant.ofEpochMilli(e.getSamplesFromMs()), Math.max(0, d.getTimeMs() - e.getSamplesFromMs()) / 1000.0);
            label = "";
          }
          if (e.getBaselineQueueMs().getCount() + e.getCandidateQueueMs().getCount() > 0) {
            out.printf("  %-24s       %-9s queue p50 %.3f vs %.3f ms, p99 %.3f vs %.3f ms; compute p50 %.3f vs %.3f ms, p99 %.3f vs %.3f ms"
                    + " (%s, the step's last %.0f s)%n", "", label,
                e.getBaselineQueueMs().getP50(), e.getCandidateQueueMs().getP50(), e.getBaselineQueueMs().getP99(),
                e.getCandidateQueueMs().getP99(), e.getBaselineComputeMs().getP50(), e.getCandidateComputeMs().getP50(),
                e.getBaselineComputeMs().getP99(), e.getCandidateComputeMs().getP99(),
                e.getStageReplicas() > 1 ? e.getStageReplicas() + " replicas" : "this replica", e.getStageSeconds());
            label = "";
          }
          if (e.getShadowCompared() > 0) {
            out.printf("  %-24s       %-9s shadow copies compared %d, argmax agreed %d (%.2f%%)%n", "", label,
                e.getShadowCompared(), e.getShadowAgreed(), 100.0 * e.getShadowAgreed() / e.getShadowCompared());
          }
          if (e.getBaselineGoldenScore() >= 0 || e.getCandidateGoldenScore() >= 0) {
            out.printf("  %-24s       %-9s golden score: baseline %s, candidate %s%n", "", e.getShadowCompared() > 0 ? "" : label, golden(e.getBaselineGoldenScore()),
                golden(e.getCandidateGoldenScore()));
          }
        }
      }
    }

    @Command(name = "start", description = "Start moving traffic to a candidate, judging each step.")
    static final class Start implements Callable<Integer> {
      @ParentCommand RolloutCommand rollout;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Option(names = "--model", required = true, description = "The model; one rollout at a time.") String model;
      @Option(names = "--baseline", required = true, description = "The READY version serving today, restored if the candidate fails.") long baseline;
      @Option(names = "--candidate", required = true, description = "The READY version traffic moves to, step by step.") long candidate;
      @Option(names = "--steps", split = ",", defaultValue = "5,25,50,100", description = "Candidate share per step, percent. Default: ${DEFAULT-VALUE}.") List<Integer> steps;
      @Option(names = "--interval", defaultValue = "60s", converter = Converters.TimeSpan.class, description = "Length of each step. Default: ${DEFAULT-VALUE}.") java.time.Duration interval;
      @Option(names = "--min-samples", defaultValue = "200",
          description = "Calls each version must have answered in a step before it is judged (the step is extended until then). Default: ${DEFAULT-VALUE}.") long minSamples;
      @Option(names = "--max-p99-ratio", defaultValue = "1.10",
          description = "The candidate's p99 latency over the baseline's (or control's) above which it is rolled back. Default: ${DEFAULT-VALUE}.") double maxP99Ratio;
      @Option(names = "--max-error-rate-increase", defaultValue = "0.01",
          description = "How far the candidate's error rate may exceed the baseline's, as a share (0.01: one point). Default: ${DEFAULT-VALUE}.") double maxErrorRateIncrease;
      @Option(names = "--significance", defaultValue = "0.01",
          description = "The rank test's p-value below which the candidate counts as slower. Default: ${DEFAULT-VALUE}.") double significance;
      @Option(names = "--latency-margin", defaultValue = "0.05", paramLabel = "SHARE",
          description = "The slowdown the rank test allows: the candidate counts as slower only where its latencies"
              + " tend to exceed the baseline's times (1 + SHARE). Default: ${DEFAULT-VALUE}.")
      double latencyMargin;
      @Option(names = "--max-accuracy-drop", defaultValue = "0",
          description = "With a golden set: how far the candidate's score may fall below the baseline's (0 to 1). Default: ${DEFAULT-VALUE}.")
      double maxAccuracyDrop;
      @Option(names = "--shadow-agreement", defaultValue = "0", paramLabel = "SHARE",
          description = "Above 0: start with a shadow phase, the candidate getting copies of the baseline's traffic;"
              + " it goes live only if at least this share of --min-samples copies agree with the primary's argmax. Default: ${DEFAULT-VALUE}.")
      double shadowAgreement;
      @Option(names = "--shadow-rate", defaultValue = "1", description = "Share of requests copied in the shadow phase. Default: ${DEFAULT-VALUE}.")
      double shadowRate;
      @Option(names = "--control", defaultValue = "0", paramLabel = "VERSION|copy",
          description = "A version whose model file is the baseline's (loaded as another version). At steps of 50%% or"
              + " less it takes the candidate's share from the baseline and the candidate is judged against it:"
              + " both run as often. copy: the gateway loads the baseline's model again itself, on every replica,"
              + " as the version above every other, and unloads it when the rollout ends. 0: none. Default: ${DEFAULT-VALUE}.")
      String control;

      @Override
      public Integer call() throws Exception {
        boolean copyControl = control.equals("copy");
        long controlNumber;
        try {
          controlNumber = copyControl ? 0 : Long.parseLong(control);
        } catch (NumberFormatException e) {
          throw new picocli.CommandLine.ParameterException(spec.commandLine(),
              "Invalid value for option '--control': '" + control + "' (expected: a version number, 0 for none, or copy)");
        }
        return execute(rollout.admin, spec, (client, out) -> print(out, client.call().startRollout(
            StartRolloutRequest.newBuilder().setSpec(RolloutSpec.newBuilder()
                .setModel(model).setBaseline(baseline).setCandidate(candidate)
                .setControl(controlNumber).setCopyControl(copyControl).addAllSteps(steps)
                .setIntervalS((int) Math.max(1, interval.toSeconds()))
                .setShadowRate(shadowAgreement > 0 ? shadowRate : 0)
                .setThresholds(Thresholds.newBuilder().setMinSamples(minSamples).setMaxP99Ratio(maxP99Ratio)
                    .setMaxErrorRateIncrease(maxErrorRateIncrease).setSignificance(significance)
                    .setLatencyMargin(latencyMargin)
                    .setMaxAccuracyDrop(maxAccuracyDrop).setMinShadowAgreement(shadowAgreement))).build())));
      }
    }

    @Command(name = "status", description = "A rollout's state and every decision with its evidence.")
    static final class Status implements Callable<Integer> {
      @ParentCommand RolloutCommand rollout;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Option(names = "--model", required = true, description = "The model.") String model;

      @Override
      public Integer call() throws Exception {
        return execute(rollout.admin, spec, (client, out) ->
            print(out, client.call().getRollout(GetRolloutRequest.newBuilder().setModel(model).build())));
      }
    }

    @Command(name = "abort", description = "Stop a rollout and restore the policy it started from.")
    static final class Abort implements Callable<Integer> {
      @ParentCommand RolloutCommand rollout;
      @Spec CommandSpec spec;
      @Mixin HelpOption help;
      @Option(names = "--model", required = true, description = "The model whose running rollout stops.") String model;

      @Override
      public Integer call() throws Exception {
        return execute(rollout.admin, spec, (client, out) ->
            print(out, client.call().abortRollout(AbortRolloutRequest.newBuilder().setModel(model).build())));
      }
    }
  }
}

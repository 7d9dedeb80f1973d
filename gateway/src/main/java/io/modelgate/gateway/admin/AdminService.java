package io.modelgate.gateway.admin;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.status.ErrorStatus;
import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.proto.admin.v1.AbortRolloutRequest;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.GetRolloutRequest;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.GetStatsRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.ListModelsResponse;
import io.modelgate.proto.admin.v1.LoadVersionRequest;
import io.modelgate.proto.admin.v1.ModelInfo;
import io.modelgate.proto.admin.v1.PromoteRequest;
import io.modelgate.proto.admin.v1.RollbackRequest;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.StartRolloutRequest;
import io.modelgate.proto.admin.v1.StatsResponse;
import io.modelgate.proto.admin.v1.UnloadVersionRequest;
import io.modelgate.proto.admin.v1.VersionInfo;
import io.modelgate.proto.admin.v1.WatchStatsRequest;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.threads.DaemonThreads;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * The admin API. Its calls run on the admin server's own executor, never on an inference event
 * loop: they may block (loading a session, draining a version, writing the state directory).
 * Every change is made through the {@link ControlPlane}, which validates, persists, audits and
 * swaps.
 */
public final class AdminService extends AdminServiceGrpc.AdminServiceImplBase implements AutoCloseable {
  private final ModelRepository repository;
  private final ControlPlane control;
  private final io.modelgate.gateway.control.Fleet fleet;
  private final io.modelgate.gateway.health.GoldenSets golden;
  private final io.modelgate.gateway.health.Drift drift;
  private final io.modelgate.gateway.usage.Usage usage;
  private final AccessControl access;
  private final StatsRegistry stats;
  /** What each port holds, with the client addresses holding the most; any thread. */
  private final java.util.function.IntFunction<java.util.List<io.modelgate.proto.admin.v1.PortConnections>> connections;
  private final VersionControl versions;
  /**
   * When a model whose folder has gone will be removed (epoch ms), or -1 while a version of it is
   * in memory; any thread.
   */
  private final java.util.function.ToLongFunction<Model> removalDue;
  /** The poll of the repository folder, or null where it is not polled. */
  private final RepositoryPoll poll;
  /** Log levels and the trace sample rate set for a while; this service's, closed with it. */
  private final io.modelgate.gateway.diagnostics.Diagnostics diagnostics;
  /** Drift references set by operators, here or on every replica; follows the fleet's. */
  private final DriftBaselines baselines;
  private final ScheduledExecutorService watchers =
      DaemonThreads.scheduled("modelgate-admin-watch");

  public AdminService(
      ModelRepository repository,
      ControlPlane control,
      io.modelgate.gateway.control.Fleet fleet,
      io.modelgate.gateway.health.GoldenSets golden,
      io.modelgate.gateway.health.Drift drift,
      io.modelgate.gateway.usage.Usage usage,
      AccessControl access,
      StatsRegistry stats,
      VersionControl versions,
      java.util.function.IntFunction<java.util.List<io.modelgate.proto.admin.v1.PortConnections>> connections,
      java.util.function.ToLongFunction<Model> removalDue,
      RepositoryPoll poll,
      io.modelgate.gateway.diagnostics.Diagnostics diagnostics) {
    this.poll = poll;
    this.diagnostics = diagnostics;
    this.drift = drift;
    this.usage = usage;
    this.access = access;
    this.repository = repository;
    this.control = control;
    this.fleet = fleet;
    this.golden = golden;
    this.stats = stats;
    this.versions = versions;
    this.connections = connections;
    this.removalDue = removalDue;
    this.baselines = new DriftBaselines(control, fleet, drift, golden, control.clock());
  }

  private static <T> void answer(StreamObserver<T> observer, Supplier<T> action) {
    ErrorStatus.answer(observer, action);
  }

  @Override
  public void listModels(ListModelsRequest request, StreamObserver<ListModelsResponse> observer) {
    answer(
        observer,
        () -> {
          ListModelsResponse.Builder response =
              ListModelsResponse.newBuilder().setReplica(control.replica()).setControlStore(control.status());
          for (Model model : repository.models()) {
            Route route = control.router().routeOrNull(model.name());
            if (route != null) { // else removed from the repository since it was listed
              response.addModels(info(model, route));
            }
          }
          if (poll != null) {
            response.setRepositoryPollMs(poll.spacing().toMillis());
            poll.waiting().entrySet().stream().sorted(java.util.Map.Entry.comparingByKey())
                .forEach(change -> response.addPollWaiting(change.getKey() + ": " + change.getValue()));
          }
          return response.addAllOwedLoads(versions.owed()).addAllModelsNotLoaded(repository.modelsNotAdded())
              .addAllModelsKept(control.keptWithoutModel()).build();
        });
  }

  /** A model as {@code admin models} shows it: its routing and its versions. */
  private ModelInfo info(Model model) {
    return info(model, control.router().route(model.name()));
  }

  private ModelInfo info(Model model, Route route) {
    ModelInfo.Builder info = ModelInfo.newBuilder().setName(model.name()).setRouting(route.policy());
    if (route.degraded() != null) {
      info.setRoutingDegraded(route.degraded());
    }
    if (repository.folderGone(model.name())) {
      info.setFolderGone(true).setRemovalDueUnixMs(Math.max(0, removalDue.applyAsLong(model)));
    }
    for (ModelVersion version : model.versions()) {
      info.addVersions(info(version));
    }
    return info.build();
  }

  VersionInfo info(ModelVersion version) {
    VersionInfo.Builder info =
        VersionInfo.newBuilder()
            .setModel(version.model())
            .setVersion(version.number())
            .setState(version.state().name())
            .setReason(version.reason())
            .setCopyOf(version.copyOf());
    LoadedVersion loaded = version.loadedOrNull();
    if (loaded != null) {
      info.setExecutionProvider(loaded.executionProvider().configName())
          .setMaxBatchSize(loaded.signature().maxBatchSize())
          .setModelSha256(loaded.modelSha256());
    }
    info.setGolden(golden.result(version));
    return info.build();
  }

  @Override
  public void getRouting(GetRoutingRequest request, StreamObserver<RoutingPolicy> observer) {
    answer(observer, () -> control.router().route(request.getModel()).policy());
  }

  @Override
  public void setRouting(SetRoutingRequest request, StreamObserver<RoutingPolicy> observer) {
    answer(
        observer,
        () -> {
          if (!request.hasPolicy() || request.getPolicy().getModel().isEmpty()) {
            throw InferenceException.invalidArgument("policy.model is empty (expected: a model name)");
          }
          return control.set(
              request.getPolicy(),
              request.getExpectedRevision(),
              AdminAuth.caller(),
              "SetRouting",
              request.getPolicy().getReason().isEmpty() ? "set by operator" : request.getPolicy().getReason());
        });
  }

  @Override
  public void promote(PromoteRequest request, StreamObserver<RoutingPolicy> observer) {
    answer(
        observer,
        () -> control.promote(request.getModel(), request.getVersion(), request.getExpectedRevision(), AdminAuth.caller()));
  }

  @Override
  public void rollback(RollbackRequest request, StreamObserver<RoutingPolicy> observer) {
    answer(observer, () -> control.rollback(request.getModel(), request.getExpectedRevision(), AdminAuth.caller()));
  }

  @Override
  public void loadVersion(LoadVersionRequest request, StreamObserver<VersionInfo> observer) {
    answer(
        observer,
        () -> info(request.getReload()
            ? versions.reload(request.getModel(), request.getVersion(), AdminAuth.caller(), "ReloadVersion")
            : versions.load(request.getModel(), request.getVersion(), AdminAuth.caller(), "LoadVersion")));
  }

  @Override
  public void loadModel(io.modelgate.proto.admin.v1.LoadModelRequest request, StreamObserver<ModelInfo> observer) {
    answer(observer, () -> info(request.getReload()
        ? versions.reloadModel(request.getModel(), AdminAuth.caller(), "ReloadModel")
        : versions.loadModel(request.getModel(), AdminAuth.caller(), "LoadModel")));
  }

  @Override
  public void unloadModel(io.modelgate.proto.admin.v1.UnloadModelRequest request, StreamObserver<ModelInfo> observer) {
    answer(observer, () -> info(versions.unloadModel(request.getModel(), AdminAuth.caller(), "UnloadModel")));
  }

  @Override
  public void forgetModel(io.modelgate.proto.admin.v1.ForgetModelRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.ForgetModelResponse> observer) {
    answer(observer, () -> io.modelgate.proto.admin.v1.ForgetModelResponse.newBuilder().setModel(request.getModel())
        .setForgotten(control.forget(request.getModel(), AdminAuth.caller())).build());
  }

  @Override
  public void unloadVersion(UnloadVersionRequest request, StreamObserver<VersionInfo> observer) {
    answer(
        observer,
        () -> {
          VersionControl.Unloaded done =
              versions.unloadAsked(request.getModel(), request.getVersion(), AdminAuth.caller(), "UnloadVersion");
          if (done.withdrawn() == null) {
            return info(done.version());
          }
          // In a fleet, a version not READY here that every replica was asked to load: its ask withdrawn.
          VersionInfo here = done.version() != null ? info(done.version())
              : VersionInfo.newBuilder().setModel(request.getModel()).setVersion(request.getVersion())
                  .setState(io.modelgate.runtime.repository.VersionState.UNAVAILABLE.name()).build();
          return here.toBuilder().setReason(done.withdrawn()).build();
        });
  }

  @Override
  public void getStats(GetStatsRequest request, StreamObserver<StatsResponse> observer) {
    answer(observer, () -> {
      requireKnown(request.getModel(), request.getVersion());
      return report(request.getModel(), request.getVersion());
    });
  }

  @Override
  public void getFleetStats(GetStatsRequest request, StreamObserver<io.modelgate.proto.admin.v1.FleetStatsResponse> observer) {
    answer(observer, () -> {
      io.modelgate.proto.admin.v1.FleetStatsResponse report = fleet.report(request.getModel(), request.getVersion());
      // A model this replica lacks may be on others: unknown only where no replica reports it.
      if (report.getVersionsCount() == 0 && !request.getModel().isEmpty()) {
        requireKnown(request.getModel(), request.getVersion());
        if (request.getVersion() == 0) {
          throw io.modelgate.runtime.error.InferenceException.notFound(
              "no replica has statistics of model '" + request.getModel() + "'");
        }
      }
      return report;
    });
  }

  private StatsResponse report(String model, long version) {
    return stats.report(model, version).toBuilder().setReplica(control.replica()).build();
  }

  /**
   * Checks what a statistics call names: a model this replica's repository has (NOT_FOUND with the
   * models there are, as every admin call says), and a version it lists; lest a mistyped name
   * read as a model that served nothing. Nothing named: every model.
   */
  private void requireKnown(String model, long version) {
    if (model.isEmpty()) {
      return;
    }
    io.modelgate.runtime.repository.Model found = control.router().route(model).model();
    if (version != 0 && found.version(version).isEmpty()) {
      throw io.modelgate.runtime.error.InferenceException.notFound(
          "model '" + found.name() + "' has no version " + version + " (" + found.describeVersions() + ")");
    }
  }

  @Override
  public void watchStats(WatchStatsRequest request, StreamObserver<StatsResponse> observer) {
    ServerCallStreamObserver<StatsResponse> call = (ServerCallStreamObserver<StatsResponse>) observer;
    try {
      requireKnown(request.getModel(), 0);
    } catch (RuntimeException e) {
      call.onError(ErrorStatus.exception(e, ErrorStatus.of(e)));
      return;
    }
    long interval = Math.max(500, request.getIntervalMs() == 0 ? 5000 : request.getIntervalMs());
    ScheduledFuture<?>[] task = new ScheduledFuture<?>[1];
    call.setOnCancelHandler(() -> {
      synchronized (task) {
        if (task[0] != null) {
          task[0].cancel(false);
        }
      }
    });
    boolean[] ended = new boolean[1];
    synchronized (task) {
      task[0] =
          watchers.scheduleAtFixedRate(
              () -> {
                synchronized (call) {
                  // A watcher that has not read what was sent gets nothing more until it has: the
                  // reports would pile up in memory; when it reads again, the next is the latest.
                  if (ended[0] || call.isCancelled() || !call.isReady()) {
                    return;
                  }
                  try {
                    call.onNext(report(request.getModel(), request.getVersion()));
                  } catch (RuntimeException e) {
                    ended[0] = true;
                    call.onError(Status.INTERNAL.withDescription(e.toString()).asRuntimeException());
                  }
                }
              },
              0,
              interval,
              TimeUnit.MILLISECONDS);
    }
  }

  @Override
  public void startRollout(StartRolloutRequest request, StreamObserver<Rollout> observer) {
    answer(observer, () -> {
      // Both versions' golden sets first (they run when a version loads; wait for them here, off
      // the control plane's lock).
      io.modelgate.runtime.repository.Model model = control.router().route(request.getSpec().getModel()).model();
      for (long number : new long[] {request.getSpec().getBaseline(), request.getSpec().getCandidate()}) {
        ModelVersion version = model.version(number).orElse(null);
        if (version != null && version.isReady()) {
          try {
            golden.await(version, GOLDEN_WAIT);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw io.modelgate.runtime.error.InferenceException.unavailable("interrupted");
          }
        }
      }
      return versions.startRollout(request.getSpec(), AdminAuth.caller());
    });
  }

  /** How long a rollout's start waits for the versions' golden sets. */
  private static final java.time.Duration GOLDEN_WAIT = java.time.Duration.ofSeconds(120);

  @Override
  public void validate(io.modelgate.proto.admin.v1.ValidateRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.ValidateResponse> observer) {
    answer(observer, () -> {
      io.modelgate.runtime.repository.Model model = control.router().route(request.getModel()).model();
      if (!golden.hasGoldenSet(model.name())) {
        throw io.modelgate.runtime.error.InferenceException.failedPrecondition(
            "model '" + model.name() + "' has no golden set (expected: " + model.name() + "/"
                + io.modelgate.gateway.health.GoldenSet.DIRECTORY + "/*.jsonl in the model repository)");
      }
      io.modelgate.proto.admin.v1.ValidateResponse.Builder response = io.modelgate.proto.admin.v1.ValidateResponse.newBuilder();
      for (ModelVersion version : model.versions()) {
        if (request.getVersion() != 0 && version.number() != request.getVersion()) {
          continue;
        }
        if (version.isReady()) {
          golden.validate(version);
        } else if (request.getVersion() != 0) {
          throw io.modelgate.runtime.error.InferenceException.failedPrecondition(
              version.label() + " is " + version.state() + ", not READY: nothing to validate");
        }
        response.addVersions(info(version));
      }
      if (response.getVersionsCount() == 0) {
        throw io.modelgate.runtime.error.InferenceException.notFound(
            "model '" + model.name() + "' has no version " + request.getVersion());
      }
      return response.build();
    });
  }

  /** How long a drift call waits for the drift thread. */
  private static final java.time.Duration DRIFT_WAIT = java.time.Duration.ofSeconds(10);

  @Override
  public void getDrift(io.modelgate.proto.admin.v1.GetDriftRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.DriftReport> observer) {
    answer(observer, () -> {
      io.modelgate.runtime.repository.Model model = control.router().route(request.getModel()).model();
      if (request.getMerged()) {
        return fleet.mergedDriftReport(model.name(), request.getVersion());
      }
      if (request.getFleet()) {
        return fleet.driftReport(model.name(), request.getVersion());
      }
      return awaitDrift(drift.report(model.name(), request.getVersion()));
    });
  }

  @Override
  public void setDriftBaseline(io.modelgate.proto.admin.v1.SetDriftBaselineRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.DriftReport> observer) {
    answer(observer, () -> baselines.set(request.getModel(), request.getVersion(), request.getWindow(),
        request.getGolden(), request.getFleet(), request.getMerged(), AdminAuth.caller()));
  }

  @Override
  public void getUsage(io.modelgate.proto.admin.v1.GetUsageRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.UsageReport> observer) {
    answer(observer, () -> {
      java.time.Instant now = java.time.Instant.now(stats.clock());
      java.time.Instant since = request.getSince().isEmpty() ? now.minus(java.time.Duration.ofDays(1))
          : instant(request.getSince(), "since");
      java.time.Instant until = request.getUntil().isEmpty() ? now : instant(request.getUntil(), "until");
      if (!until.isAfter(since)) {
        throw io.modelgate.runtime.error.InferenceException.invalidArgument(request.getUntil().isEmpty()
            ? "since " + since + " is not before now (" + now.truncatedTo(java.time.temporal.ChronoUnit.SECONDS)
                + "): usage is kept for the hours gone by"
            : "until " + until + " is not after since " + since);
      }
      if (!request.getFleet()) {
        return usage.report(since, until, request.getTenant(), request.getModel());
      }
      control.store().requireFleet();
      try {
        usage.flush();
      } catch (java.io.IOException e) {
        throw io.modelgate.runtime.error.InferenceException.unavailable("this replica's usage cannot be written: " + e.getMessage());
      }
      return io.modelgate.gateway.usage.Usage.fleetReport(
          control.store().usage(io.modelgate.gateway.usage.Usage.hour(since, false), io.modelgate.gateway.usage.Usage.hour(until, true)),
          since, until, request.getTenant(), request.getModel());
    });
  }

  /** Addresses listed per port unless asked otherwise, and the most that may be asked. */
  static final int CONNECTIONS_TOP = 10;
  static final int CONNECTIONS_TOP_MOST = 1000;

  @Override
  public void getConnections(io.modelgate.proto.admin.v1.GetConnectionsRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.ConnectionsReport> observer) {
    answer(observer, () -> {
      int top = request.getTop() == 0 ? CONNECTIONS_TOP : request.getTop();
      if (top < 0 || top > CONNECTIONS_TOP_MOST) {
        throw io.modelgate.runtime.error.InferenceException.invalidArgument(
            "top: " + request.getTop() + " (expected: 1 to " + CONNECTIONS_TOP_MOST + ", or 0 for " + CONNECTIONS_TOP + ")");
      }
      return io.modelgate.proto.admin.v1.ConnectionsReport.newBuilder().addAllPorts(connections.apply(top)).build();
    });
  }

  @Override
  public void getAccess(io.modelgate.proto.admin.v1.GetAccessRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.AccessReport> observer) {
    answer(observer, access::report);
  }

  @Override
  public void createToken(io.modelgate.proto.admin.v1.CreateTokenRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.CreatedToken> observer) {
    answer(observer, () -> access.createToken(request.getName(), request.getRole(), AdminAuth.caller()));
  }

  @Override
  public void revokeToken(io.modelgate.proto.admin.v1.RevokeTokenRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.AccessReport> observer) {
    answer(observer, () -> access.revokeToken(request.getName(), AdminAuth.caller()));
  }

  @Override
  public void setQuota(io.modelgate.proto.admin.v1.SetQuotaRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.AccessReport> observer) {
    answer(observer, () -> access.setQuota(request, AdminAuth.caller()));
  }

  /** An RFC 3339 instant, or a date (its midnight, UTC). */
  private static java.time.Instant instant(String text, String field) {
    try {
      return text.length() == 10
          ? java.time.LocalDate.parse(text).atStartOfDay(java.time.ZoneOffset.UTC).toInstant()
          : java.time.OffsetDateTime.parse(text).toInstant();
    } catch (java.time.format.DateTimeParseException e) {
      throw io.modelgate.runtime.error.InferenceException.invalidArgument(field + ": "
          + io.modelgate.runtime.error.InferenceException.quote(text) + " (expected a date such as 2026-12-01, or an instant such as 2026-12-01T10:00:00Z)");
    }
  }

  static <T> T awaitDrift(java.util.concurrent.CompletableFuture<T> answer) {
    try {
      return answer.get(DRIFT_WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.ExecutionException e) {
      if (e.getCause() instanceof RuntimeException cause) {
        throw cause;
      }
      throw io.modelgate.runtime.error.InferenceException.internal("drift report failed", e.getCause());
    } catch (java.util.concurrent.TimeoutException e) {
      throw io.modelgate.runtime.error.InferenceException.unavailable(
          "the drift profiler did not answer within " + DRIFT_WAIT.toSeconds() + " s");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw io.modelgate.runtime.error.InferenceException.unavailable("interrupted");
    }
  }

  @Override
  public void getRollout(GetRolloutRequest request, StreamObserver<Rollout> observer) {
    answer(observer, () -> control.rollout(request.getModel()));
  }

  @Override
  public void abortRollout(AbortRolloutRequest request, StreamObserver<Rollout> observer) {
    answer(observer, () -> control.abortRollout(request.getModel(), AdminAuth.caller()));
  }

  @Override
  public void close() {
    watchers.shutdownNow();
    diagnostics.close();
    baselines.close();
  }

  @Override
  public void setLogLevel(io.modelgate.proto.admin.v1.SetLogLevelRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.Diagnostics> observer) {
    answer(observer, () -> diagnostics.setLogLevel(request.getLogger(), request.getLevel(),
        java.time.Duration.ofMillis(request.getForMs()), request.getFleet(), AdminAuth.caller()));
  }

  @Override
  public void setTraceSampleRate(io.modelgate.proto.admin.v1.SetTraceSampleRateRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.Diagnostics> observer) {
    answer(observer, () -> diagnostics.setTraceSampleRate(request.getSampleRate(), request.getRestore(),
        java.time.Duration.ofMillis(request.getForMs()), request.getFleet(), AdminAuth.caller()));
  }

  @Override
  public void getDiagnostics(io.modelgate.proto.admin.v1.GetDiagnosticsRequest request,
      StreamObserver<io.modelgate.proto.admin.v1.Diagnostics> observer) {
    answer(observer, diagnostics::report);
  }
}

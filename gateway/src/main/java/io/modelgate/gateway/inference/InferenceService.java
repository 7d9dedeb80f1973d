package io.modelgate.gateway.inference;

import io.modelgate.gateway.status.ErrorStatus;

import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.routing.LatestReadyVersionSelector;
import io.modelgate.gateway.callers.CallerAuth;
import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.gateway.routing.VersionSelector;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelConfigRequest;
import io.modelgate.proto.inference.ModelConfigResponse;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelMetadataRequest;
import io.modelgate.proto.inference.ModelMetadataResponse;
import io.modelgate.proto.inference.ModelReadyRequest;
import io.modelgate.proto.inference.ModelReadyResponse;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import io.modelgate.proto.inference.ServerLiveRequest;
import io.modelgate.proto.inference.ServerLiveResponse;
import io.modelgate.proto.inference.ServerMetadataRequest;
import io.modelgate.proto.inference.ServerMetadataResponse;
import io.modelgate.proto.inference.ServerReadyRequest;
import io.modelgate.proto.inference.ServerReadyResponse;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceRequest;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.DecodedRequest;
import io.modelgate.runtime.tensor.RequestDecoder;
import java.time.Clock;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * The KServe v2 / Open Inference Protocol service.
 *
 * <p>Threading: every method runs on a gRPC event loop and never blocks. An inference request's
 * version is picked by the {@link Router}, the request is validated against that version and
 * published to its scheduler; the event loop then returns. A sampled copy may go to a shadow
 * version, whose fate never touches the caller's answer. The answer is written later from the executor thread that ran it (or at once, for a
 * request refused at admission). Each request gets exactly one answer.
 *
 * <p>Install {@link #definition()}, not {@link #bindService()}: the definition binds ModelInfer
 * and ModelStreamInfer to handlers that answer with {@link EncodedResponse}s (the generated
 * {@code modelInfer} and {@code modelStreamInfer} are not overridden and answer UNIMPLEMENTED).
 */
public final class InferenceService extends GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase {
  /** The server name in ServerMetadata. */
  public static final String SERVER_NAME = "modelgate";

  /** Extensions modelgate really implements, in Triton's order. */
  public static final List<String> EXTENSIONS =
      List.of("classification", "model_repository", "model_configuration", "statistics");

  /** The repository RPCs that change what is loaded; they need the admin token. */
  public static final java.util.Set<String> GUARDED_METHODS =
      java.util.Set.of(
          GRPCInferenceServiceGrpc.getRepositoryModelLoadMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getRepositoryModelUnloadMethod().getFullMethodName());

  /**
   * The calls that need a caller when the server has a callers file: everything about models; the
   * server's liveness, readiness and metadata stay open (probes use them).
   */
  public static final java.util.Set<String> CALLER_METHODS =
      java.util.Set.of(
          GRPCInferenceServiceGrpc.getModelReadyMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getModelMetadataMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getModelConfigMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getModelStatisticsMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getModelInferMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getModelStreamInferMethod().getFullMethodName(),
          GRPCInferenceServiceGrpc.getRepositoryIndexMethod().getFullMethodName());

  /** The response parameter that carries the status code of an in-band stream error. */
  public static final String ERROR_CODE_PARAMETER = "error_code";

  /**
   * The response parameter (int64, milliseconds, rounded up) of an in-band stream error that
   * knows when a retry can succeed: what a unary call's {@code grpc-retry-pushback-ms} trailer and
   * {@code RetryInfo} say.
   */
  public static final String RETRY_AFTER_MS_PARAMETER = "retry_after_ms";

  private static final Runnable IGNORE_CANCEL = () -> {};

  /**
   * The service as the server installs it: with the interceptors its calls need, and request
   * parsing that answers a message that is not valid protobuf {@code INVALID_ARGUMENT} (see
   * {@link LenientRequests}).
   */
  public io.grpc.ServerServiceDefinition definition() {
    return io.grpc.ServerInterceptors.intercept(
        LenientRequests.of(ServiceDefinitions.map(bindService(), this::encodedAnswers)),
        new StreamErrorMode(),
        new RoutingHeaders(router));
  }

  /**
   * ModelInfer and ModelStreamInfer bound to {@link #infer} and {@link #streamInfer}, which answer
   * with {@link EncodedResponse}s written straight into the transport; the other methods as bound.
   */
  private io.grpc.ServerMethodDefinition<?, ?> encodedAnswers(io.grpc.ServerMethodDefinition<?, ?> method) {
    io.grpc.MethodDescriptor<?, ?> descriptor = method.getMethodDescriptor();
    io.grpc.MethodDescriptor<ModelInferRequest, ModelInferResponse> unary = GRPCInferenceServiceGrpc.getModelInferMethod();
    io.grpc.MethodDescriptor<ModelInferRequest, ModelStreamInferResponse> stream =
        GRPCInferenceServiceGrpc.getModelStreamInferMethod();
    if (descriptor.getFullMethodName().equals(unary.getFullMethodName())) {
      return io.grpc.ServerMethodDefinition.create(
          unary.toBuilder(unary.getRequestMarshaller(), EncodedResponse.MARSHALLER).build(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(this::infer));
    }
    if (descriptor.getFullMethodName().equals(stream.getFullMethodName())) {
      return io.grpc.ServerMethodDefinition.create(
          stream.toBuilder(stream.getRequestMarshaller(), EncodedResponse.streamMarshaller(stream.getResponseMarshaller()))
              .build(),
          io.grpc.stub.ServerCalls.asyncBidiStreamingCall(this::streamInfer));
    }
    return method;
  }

  /** Refuses a request whose message could not be parsed. */
  private static void refuseUnparsed(ModelInferRequest request) {
    String reason = LenientRequests.invalidReason(request);
    if (reason != null) {
      throw InferenceException.invalidArgument(
          "the request is not a valid inference.ModelInferRequest message: " + reason);
    }
  }

  private final ModelRepository repository;
  private final VersionSelector selector;
  private final Router router;
  private final Clock clock;
  private final io.modelgate.gateway.stats.StatsRegistry stats;
  private final BooleanSupplier ready;
  private final RepositoryControl repositoryControl;
  private final io.modelgate.gateway.health.PayloadLog payloadLog;
  private final io.modelgate.gateway.health.Drift drift;
  private final io.modelgate.gateway.usage.Usage usage;
  private final io.modelgate.gateway.callers.Quotas quotas;
  private final io.modelgate.gateway.tracing.Tracing tracing;
  /** Bytes of requests admitted and not yet answered, across versions, and their limit. */
  private final RequestMemory requestMemory;
  private final io.modelgate.gateway.callers.FairShare fairShare = new io.modelgate.gateway.callers.FairShare();
  private final java.util.function.Supplier<String> caller;
  private final ServerMetadataResponse serverMetadata;
  /** The ModelStreamInfer calls still open, so that shutdown can end each once it has answered. */
  private final java.util.Set<Stream> openStreams = java.util.concurrent.ConcurrentHashMap.newKeySet();

  /**
   * @param selector answers metadata, config and readiness questions (the protocol's default
   *     version policy)
   * @param router picks the version of each inference request
   * @param stats counts requests refused before a version is chosen; its clock stamps the latency
   *     samples recorded for rollout decisions
   * @param ready whether the server can serve inference now (ServerReady)
   * @param version the server version reported by ServerMetadata
   * @param repositoryControl serves the model repository extension
   * @param caller names the caller of a guarded repository call, for the audit log, and of a
   *     request drawn for a payload log
   * @param payloadLog where sampled requests of models with a {@code payload_log} go
   * @param drift where sampled requests of models with {@code drift} are profiled
   * @param usage where every answered request is counted for its tenant
   * @param quotas the tenants' quotas, checked before a request is queued
   */
  public InferenceService(
      ModelRepository repository,
      VersionSelector selector,
      Router router,
      io.modelgate.gateway.stats.StatsRegistry stats,
      BooleanSupplier ready,
      String version,
      RepositoryControl repositoryControl,
      java.util.function.Supplier<String> caller,
      io.modelgate.gateway.health.PayloadLog payloadLog,
      io.modelgate.gateway.health.Drift drift,
      io.modelgate.gateway.usage.Usage usage,
      io.modelgate.gateway.callers.Quotas quotas,
      RequestMemory requestMemory,
      io.modelgate.gateway.tracing.Tracing tracing) {
    this.requestMemory = java.util.Objects.requireNonNull(requestMemory, "request memory");
    this.tracing = java.util.Objects.requireNonNull(tracing, "tracing");
    this.drift = drift;
    this.usage = usage;
    this.quotas = quotas;
    this.repositoryControl = repositoryControl;
    this.caller = caller;
    this.payloadLog = payloadLog;
    this.repository = repository;
    this.selector = selector;
    this.router = router;
    this.stats = stats;
    this.clock = stats.clock();
    this.ready = ready;
    this.serverMetadata =
        ServerMetadataResponse.newBuilder()
            .setName(SERVER_NAME)
            .setVersion(version)
            .addAllExtensions(EXTENSIONS)
            .build();
  }

  @Override
  public void serverLive(ServerLiveRequest request, StreamObserver<ServerLiveResponse> observer) {
    observer.onNext(ServerLiveResponse.newBuilder().setLive(true).build());
    observer.onCompleted();
  }

  @Override
  public void serverReady(
      ServerReadyRequest request, StreamObserver<ServerReadyResponse> observer) {
    observer.onNext(ServerReadyResponse.newBuilder().setReady(ready.getAsBoolean()).build());
    observer.onCompleted();
  }

  @Override
  public void serverMetadata(
      ServerMetadataRequest request, StreamObserver<ServerMetadataResponse> observer) {
    observer.onNext(serverMetadata);
    observer.onCompleted();
  }

  @Override
  public void modelReady(ModelReadyRequest request, StreamObserver<ModelReadyResponse> observer) {
    ErrorStatus.answer(observer, () -> {
      CallerAuth.requireModel(CallerAuth.current(), request.getName());
      return ModelReadyResponse.newBuilder().setReady(isReady(request)).build();
    });
  }

  /** Unknown model or version: not ready, not an error. A malformed version is an error. */
  private boolean isReady(ModelReadyRequest request) {
    String version = request.getVersion();
    long number = version.isEmpty() ? 0 : LatestReadyVersionSelector.parseVersion(version);
    Model model = repository.model(request.getName()).orElse(null);
    if (model == null) {
      return false;
    }
    if (number == 0) {
      return model.latestReady().isPresent();
    }
    return model.version(number).map(ModelVersion::isReady).orElse(false);
  }

  @Override
  public void modelMetadata(
      ModelMetadataRequest request, StreamObserver<ModelMetadataResponse> observer) {
    ErrorStatus.answer(observer, () -> {
      CallerAuth.requireModel(CallerAuth.current(), request.getName());
      ModelVersion version = selector.select(request.getName(), request.getVersion());
      List<String> versions =
          request.getVersion().isEmpty()
              ? LatestReadyVersionSelector.model(repository, request.getName())
                  .readyVersions()
                  .stream()
                  .map(ModelVersion::numberText)
                  .toList()
              : List.of(version.numberText());
      return ModelDescriptions.metadata(version, version.serving(), versions);
    });
  }

  @Override
  public void modelConfig(
      ModelConfigRequest request, StreamObserver<ModelConfigResponse> observer) {
    ErrorStatus.answer(observer, () -> {
      CallerAuth.requireModel(CallerAuth.current(), request.getName());
      ModelVersion version = selector.select(request.getName(), request.getVersion());
      return ModelConfigResponse.newBuilder()
          .setConfig(ModelDescriptions.config(version, version.serving()))
          .build();
    });
  }

  /**
   * Cumulative statistics (Triton's statistics extension) of every version that has loaded at
   * least once; {@code name} and {@code version} narrow it down. An unknown model or version is
   * NOT_FOUND.
   */
  @Override
  public void modelStatistics(
      io.modelgate.proto.inference.ModelStatisticsRequest request,
      StreamObserver<io.modelgate.proto.inference.ModelStatisticsResponse> observer) {
    ErrorStatus.answer(observer, () -> statistics(request));
  }

  private io.modelgate.proto.inference.ModelStatisticsResponse statistics(
      io.modelgate.proto.inference.ModelStatisticsRequest request) {
    CallerAuth.Caller caller = CallerAuth.current();
    if (!request.getName().isEmpty()) {
      CallerAuth.requireModel(caller, request.getName());
    }
    List<Model> models =
        request.getName().isEmpty()
            ? repository.models().stream().filter(m -> caller.entry() == null || caller.entry().allows(m.name())).toList()
            : List.of(LatestReadyVersionSelector.model(repository, request.getName()));
    long number = 0;
    if (!request.getVersion().isEmpty()) {
      if (request.getName().isEmpty()) {
        throw InferenceException.invalidArgument("version is set but name is empty (expected: a model name with a version)");
      }
      number = LatestReadyVersionSelector.version(models.get(0), request.getVersion()).number();
    }
    io.modelgate.proto.inference.ModelStatisticsResponse.Builder response =
        io.modelgate.proto.inference.ModelStatisticsResponse.newBuilder();
    for (Model model : models) {
      for (ModelVersion version : model.versions()) {
        VersionStats versionStats = stats.find(model.name(), version.number());
        if ((number == 0 || version.number() == number) && versionStats != null) {
          response.addModelStats(versionStats.statistics());
        }
      }
    }
    return response.build();
  }

  @Override
  public void repositoryIndex(
      io.modelgate.proto.inference.RepositoryIndexRequest request,
      StreamObserver<io.modelgate.proto.inference.RepositoryIndexResponse> observer) {
    ErrorStatus.answer(observer, () -> {
      checkRepositoryName(request.getRepositoryName());
      return repositoryControl.index(request);
    });
  }

  /** Loads the model's versions on the repository's own thread; answers when done. */
  @Override
  public void repositoryModelLoad(
      io.modelgate.proto.inference.RepositoryModelLoadRequest request,
      StreamObserver<io.modelgate.proto.inference.RepositoryModelLoadResponse> observer) {
    try {
      checkRepositoryName(request.getRepositoryName());
      if (!request.getParametersMap().isEmpty()) {
        throw InferenceException.invalidArgument(
            "parameters " + request.getParametersMap().keySet()
                + " (expected: none; modelgate loads a model's files and model.yaml from its repository folder)");
      }
      if (request.getModelName().isEmpty()) {
        throw InferenceException.invalidArgument("model_name is empty (expected: a model name)");
      }
      // A model whose folder has appeared since the start is added by the load itself.
      answerWhenDone(
          repositoryControl.load(request.getModelName(), caller.get()),
          io.modelgate.proto.inference.RepositoryModelLoadResponse.getDefaultInstance(),
          observer);
    } catch (RuntimeException e) {
      observer.onError(ErrorStatus.of(e).asRuntimeException());
    }
  }

  /** Drains and unloads the model's READY versions on the repository's own thread. */
  @Override
  public void repositoryModelUnload(
      io.modelgate.proto.inference.RepositoryModelUnloadRequest request,
      StreamObserver<io.modelgate.proto.inference.RepositoryModelUnloadResponse> observer) {
    try {
      checkRepositoryName(request.getRepositoryName());
      LatestReadyVersionSelector.model(repository, request.getModelName());
      answerWhenDone(
          repositoryControl.unload(request.getModelName(), caller.get()),
          io.modelgate.proto.inference.RepositoryModelUnloadResponse.getDefaultInstance(),
          observer);
    } catch (RuntimeException e) {
      observer.onError(ErrorStatus.of(e).asRuntimeException());
    }
  }

  /** modelgate serves one repository; a name other than empty is not it. */
  private static void checkRepositoryName(String name) {
    if (!name.isEmpty()) {
      throw InferenceException.notFound(
          "repository " + InferenceException.quote(name) + " (expected: empty; modelgate serves one repository)");
    }
  }

  private static <T> void answerWhenDone(
      java.util.concurrent.CompletableFuture<Void> done, T response, StreamObserver<T> observer) {
    done.whenComplete(
        (ignored, failure) -> {
          if (failure == null) {
            observer.onNext(response);
            observer.onCompleted();
          } else {
            Throwable cause = failure instanceof java.util.concurrent.CompletionException && failure.getCause() != null
                ? failure.getCause()
                : failure;
            observer.onError(ErrorStatus.of(cause).asRuntimeException());
          }
        });
  }

  /** ModelInfer, as {@link #definition} binds it. */
  private void infer(ModelInferRequest request, StreamObserver<EncodedResponse> observer) {
    long arrival = System.nanoTime();
    ServerCallStreamObserver<EncodedResponse> call = (ServerCallStreamObserver<EncodedResponse>) observer;
    // With a handler set, writing to a call the client cancelled is a no-op instead of an error.
    call.setOnCancelHandler(IGNORE_CANCEL);
    UnaryAnswer answer = null;
    try {
      CallerAuth.Caller tenant = CallerAuth.current();
      Target target = target(request, tenant);
      answer = new UnaryAnswer(call, target.version(), request.getId(), target.stats(), arrival, clock, requestMemory);
      call.setOnCancelHandler(answer);
      call.setOnCloseHandler(answer);
      enqueue(request, tenant, target, answer, arrival, call::isCancelled, Context.current().getDeadline());
    } catch (RuntimeException e) {
      call.onError(ErrorStatus.exception(e, refused(answer, e, request, arrival, UnaryAnswer.METHOD)));
    }
  }

  /** A request's version, chosen by its route, with what serving it needs; and its shadow, if any. */
  private record Target(ModelVersion version, LoadedVersion loaded, VersionStats stats, ModelVersion shadow) {}

  /**
   * The first half of the one admission path of unary and streaming inference: checks that the
   * message parsed and that the caller may use the model, then routes it (once).
   *
   * @throws RuntimeException the refusal, before any answer exists
   */
  private Target target(ModelInferRequest request, CallerAuth.Caller tenant) {
    refuseUnparsed(request);
    CallerAuth.requireModel(tenant, request.getModelName());
    Route route = router.route(request.getModelName());
    ModelVersion version = route.select(request);
    LoadedVersion loaded = version.serving();
    return new Target(version, loaded, statsOf(loaded), route.shadow());
  }

  /**
   * The second half of the admission path: draws the request for the payload log and drift,
   * counts it for its tenant, admits it under the tenant's quota and fair share and the server's
   * request memory, decodes it and
   * publishes it to the version's scheduler in the tenant's lane, and sends the shadow copy.
   *
   * @throws RuntimeException the refusal; the caller answers it after {@link #refused}
   */
  private void enqueue(
      ModelInferRequest request,
      CallerAuth.Caller tenant,
      Target target,
      RecordedAnswer answer,
      long arrival,
      BooleanSupplier cancelled,
      Deadline deadline) {
    io.modelgate.gateway.tracing.Tracing.Traced traced = tracing.current();
    if (traced != null) {
      answer.trace(tracing, traced);
    }
    answer.payload(payloadLog, payloadLog.sample(target.loaded(), request, caller, tenant.tenant()));
    answer.drift(drift, target.version(), target.loaded());
    answer.usage(usage, tenant.tenant(), target.version(), request.getSerializedSize(), request.getId());
    answer.admit(quotas, fairShare, tenant, target.version(), target.loaded(), request);
    answer.hold(requestMemory, request.getSerializedSize(), target.loaded());
    answer.deadline = deadline;
    answer.classification = Classification.requested(request, target.loaded().signature());
    answer.shadow = ShadowComparison.of(target.shadow(), target.version(), clock);
    // Without a callers file every request waits in the one shared lane.
    String lane = tenant.entry() == null ? null : tenant.tenant();
    submit(request, target.version(), target.loaded(), arrival, cancelled, deadline, lane, answer.weight(), answer);
    if (answer.shadow != null) {
      startShadow(request, target.shadow(), answer.shadow);
    }
  }

  /**
   * Records a refused request — on its answer's version when it got that far, else as refused
   * before routing — and returns the status to answer it with.
   */
  private Status refused(RecordedAnswer answer, RuntimeException e, ModelInferRequest request, long arrival, String method) {
    Status status = ErrorStatus.of(e);
    if (answer != null) {
      answer.refusedFor(e);
      answer.answered(status.getCode(), null);
      answer.logPayload(status);
    } else {
      stats.recordRejected(status.getCode());
      io.modelgate.gateway.tracing.Tracing.Traced traced = tracing.current();
      if (traced != null) {
        tracing.record(traced, method, System.nanoTime() - arrival, request.getModelName(), null, null, request.getId(),
            status.getCode(), 0, 0, 0, -1);
      }
    }
    return status;
  }

  static VersionStats statsOf(LoadedVersion loaded) {
    // The server checked at start that the repository records to its statistics.
    return loaded == null ? null : loaded.recorder(VersionStats.class);
  }

  /**
   * Decodes against the version's signature and publishes in {@code lane} to {@code loaded}, the
   * load routing took; or, where that load is refused {@code UNAVAILABLE} because the version was
   * loaded again meanwhile ({@link io.modelgate.runtime.repository.ModelRepository#reloadVersion}:
   * the old load drains), to the version's current load, once. Throws on refusal. Package-private
   * for its test.
   */
  static void submit(
      ModelInferRequest request,
      ModelVersion version,
      LoadedVersion loaded,
      long arrival,
      BooleanSupplier cancelled,
      Deadline deadline,
      String lane,
      int weight,
      RecordedAnswer callback) {
    for (LoadedVersion target = loaded; ; ) {
      try {
        // Overload is refused before the request's tensors are decoded and copied.
        target.scheduler().refuseIfFull();
        DecodedRequest decoded = RequestDecoder.decode(request, target.signature());
        callback.decoded(decoded);
        long deadlineNanos =
            deadline == null ? Long.MAX_VALUE : System.nanoTime() + deadline.timeRemaining(TimeUnit.NANOSECONDS);
        target.scheduler().submit(InferenceRequest.inLane(lane, weight, decoded, arrival, deadlineNanos, cancelled, callback));
        return;
      } catch (InferenceException e) {
        LoadedVersion current = version.loadedOrNull();
        if (target != loaded || e.code() != io.modelgate.runtime.error.ErrorCode.UNAVAILABLE || current == null
            || current == loaded) {
          throw e;
        }
        target = current;
      }
    }
  }

  /**
   * Sends a copy of {@code request} to {@code shadow}. Whatever happens to it — refusal, failure,
   * slowness — stays with the shadow: it is recorded on the shadow version and never reaches the
   * caller, whose answer does not wait for it.
   */
  private void startShadow(ModelInferRequest request, ModelVersion shadow, ShadowComparison comparison) {
    long arrival = System.nanoTime();
    LoadedVersion loaded = shadow.loadedOrNull();
    ShadowAnswer answer = new ShadowAnswer(comparison, statsOf(loaded), arrival, clock);
    try {
      if (loaded == null) {
        throw InferenceException.unavailable(shadow.label() + " is " + shadow.state());
      }
      // The copy holds the request's bytes as long as the primary does, and may outlive it.
      answer.hold(requestMemory, request.getSerializedSize(), loaded);
      // The decoder reads only the inputs, so the request's model_version does not matter here.
      DecodedRequest decoded = RequestDecoder.decode(request, loaded.signature());
      loaded.scheduler().submit(InferenceRequest.of(decoded, arrival, null, answer));
    } catch (RuntimeException e) {
      answer.answered(ErrorStatus.of(e).getCode(), null);
      comparison.shadowFailed();
    }
  }

  /**
   * ModelStreamInfer, as {@link #definition} binds it: answers are {@link EncodedResponse}s
   * (successes) or {@link ModelStreamInferResponse}s (in-band errors).
   */
  private StreamObserver<ModelInferRequest> streamInfer(StreamObserver<Object> observer) {
    ServerCallStreamObserver<Object> call = (ServerCallStreamObserver<Object>) observer;
    call.setOnCancelHandler(IGNORE_CANCEL);
    // Requests are read only while the client reads answers (Stream#readNext): otherwise answers
    // to a client that sends without reading would pile up in memory without bound.
    call.disableAutoRequest();
    Stream stream = new Stream(call, StreamErrorMode.abortOnError(), Context.current());
    call.setOnReadyHandler(stream::onReady);
    openStreams.add(stream);
    call.request(1);
    return stream;
  }

  /**
   * Ends every open ModelStreamInfer call with UNAVAILABLE and {@code why}, each once every
   * request it received has been answered (at once when none is pending). For shutdown, after the
   * versions have drained: the streams end cleanly instead of being reset with answers in flight.
   */
  public void endStreams(String why) {
    for (Stream stream : openStreams) {
      stream.end(why);
    }
  }

  /**
   * One ModelStreamInfer call: one response per request, in completion order. A failed request is
   * answered in-band (error_message set, infer_response carrying its id) and the stream goes on,
   * unless the client asked with {@code triton_grpc_error: true} that an error end the stream.
   *
   * <p>Requests arrive on the event loop; answers come from executor threads, so every write to
   * the call happens under this object's lock. The stream completes once the client has
   * half-closed and every request it sent has been answered.
   *
   * <p>Flow control: the next request is read only while the transport takes answers without
   * buffering them ({@code isReady}); when it does not (a client that sends without reading), the
   * stream stops reading until it does ({@link #onReady}), so the client's sends wait in its own
   * HTTP/2 window instead of answers piling up here. Accepted requests are bounded by the versions'
   * queues as for unary calls.
   */
  final class Stream implements StreamObserver<ModelInferRequest> {
    private final ServerCallStreamObserver<Object> call;
    private final boolean abortOnError;
    private final Context context;
    private int pending;
    private boolean halfClosed;
    private boolean closed;
    /** Set by {@link #end}: close with this status once nothing is pending. */
    private Status ending;
    /**
     * Whether reading stopped because the transport was not ready for answers; the transport's
     * thread only (requests and readiness arrive there).
     */
    private boolean readingPaused;

    Stream(
        ServerCallStreamObserver<Object> call,
        boolean abortOnError,
        Context context) {
      this.call = call;
      this.abortOnError = abortOnError;
      this.context = context;
    }

    @Override
    public void onNext(ModelInferRequest request) {
      long arrival = System.nanoTime();
      synchronized (this) {
        if (closed) {
          return;
        }
        pending++;
      }
      StreamAnswer answer = null;
      try {
        CallerAuth.Caller tenant = CallerAuth.CALLER_OF.apply(context);
        Target target = target(request, tenant);
        answer = new StreamAnswer(this, request.getId(), request.getModelName(), target.version(), target.stats(),
            arrival, clock);
        enqueue(request, tenant, target, answer, arrival, call::isCancelled, context.getDeadline());
      } catch (RuntimeException e) {
        Status status = refused(answer, e, request, arrival, StreamAnswer.METHOD);
        fail(request.getId(), request.getModelName(), answer == null ? null : answer.version, e, status);
      }
      readNext();
    }

    /** Reads the next request if the transport takes answers now, else once it does. Transport thread. */
    private void readNext() {
      if (call.isReady()) {
        call.request(1);
      } else {
        readingPaused = true;
      }
    }

    /** The transport takes answers again: read on if reading stopped for it. Transport thread. */
    void onReady() {
      if (readingPaused && call.isReady()) {
        readingPaused = false;
        call.request(1);
      }
    }

    /** Writes a successful answer and returns it. */
    EncodedResponse succeed(String id, ModelVersion version, io.modelgate.runtime.tensor.OutputTensor[] outputs) {
      EncodedResponse answer = EncodedResponse.streamed(version.model(), version.numberText(), id, outputs);
      write(answer);
      return answer;
    }

    /**
     * Answers one request with {@code status}, made of {@code failure}: in-band, with the code in
     * {@link #ERROR_CODE_PARAMETER} and any retry hint in {@link #RETRY_AFTER_MS_PARAMETER}; or,
     * when the client asked that errors end the stream, by ending it with the status and the same
     * trailers a unary call's refusal has.
     */
    void fail(String id, String modelName, ModelVersion version, Throwable failure, Status status) {
      if (abortOnError) {
        synchronized (this) {
          pending--;
          if (closed) {
            return;
          }
          close();
          call.onError(ErrorStatus.exception(failure, status));
        }
        return;
      }
      ModelInferResponse.Builder response =
          ModelInferResponse.newBuilder()
              .setModelName(modelName)
              .setId(id)
              .putParameters(
                  ERROR_CODE_PARAMETER,
                  InferParameter.newBuilder().setStringParam(status.getCode().name()).build());
      java.time.Duration retry = ErrorStatus.retryAfter(failure);
      if (retry != null) {
        response.putParameters(
            RETRY_AFTER_MS_PARAMETER, InferParameter.newBuilder().setInt64Param(ErrorStatus.millis(retry)).build());
      }
      if (version != null) {
        response.setModelVersion(version.numberText());
      }
      String message = status.getDescription() == null ? status.getCode().name() : status.getDescription();
      write(
          ModelStreamInferResponse.newBuilder()
              .setErrorMessage(message)
              .setInferResponse(response)
              .build());
    }

    /** Writes an {@link EncodedResponse} or a {@link ModelStreamInferResponse}. */
    private synchronized void write(Object response) {
      pending--;
      if (closed || call.isCancelled()) {
        return;
      }
      call.onNext(response);
      finishIfDone();
    }

    @Override
    public synchronized void onError(Throwable t) {
      // The client cancelled or the transport failed: nothing more can be written.
      close();
    }

    @Override
    public synchronized void onCompleted() {
      halfClosed = true;
      finishIfDone();
    }

    synchronized void end(String why) {
      ending =
          Status.UNAVAILABLE.withDescription(
              why + "; every request received on this stream was answered");
      finishIfDone();
    }

    private void finishIfDone() {
      if (pending != 0 || closed) {
        return;
      }
      if (halfClosed) {
        close();
        call.onCompleted();
      } else if (ending != null) {
        close();
        call.onError(ending.asRuntimeException());
      }
    }

    private void close() {
      closed = true;
      openStreams.remove(this);
    }
  }
}

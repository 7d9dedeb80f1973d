package io.modelgate.gateway.tracing;

import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanBuilder;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.opentelemetry.exporter.otlp.http.trace.OtlpHttpSpanExporter;
import io.opentelemetry.exporter.otlp.trace.OtlpGrpcSpanExporter;
import io.opentelemetry.sdk.common.CompletableResultCode;
import io.opentelemetry.sdk.resources.Resource;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.BatchSpanProcessor;
import io.opentelemetry.sdk.trace.export.SpanExporter;
import io.opentelemetry.sdk.trace.samplers.Sampler;
import java.io.IOException;
import java.time.Duration;
import java.util.Collection;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Distributed tracing of inference calls ({@code serve --trace-endpoint}): a call that arrives in
 * a sampled W3C trace ({@code traceparent} header) — or, at {@link TraceSettings#sampleRate}, a
 * request that arrives in none — is recorded as an OpenTelemetry server span, a child of the caller's span,
 * named {@code inference.GRPCInferenceService/ModelInfer} (or {@code ModelStreamInfer}, one span
 * per message), from the call's arrival to its answer, with the model and version that served it,
 * the tenant, the gRPC status, the rows and the batch it ran in. Spans are sent in batches over
 * OTLP/HTTP (the JDK's HTTP client) or OTLP/gRPC ({@link GrpcExportSender}, grpc-java) by the
 * OpenTelemetry SDK's exporter, on its own thread.
 *
 * <p>Off the request path for calls not traced: the interceptor reads the {@code traceparent}
 * header (a look-up in the call's headers) and attaches nothing, and a request in no trace draws a
 * random number where the rate is above 0; a call in its caller's trace carries one small object,
 * and a traced request's span is built when it is answered. At most {@value #MOST_WAITING} spans wait to
 * be sent: past that, spans are dropped (counted) rather than built, so a collector that is slow
 * or gone costs neither memory nor time beyond that.
 *
 * <p>Threading: the interceptor runs on the transport's threads; {@link #record} on whichever
 * thread answers a call (an executor's, or an event loop's for a refusal); the counters may be
 * read on any thread. {@link #close} sends what is waiting, once every call has been answered.
 */
public final class Tracing implements AutoCloseable {
  /** The W3C Trace Context headers. */
  public static final Metadata.Key<String> TRACEPARENT = Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);
  public static final Metadata.Key<String> TRACESTATE = Metadata.Key.of("tracestate", Metadata.ASCII_STRING_MARSHALLER);
  /** The service name spans are sent under. */
  public static final String SERVICE_NAME = "modelgate";
  /** The longest a finished span waits before it is sent with others (or sooner, at 512). */
  static final Duration EXPORT_DELAY = Duration.ofSeconds(1);
  /** The longest one export waits for the collector (each try; the SDK's default retry policy tries up to 5 times). */
  static final Duration EXPORT_TIMEOUT = Duration.ofSeconds(10);
  /** The most spans that wait to be sent; more are dropped. */
  public static final int MOST_WAITING = 2048;
  /** The gRPC service whose calls are traced, as spans name it. */
  static final String RPC_SERVICE = "inference.GRPCInferenceService";

  private static final io.grpc.Context.Key<Traced> TRACED = io.grpc.Context.key("modelgate-trace");
  private static final AttributeKey<String> RPC_SYSTEM = AttributeKey.stringKey("rpc.system");
  private static final AttributeKey<String> RPC_SERVICE_KEY = AttributeKey.stringKey("rpc.service");
  private static final AttributeKey<String> RPC_METHOD = AttributeKey.stringKey("rpc.method");
  private static final AttributeKey<Long> RPC_STATUS = AttributeKey.longKey("rpc.grpc.status_code");
  static final AttributeKey<String> MODEL = AttributeKey.stringKey("modelgate.model");
  static final AttributeKey<String> VERSION = AttributeKey.stringKey("modelgate.version");
  static final AttributeKey<String> TENANT = AttributeKey.stringKey("modelgate.tenant");
  static final AttributeKey<String> REQUEST_ID = AttributeKey.stringKey("modelgate.request_id");
  static final AttributeKey<Long> ROWS = AttributeKey.longKey("modelgate.rows");
  static final AttributeKey<Long> BATCH_ROWS = AttributeKey.longKey("modelgate.batch_rows");
  static final AttributeKey<Double> BATCH_COMPUTE_MS = AttributeKey.doubleKey("modelgate.batch_compute_ms");
  static final AttributeKey<Double> WAITED_MS = AttributeKey.doubleKey("modelgate.waited_ms");
  /** The child span of a traced call's run of the model. */
  static final String RUN_SPAN = "onnxruntime.run";

  /** Reads the two W3C headers from a call's headers. */
  private static final TextMapGetter<Metadata> HEADERS = new TextMapGetter<>() {
    @Override
    public String get(Metadata carrier, String key) {
      if (carrier == null) {
        return null;
      }
      return switch (key) {
        case "traceparent" -> carrier.get(TRACEPARENT);
        case "tracestate" -> carrier.get(TRACESTATE);
        default -> null;
      };
    }
  };

  /**
   * A call to be recorded as a span: the context its span is a child of (the caller's span, or
   * none for a trace the gateway starts). Immutable.
   */
  public static final class Traced {
    private final Context parent;

    Traced(Context parent) {
      this.parent = parent;
    }
  }

  private final TraceSettings settings;
  private final SdkTracerProvider provider;
  private final Tracer tracer;
  private final io.opentelemetry.sdk.common.Clock clock = io.opentelemetry.sdk.common.Clock.getDefault();
  private final AtomicLong recorded = new AtomicLong();
  private final AtomicLong dropped = new AtomicLong();
  private final AtomicLong exported = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  /**
   * The share of requests in no trace that start one: {@link TraceSettings#sampleRate} unless set
   * for a while ({@link #sampleRate(double)}); read per request.
   */
  private volatile double sampleRate;

  /** The exporter's TLS files, followed; null where the JVM's defaults serve (or no call is traced). */
  private final io.modelgate.gateway.tls.ReloadingSslContext tls;

  private Tracing(TraceSettings settings, String replica, String version, java.time.Clock clock) throws IOException {
    this.settings = settings;
    this.sampleRate = settings.sampleRate();
    if (!settings.on()) {
      provider = null;
      tracer = null;
      tls = null;
      return;
    }
    tls = settings.tlsFiles()
        ? io.modelgate.gateway.tls.ReloadingSslContext.openClient("trace", settings.ca(), settings.cert(), settings.key(), clock)
        : null;
    SpanExporter otlp;
    try {
      if (settings.protocol() == TraceSettings.Protocol.GRPC) {
        var exporter = OtlpGrpcSpanExporter.builder()
            .setComponentLoader(ExportSenders.loader(tls)) // grpc-java, with the files' TLS followed
            .setEndpoint(settings.endpoint().toString())
            .setCompression(settings.gzip() ? "gzip" : "none")
            .setTimeout(EXPORT_TIMEOUT);
        settings.headers().forEach(exporter::addHeader);
        otlp = exporter.build();
      } else {
        var exporter = OtlpHttpSpanExporter.builder()
            .setComponentLoader(ExportSenders.loader(tls)) // the JDK's HTTP client, made again when the files are renewed
            .setEndpoint(settings.endpoint().toString())
            .setCompression(settings.gzip() ? "gzip" : "none")
            .setTimeout(EXPORT_TIMEOUT);
        settings.headers().forEach(exporter::addHeader);
        otlp = exporter.build();
      }
    } catch (RuntimeException e) {
      if (tls != null) {
        tls.close();
      }
      throw new IOException("cannot make the trace exporter: " + e.getMessage(), e);
    }
    provider = SdkTracerProvider.builder()
        .setResource(Resource.getDefault().merge(Resource.create(io.opentelemetry.api.common.Attributes.of(
            AttributeKey.stringKey("service.name"), SERVICE_NAME,
            AttributeKey.stringKey("service.instance.id"), replica,
            AttributeKey.stringKey("service.version"), version))))
        .setSampler(Sampler.alwaysOn()) // the interceptor chose the calls: each one traced is recorded
        .addSpanProcessor(BatchSpanProcessor.builder(new Counted(otlp))
            .setScheduleDelay(EXPORT_DELAY)
            // Twice what this class lets wait: the processor itself never drops.
            .setMaxQueueSize(2 * MOST_WAITING)
            .setMaxExportBatchSize(512)
            .build())
        .build();
    tracer = provider.get("io.modelgate.gateway", version);
    // Said at the start: the endpoint may have come from OpenTelemetry's environment variables, not a flag.
    org.slf4j.LoggerFactory.getLogger(Tracing.class).info("tracing calls: spans sent over OTLP/{} to {}{}{}, calls in no"
        + " trace sampled at {}", settings.protocol() == TraceSettings.Protocol.GRPC ? "gRPC" : "HTTP", settings.endpoint(),
        settings.gzip() ? ", gzip" : "", tls != null ? ", TLS with the files given" : "", settings.sampleRate());
  }

  /**
   * Tracing as {@code settings} say; off (no thread, nothing recorded) where they name no
   * endpoint.
   *
   * @param replica this replica's name, sent as the spans' {@code service.instance.id}
   * @param version the server's version, sent as {@code service.version}
   * @param clock checks the TLS files' certificates are in date
   * @throws IOException where a TLS file of {@code settings} cannot be read or used, saying which and why
   */
  public static Tracing start(TraceSettings settings, String replica, String version, java.time.Clock clock)
      throws IOException {
    return new Tracing(settings, replica, version, clock);
  }

  /** No call traced. */
  public static Tracing off() {
    try {
      return new Tracing(TraceSettings.OFF, "", "", java.time.Clock.systemUTC());
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e); // no file is read without an endpoint
    }
  }

  /** The share of requests in no trace that start one, in force now. Any thread. */
  public double sampleRate() {
    return sampleRate;
  }

  /** The share the server started with ({@code --trace-sample-rate}). */
  public double configuredSampleRate() {
    return settings.sampleRate();
  }

  /**
   * Puts {@code rate} in force for the requests that arrive from now on: the admin API's, which
   * sets it for a while ({@link io.modelgate.gateway.diagnostics.Diagnostics}, its one caller).
   *
   * @throws IllegalStateException where no call is traced (no endpoint)
   * @throws IllegalArgumentException for a rate outside 0 to 1
   */
  public void sampleRate(double rate) {
    if (!on()) {
      throw new IllegalStateException("no trace endpoint");
    }
    if (!(rate >= 0 && rate <= 1)) {
      throw new IllegalArgumentException("trace sample rate: " + rate + " (expected: 0 to 1)");
    }
    sampleRate = rate;
  }

  /** Whether calls are traced. */
  public boolean on() {
    return provider != null;
  }

  /**
   * The interceptor that decides, as each call arrives, whether it is traced, and marks it so
   * (installed on the inference service only where {@link #on}).
   */
  public ServerInterceptor interceptor() {
    return new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
          ServerCallHandler<Q, R> next) {
        Traced traced = decide(headers);
        if (traced == null) {
          return next.startCall(call, headers); // nothing of the caller's: each request drawn at the rate
        }
        return Contexts.interceptCall(io.grpc.Context.current().withValue(TRACED, traced), call, headers, next);
      }
    };
  }

  /**
   * What a call's {@code headers} decide for all its requests: a valid {@code traceparent} that is
   * sampled, traced as its child; one not sampled, {@link #UNSAMPLED} (never traced; null where
   * the rate is 0, where no request is drawn anyway). Null: no trace of the caller's (none, or one
   * that does not parse, which W3C Trace Context says to treat as none): each request is drawn at
   * the rate ({@link #current}).
   */
  Traced decide(Metadata headers) {
    if (headers.get(TRACEPARENT) != null) {
      Context parent = W3CTraceContextPropagator.getInstance().extract(Context.root(), headers, HEADERS);
      SpanContext context = Span.fromContext(parent).getSpanContext();
      if (context.isValid()) {
        return context.isSampled() ? new Traced(parent) : sampleRate > 0 ? UNSAMPLED : null;
      }
    }
    return null;
  }

  /** A call its caller's trace says not to sample. */
  private static final Traced UNSAMPLED = new Traced(Context.root());
  /** A request traced in a trace of its own. */
  private static final Traced ROOT = new Traced(Context.root());

  /**
   * The trace the current request is recorded in, or null where it is not traced: its call's
   * caller's, as {@link #decide} found it; or, in none, a draw at the sample rate, a trace of its
   * own (each request: each message of a stream is drawn, not the stream once). On the call's
   * thread, while its context is current; once per request.
   */
  public Traced current() {
    if (provider == null) {
      return null;
    }
    Traced traced = TRACED.get();
    if (traced != null) {
      return traced == UNSAMPLED ? null : traced;
    }
    double rate = sampleRate;
    return rate > 0 && (rate >= 1 || ThreadLocalRandom.current().nextDouble() < rate) ? ROOT : null;
  }

  /**
   * Records a traced call's span: from its arrival to now, {@code latencyNanos} later; and, where
   * the model ran for it ({@code computeNanos} over 0 and {@code computeOffsetNanos} known), a
   * child span {@value #RUN_SPAN} over that run: from {@code computeOffsetNanos} after the call's
   * arrival, {@code computeNanos} long. {@code model}, {@code version}, {@code tenant}, {@code
   * requestId} may be null (a call refused before it was routed), {@code batchRows} and {@code
   * computeNanos} 0 (none ran). Any thread; dropped when {@value #MOST_WAITING} spans wait.
   * Without a caller's span, the span is the root of a trace of its own (each message of a stream
   * too).
   *
   * @param method {@code ModelInfer} or {@code ModelStreamInfer}
   * @param computeOffsetNanos from the call's arrival to the start of the run of the model that
   *     answered it (its wait in the version's queue and batch), ns; negative: not known
   * @return the span's trace id (32 hex digits), or null where it was dropped
   */
  public String record(Traced traced, String method, long latencyNanos, String model, String version, String tenant,
      String requestId, Status.Code code, int rows, int batchRows, long computeNanos, long computeOffsetNanos) {
    boolean ran = computeNanos > 0 && computeOffsetNanos >= 0;
    int spans = ran ? 2 : 1;
    if (recorded.get() - exported.get() - failed.get() >= MOST_WAITING) {
      dropped.addAndGet(spans);
      return null;
    }
    recorded.addAndGet(spans);
    long end = clock.now();
    long start = end - latencyNanos;
    SpanBuilder span = tracer.spanBuilder(spanName(method))
        .setParent(traced.parent)
        .setSpanKind(SpanKind.SERVER)
        .setStartTimestamp(start, TimeUnit.NANOSECONDS)
        .setAttribute(RPC_SYSTEM, "grpc")
        .setAttribute(RPC_SERVICE_KEY, RPC_SERVICE)
        .setAttribute(RPC_METHOD, method)
        .setAttribute(RPC_STATUS, (long) code.value())
        .setAttribute(ROWS, (long) rows);
    if (model != null) {
      span.setAttribute(MODEL, model);
    }
    if (version != null) {
      span.setAttribute(VERSION, version);
    }
    if (tenant != null) {
      span.setAttribute(TENANT, tenant);
    }
    if (requestId != null && !requestId.isEmpty()) {
      span.setAttribute(REQUEST_ID, requestId);
    }
    if (batchRows > 0) {
      span.setAttribute(BATCH_ROWS, (long) batchRows);
      span.setAttribute(BATCH_COMPUTE_MS, computeNanos / 1e6);
    }
    if (ran) {
      span.setAttribute(WAITED_MS, computeOffsetNanos / 1e6);
    }
    Span started = span.startSpan();
    if (ran) {
      long runStart = start + computeOffsetNanos;
      tracer.spanBuilder(RUN_SPAN)
          .setParent(started.storeInContext(Context.root()))
          .setSpanKind(SpanKind.INTERNAL)
          .setStartTimestamp(runStart, TimeUnit.NANOSECONDS)
          .setAttribute(BATCH_ROWS, (long) batchRows)
          .startSpan()
          .end(Math.min(end, runStart + computeNanos), TimeUnit.NANOSECONDS);
    }
    if (code != Status.Code.OK) {
      started.setStatus(StatusCode.ERROR, code.name());
    }
    started.end(end, TimeUnit.NANOSECONDS);
    return started.getSpanContext().getTraceId();
  }

  private static final String UNARY_SPAN = RPC_SERVICE + "/ModelInfer";
  private static final String STREAM_SPAN = RPC_SERVICE + "/ModelStreamInfer";

  /** The span's name for {@code method}: the RPC's full name, made once. */
  private static String spanName(String method) {
    return switch (method) {
      case "ModelInfer" -> UNARY_SPAN;
      case "ModelStreamInfer" -> STREAM_SPAN;
      default -> RPC_SERVICE + "/" + method;
    };
  }

  /** Spans recorded, dropped (too many waiting), sent, or lost in a failed send, since the start. Any thread. */
  public long spans(String result) {
    return switch (result) {
      case "recorded" -> recorded.get();
      case "dropped" -> dropped.get();
      case "exported" -> exported.get();
      case "failed" -> failed.get();
      default -> throw new IllegalArgumentException(result);
    };
  }

  /** Registers the spans' counters with {@code registry} (where {@link #on}); returns this. */
  public Tracing bindTo(io.micrometer.core.instrument.MeterRegistry registry) {
    if (!on()) {
      return this;
    }
    if (tls != null) {
      tls.bindTo(registry);
    }
    io.micrometer.core.instrument.Gauge.builder("modelgate.trace.sample.rate", this, Tracing::sampleRate)
        .description("The share of requests arriving in no trace that start one, in force now (--trace-sample-rate,"
            + " or the admin API's for a while)")
        .register(registry);
    for (String result : new String[] {"exported", "failed", "dropped"}) {
      io.micrometer.core.instrument.FunctionCounter.builder("modelgate.trace.spans", this, t -> t.spans(result))
          .description("Spans of traced calls: sent to the trace endpoint (exported), lost because a send failed"
              + " (failed: the endpoint unreachable or refusing), or not recorded because "
              + MOST_WAITING + " waited to be sent (dropped)")
          .tag("result", result)
          .register(registry);
    }
    return this;
  }

  /** Sends what waits (for up to 10 s) and stops the exporter's thread. */
  @Override
  public void close() {
    if (provider != null) {
      provider.shutdown().join(10, TimeUnit.SECONDS);
    }
    if (tls != null) {
      tls.close();
    }
  }

  /**
   * Sends every span recorded before this call; true once each is sent (or its send failed),
   * false after {@code timeout}. Tests and benchmarks; blocks the calling thread.
   *
   * <p>Counts rather than trusting one {@code forceFlush}: the SDK's processor marks a flush done
   * before it clears it, so a flush asked for just as another ends can be answered by the one that
   * ended, before the spans recorded since were sent. Asks again until the counters show them.
   */
  public boolean flush(Duration timeout) {
    if (provider == null) {
      return true;
    }
    long before = recorded.get();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (exported.get() + failed.get() < before) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        return false;
      }
      if (provider.forceFlush().join(left, TimeUnit.NANOSECONDS).isDone()
          && exported.get() + failed.get() < before) {
        // A flush answered by the one before it, or a send still out past its batch: look again shortly.
        java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1));
      }
    }
    return true;
  }

  /** The exporter, counting what it sent and what it lost. */
  private final class Counted implements SpanExporter {
    private final SpanExporter exporter;

    Counted(SpanExporter exporter) {
      this.exporter = exporter;
    }

    @Override
    public CompletableResultCode export(Collection<SpanData> spans) {
      int count = spans.size();
      CompletableResultCode result = exporter.export(spans);
      result.whenComplete(() -> (result.isSuccess() ? exported : failed).addAndGet(count));
      return result;
    }

    @Override
    public CompletableResultCode flush() {
      return exporter.flush();
    }

    @Override
    public CompletableResultCode shutdown() {
      return exporter.shutdown();
    }
  }
}

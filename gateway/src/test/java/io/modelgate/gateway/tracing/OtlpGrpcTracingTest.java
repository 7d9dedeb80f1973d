package io.modelgate.gateway.tracing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.ServerCalls;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.gateway.testing.TestCertificates;
import io.netty.handler.ssl.ClientAuth;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;
import io.opentelemetry.proto.trace.v1.ResourceSpans;
import io.opentelemetry.proto.trace.v1.Span;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Inference calls traced over OTLP/gRPC: a gateway whose spans the OpenTelemetry SDK's exporter
 * sends through {@link GrpcExportSender} (grpc-java) to a receiver that serves OTLP's {@code
 * TraceService/Export} as a collector's port 4317 does, in plaintext and over mutual TLS.
 */
class OtlpGrpcTracingTest {
  private static final String EXPORT = "opentelemetry.proto.collector.trace.v1.TraceService/Export";
  private static final Metadata.Key<String> API_KEY = Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> ENCODING = Metadata.Key.of("grpc-encoding", Metadata.ASCII_STRING_MARSHALLER);

  @TempDir Path root;
  final List<ResourceSpans> received = new CopyOnWriteArrayList<>();
  /** Per export call (a retry is another): its x-api-key and grpc-encoding headers, and the client certificate's subject. */
  final List<String> calls = new CopyOnWriteArrayList<>();
  /** What the next export calls are answered, in order; OK once empty. */
  final Queue<Status> answers = new ConcurrentLinkedQueue<>();
  Server collector;
  Gateway gateway;

  @BeforeEach
  void model() throws IOException {
    Gateway.write(root, "m", 1, Gateway.affine());
  }

  @AfterEach
  void stop() throws InterruptedException {
    if (gateway != null) {
      gateway.close();
    }
    if (collector != null) {
      collector.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  /** A collector's OTLP/gRPC receiver: decodes each export's spans and answers as {@link #answers} say. */
  private Server collector(NettyServerBuilder builder) throws IOException {
    MethodDescriptor<ExportTraceServiceRequest, ExportTraceServiceResponse> export =
        MethodDescriptor.<ExportTraceServiceRequest, ExportTraceServiceResponse>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY)
            .setFullMethodName(EXPORT)
            .setRequestMarshaller(ProtoUtils.marshaller(ExportTraceServiceRequest.getDefaultInstance()))
            .setResponseMarshaller(ProtoUtils.marshaller(ExportTraceServiceResponse.getDefaultInstance()))
            .build();
    ServerServiceDefinition service = ServerServiceDefinition.builder("opentelemetry.proto.collector.trace.v1.TraceService")
        .addMethod(export, ServerCalls.asyncUnaryCall((request, answer) -> {
          Status status = answers.poll();
          if (status != null && !status.isOk()) {
            answer.onError(status.asRuntimeException());
            return;
          }
          received.addAll(request.getResourceSpansList());
          answer.onNext(ExportTraceServiceResponse.getDefaultInstance());
          answer.onCompleted();
        }))
        .build();
    ServerInterceptor headers = new ServerInterceptor() {
      @Override
      public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata metadata,
          ServerCallHandler<Q, A> next) {
        String client = "none";
        javax.net.ssl.SSLSession tls = call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION);
        if (tls != null) {
          try {
            client = tls.getPeerPrincipal().getName();
          } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
            client = "unverified";
          }
        }
        calls.add(metadata.get(API_KEY) + " " + metadata.get(ENCODING) + " " + client);
        return next.startCall(call, metadata);
      }
    };
    return builder.addService(ServerInterceptors.intercept(service, headers)).build().start();
  }

  private Server plainCollector() throws IOException {
    return collector(NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)));
  }

  private URI plain() {
    return URI.create("http://127.0.0.1:" + collector.getPort());
  }

  private void open(TraceSettings settings) throws IOException {
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve(".state"), -1).withTraces(settings), Clock.systemUTC());
  }

  /** The calls' server spans received, once every span recorded has been sent (or its send failed). */
  private List<Span> spans() {
    assertThat(gateway.server.tracing().flush(Duration.ofSeconds(60))).isTrue();
    return received.stream().flatMap(r -> r.getScopeSpansList().stream()).flatMap(s -> s.getSpansList().stream())
        .filter(span -> span.getKind() == Span.SpanKind.SPAN_KIND_SERVER).toList();
  }

  private void tracedCall() {
    Metadata traceparent = new Metadata();
    traceparent.put(Tracing.TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(traceparent))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
  }

  @Test
  void spansAreSentOverGrpc_withTheExportHeaders() throws IOException {
    collector = plainCollector();
    open(TraceSettings.to(TraceSettings.Protocol.GRPC, plain(), 0).withHeaders(java.util.Map.of("x-api-key", "s3cret")));
    tracedCall();
    assertThat(spans()).singleElement().satisfies(span -> {
      assertThat(span.getName()).isEqualTo("inference.GRPCInferenceService/ModelInfer");
      assertThat(span.getAttributesList()).anySatisfy(pair -> {
        assertThat(pair.getKey()).isEqualTo("modelgate.model");
        assertThat(pair.getValue().getStringValue()).isEqualTo("m");
      });
    });
    assertThat(received).first().satisfies(resource -> assertThat(resource.getResource().getAttributesList())
        .anySatisfy(pair -> {
          assertThat(pair.getKey()).isEqualTo("service.name");
          assertThat(pair.getValue().getStringValue()).isEqualTo("modelgate");
        }));
    assertThat(calls).isNotEmpty().containsOnly("s3cret null none");
    assertThat(gateway.server.tracing().spans("exported")).isEqualTo(2); // the call's and its run's
    assertThat(gateway.server.tracing().spans("failed")).isZero();
  }

  @Test
  void aCollectorBrieflyUnavailable_getsTheSpansOnARetry_oneThatRefusesThem_isNotAskedAgain() throws IOException {
    collector = plainCollector();
    open(TraceSettings.to(TraceSettings.Protocol.GRPC, plain(), 0));
    answers.add(Status.UNAVAILABLE.withDescription("starting"));
    tracedCall();
    assertThat(spans()).hasSize(1);
    assertThat(calls).as("the first try and its retry").hasSize(2);
    assertThat(gateway.server.tracing().spans("failed")).isZero();

    // Not one of OTLP's retryable codes: the batch is lost at once, and counted.
    answers.add(Status.INVALID_ARGUMENT.withDescription("bad batch"));
    tracedCall();
    assertThat(spans()).hasSize(1);
    assertThat(calls).as("one try more").hasSize(3);
    assertThat(gateway.server.tracing().spans("failed")).isEqualTo(2);
  }

  @Test
  void aCollectorThatIsGone_losesTheSpans_counted_andCallsAreAnsweredAsEver() throws IOException {
    collector = plainCollector();
    URI gone = plain();
    collector.shutdownNow();
    open(TraceSettings.to(TraceSettings.Protocol.GRPC, gone, 0));
    tracedCall();
    assertThat(spans()).isEmpty();
    assertThat(gateway.server.tracing().spans("failed")).isEqualTo(2);
    assertThat(gateway.server.tracing().spans("exported")).isZero();
  }

  @Test
  void overMutualTls_theGatewaysCertificateIsPresented_andARenewedOneFromTheNextExport() throws Exception {
    TestCertificates pki = TestCertificates.create(Files.createDirectories(root.resolve(".pki")));
    Path[] bob = pki.client("bob", "CN=operator-bob", null);
    TestCertificates.ClientFiles live = pki.installClient(Files.createDirectories(root.resolve("trace-client")));
    collector = collector(NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .sslContext(GrpcSslContexts.forServer(pki.serverChain.toFile(), pki.serverKey.toFile())
            .trustManager(pki.caCert.toFile())
            .clientAuth(ClientAuth.REQUIRE) // a client without a certificate of this CA is turned away
            .build()));
    open(TraceSettings.to(TraceSettings.Protocol.GRPC, URI.create("https://localhost:" + collector.getPort()), 0)
        .withTls(live.ca(), live.chain(), live.key()));
    tracedCall();
    assertThat(spans()).hasSize(1);
    assertThat(calls).isNotEmpty().containsOnly("null null CN=operator-alice");

    // Renewed as a renewal tool does (another certificate and key in the same files): the channel's
    // connection was made with the old one, so the next export opens another.
    TestCertificates.renew(bob[0], live.chain());
    TestCertificates.renew(bob[1], live.key());
    io.modelgate.gateway.testing.Eventually.eventually("an export presents the renewed certificate", () -> {
      tracedCall();
      spans();
      return calls.get(calls.size() - 1).equals("null null CN=operator-bob");
    });
  }

  @Test
  void withGzip_eachExportIsSentCompressed() throws Exception {
    collector = plainCollector();
    open(TraceSettings.to(TraceSettings.Protocol.GRPC, plain(), 0).withGzip(true));
    tracedCall();
    assertThat(spans()).hasSize(1);
    assertThat(calls).isNotEmpty().containsOnly("null gzip none");
  }

  @Test
  void flagsNotGiven_areTakenFromOpenTelemetrysEnvironmentVariables_asItsSdksReadThem() {
    java.util.Map<String, String> none = java.util.Map.of();
    assertThat(TraceSettings.resolve(none, null, null, null, 0, null, null, null).on()).isFalse();
    // The base endpoint: /v1/traces added over HTTP, to its path; as it is over gRPC.
    assertThat(TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"), null, null,
        null, 0, null, null, null)).satisfies(settings -> {
          assertThat(settings.endpoint()).isEqualTo(URI.create("http://collector:4318/v1/traces"));
          assertThat(settings.protocol()).isEqualTo(TraceSettings.Protocol.HTTP);
          assertThat(settings.gzip()).isFalse();
        });
    assertThat(TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", "https://gw.example:443/otlp/"), null,
        null, null, 0, null, null, null).endpoint()).isEqualTo(URI.create("https://gw.example:443/otlp/v1/traces"));
    assertThat(TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip",
        "OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k"), null, null, null, 0, null, null, null)).satisfies(settings -> {
          assertThat(settings.endpoint()).isEqualTo(URI.create("http://collector:4317"));
          assertThat(settings.protocol()).isEqualTo(TraceSettings.Protocol.GRPC);
          assertThat(settings.gzip()).isTrue();
          assertThat(settings.headers()).containsExactly(java.util.Map.entry("x-api-key", "k"));
        });
    // The traces' own variable first, taken as it is; the flags over both.
    java.util.Map<String, String> both = java.util.Map.of("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/t",
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf",
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    assertThat(TraceSettings.resolve(both, null, null, null, 0, null, null, null).endpoint())
        .isEqualTo(URI.create("http://traces:4318/t"));
    assertThat(TraceSettings.resolve(both, URI.create("http://flag:4317"), "grpc", "none", 0, null, null, null))
        .satisfies(settings -> {
          assertThat(settings.endpoint()).isEqualTo(URI.create("http://flag:4317"));
          assertThat(settings.protocol()).isEqualTo(TraceSettings.Protocol.GRPC);
        });
    // OTEL_SDK_DISABLED: the environment turns nothing on; nor does a protocol with no endpoint refuse a start.
    assertThat(TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318",
        "OTEL_SDK_DISABLED", "true"), null, null, null, 0, null, null, null).on()).isFalse();
    assertThat(TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
        "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"), null, null, null, 0, null, null, null).on()).isFalse();
    // A value that is not one says where it came from.
    assertThatThrownBy(() -> TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), null,
        null, null, 0, null, null, null))
        .hasMessage("$OTEL_EXPORTER_OTLP_PROTOCOL: trace protocol: http/json (expected: http/protobuf or grpc)");
    assertThatThrownBy(() -> TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"), null,
        null, null, 0, null, null, null))
        .hasMessageStartingWith("$OTEL_EXPORTER_OTLP_ENDPOINT: trace endpoint: collector:4318 (expected: an"
            + " OTLP/HTTP address");
    assertThatThrownBy(() -> TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://collector:4317/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), null, null, null, 0, null, null, null))
        .hasMessageStartingWith("$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: trace endpoint: http://collector:4317/v1/traces");
    assertThatThrownBy(() -> TraceSettings.resolve(none, URI.create("ftp://collector"), null, null, 0, null, null, null))
        .hasMessageStartingWith("--trace-endpoint: trace endpoint: ftp://collector");
    assertThatThrownBy(() -> TraceSettings.resolve(none, null, "carrier-pigeon", null, 0, null, null, null))
        .hasMessage("--trace-protocol: trace protocol: carrier-pigeon (expected: http/protobuf or grpc)");
    assertThatThrownBy(() -> TraceSettings.resolve(java.util.Map.of("OTEL_EXPORTER_OTLP_HEADERS", "oops"), null, null,
        null, 0, null, null, null)).hasMessage("$OTEL_EXPORTER_OTLP_HEADERS: trace export headers: pair 1 of 1 is not"
            + " name=value");
  }

  @Test
  void aGrpcEndpointIsAnAddress_notAPath() {
    assertThatThrownBy(() -> TraceSettings.to(TraceSettings.Protocol.GRPC, URI.create("http://collector:4317/v1/traces"), 0))
        .hasMessageContaining("without a path: the path is gRPC's method");
    assertThat(TraceSettings.to(TraceSettings.Protocol.GRPC, URI.create("http://collector:4317"), 0).endpoint())
        .isEqualTo(URI.create("http://collector:4317"));
    assertThatThrownBy(() -> TraceSettings.Protocol.named("http/json"))
        .hasMessage("trace protocol: http/json (expected: http/protobuf or grpc)");
    assertThat(TraceSettings.Protocol.named("grpc")).isEqualTo(TraceSettings.Protocol.GRPC);
    assertThatThrownBy(() -> TraceSettings.to(TraceSettings.Protocol.GRPC, null, 0))
        .hasMessage("trace protocol grpc without a trace endpoint to send spans to");
    assertThat(GrpcExportSender.seconds(Duration.ofMillis(1500))).isEqualTo("1.5s");
    assertThat(GrpcExportSender.seconds(Duration.ofSeconds(5))).isEqualTo("5s");
    assertThat(TraceSettings.gzip("gzip")).isTrue();
    assertThat(TraceSettings.gzip("none")).isFalse();
    assertThatThrownBy(() -> TraceSettings.gzip("zstd")).hasMessage("trace compression: zstd (expected: none or gzip)");
    assertThatThrownBy(() -> TraceSettings.OFF.withGzip(true))
        .hasMessage("trace compression gzip without a trace endpoint to send spans to");
  }
}

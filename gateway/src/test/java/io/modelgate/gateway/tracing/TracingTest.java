package io.modelgate.gateway.tracing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.sun.net.httpserver.HttpServer;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsExchange;
import com.sun.net.httpserver.HttpsParameters;
import com.sun.net.httpserver.HttpsServer;
import io.grpc.util.CertificateUtils;
import io.modelgate.gateway.testing.TestCertificates;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.ModelStreamInferResponse;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;
import io.opentelemetry.proto.common.v1.KeyValue;
import io.opentelemetry.proto.trace.v1.ResourceSpans;
import io.opentelemetry.proto.trace.v1.ScopeSpans;
import io.opentelemetry.proto.trace.v1.Span;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Inference calls traced end to end: a gateway sending its spans over OTLP/HTTP, by the
 * OpenTelemetry SDK's own exporter, to a receiver that decodes them as a collector does (the OTLP
 * protobuf messages).
 */
class TracingTest {
  private static final String TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
  private static final String CALLER_SPAN = "00f067aa0ba902b7";

  @TempDir Path root;
  HttpServer collector;
  final List<ResourceSpans> received = new CopyOnWriteArrayList<>();
  /** Each export's {@code x-api-key} header (or "none"). */
  final List<String> apiKeys = new CopyOnWriteArrayList<>();
  /** Each export's {@code Content-Encoding} ("identity" without one). */
  final List<String> encodings = new CopyOnWriteArrayList<>();
  Gateway gateway;

  @BeforeEach
  void start() throws IOException {
    collector = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    collector.createContext(TraceSettings.TRACES_PATH, this::receive);
    collector.start();
    Gateway.write(root, "m", 1, Gateway.affine());
  }

  /** What a collector does with an export: decodes its spans, and answers that it took them. */
  private void receive(com.sun.net.httpserver.HttpExchange exchange) throws IOException {
    String encoding = exchange.getRequestHeaders().getFirst("Content-Encoding");
    encodings.add(encoding == null ? "identity" : encoding);
    byte[] body = "gzip".equals(encoding)
        ? new java.util.zip.GZIPInputStream(exchange.getRequestBody()).readAllBytes()
        : exchange.getRequestBody().readAllBytes();
    String key = exchange.getRequestHeaders().getFirst("x-api-key");
    apiKeys.add(key == null ? "none" : key);
    received.addAll(ExportTraceServiceRequest.parseFrom(body).getResourceSpansList());
    byte[] answer = ExportTraceServiceResponse.getDefaultInstance().toByteArray();
    exchange.getResponseHeaders().add("Content-Type", "application/x-protobuf");
    exchange.sendResponseHeaders(200, answer.length);
    exchange.getResponseBody().write(answer);
    exchange.close();
  }

  private void open(double sampleRate) throws IOException {
    open(sampleRate, java.util.Map.of());
  }

  private void open(double sampleRate, java.util.Map<String, String> headers) throws IOException {
    open(TraceSettings.to(URI.create("http://127.0.0.1:" + collector.getAddress().getPort()), sampleRate)
        .withHeaders(headers));
  }

  private void open(TraceSettings settings) throws IOException {
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve(".state"), -1).withTraces(settings), Clock.systemUTC());
  }

  @AfterEach
  void stop() {
    if (gateway != null) {
      gateway.close();
    }
    collector.stop(0);
  }

  private static Metadata traceparent(String value) {
    Metadata headers = new Metadata();
    headers.put(Tracing.TRACEPARENT, value);
    return headers;
  }

  /** The spans received so far, once every span recorded has been sent. */
  private List<Span> allSpans() {
    assertThat(gateway.server.tracing().flush(Duration.ofSeconds(30))).isTrue();
    return received.stream().flatMap(r -> r.getScopeSpansList().stream()).flatMap(s -> s.getSpansList().stream()).toList();
  }

  /** The calls' server spans received so far (not their runs of the model). */
  private List<Span> spans() {
    return allSpans().stream().filter(span -> span.getKind() == Span.SpanKind.SPAN_KIND_SERVER).toList();
  }

  private static String attribute(Span span, String key) {
    for (KeyValue pair : span.getAttributesList()) {
      if (pair.getKey().equals(key)) {
        var value = pair.getValue();
        return switch (value.getValueCase()) {
          case STRING_VALUE -> value.getStringValue();
          case INT_VALUE -> Long.toString(value.getIntValue());
          case DOUBLE_VALUE -> Double.toString(value.getDoubleValue());
          default -> value.toString();
        };
      }
    }
    return null;
  }

  @Test
  void aCallInASampledTrace_isAChildSpanOfTheCallers_withWhatServedIt() throws IOException {
    open(0);
    gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(
            traceparent("00-" + TRACE + "-" + CALLER_SPAN + "-01")))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").setId("call-1").build());

    assertThat(spans()).singleElement().satisfies(span -> {
      assertThat(HexFormat.of().formatHex(span.getTraceId().toByteArray())).isEqualTo(TRACE);
      assertThat(HexFormat.of().formatHex(span.getParentSpanId().toByteArray())).isEqualTo(CALLER_SPAN);
      assertThat(span.getName()).isEqualTo("inference.GRPCInferenceService/ModelInfer");
      assertThat(span.getKind()).isEqualTo(Span.SpanKind.SPAN_KIND_SERVER);
      assertThat(span.getStatus().getCode()).isEqualTo(io.opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_UNSET);
      assertThat(span.getEndTimeUnixNano()).isGreaterThanOrEqualTo(span.getStartTimeUnixNano());
      assertThat(attribute(span, "rpc.system")).isEqualTo("grpc");
      assertThat(attribute(span, "rpc.grpc.status_code")).isEqualTo("0");
      assertThat(attribute(span, "modelgate.model")).isEqualTo("m");
      assertThat(attribute(span, "modelgate.version")).isEqualTo("1");
      assertThat(attribute(span, "modelgate.tenant")).isEqualTo("anonymous");
      assertThat(attribute(span, "modelgate.request_id")).isEqualTo("call-1");
      assertThat(attribute(span, "modelgate.rows")).isEqualTo("1");
      assertThat(attribute(span, "modelgate.batch_rows")).isEqualTo("1");
      assertThat(attribute(span, "modelgate.batch_compute_ms")).isNotNull();
      assertThat(Double.parseDouble(attribute(span, "modelgate.waited_ms"))).isGreaterThanOrEqualTo(0);
    });
    Span call = spans().get(0);
    assertThat(allSpans()).hasSize(2).filteredOn(span -> span.getKind() == Span.SpanKind.SPAN_KIND_INTERNAL)
        .singleElement().satisfies(run -> {
          assertThat(run.getName()).isEqualTo("onnxruntime.run");
          assertThat(run.getTraceId()).isEqualTo(call.getTraceId());
          assertThat(run.getParentSpanId()).isEqualTo(call.getSpanId());
          assertThat(run.getStartTimeUnixNano()).isBetween(call.getStartTimeUnixNano(), call.getEndTimeUnixNano());
          assertThat(run.getEndTimeUnixNano()).isBetween(run.getStartTimeUnixNano(), call.getEndTimeUnixNano());
          assertThat(attribute(run, "modelgate.batch_rows")).isEqualTo("1");
        });
    assertThat(received).singleElement().satisfies(resource -> assertThat(resource.getResource().getAttributesList())
        .anySatisfy(pair -> {
          assertThat(pair.getKey()).isEqualTo("service.name");
          assertThat(pair.getValue().getStringValue()).isEqualTo("modelgate");
        }));
    assertThat(gateway.stats.scrape()).contains("modelgate_trace_spans_total{result=\"exported\"} 2.0")
        .contains("modelgate_trace_spans_total{result=\"dropped\"} 0.0");
  }

  @Test
  void callsNotSampled_orInNoTraceAtRateZero_areNotTraced_andARefusalIsTracedAsAnError() throws IOException {
    open(0);
    gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(
            traceparent("00-" + TRACE + "-" + CALLER_SPAN + "-00")))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    assertThat(allSpans()).isEmpty();

    assertThatThrownBy(() -> gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(
            traceparent("00-" + TRACE + "-" + CALLER_SPAN + "-01")))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("nope").build()))
        .isInstanceOf(StatusRuntimeException.class).hasMessageContaining("NOT_FOUND");
    assertThat(allSpans()).as("no run of the model").singleElement().satisfies(span -> {
      assertThat(span.getStatus().getCode()).isEqualTo(io.opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR);
      assertThat(span.getStatus().getMessage()).isEqualTo("NOT_FOUND");
      assertThat(attribute(span, "rpc.grpc.status_code")).isEqualTo("5");
      assertThat(attribute(span, "modelgate.model")).isEqualTo("nope");
      assertThat(attribute(span, "modelgate.version")).isNull();
    });
  }

  @Test
  void atRateOne_aCallWithoutATrace_orWithATraceparentThatDoesNotParse_startsATraceOfItsOwn_butOneNotSampledIsNot()
      throws Exception {
    open(1);
    gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(traceparent("00-zz-not-a-trace-01")))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(
            traceparent("00-" + TRACE + "-" + CALLER_SPAN + "-00")))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    List<Span> spans = spans();
    assertThat(spans).hasSize(2).allSatisfy(span -> assertThat(span.getParentSpanId().isEmpty()).isTrue());
    assertThat(spans.get(0).getTraceId()).isNotEqualTo(spans.get(1).getTraceId());
    // A stream in no trace: each message drawn, each a trace of its own.
    streamTwo(null);
    assertThat(spans()).hasSize(4).filteredOn(span -> span.getName().endsWith("/ModelStreamInfer")).hasSize(2)
        .extracting(Span::getTraceId).doesNotHaveDuplicates();
  }

  /** Sends two messages on one stream (in the trace {@code traceparent}, or none where null), and waits for both answers. */
  private void streamTwo(String traceparent) throws InterruptedException {
    CountDownLatch answered = new CountDownLatch(2);
    var stub = gateway.async();
    if (traceparent != null) {
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(traceparent(traceparent)));
    }
    StreamObserver<io.modelgate.proto.inference.ModelInferRequest> requests = stub.modelStreamInfer(new StreamObserver<>() {
      @Override
      public void onNext(ModelStreamInferResponse value) {
        answered.countDown();
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {}
    });
    requests.onNext(Tensors.affine(1, 2, 3).setModelName("m").setId("a").build());
    requests.onNext(Tensors.affine(1, 2, 3).setModelName("m").setId("b").build());
    assertThat(answered.await(30, TimeUnit.SECONDS)).isTrue();
    requests.onCompleted();
  }

  @Test
  void aStreamInASampledTrace_isASpanPerMessage() throws Exception {
    open(0);
    streamTwo("00-" + TRACE + "-" + CALLER_SPAN + "-01");
    assertThat(spans()).hasSize(2).allSatisfy(span -> {
      assertThat(span.getName()).isEqualTo("inference.GRPCInferenceService/ModelStreamInfer");
      assertThat(HexFormat.of().formatHex(span.getParentSpanId().toByteArray())).isEqualTo(CALLER_SPAN);
    }).extracting(span -> attribute(span, "modelgate.request_id")).containsExactlyInAnyOrder("a", "b");
  }

  @Test
  void aCollectorThatIsGone_losesTheSpans_countedAsFailed_andTheCallIsAnsweredAsEver() throws IOException {
    open(0);
    collector.stop(0);
    assertThat(gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(
            traceparent("00-" + TRACE + "-" + CALLER_SPAN + "-01")))
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion()).isEqualTo("1");
    // The exporter tries the send again a few times before it gives up (seconds).
    assertThat(gateway.server.tracing().flush(Duration.ofSeconds(60))).isTrue();
    assertThat(gateway.server.tracing().spans("failed")).isEqualTo(2);
    assertThat(gateway.server.tracing().spans("exported")).isZero();
    assertThat(received).isEmpty();
  }

  @Test
  void aFlushAskedForAsTheLastEnds_stillWaitsForTheSpansRecordedSince() throws IOException {
    // The SDK's processor answers a flush asked for in the instant after another ended with the
    // one that ended; flush counts instead. Many rounds, each a span then a flush: each round's
    // span must be sent by its flush's return.
    try (Tracing tracing = Tracing.start(
        TraceSettings.to(URI.create("http://127.0.0.1:" + collector.getAddress().getPort()), 1), "r", "v",
        Clock.systemUTC())) {
      for (int round = 1; round <= 300; round++) {
        tracing.record(tracing.current(), "ModelInfer", 1_000, "m", "1", null, null, io.grpc.Status.Code.OK, 1, 0, 0, -1);
        assertThat(tracing.flush(Duration.ofSeconds(30))).isTrue();
        assertThat(tracing.spans("exported")).as("sent after round %d's flush", round).isEqualTo(round);
      }
    }
    assertThat(received).hasSize(300);
  }

  @Test
  void exportsCarryTheHeadersGiven_asOpenTelemetrysVariableWritesThem() throws IOException {
    assertThat(TraceSettings.parseHeaders(" x-api-key = a%2Cb+c%20d , tenant=t1")).containsExactly(
        java.util.Map.entry("x-api-key", "a,b+c d"), java.util.Map.entry("tenant", "t1"));
    assertThat(TraceSettings.parseHeaders("")).isEmpty();
    assertThatThrownBy(() -> TraceSettings.parseHeaders("x-api-key=secret,oops"))
        .hasMessage("trace export headers: pair 2 of 2 is not name=value").hasMessageNotContaining("secret");
    open(1, TraceSettings.parseHeaders("x-api-key=s3cret"));
    gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    assertThat(spans()).hasSize(1);
    assertThat(apiKeys).isNotEmpty().containsOnly("s3cret");
    assertThat(encodings).isNotEmpty().containsOnly("identity");
  }

  @Test
  void withGzip_eachExportIsSentCompressed() throws IOException {
    open(TraceSettings.to(URI.create("http://127.0.0.1:" + collector.getAddress().getPort()), 1).withGzip(true));
    gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
    assertThat(spans()).hasSize(1);
    assertThat(encodings).isNotEmpty().containsOnly("gzip");
  }

  @Test
  void toAnHttpsCollector_spansGoOverTls_trustingTheCaGiven_andPresentingTheClientCertificate() throws Exception {
    TestCertificates pki = TestCertificates.create(Files.createDirectories(root.resolve(".pki")));
    Path[] bob = pki.client("bob", "CN=operator-bob", null);
    TestCertificates.ClientFiles live = pki.installClient(Files.createDirectories(root.resolve("trace-client")));
    javax.net.ssl.SSLContext tls = javax.net.ssl.SSLContext.getInstance("TLS");
    java.security.KeyStore keys = java.security.KeyStore.getInstance("PKCS12");
    keys.load(null, null);
    try (var chain = Files.newInputStream(pki.serverChain); var key = Files.newInputStream(pki.serverKey)) {
      keys.setKeyEntry("server", CertificateUtils.getPrivateKey(key), "k".toCharArray(),
          CertificateUtils.getX509Certificates(chain));
    }
    java.security.KeyStore cas = java.security.KeyStore.getInstance("PKCS12");
    cas.load(null, null);
    try (var ca = Files.newInputStream(pki.caCert)) {
      cas.setCertificateEntry("ca", CertificateUtils.getX509Certificates(ca)[0]);
    }
    var keyFactory = javax.net.ssl.KeyManagerFactory.getInstance(javax.net.ssl.KeyManagerFactory.getDefaultAlgorithm());
    keyFactory.init(keys, "k".toCharArray());
    var trustFactory = javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
    trustFactory.init(cas);
    tls.init(keyFactory.getKeyManagers(), trustFactory.getTrustManagers(), null);
    HttpsServer secure = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    secure.setHttpsConfigurator(new HttpsConfigurator(tls) {
      @Override
      public void configure(HttpsParameters parameters) {
        javax.net.ssl.SSLParameters ssl = tls.getDefaultSSLParameters();
        ssl.setNeedClientAuth(true); // mutual TLS: a client without a certificate of this CA is turned away
        parameters.setSSLParameters(ssl);
      }
    });
    List<String> clients = new CopyOnWriteArrayList<>();
    secure.createContext(TraceSettings.TRACES_PATH, exchange -> {
      clients.add(((HttpsExchange) exchange).getSSLSession().getPeerPrincipal().getName());
      receive(exchange);
    });
    secure.start();
    try {
      open(TraceSettings.to(URI.create("https://localhost:" + secure.getAddress().getPort()), 1)
          .withTls(live.ca(), live.chain(), live.key()));
      gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
      assertThat(spans()).hasSize(1);
      assertThat(clients).isNotEmpty().containsOnly("CN=operator-alice");
      // Renewed as a renewal tool does: an export presents the new certificate, not a session of the old.
      TestCertificates.renew(bob[0], live.chain());
      TestCertificates.renew(bob[1], live.key());
      io.modelgate.gateway.testing.Eventually.eventually("an export presents the renewed certificate", () -> {
        gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build());
        spans();
        return clients.get(clients.size() - 1).equals("CN=operator-bob");
      });
      assertThat(gateway.stats.scrape()).contains("modelgate_tls_certificate_expiry_timestamp_seconds{port=\"trace\"}");
    } finally {
      secure.stop(0);
    }
    // Files that cannot be used stop the start, saying which.
    Path notACa = Files.writeString(root.resolve("not-a-ca.pem"), "no certificate here\n");
    assertThatThrownBy(() -> Tracing.start(TraceSettings.to(URI.create("https://localhost:4318"), 0)
        .withTls(notACa, null, null), "r", "v", Clock.systemUTC()).close())
        .isInstanceOf(IOException.class).hasMessageContaining("trace TLS").hasMessageContaining(notACa.toString());
  }

  @Test
  void settingsAreChecked() {
    assertThatThrownBy(() -> TraceSettings.to(URI.create("ftp://collector:4318"), 0))
        .hasMessageContaining("expected: an OTLP/HTTP address");
    assertThatThrownBy(() -> TraceSettings.to(URI.create("http://collector:4318"), 1.5))
        .hasMessage("trace sample rate: 1.5 (expected: 0 to 1)");
    assertThatThrownBy(() -> TraceSettings.to(null, 0.1))
        .hasMessageContaining("without a trace endpoint");
    assertThatThrownBy(() -> TraceSettings.to(URI.create("https://collector:4318"), 0)
        .withTls(root.resolve("no-such-ca.pem"), null, null))
        .hasMessage("trace TLS file " + root.resolve("no-such-ca.pem") + " is not readable");
    assertThatThrownBy(() -> TraceSettings.to(URI.create("http://collector:4318"), 0).withTls(Path.of("ca.pem"), null, null))
        .hasMessage("--trace-ca, --trace-cert and --trace-key are for an https:// trace endpoint"
            + " (given: http://collector:4318/v1/traces)");
    assertThatThrownBy(() -> TraceSettings.to(URI.create("https://collector:4318"), 0)
        .withTls(null, Path.of("client.pem"), null))
        .hasMessageContaining("--trace-cert and --trace-key go together");
    assertThat(TraceSettings.to(URI.create("http://collector:4318"), 0).endpoint())
        .isEqualTo(URI.create("http://collector:4318/v1/traces"));
    assertThat(TraceSettings.to(URI.create("https://collector:4318/custom/traces"), 0).endpoint())
        .isEqualTo(URI.create("https://collector:4318/custom/traces"));
  }
}

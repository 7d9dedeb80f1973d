package io.modelgate.gateway.tracing;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientInterceptors;
import io.grpc.CompressorRegistry;
import io.grpc.Drainable;
import io.grpc.KnownLength;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.netty.channel.ChannelOption;
import io.netty.handler.ssl.ApplicationProtocolConfig;
import io.netty.handler.ssl.ApplicationProtocolNames;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.IdentityCipherSuiteFilter;
import io.netty.handler.ssl.JdkSslContext;
import io.netty.handler.ssl.SslContext;
import io.opentelemetry.sdk.common.CompletableResultCode;
import io.opentelemetry.sdk.common.export.Compressor;
import io.opentelemetry.sdk.common.export.GrpcResponse;
import io.opentelemetry.sdk.common.export.GrpcSender;
import io.opentelemetry.sdk.common.export.GrpcSenderConfig;
import io.opentelemetry.sdk.common.export.GrpcStatusCode;
import io.opentelemetry.sdk.common.export.MessageWriter;
import io.opentelemetry.sdk.common.export.RetryPolicy;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import javax.net.ssl.SSLException;

/**
 * OTLP over gRPC for the OpenTelemetry SDK's exporter, sent by grpc-java on its Netty transport —
 * the gateway's own, so that tracing to a collector's gRPC port (4317) adds no HTTP client or
 * Kotlin runtime. It is the SDK's {@link GrpcSender}: the SDK marshals each batch of spans and
 * reads the answer; this sends the bytes as one unary call of {@link GrpcSenderConfig#getFullMethodName},
 * with the exporter's headers, deadline, compression, TLS and retry policy (grpc-java's retries,
 * on OTLP's retryable codes).
 *
 * <p>One channel per exporter, made with it, closed at its {@link #shutdown}; it keeps one HTTP/2
 * connection to the collector. Its TLS is the operator's files where {@code --trace-ca} or {@code
 * --trace-cert} gave them (the gateway's {@link io.modelgate.gateway.tls.ReloadingSslContext}),
 * else the exporter's {@link javax.net.ssl.SSLContext}, else the JVM's trust store. Where renewed
 * files are put in force, the next export goes on a new channel, whose connection presents the
 * renewed certificate and checks the collector's against the renewed CAs; the old channel is shut
 * down once its calls end.
 *
 * <p>Threading: {@link #send} on the exporter's thread; its callbacks on the exporter's executor
 * where it gives one, grpc-java's otherwise.
 */
final class GrpcExportSender implements GrpcSender {
  /** The status codes OTLP's specification says to retry (RESOURCE_EXHAUSTED only with a retry hint: not retried). */
  static final List<String> RETRYABLE = List.of("CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE",
      "DATA_LOSS");

  /** The largest export kept to be sent again if its first try fails. */
  static final long RETRIED_BYTES = 4L << 20;

  private static final MethodDescriptor.Marshaller<byte[]> ANSWER = new MethodDescriptor.Marshaller<>() {
    @Override
    public InputStream stream(byte[] value) {
      return new ByteArrayInputStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      try {
        return stream.readAllBytes();
      } catch (IOException e) {
        throw Status.INTERNAL.withDescription("cannot read the collector's answer").withCause(e).asRuntimeException();
      }
    }
  };

  private static final MethodDescriptor.Marshaller<MessageWriter> REQUEST = new MethodDescriptor.Marshaller<>() {
    @Override
    public InputStream stream(MessageWriter value) {
      return new Message(value);
    }

    @Override
    public MessageWriter parse(InputStream stream) {
      throw new UnsupportedOperationException("a request is only sent");
    }
  };

  private final MethodDescriptor<MessageWriter, byte[]> method;
  private final GrpcSenderConfig config;
  private final CallOptions options;
  /** The operator's TLS files, followed; null where none were given. */
  private final io.modelgate.gateway.tls.ReloadingSslContext tls;
  /** The channel exports go on, and the TLS material it was opened with; replaced together, under this. */
  private ManagedChannel channel;
  private Object channelTls;

  GrpcExportSender(GrpcSenderConfig config, io.modelgate.gateway.tls.ReloadingSslContext tls) {
    this.config = config;
    this.tls = tls;
    method = MethodDescriptor.<MessageWriter, byte[]>newBuilder()
        .setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(config.getFullMethodName())
        .setRequestMarshaller(REQUEST)
        .setResponseMarshaller(ANSWER)
        .build();
    options = config.getCompressor() == null ? CallOptions.DEFAULT
        : CallOptions.DEFAULT.withCompression(config.getCompressor().getEncoding());
    channelTls = tls == null ? null : tls.inForce();
    channel = open(config, tls);
  }

  /** A channel to the collector as {@code config} says. */
  private static ManagedChannel open(GrpcSenderConfig config, SslContext files) {
    URI endpoint = config.getEndpoint();
    boolean plaintext = "http".equals(endpoint.getScheme());
    int port = endpoint.getPort() != -1 ? endpoint.getPort() : plaintext ? 80 : 443;
    NettyChannelBuilder builder = NettyChannelBuilder.forAddress(endpoint.getHost(), port)
        .withOption(ChannelOption.CONNECT_TIMEOUT_MILLIS,
            (int) Math.min(Integer.MAX_VALUE, Math.max(1, config.getConnectTimeout().toMillis())));
    if (config.getMaxResponseBodySize() > 0) {
      builder.maxInboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.getMaxResponseBodySize()));
    }
    if (plaintext) {
      builder.usePlaintext();
    } else {
      builder.sslContext(files != null ? files : tls(config));
    }
    if (config.getExecutorService() != null) {
      builder.executor(config.getExecutorService());
    }
    String service = config.getFullMethodName().substring(0, config.getFullMethodName().lastIndexOf('/'));
    RetryPolicy retry = config.getRetryPolicy();
    if (retry != null && retry.getMaxAttempts() > 1) {
      builder.defaultServiceConfig(Map.of("methodConfig", List.of(Map.of(
              "name", List.of(Map.of("service", service)),
              "retryPolicy", Map.of(
                  "maxAttempts", (double) retry.getMaxAttempts(),
                  "initialBackoff", seconds(retry.getInitialBackoff()),
                  "maxBackoff", seconds(retry.getMaxBackoff()),
                  "backoffMultiplier", retry.getBackoffMultiplier(),
                  "retryableStatusCodes", RETRYABLE)))))
          .maxRetryAttempts(retry.getMaxAttempts())
          // A batch is kept for its retries up to this size (a batch of 512 spans is a few hundred KB).
          .perRpcBufferLimit(RETRIED_BYTES)
          .enableRetry();
    } else {
      builder.disableRetry();
    }
    Compressor compressor = config.getCompressor();
    if (compressor != null) {
      CompressorRegistry compressors = CompressorRegistry.newEmptyInstance();
      compressors.register(new io.grpc.Compressor() {
        @Override
        public String getMessageEncoding() {
          return compressor.getEncoding();
        }

        @Override
        public OutputStream compress(OutputStream os) throws IOException {
          return compressor.compress(os);
        }
      });
      builder.compressorRegistry(compressors);
    }
    return builder.build();
  }

  /**
   * The channel for the next export: a new one where the TLS material changed since the last was
   * opened (the last is shut down, its calls in flight left to end).
   */
  private synchronized ManagedChannel channel() {
    Object now = tls == null ? null : tls.inForce();
    if (now != channelTls) {
      channel.shutdown();
      channel = open(config, tls);
      channelTls = now;
    }
    return channel;
  }

  /** The exporter's TLS context for HTTP/2 (ALPN h2), or the JVM's defaults where it gives none. */
  private static SslContext tls(GrpcSenderConfig config) {
    if (config.getSslContext() == null) {
      try {
        return GrpcSslContexts.forClient().build();
      } catch (SSLException e) {
        throw new IllegalStateException("cannot make a TLS context for the trace endpoint: " + e.getMessage(), e);
      }
    }
    return new JdkSslContext(config.getSslContext(), true, null, IdentityCipherSuiteFilter.INSTANCE,
        new ApplicationProtocolConfig(ApplicationProtocolConfig.Protocol.ALPN,
            ApplicationProtocolConfig.SelectorFailureBehavior.NO_ADVERTISE,
            ApplicationProtocolConfig.SelectedListenerFailureBehavior.ACCEPT, ApplicationProtocolNames.HTTP_2),
        ClientAuth.NONE, null, false);
  }

  /** A duration as a service config writes one: seconds with up to nine decimals. */
  static String seconds(Duration duration) {
    return BigDecimal.valueOf(duration.toNanos(), 9).stripTrailingZeros().toPlainString() + "s";
  }

  @Override
  public void send(MessageWriter request, Consumer<GrpcResponse> onResponse, Consumer<Throwable> onError) {
    Metadata headers = new Metadata();
    Map<String, List<String>> supplied = config.getHeadersSupplier() == null ? null : config.getHeadersSupplier().get();
    if (supplied != null) {
      supplied.forEach((name, values) -> values.forEach(value ->
          headers.put(Metadata.Key.of(name, Metadata.ASCII_STRING_MARSHALLER), value)));
    }
    Channel withHeaders = ClientInterceptors.intercept(channel(), MetadataUtils.newAttachHeadersInterceptor(headers));
    CallOptions call = options;
    if (config.getTimeout() != null && config.getTimeout().toNanos() > 0) {
      call = call.withDeadlineAfter(config.getTimeout().toNanos(), TimeUnit.NANOSECONDS);
    }
    ClientCalls.asyncUnaryCall(withHeaders.newCall(method, call), request, new StreamObserver<>() {
      private byte[] answer = new byte[0];

      @Override
      public void onNext(byte[] value) {
        answer = value;
      }

      @Override
      public void onError(Throwable t) {
        Status status = Status.fromThrowable(t);
        if (status.getCode() == Status.Code.UNKNOWN && !(t instanceof io.grpc.StatusRuntimeException
            || t instanceof io.grpc.StatusException)) {
          onError.accept(t);
        } else {
          // The transport's cause too ("io exception: Connection refused: ..."), for the SDK's log line.
          String description = status.getDescription();
          if (status.getCause() != null && status.getCause().getMessage() != null) {
            description = (description == null ? "" : description + ": ") + status.getCause().getMessage();
          }
          onResponse.accept(response(GrpcStatusCode.fromValue(status.getCode().value()), description, new byte[0]));
        }
      }

      @Override
      public void onCompleted() {
        onResponse.accept(response(GrpcStatusCode.OK, null, answer));
      }
    });
  }

  private static GrpcResponse response(GrpcStatusCode code, String description, byte[] message) {
    return new GrpcResponse() {
      @Override
      public GrpcStatusCode getStatusCode() {
        return code;
      }

      @Override
      public String getStatusDescription() {
        return description;
      }

      @Override
      public byte[] getResponseMessage() {
        return message;
      }
    };
  }

  /** Closes the channel: what is in flight has 5 s to end, then is cancelled. */
  @Override
  public CompletableResultCode shutdown() {
    ManagedChannel channel;
    synchronized (this) {
      channel = this.channel;
    }
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
    return CompletableResultCode.ofSuccess();
  }

  /**
   * The marshalled request as grpc-java reads a message: drained straight into the transport's
   * buffer where it can ({@link Drainable}), its length known beforehand.
   */
  private static final class Message extends InputStream implements Drainable, KnownLength {
    private final MessageWriter writer;
    private ByteArrayInputStream bytes;
    private boolean drained;

    Message(MessageWriter writer) {
      this.writer = writer;
    }

    @Override
    public int drainTo(OutputStream target) throws IOException {
      if (bytes != null) {
        return (int) bytes.transferTo(target);
      }
      drained = true;
      writer.writeMessage(target);
      return writer.getContentLength();
    }

    @Override
    public int available() {
      return bytes != null ? bytes.available() : drained ? 0 : writer.getContentLength();
    }

    @Override
    public int read() {
      return buffered().read();
    }

    @Override
    public int read(byte[] target, int offset, int length) {
      return buffered().read(target, offset, length);
    }

    private ByteArrayInputStream buffered() {
      if (bytes == null) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(drained ? 0 : writer.getContentLength());
        if (!drained) {
          try {
            writer.writeMessage(out);
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        }
        drained = true;
        bytes = new ByteArrayInputStream(out.toByteArray());
      }
      return bytes;
    }
  }
}

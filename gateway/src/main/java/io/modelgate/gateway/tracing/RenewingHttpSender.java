package io.modelgate.gateway.tracing;

import io.modelgate.gateway.tls.ReloadingSslContext;
import io.opentelemetry.sdk.common.CompletableResultCode;
import io.opentelemetry.sdk.common.export.Compressor;
import io.opentelemetry.sdk.common.export.HttpResponse;
import io.opentelemetry.sdk.common.export.HttpSender;
import io.opentelemetry.sdk.common.export.HttpSenderConfig;
import io.opentelemetry.sdk.common.export.HttpSenderProvider;
import io.opentelemetry.sdk.common.export.MessageWriter;
import io.opentelemetry.sdk.common.export.ProxyOptions;
import io.opentelemetry.sdk.common.export.RetryPolicy;
import java.net.URI;
import java.security.GeneralSecurityException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.function.Supplier;
import javax.net.ssl.SSLContext;
import javax.net.ssl.X509TrustManager;

/**
 * OTLP/HTTP with the operator's TLS files, followed: the class path's sender (the JDK's HTTP
 * client) made with a TLS context of its own, and made again, with a new context, by the first
 * export after new files are put in force. A client keeps its connections and the TLS sessions it
 * made (and resumes them on new connections), so without this a renewed client certificate would
 * not be presented while the old connection or session lived. The sender it replaces is shut down
 * once its exports in flight end.
 *
 * <p>Threading: {@link #send} on the exporter's thread; callbacks wherever the sender makes them.
 */
final class RenewingHttpSender implements HttpSender {
  private final HttpSenderProvider provider;
  private final HttpSenderConfig config;
  private final ReloadingSslContext tls;
  /** The sender exports go on now; replaced under this. */
  private Generation current;

  /** A sender, the files it was made with, and its exports in flight. */
  private static final class Generation {
    final HttpSender sender;
    final Object tls;
    final AtomicInteger inFlight = new AtomicInteger();
    volatile boolean replaced;

    Generation(HttpSender sender, Object tls) {
      this.sender = sender;
      this.tls = tls;
    }

    void ended() {
      if (inFlight.decrementAndGet() == 0 && replaced) {
        sender.shutdown();
      }
    }
  }

  RenewingHttpSender(HttpSenderProvider provider, HttpSenderConfig config, ReloadingSslContext tls) {
    this.provider = provider;
    this.config = config;
    this.tls = tls;
    current = make();
  }

  /** A sender with a new TLS context over the files in force (no session of older ones to resume). */
  private Generation make() {
    Object inForce = tls.inForce();
    SSLContext context;
    try {
      context = tls.jdkContext();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("cannot make the trace exporter's TLS context: " + e.getMessage(), e);
    }
    return new Generation(provider.createSender(new WithTls(config, context, tls.jdkTrustManager())), inForce);
  }

  private synchronized Generation generation() {
    if (tls.inForce() != current.tls) {
      Generation old = current;
      current = make();
      old.replaced = true;
      if (old.inFlight.get() == 0) {
        old.sender.shutdown();
      }
    }
    Generation now = current;
    now.inFlight.incrementAndGet();
    return now;
  }

  @Override
  public void send(MessageWriter request, Consumer<HttpResponse> onResponse, Consumer<Throwable> onError) {
    Generation generation = generation();
    try {
      generation.sender.send(request, response -> {
        generation.ended();
        onResponse.accept(response);
      }, error -> {
        generation.ended();
        onError.accept(error);
      });
    } catch (RuntimeException e) {
      generation.ended();
      throw e;
    }
  }

  @Override
  public synchronized CompletableResultCode shutdown() {
    return current.sender.shutdown();
  }

  /** The exporter's settings with another TLS context. */
  private record WithTls(HttpSenderConfig config, SSLContext context, X509TrustManager trust) implements HttpSenderConfig {
    @Override
    public URI getEndpoint() {
      return config.getEndpoint();
    }

    @Override
    public String getContentType() {
      return config.getContentType();
    }

    @Override
    public Compressor getCompressor() {
      return config.getCompressor();
    }

    @Override
    public Duration getTimeout() {
      return config.getTimeout();
    }

    @Override
    public Duration getConnectTimeout() {
      return config.getConnectTimeout();
    }

    @Override
    public Supplier<Map<String, List<String>>> getHeadersSupplier() {
      return config.getHeadersSupplier();
    }

    @Override
    public ProxyOptions getProxyOptions() {
      return config.getProxyOptions();
    }

    @Override
    public RetryPolicy getRetryPolicy() {
      return config.getRetryPolicy();
    }

    @Override
    public SSLContext getSslContext() {
      return context;
    }

    @Override
    public X509TrustManager getTrustManager() {
      return trust;
    }

    @Override
    public ExecutorService getExecutorService() {
      return config.getExecutorService();
    }

    @Override
    public long getMaxResponseBodySize() {
      return config.getMaxResponseBodySize();
    }

    @Override
    public List<String> getEnabledProtocols() {
      return config.getEnabledProtocols();
    }
  }
}

package io.modelgate.gateway.tracing;

import io.modelgate.gateway.tls.ReloadingSslContext;
import io.opentelemetry.common.ComponentLoader;
import io.opentelemetry.sdk.common.export.GrpcSenderProvider;
import io.opentelemetry.sdk.common.export.HttpSenderProvider;
import java.util.List;

/**
 * What sends the OpenTelemetry SDK's exports, handed to its exporter builders as their {@link
 * ComponentLoader}: over gRPC, {@link GrpcExportSender} (grpc-java) whatever else the class path
 * holds; over HTTP, the class path's sender (the JDK's HTTP client), made again by {@link
 * RenewingHttpSender} when the operator's TLS files are renewed. Everything else the SDK loads
 * (compressors) comes from the class path.
 */
final class ExportSenders {
  private ExportSenders() {}

  /**
   * @param tls the TLS files the operator gave ({@code --trace-ca}, {@code --trace-cert}), followed:
   *     each connection takes what is in force when it is made, with no session of older files
   *     resumed, and once new files are put in force the next export opens a new connection; null
   *     where none were given (the JVM's defaults)
   */
  static ComponentLoader loader(ReloadingSslContext tls) {
    ComponentLoader classPath = ComponentLoader.forClassLoader(ExportSenders.class.getClassLoader());
    return new ComponentLoader() {
      @Override
      @SuppressWarnings("unchecked")
      public <T> Iterable<T> load(Class<T> type) {
        if (type == GrpcSenderProvider.class) {
          return List.of((T) (GrpcSenderProvider) config -> new GrpcExportSender(config, tls));
        }
        if (type == HttpSenderProvider.class && tls != null) {
          List<HttpSenderProvider> found = ComponentLoader.loadList(classPath, HttpSenderProvider.class);
          if (found.size() != 1) {
            throw new IllegalStateException("expected one OTLP/HTTP sender on the class path, found " + found.size());
          }
          return List.of((T) (HttpSenderProvider) config -> new RenewingHttpSender(found.get(0), config, tls));
        }
        return classPath.load(type);
      }
    };
  }
}

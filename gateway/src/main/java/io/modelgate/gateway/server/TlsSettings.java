package io.modelgate.gateway.server;

import io.grpc.netty.GrpcSslContexts;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * TLS for one port: a PEM certificate chain and its PKCS#8 PEM key; with a client CA, mutual TLS
 * (clients must present a certificate that CA signed).
 *
 * @param clientCa null for server-only TLS
 */
public record TlsSettings(Path certificateChain, Path privateKey, Path clientCa) {
  public TlsSettings {
    Objects.requireNonNull(certificateChain, "certificate chain");
    Objects.requireNonNull(privateKey, "private key");
    for (Path file : new Path[] {certificateChain, privateKey, clientCa}) {
      if (file != null && !Files.isReadable(file)) {
        throw new IllegalArgumentException("TLS file " + file + " is not readable");
      }
    }
  }

  SslContext serverContext() throws IOException {
    SslContextBuilder builder =
        GrpcSslContexts.forServer(certificateChain.toFile(), privateKey.toFile());
    if (clientCa != null) {
      builder.trustManager(clientCa.toFile()).clientAuth(ClientAuth.REQUIRE);
    }
    return builder.build();
  }
}

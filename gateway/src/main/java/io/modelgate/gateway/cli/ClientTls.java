package io.modelgate.gateway.cli;

import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.IOException;
import java.nio.file.Path;

/**
 * How the CLI's clients ({@code modelgate admin}, {@code modelgate infer}) reach a port: plaintext,
 * or TLS trusting a CA's PEM certificate, with a client certificate and PKCS#8 key for mutual TLS.
 */
final class ClientTls {
  private ClientTls() {}

  /**
   * {@code builder} set up for TLS when {@code ca} is given (trusting it; presenting {@code cert}
   * and {@code key} when both are given), else for plaintext.
   *
   * @throws IllegalArgumentException a client certificate without its key, or the reverse, or
   *     either without {@code ca}; a file that holds no PEM certificate or key
   * @throws java.nio.file.NoSuchFileException a file that cannot be read
   */
  static NettyChannelBuilder apply(NettyChannelBuilder builder, Path ca, Path cert, Path key) throws IOException {
    if ((cert == null) != (key == null)) {
      throw new IllegalArgumentException("--tls-cert and --tls-key go together (mutual TLS)");
    }
    if (ca == null) {
      if (cert != null) {
        throw new IllegalArgumentException("--tls-cert needs --tls-ca (the CA of the server's certificate)");
      }
      return builder.usePlaintext();
    }
    for (Path file : new Path[] {ca, cert, key}) {
      if (file != null && !java.nio.file.Files.isReadable(file)) {
        throw new java.nio.file.NoSuchFileException(file.toString());
      }
    }
    SslContextBuilder ssl = GrpcSslContexts.forClient().trustManager(ca.toFile());
    if (cert != null) {
      ssl.keyManager(cert.toFile(), key.toFile());
    }
    return builder.sslContext(ssl.build());
  }
}

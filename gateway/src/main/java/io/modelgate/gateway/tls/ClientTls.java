package io.modelgate.gateway.tls;

import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.IOException;
import java.nio.file.Path;

/**
 * How the command-line clients ({@code modelgate admin}, {@code modelgate infer}, {@code
 * modelgate-bench load}) reach a port: plaintext, or TLS trusting a CA's PEM certificate, with a
 * client certificate and PKCS#8 key for mutual TLS. One set of checks and one context for every
 * client, so that the options mean the same everywhere.
 */
public final class ClientTls {
  private ClientTls() {}

  /**
   * A gRPC client context (ALPN h2, on the engine gRPC picks) when {@code ca} is given, trusting
   * it and presenting {@code cert} and {@code key} when both are given; null for plaintext.
   *
   * @throws IllegalArgumentException a client certificate without its key, or the reverse, or
   *     either without {@code ca}; a file that holds no PEM certificate or key
   * @throws java.nio.file.NoSuchFileException a file that cannot be read
   */
  public static SslContext context(Path ca, Path cert, Path key) throws IOException {
    if ((cert == null) != (key == null)) {
      throw new IllegalArgumentException("--tls-cert and --tls-key go together (mutual TLS)");
    }
    if (ca == null) {
      if (cert != null) {
        throw new IllegalArgumentException("--tls-cert needs --tls-ca (the CA of the server's certificate)");
      }
      return null;
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
    return ssl.build();
  }

  /** {@code builder} set up for TLS with {@link #context} when {@code ca} is given, else for plaintext. */
  public static NettyChannelBuilder apply(NettyChannelBuilder builder, Path ca, Path cert, Path key) throws IOException {
    SslContext context = context(ca, cert, key);
    return context == null ? builder.usePlaintext() : builder.sslContext(context);
  }
}

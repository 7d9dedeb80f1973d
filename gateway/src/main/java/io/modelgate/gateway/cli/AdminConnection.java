package io.modelgate.gateway.cli;

import io.grpc.CallCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.netty.NettyChannelBuilder;
import io.modelgate.gateway.admin.AdminAuth;
import io.modelgate.gateway.tls.ClientTls;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Option;
import picocli.CommandLine.ScopeType;

/**
 * How {@code modelgate admin} reaches the admin port: address, token, TLS and time-out. The options
 * are inherited: they may stand before or after the subcommand ({@code admin --target h:8003
 * models} or {@code admin models --target h:8003}).
 */
final class AdminConnection {
  @Option(
      scope = ScopeType.INHERIT,
      names = "--timeout",
      defaultValue = "120s",
      converter = Converters.TimeSpan.class,
      description = "How long one admin call may take. Default: ${DEFAULT-VALUE}.")
  java.time.Duration timeout;

  @Option(scope = ScopeType.INHERIT, names = "--target", defaultValue = "localhost:8003", description = "Admin address. Default: ${DEFAULT-VALUE}.")
  String target;

  @Option(
      scope = ScopeType.INHERIT,
      names = "--token-file",
      paramLabel = "FILE",
      description = "File with the admin token. Default: $MODELGATE_ADMIN_TOKEN, else <state-dir>/admin-token.")
  Path tokenFile;

  @Option(scope = ScopeType.INHERIT, names = "--state-dir", defaultValue = "modelgate-state", description = "Where the server keeps its generated token. Default: ./${DEFAULT-VALUE}.")
  Path stateDir;

  @Option(scope = ScopeType.INHERIT, names = "--tls-ca", paramLabel = "PEM", description = "Use TLS, trusting this CA for the server's certificate.")
  Path tlsCa;

  @Option(scope = ScopeType.INHERIT, names = "--tls-cert", paramLabel = "PEM", description = "Client certificate, for mutual TLS.")
  Path tlsCert;

  @Option(scope = ScopeType.INHERIT, names = "--tls-key", paramLabel = "PEM", description = "Client key (PKCS#8), for mutual TLS.")
  Path tlsKey;

  /** A channel and a stub that presents the token and names the operator. */
  Client connect() throws IOException {
    String token = AdminToken.forClient(tokenFile, stateDir);
    ManagedChannel channel;
    try {
      channel = ClientTls.apply(NettyChannelBuilder.forTarget(target), tlsCa, tlsCert, tlsKey).build();
    } catch (IllegalArgumentException e) {
      throw new IOException(e.getMessage(), e);
    }
    String operator = System.getProperty("user.name", "");
    CallCredentials credentials =
        new CallCredentials() {
          @Override
          public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
            Metadata headers = new Metadata();
            headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
            if (!operator.isBlank()) {
              headers.put(AdminAuth.OPERATOR, operator);
            }
            applier.apply(headers);
          }
        };
    return new Client(
        channel, AdminServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials), timeout);
  }

  /** An open admin connection. */
  record Client(
      ManagedChannel channel, AdminServiceGrpc.AdminServiceBlockingStub stub, java.time.Duration timeout)
      implements AutoCloseable {
    /** The stub with the call's deadline ({@code --timeout}). */
    AdminServiceGrpc.AdminServiceBlockingStub call() {
      return stub.withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    @Override
    public void close() {
      channel.shutdownNow();
    }
  }
}

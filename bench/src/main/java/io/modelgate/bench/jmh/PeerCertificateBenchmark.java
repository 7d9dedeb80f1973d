package io.modelgate.bench.jmh;

import io.modelgate.bench.Keytool;
import io.modelgate.gateway.callers.CallerAuth;
import io.modelgate.gateway.callers.PeerCertificate;
import io.modelgate.gateway.callers.PeerCertificate;
import io.modelgate.gateway.callers.CallerPolicy;
import io.netty.buffer.ByteBufAllocator;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import io.netty.handler.ssl.util.InsecureTrustManagerFactory;
import io.netty.util.ReferenceCountUtil;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLSession;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What a caller identified by its client certificate costs a call: reading the certificate's
 * names from the connection's TLS session ({@link PeerCertificate#of}, which every call did before
 * the server read them once per connection, {@link CallerAuth#PEER_CERTIFICATES}) against
 * identifying by the names kept in the connection's attributes ({@link CallerPolicy#identify}, what
 * each call does now). The session is a real one:
 * a mutual-TLS handshake between two engines of the server's own kind (BoringSSL where it is
 * packaged, else the JDK's), driven in memory, with certificates made by the JDK's keytool.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class PeerCertificateBenchmark {
  private SSLEngine server;
  private SSLEngine client;
  private SSLSession session;
  private CallerPolicy policy;
  private CallerPolicy.Presented kept;
  private final InetSocketAddress peer = new InetSocketAddress("127.0.0.1", 40000);

  @Setup
  public void setUp() throws Exception {
    Path dir = Files.createTempDirectory("modelgate-bench-peer-");
    SslProvider provider = io.netty.handler.ssl.OpenSsl.isAvailable() ? SslProvider.OPENSSL : SslProvider.JDK;
    server = SslContextBuilder.forServer(keys(dir, "server", "CN=localhost")).sslProvider(provider)
        .trustManager(InsecureTrustManagerFactory.INSTANCE).clientAuth(ClientAuth.REQUIRE).build()
        .newEngine(ByteBufAllocator.DEFAULT);
    client = SslContextBuilder.forClient().keyManager(keys(dir, "client", "CN=fraud-svc, O=Example")).sslProvider(provider)
        .trustManager(InsecureTrustManagerFactory.INSTANCE).build()
        .newEngine(ByteBufAllocator.DEFAULT, "localhost", 443);
    handshake();
    session = server.getSession();
    Files.writeString(dir.resolve("callers.yaml"), "identify: [certificate]\ntenants:\n"
        + "  fraud:\n    certificates: [\"CN=fraud-svc,O=Example\"]\n");
    policy = CallerPolicy.read(dir.resolve("callers.yaml"));
    kept = new CallerPolicy.Presented(null, null, PeerCertificate.of(session), peer, null);
    if (perCall() == null || perConnection() == null) {
      throw new IllegalStateException("the benchmark's certificate was not identified");
    }
  }

  @TearDown
  public void tearDown() {
    ReferenceCountUtil.release(server);
    ReferenceCountUtil.release(client);
  }

  /** Every call reading the certificate from the TLS session, then identifying by it. */
  @Benchmark
  public CallerPolicy.Tenant perCall() {
    return policy.identify(new CallerPolicy.Presented(null, null, PeerCertificate.of(session), peer, null)).tenant();
  }

  /** Every call identifying by the certificate its connection read once. */
  @Benchmark
  public CallerPolicy.Tenant perConnection() {
    return policy.identify(kept).tenant();
  }

  private static KeyManagerFactory keys(Path dir, String name, String subject) throws Exception {
    KeyManagerFactory factory = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
    factory.init(Keytool.store(Keytool.selfSigned(dir, name, subject, null)), Keytool.PASSWORD.toCharArray());
    return factory;
  }

  /** Passes each engine's records to the other until both have finished the handshake. */
  private void handshake() throws Exception {
    ByteBuffer empty = ByteBuffer.allocate(0);
    ByteBuffer toServer = ByteBuffer.allocate(1 << 16);
    ByteBuffer toClient = ByteBuffer.allocate(1 << 16);
    ByteBuffer sink = ByteBuffer.allocate(1 << 16);
    client.beginHandshake();
    server.beginHandshake();
    for (int round = 0; round < 100; round++) {
      client.wrap(empty, toServer);
      toServer.flip();
      server.unwrap(toServer, sink);
      toServer.compact();
      runTasks(server);
      server.wrap(empty, toClient);
      toClient.flip();
      client.unwrap(toClient, sink);
      toClient.compact();
      runTasks(client);
      sink.clear();
      if (done(client) && done(server) && toServer.position() == 0 && toClient.position() == 0) {
        return;
      }
    }
    throw new IllegalStateException("the handshake did not finish: client " + client.getHandshakeStatus()
        + ", server " + server.getHandshakeStatus());
  }

  private static boolean done(SSLEngine engine) {
    HandshakeStatus status = engine.getHandshakeStatus();
    return status == HandshakeStatus.NOT_HANDSHAKING || status == HandshakeStatus.FINISHED;
  }

  private static void runTasks(SSLEngine engine) {
    for (Runnable task; (task = engine.getDelegatedTask()) != null; ) {
      task.run();
    }
  }
}

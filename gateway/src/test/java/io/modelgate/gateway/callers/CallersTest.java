package io.modelgate.gateway.callers;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.gen.RSAKeyGenerator;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelMetadataRequest;
import io.modelgate.proto.inference.ServerLiveRequest;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.util.Date;
import java.util.List;
import javax.security.auth.x500.X500Principal;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Caller identity on the inference port, end to end in process: API keys (hashed, reloaded on
 * change), signed tokens against a local JWKS, model allow-lists; and, on the policy itself, client
 * certificates and a trusted proxy's header.
 */
class CallersTest {
  @TempDir Path root;

  private static final String KEY_A = "mgk_key-of-tenant-a-0123456789abcdef";
  private static final String KEY_B = "mgk_key-of-tenant-b-0123456789abcdef";

  private Path callers(String yaml) throws Exception {
    Path file = root.resolve("callers.yaml");
    Files.writeString(file, yaml);
    return file;
  }

  private Gateway gateway(Path callers) throws Exception {
    Gateway.write(root, "alpha", 1, Gateway.affine());
    Gateway.write(root, "beta", 1, Gateway.affine());
    return Gateway.inProcessWithCallers(root, callers, Clock.systemUTC());
  }

  private static GRPCInferenceServiceBlockingStub with(Gateway gateway, String header, String value) {
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of(header, Metadata.ASCII_STRING_MARSHALLER), value);
    return gateway.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
  }

  private static ModelInferRequest request(String model) {
    return Tensors.affine(1, 2, 3).setModelName(model).build();
  }

  private static void refused(Runnable call, Status.Code code, String message) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(message);
    });
  }

  @Test
  void apiKeys_identifyTenants_theirModelsAreEnforced_andSecretsAreNeverEchoed() throws Exception {
    Path file = callers("tenants:\n"
        + "  a:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + "]\n    models: [alpha]\n"
        + "  b:\n    api_keys: [" + CallerPolicy.hash(KEY_B) + "]\n");
    try (Gateway gateway = gateway(file)) {
      // Probes stay open.
      assertThat(gateway.blocking().serverLive(ServerLiveRequest.getDefaultInstance()).getLive()).isTrue();
      refused(() -> gateway.blocking().modelInfer(request("alpha")), Status.Code.UNAUTHENTICATED,
          "inference calls need credentials: a client certificate (mutual TLS), or an API key (authorization: Bearer <key>, or x-api-key: <key>)");
      refused(() -> with(gateway, "authorization", "Bearer mgk_wrong-secret-value").modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "unknown API key");
      assertThatThrownBy(() -> with(gateway, "authorization", "Bearer mgk_wrong-secret-value").modelInfer(request("alpha")))
          .hasMessageNotContaining("mgk_wrong-secret-value");

      assertThat(with(gateway, "authorization", "Bearer " + KEY_A).modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      assertThat(with(gateway, "x-api-key", KEY_B).modelInfer(request("beta")).getModelName()).isEqualTo("beta");
      refused(() -> with(gateway, "authorization", "Bearer " + KEY_A).modelInfer(request("beta")), Status.Code.PERMISSION_DENIED,
          "tenant 'a' may not use model 'beta' (its models in the callers file: [alpha])");
      refused(() -> with(gateway, "authorization", "Bearer " + KEY_A).modelMetadata(
          ModelMetadataRequest.newBuilder().setName("beta").build()), Status.Code.PERMISSION_DENIED, "may not use model 'beta'");

      // Usage names the tenant.
      var usage = gateway.server.usage().report(Instant.now().minusSeconds(3600), Instant.now().plusSeconds(3600), "", "");
      assertThat(usage.getRecordsList()).extracting(r -> r.getTenant() + "/" + r.getModel() + ":" + r.getRequests())
          .containsExactly("a/alpha:1", "b/beta:1");

      // Revoking a key and adding one take effect when the file is read again, without a restart.
      String keyC = "mgk_key-of-tenant-c-0123456789abcdef";
      Files.writeString(file, "tenants:\n  b:\n    api_keys: [" + CallerPolicy.hash(KEY_B) + "]\n"
          + "  c:\n    api_keys: [" + CallerPolicy.hash(keyC) + "]\n");
      Files.setLastModifiedTime(file, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 5000));
      assertThat(gateway.server.callers().reload()).isTrue();
      refused(() -> with(gateway, "authorization", "Bearer " + KEY_A).modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "unknown API key");
      assertThat(with(gateway, "authorization", "Bearer " + keyC).modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");

      // A change that does not parse keeps the policy in force.
      Files.writeString(file, "tenants: [nonsense\n");
      Files.setLastModifiedTime(file, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 10000));
      assertThat(gateway.server.callers().reload()).isFalse();
      assertThat(with(gateway, "authorization", "Bearer " + keyC).modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
    }
  }

  @Test
  void aStream_carriesItsCallersTenant_perRequest() throws Exception {
    Path file = callers("tenants:\n  a:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + "]\n    models: [alpha]\n");
    try (Gateway gateway = gateway(file)) {
      io.modelgate.gateway.testing.StreamCollector collector = new io.modelgate.gateway.testing.StreamCollector();
      java.util.concurrent.BlockingQueue<io.modelgate.proto.inference.ModelStreamInferResponse> answers = collector.responses;
      java.util.concurrent.CompletableFuture<Status> end = collector.end;
      io.grpc.stub.StreamObserver<ModelInferRequest> requests = gateway.async().withCallCredentials(Gateway.bearer(KEY_A))
          .modelStreamInfer(collector);
      requests.onNext(request("alpha"));
      requests.onNext(request("beta"));
      requests.onNext(request("alpha"));
      requests.onCompleted();
      List<io.modelgate.proto.inference.ModelStreamInferResponse> got = new java.util.ArrayList<>();
      for (int i = 0; i < 3; i++) {
        got.add(answers.poll(30, java.util.concurrent.TimeUnit.SECONDS));
      }
      assertThat(end.get(30, java.util.concurrent.TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);
      // The refused request is answered in band; the others are served.
      assertThat(got).extracting(r -> r.getErrorMessage().isEmpty() ? "ok" : r.getErrorMessage())
          .containsExactlyInAnyOrder("ok", "ok", "tenant 'a' may not use model 'beta' (its models in the callers file: [alpha])");
      var usage = gateway.server.usage().report(Instant.now().minusSeconds(3600), Instant.now().plusSeconds(3600), "a", "");
      assertThat(usage.getRecordsList()).extracting(r -> r.getModel() + ":" + r.getRequests() + ":" + r.getRows())
          .containsExactly("alpha:2:2");
      // Without credentials the stream does not open.
      io.grpc.stub.StreamObserver<ModelInferRequest> refused = gateway.async().modelStreamInfer(new io.grpc.stub.StreamObserver<>() {
        @Override
        public void onNext(io.modelgate.proto.inference.ModelStreamInferResponse value) {}

        @Override
        public void onError(Throwable t) {
          answers.add(io.modelgate.proto.inference.ModelStreamInferResponse.newBuilder()
              .setErrorMessage(Status.fromThrowable(t).getCode().name()).build());
        }

        @Override
        public void onCompleted() {}
      });
      refused.onNext(request("alpha"));
      assertThat(answers.poll(30, java.util.concurrent.TimeUnit.SECONDS).getErrorMessage()).isEqualTo("UNAUTHENTICATED");
    }
  }

  @Test
  void signedTokens_areVerifiedAgainstTheJwks_theirTenantMustBeKnown() throws Exception {
    RSAKey key = new RSAKeyGenerator(2048).keyID("k1").generate();
    Files.writeString(root.resolve("jwks.json"), new JWKSet(key.toPublicJWK()).toString());
    Path file = callers("tenants:\n  fraud:\n    models: [alpha]\n"
        + "jwt:\n  jwks: jwks.json\n  issuer: https://login.example\n  audience: modelgate\n  tenant_claim: tenant\n");
    try (Gateway gateway = gateway(file)) {
      String good = token(key, "fraud", "https://login.example", "modelgate", 600);
      assertThat(with(gateway, "authorization", "Bearer " + good).modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      refused(() -> with(gateway, "authorization", "Bearer " + good).modelInfer(request("beta")), Status.Code.PERMISSION_DENIED,
          "tenant 'fraud' may not use model 'beta'");
      String expired = token(key, "fraud", "https://login.example", "modelgate", -60);
      refused(() -> with(gateway, "authorization", "Bearer " + expired).modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "the token is not valid: Expired JWT");
      String otherIssuer = token(key, "fraud", "https://evil.example", "modelgate", 600);
      refused(() -> with(gateway, "authorization", "Bearer " + otherIssuer).modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "the token is not valid");
      String unknownTenant = token(key, "someone", "https://login.example", "modelgate", 600);
      refused(() -> with(gateway, "authorization", "Bearer " + unknownTenant).modelInfer(request("alpha")),
          Status.Code.PERMISSION_DENIED, "tenant 'someone' of the token is not in the callers file");
      String forged = token(new RSAKeyGenerator(2048).keyID("k1").generate(), "fraud", "https://login.example", "modelgate", 600);
      refused(() -> with(gateway, "authorization", "Bearer " + forged).modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "the token is not valid");

      // The keys rotated in the JWKS file alone (the callers file untouched): read again, the new
      // key's tokens are served and the old key's refused, though the old one's was verified before.
      RSAKey next = new RSAKeyGenerator(2048).keyID("k2").generate();
      Files.writeString(root.resolve("jwks.json"), new JWKSet(next.toPublicJWK()).toString());
      Files.setLastModifiedTime(root.resolve("jwks.json"),
          java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 5000));
      assertThat(gateway.server.callers().reload()).isTrue();
      refused(() -> with(gateway, "authorization", "Bearer " + good).modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "the token is not valid");
      String rotated = token(next, "fraud", "https://login.example", "modelgate", 600);
      assertThat(with(gateway, "authorization", "Bearer " + rotated).modelInfer(request("alpha")).getModelName())
          .isEqualTo("alpha");
      // Nothing changed since: not read again.
      assertThat(gateway.server.callers().reload()).isFalse();
    }
  }

  @Test
  void aTokenVerifiedOnce_isKnownUntilItExpires_butNotByAFileReadAgainWithOtherKeys() throws Exception {
    RSAKey first = new RSAKeyGenerator(2048).keyID("k1").generate();
    Files.writeString(root.resolve("jwks.json"), new JWKSet(first.toPublicJWK()).toString());
    String yaml = "tenants:\n  fraud: {}\n  web: {}\n"
        + "jwt:\n  jwks: jwks.json\n  issuer: https://login.example\n  audience: modelgate\n  tenant_claim: tenant\n";
    CallerPolicy policy = CallerPolicy.read(callers(yaml));
    InetSocketAddress peer = new InetSocketAddress("127.0.0.1", 5000);
    String fraud = token(first, "fraud", "https://login.example", "modelgate", 600);
    String web = token(first, "web", "https://login.example", "modelgate", 600);
    // Each token, again and again, is its own tenant's: kept by the hash of all its bytes.
    for (int i = 0; i < 3; i++) {
      assertThat(policy.identify(new CallerPolicy.Presented(fraud, null, null, peer, null)).tenant().name()).isEqualTo("fraud");
      assertThat(policy.identify(new CallerPolicy.Presented(web, null, null, peer, null)).tenant().name()).isEqualTo("web");
    }
    // A genuine token naming a tenant the file does not list is refused each time it comes.
    String stranger = token(first, "stranger", "https://login.example", "modelgate", 600);
    for (int i = 0; i < 2; i++) {
      CallerPolicy.Identity refused = policy.identify(new CallerPolicy.Presented(stranger, null, null, peer, null));
      assertThat(refused.denied()).isTrue();
      assertThat(refused.refusal()).isEqualTo("tenant 'stranger' of the token is not in the callers file");
    }
    // The same claims signed by a key the file does not trust: not the token kept.
    String forged = token(new RSAKeyGenerator(2048).keyID("k1").generate(), "fraud", "https://login.example", "modelgate", 600);
    assertThat(policy.identify(new CallerPolicy.Presented(forged, null, null, peer, null)).refusal())
        .startsWith("the token is not valid");
    // The keys rotated: the file read again trusts only the new key, and the token signed by the
    // old one is refused although the old reading had it kept.
    RSAKey second = new RSAKeyGenerator(2048).keyID("k2").generate();
    Files.writeString(root.resolve("jwks.json"), new JWKSet(second.toPublicJWK()).toString());
    CallerPolicy rotated = CallerPolicy.read(callers(yaml));
    assertThat(rotated.identify(new CallerPolicy.Presented(fraud, null, null, peer, null)).refusal())
        .startsWith("the token is not valid");
    assertThat(rotated.identify(new CallerPolicy.Presented(token(second, "fraud", "https://login.example", "modelgate", 600),
        null, null, peer, null)).tenant().name()).isEqualTo("fraud");
  }

  @Test
  void manyTenants_eachKeyAndCertificateIdentifiesItsOwn() throws Exception {
    StringBuilder yaml = new StringBuilder("tenants:\n");
    for (int i = 0; i < 500; i++) {
      yaml.append("  t").append(i).append(":\n    api_keys: [").append(CallerPolicy.hash("mgk_key-" + i + "-0123456789abcdef"))
          .append(", ").append(CallerPolicy.hash("mgk_second-" + i + "-0123456789abcdef")).append("]\n")
          .append("    certificates: [\"CN=svc-").append(i).append(",O=Example\"]\n");
    }
    CallerPolicy policy = CallerPolicy.read(callers(yaml.toString()));
    InetSocketAddress peer = new InetSocketAddress("127.0.0.1", 5000);
    for (int i = 0; i < 500; i += 7) {
      assertThat(policy.identify(new CallerPolicy.Presented(null, "mgk_key-" + i + "-0123456789abcdef", null, peer, null))
          .tenant().name()).isEqualTo("t" + i);
      assertThat(policy.identify(new CallerPolicy.Presented("mgk_second-" + i + "-0123456789abcdef", null, null, peer, null))
          .tenant().name()).isEqualTo("t" + i);
      assertThat(policy.identify(new CallerPolicy.Presented(null, null, PeerCertificate.withSubject("CN=svc-" + i + ",O=Example"), peer, null))
          .tenant().name()).isEqualTo("t" + i);
    }
    assertThat(policy.identify(new CallerPolicy.Presented(null, "mgk_key-500-0123456789abcdef", null, peer, null)).refusal())
        .isEqualTo("unknown API key");
  }

  private static String token(RSAKey key, String tenant, String issuer, String audience, long expiresInSeconds) throws Exception {
    SignedJWT jwt = new SignedJWT(new JWSHeader.Builder(JWSAlgorithm.RS256).keyID(key.getKeyID()).build(),
        new JWTClaimsSet.Builder().claim("tenant", tenant).issuer(issuer).audience(audience)
            .expirationTime(Date.from(Instant.now().plusSeconds(expiresInSeconds))).build());
    jwt.sign(new RSASSASigner(key));
    return jwt.serialize();
  }

  @Test
  void certificatesAndTrustedProxies_identifyOnlyWhatTheyShould() throws Exception {
    Path file = callers("identify: [certificate, proxy, api_key]\n"
        + "tenants:\n  svc:\n    certificates: [\"CN=svc,O=Example\"]\n  web:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + "]\n"
        + "proxy:\n  header: X-Tenant\n  trusted: [127.0.0.1, 10.0.0.0/8]\n");
    CallerPolicy policy = CallerPolicy.read(file);
    InetSocketAddress local = new InetSocketAddress("127.0.0.1", 5000);
    InetSocketAddress inside = new InetSocketAddress("10.1.2.3", 5000);
    InetSocketAddress outside = new InetSocketAddress("192.0.2.7", 5000);
    assertThat(policy.identify(new CallerPolicy.Presented(null, null, PeerCertificate.withSubject("CN=svc,O=Example"), outside, null)).tenant().name())
        .isEqualTo("svc");
    CallerPolicy.Identity stranger = policy.identify(new CallerPolicy.Presented(null, null, PeerCertificate.withSubject("CN=stranger"), outside, null));
    assertThat(stranger.denied()).isTrue();
    assertThat(policy.identify(new CallerPolicy.Presented(null, null, null, inside, "web")).tenant().name()).isEqualTo("web");
    assertThat(policy.identify(new CallerPolicy.Presented(null, null, null, local, "svc")).method())
        .isEqualTo(CallerPolicy.Method.PROXY);
    // The header from an address that is not a trusted proxy is ignored: no credentials.
    CallerPolicy.Identity spoofed = policy.identify(new CallerPolicy.Presented(null, null, null, outside, "web"));
    assertThat(spoofed.tenant()).isNull();
    assertThat(spoofed.denied()).isFalse();
    assertThat(spoofed.refusal()).contains("the header x-tenant from a trusted proxy");
    assertThat(policy.identify(new CallerPolicy.Presented(null, null, null, inside, "nobody")).denied()).isTrue();
    assertThat(policy.identify(new CallerPolicy.Presented(KEY_A, null, null, outside, null)).tenant().name()).isEqualTo("web");
  }

  /**
   * A certificate names its tenant by its subject, else by the first of its URI alternative names,
   * then of its DNS names, that the file lists (a mesh's workload certificate, with an empty
   * subject and a SPIFFE ID); one naming no tenant is refused with all its names.
   */
  @Test
  void aCertificatesAlternativeNames_nameItsTenant_afterItsSubject() throws Exception {
    CallerPolicy policy = CallerPolicy.read(callers("identify: [certificate]\ntenants:\n"
        + "  legacy:\n    certificates: [\"CN=scorer,O=Example\"]\n"
        + "  fraud:\n    certificates: [\"uri:spiffe://example.org/ns/fraud/sa/scorer\"]\n"
        + "  search:\n    certificates: [\"dns:Ranker.Search.svc\"]\n"));
    InetSocketAddress peer = new InetSocketAddress("10.1.2.3", 5000);
    java.util.function.Function<PeerCertificate, String> tenant = certificate -> {
      CallerPolicy.Identity identity = policy.identify(new CallerPolicy.Presented(null, null, certificate, peer, null));
      return identity.tenant() != null ? identity.tenant().name() : identity.refusal();
    };
    assertThat(tenant.apply(new PeerCertificate(new X500Principal(""),
        List.of("spiffe://example.org/ns/fraud/sa/scorer"), List.of()))).isEqualTo("fraud");
    assertThat(tenant.apply(new PeerCertificate(new X500Principal("CN=scorer, O=Example"),
        List.of("spiffe://example.org/ns/fraud/sa/scorer"), List.of()))).isEqualTo("legacy");
    assertThat(tenant.apply(new PeerCertificate(new X500Principal("CN=other"),
        List.of("spiffe://example.org/ns/other/sa/x", "spiffe://example.org/ns/fraud/sa/scorer"), List.of("ranker.search.svc"))))
        .isEqualTo("fraud");
    assertThat(tenant.apply(new PeerCertificate(new X500Principal("CN=other"), List.of(), List.of("RANKER.search.svc"))))
        .isEqualTo("search");
    // A URI is compared exactly: a SPIFFE ID's path is case-sensitive.
    assertThat(tenant.apply(new PeerCertificate(new X500Principal(""), List.of("spiffe://example.org/ns/Fraud/sa/scorer"),
        List.of()))).isEqualTo("client certificate with an empty subject (uri:spiffe://example.org/ns/Fraud/sa/scorer) "
            + "is not a known tenant's");
  }

  /**
   * An entry ending in {@code /*} names every URI below its path (a namespace's workloads); an
   * exact entry comes first, then the longest prefix, and a prefix ends at a {@code /}, so {@code
   * ns/fraud/*} does not name {@code ns/fraudulent/...}.
   */
  @Test
  void aUriPrefix_namesTheWorkloadsBelowIt_theLongestFirst_afterExactNames() throws Exception {
    CallerPolicy policy = CallerPolicy.read(callers("identify: [certificate]\ntenants:\n"
        + "  fraud:\n    certificates: [\"uri:spiffe://example.org/ns/fraud/*\"]\n"
        + "  scorer:\n    certificates: [\"uri:spiffe://example.org/ns/fraud/sa/scorer\"]\n"
        + "  platform:\n    certificates: [\"uri:spiffe://example.org/*\"]\n"
        + "  other-domain:\n    certificates: [\"uri:spiffe://other.example/ns/fraud/*\"]\n"));
    InetSocketAddress peer = new InetSocketAddress("10.1.2.3", 5000);
    java.util.function.Function<String, String> tenant = uri -> {
      CallerPolicy.Identity identity = policy.identify(new CallerPolicy.Presented(null, null,
          new PeerCertificate(new X500Principal(""), List.of(uri), List.of()), peer, null));
      return identity.tenant() != null ? identity.tenant().name() : identity.refusal();
    };
    assertThat(tenant.apply("spiffe://example.org/ns/fraud/sa/ranker")).isEqualTo("fraud");
    assertThat(tenant.apply("spiffe://example.org/ns/fraud/sa/scorer")).isEqualTo("scorer");
    assertThat(tenant.apply("spiffe://example.org/ns/fraudulent/sa/x")).isEqualTo("platform");
    assertThat(tenant.apply("spiffe://example.org/ns/fraud")).isEqualTo("platform");
    assertThat(tenant.apply("spiffe://other.example/ns/fraud/sa/x")).isEqualTo("other-domain");
    assertThat(tenant.apply("spiffe://third.example/ns/fraud/sa/x")).startsWith("client certificate with an empty subject");
    assertThat(PeerCertificate.prefixes(List.of("spiffe://example.org/ns/fraud/sa/scorer", "spiffe://example.org")))
        .containsExactly("spiffe://example.org/ns/fraud/sa/", "spiffe://example.org/ns/fraud/", "spiffe://example.org/ns/",
            "spiffe://example.org/");
  }

  @Test
  void aTrustedProxysHeader_namesTheTenant_overARealConnection() throws Exception {
    Gateway.write(root, "alpha", 1, Gateway.affine());
    Path file = callers("identify: [proxy]\ntenants:\n  web:\n    models: [alpha]\n"
        + "proxy:\n  header: X-Tenant\n  trusted: [127.0.0.1]\n");
    io.modelgate.gateway.stats.StatsRegistry stats =
        new io.modelgate.gateway.stats.StatsRegistry(java.time.Duration.ofSeconds(5), Clock.systemUTC(), false);
    io.modelgate.gateway.server.GatewayServer server = Gateway.server(root, stats,
        new io.modelgate.gateway.server.ServerSettings("127.0.0.1", 0, 4 << 20, 1, java.time.Duration.ofSeconds(5)),
        Gateway.adminSettings(root.resolve(".state"), -1).withCallers(file));
    io.grpc.ManagedChannel channel = io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("x-tenant", Metadata.ASCII_STRING_MARSHALLER), "web");
      GRPCInferenceServiceBlockingStub web = io.modelgate.proto.inference.GRPCInferenceServiceGrpc.newBlockingStub(channel)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
      assertThat(web.modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      var usage = server.usage().report(Instant.now().minusSeconds(3600), Instant.now().plusSeconds(3600), "", "");
      assertThat(usage.getRecordsList()).extracting(r -> r.getTenant() + "/" + r.getModel() + ":" + r.getRequests())
          .containsExactly("web/alpha:1");
      Metadata stranger = new Metadata();
      stranger.put(Metadata.Key.of("x-tenant", Metadata.ASCII_STRING_MARSHALLER), "nobody");
      refused(() -> io.modelgate.proto.inference.GRPCInferenceServiceGrpc.newBlockingStub(channel)
              .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(stranger)).modelInfer(request("alpha")),
          Status.Code.PERMISSION_DENIED, "tenant named by the proxy is not in the callers file");
      refused(() -> io.modelgate.proto.inference.GRPCInferenceServiceGrpc.newBlockingStub(channel).modelInfer(request("alpha")),
          Status.Code.UNAUTHENTICATED, "the header x-tenant from a trusted proxy");
    } finally {
      channel.shutdownNow();
      server.stop();
    }
  }

  /**
   * Over a real mutual-TLS connection (BoringSSL where packaged), the client certificate's subject
   * names the tenant, matched as X.500 compares names whatever the case and spacing the file uses,
   * and so does a workload certificate's SPIFFE ID (a URI alternative name); a certificate the file
   * does not list is PERMISSION_DENIED with its subject, and comes before an
   * API key sent on the same call (the file's order).
   */
  @Test
  void aClientCertificate_namesTheTenant_overMutualTls() throws Exception {
    Path pki = Files.createDirectories(root.resolve("pki"));
    io.modelgate.gateway.testing.TestCertificates certs = io.modelgate.gateway.testing.TestCertificates.create(pki);
    Path[] stranger = certs.client("stranger", "CN=stranger, O=Elsewhere", null);
    Path[] workload = certs.client("workload", "O=SPIRE", "SAN=uri:spiffe://example.org/ns/fraud/sa/scorer");
    Path file = callers("identify: [certificate, api_key]\ntenants:\n"
        + "  alice:\n    certificates: [\"cn = Operator-Alice\"]\n    models: [alpha]\n"
        + "  fraud:\n    certificates: [\"uri:spiffe://example.org/ns/fraud/sa/scorer\"]\n"
        + "  web:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + "]\n");
    try (TlsGateway gateway = new TlsGateway(certs, false, file)) {
      GRPCInferenceServiceBlockingStub alice = gateway.client(certs.clientChain, certs.clientKey);
      assertThat(alice.modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      assertThat(alice.modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      // A mesh's workload certificate: its SPIFFE ID, a URI alternative name, names the tenant.
      assertThat(gateway.client(workload[0], workload[1]).modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      assertThat(gateway.usage()).containsExactlyInAnyOrder("alice/alpha:2", "fraud/alpha:1");
      refused(() -> gateway.client(stranger[0], stranger[1], KEY_A).modelInfer(request("alpha")), Status.Code.PERMISSION_DENIED,
          "client certificate CN=stranger,O=Elsewhere is not a known tenant's");
    }
  }

  /**
   * With client certificates optional on the port ({@code --tls-client-auth optional}), a client
   * without one connects and is identified by its API key, one with a certificate by the
   * certificate, and one with neither is told what is expected; a certificate the client CA did
   * not sign, naming a known tenant's subject, is still turned away at the handshake.
   */
  @Test
  void optionalClientCertificates_letCallersWithoutOneUseTheirKeys() throws Exception {
    Path pki = Files.createDirectories(root.resolve("pki"));
    io.modelgate.gateway.testing.TestCertificates certs = io.modelgate.gateway.testing.TestCertificates.create(pki);
    Path[] forged = certs.selfSigned("forged", "CN=operator-alice");
    Path file = callers("tenants:\n  alice:\n    certificates: [\"CN=operator-alice\"]\n"
        + "  web:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + "]\n");
    try (TlsGateway gateway = new TlsGateway(certs, true, file)) {
      assertThat(gateway.client(null, null, KEY_A).modelInfer(request("alpha")).getModelName()).isEqualTo("alpha");
      assertThat(gateway.client(certs.clientChain, certs.clientKey).modelInfer(request("alpha")).getModelName())
          .isEqualTo("alpha");
      assertThat(gateway.usage()).containsExactlyInAnyOrder("web/alpha:1", "alice/alpha:1");
      refused(() -> gateway.client(null, null).modelInfer(request("alpha")), Status.Code.UNAUTHENTICATED,
          "inference calls need credentials: a client certificate (mutual TLS), or an API key");
      // A certificate with alice's subject that the client CA did not sign: turned away at the handshake.
      // A client that presents a certificate with alice's subject that the client CA did not sign
      // (a client's key manager would not offer it, so this one insists): refused at the handshake;
      // the same client presenting alice's own certificate is alice.
      assertThat(gateway.insisting(certs.clientChain, certs.clientKey).modelInfer(request("alpha")).getModelName())
          .isEqualTo("alpha");
      refused(() -> gateway.insisting(forged[0], forged[1]).modelInfer(request("alpha")),
          Status.Code.UNAVAILABLE, "");
      assertThat(gateway.usage()).containsExactlyInAnyOrder("web/alpha:1", "alice/alpha:2");
    }
  }

  /** A gateway serving {@code alpha} over mutual TLS with a callers file, and its clients. */
  private final class TlsGateway implements AutoCloseable {
    private final io.modelgate.gateway.testing.TestCertificates certs;
    private final io.modelgate.gateway.stats.StatsRegistry stats =
        new io.modelgate.gateway.stats.StatsRegistry(java.time.Duration.ofSeconds(5), Clock.systemUTC(), false);
    private final io.modelgate.gateway.server.GatewayServer server;
    private final List<io.grpc.ManagedChannel> channels = new java.util.ArrayList<>();

    TlsGateway(io.modelgate.gateway.testing.TestCertificates certs, boolean clientOptional, Path callers) throws Exception {
      this.certs = certs;
      Gateway.write(root, "alpha", 1, Gateway.affine());
      io.modelgate.gateway.tls.TlsSettings mutual =
          new io.modelgate.gateway.tls.TlsSettings(certs.serverChain, certs.serverKey, certs.caCert, clientOptional);
      server = Gateway.server(root, stats,
          new io.modelgate.gateway.server.ServerSettings("127.0.0.1", 0, 4 << 20, 1, java.time.Duration.ofSeconds(5), mutual),
          Gateway.adminSettings(root.resolve(".state"), -1).withCallers(callers));
    }

    GRPCInferenceServiceBlockingStub client(Path chain, Path key) {
      return client(chain, key, null);
    }

    /** A client with this certificate (none when null), sending this API key (none when null). */
    GRPCInferenceServiceBlockingStub client(Path chain, Path key, String apiKey) {
      io.grpc.ManagedChannel channel;
      try {
        io.netty.handler.ssl.SslContextBuilder tls = io.grpc.netty.GrpcSslContexts.forClient().trustManager(certs.caCert.toFile());
        if (chain != null) {
          tls.keyManager(chain.toFile(), key.toFile());
        }
        channel = io.grpc.netty.NettyChannelBuilder.forAddress("localhost", server.port()).sslContext(tls.build()).build();
      } catch (javax.net.ssl.SSLException e) {
        throw new IllegalStateException(e);
      }
      channels.add(channel);
      GRPCInferenceServiceBlockingStub stub = io.modelgate.proto.inference.GRPCInferenceServiceGrpc.newBlockingStub(channel)
          .withDeadlineAfter(30, java.util.concurrent.TimeUnit.SECONDS);
      if (apiKey == null) {
        return stub;
      }
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER), apiKey);
      return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }

    /**
     * A client that presents the certificate {@code chain} (PEM, with its PKCS#8 PEM {@code key})
     * whatever CAs the server names (a client's key manager otherwise offers only a certificate one
     * of them signed).
     */
    GRPCInferenceServiceBlockingStub insisting(Path chain, Path key) {
      String alias = "insisting";
      try {
        java.security.cert.X509Certificate[] certificates;
        try (var in = Files.newInputStream(chain)) {
          certificates = io.grpc.util.CertificateUtils.getX509Certificates(in);
        }
        String pem = Files.readString(key).replaceAll("-----[A-Z ]+-----|\\s", "");
        java.security.PrivateKey privateKey = java.security.KeyFactory.getInstance("EC")
            .generatePrivate(new java.security.spec.PKCS8EncodedKeySpec(java.util.Base64.getDecoder().decode(pem)));
        java.security.KeyStore store = java.security.KeyStore.getInstance("PKCS12");
        store.load(null, null);
        store.setKeyEntry(alias, privateKey, "secret".toCharArray(), certificates);
        javax.net.ssl.KeyManagerFactory factory =
            javax.net.ssl.KeyManagerFactory.getInstance(javax.net.ssl.KeyManagerFactory.getDefaultAlgorithm());
        factory.init(store, "secret".toCharArray());
        javax.net.ssl.X509ExtendedKeyManager keys = (javax.net.ssl.X509ExtendedKeyManager) factory.getKeyManagers()[0];
        javax.net.ssl.X509ExtendedKeyManager insist = new javax.net.ssl.X509ExtendedKeyManager() {
          @Override public String[] getClientAliases(String type, java.security.Principal[] issuers) { return new String[] {alias}; }
          @Override public String chooseClientAlias(String[] type, java.security.Principal[] issuers, java.net.Socket s) { return alias; }
          @Override public String chooseEngineClientAlias(String[] type, java.security.Principal[] issuers,
              javax.net.ssl.SSLEngine engine) { return alias; }
          @Override public String[] getServerAliases(String type, java.security.Principal[] issuers) { return null; }
          @Override public String chooseServerAlias(String type, java.security.Principal[] issuers, java.net.Socket s) { return null; }
          @Override public java.security.cert.X509Certificate[] getCertificateChain(String name) { return keys.getCertificateChain(name); }
          @Override public java.security.PrivateKey getPrivateKey(String name) { return keys.getPrivateKey(name); }
        };
        io.grpc.ManagedChannel channel = io.grpc.netty.NettyChannelBuilder.forAddress("localhost", server.port())
            .sslContext(io.grpc.netty.GrpcSslContexts.forClient().trustManager(certs.caCert.toFile()).keyManager(insist).build())
            .build();
        channels.add(channel);
        return io.modelgate.proto.inference.GRPCInferenceServiceGrpc.newBlockingStub(channel)
            .withDeadlineAfter(30, java.util.concurrent.TimeUnit.SECONDS);
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }

    /** Requests recorded in the usage ledger, as tenant/model:requests. */
    List<String> usage() {
      return server.usage().report(Instant.now().minusSeconds(3600), Instant.now().plusSeconds(3600), "", "")
          .getRecordsList().stream().map(r -> r.getTenant() + "/" + r.getModel() + ":" + r.getRequests()).toList();
    }

    @Override
    public void close() {
      channels.forEach(io.grpc.ManagedChannel::shutdownNow);
      try {
        server.stop();
      } finally {
        stats.close();
      }
    }
  }

  @Test
  void aCallersFileThatCannotBeUsed_saysWhy() throws Exception {
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    api_keys: [" + KEY_A + "]\n")))
        .hasMessageContaining("tenants.a.api_keys: expected sha256:<64 hex digits> (the hash, never the secret")
        .hasMessageNotContaining(KEY_A);
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    keys: []\n")))
        .hasMessage("tenants.a.keys: unknown key (expected one of: [api_keys, certificates, models, quota, weight])");
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    weight: 0\n")))
        .hasMessage("tenants.a.weight: 0 (expected: a whole number from 1 to 1000; leave it out for 1)");
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    weight: 1.5\n")))
        .hasMessage("tenants.a.weight: 1.5 (expected: a whole number from 1 to 1000; leave it out for 1)");
    CallerPolicy weighted = CallerPolicy.read(callers("tenants:\n  a:\n    weight: 3\n  b: {}\n"));
    assertThat(weighted.tenants().get("a").weight()).isEqualTo(3);
    assertThat(weighted.tenants().get("b").weight()).isEqualTo(1);
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    quota: {requests_per_second: -1}\n")))
        .hasMessage("tenants.a.quota.requests_per_second: -1 (expected: a number above 0)");
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    quota: {rows_per_second: 5000000}\n")))
        .hasMessage("tenants.a.quota.rows_per_second: 5000000 (expected: at most 1000000; leave it out for no limit)");
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a: {}\nproxy:\n  header: x-t\n  trusted: [example.com]\n")))
        .hasMessage("proxy.trusted: 'example.com' (expected an address or a range such as 10.0.0.0/8)");
    // A key or a certificate belongs to one tenant (listed twice for one is harmless).
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + "]\n"
        + "  b:\n    api_keys: [" + CallerPolicy.hash(KEY_B) + ", " + CallerPolicy.hash(KEY_A) + "]\n")))
        .hasMessage("tenants.b.api_keys: a key also listed for tenant 'a' (expected: each key for one tenant)");
    // A certificate's names are compared as they are matched (a subject as X.500 compares names, a
    // URI exactly, a DNS name in any case): written otherwise, the same certificate.
    for (List<String> twice : List.of(List.of("CN=svc", "CN=svc"), List.of("CN=svc,O=Example", "cn=SVC, o=example"),
        List.of("uri:spiffe://example.org/ns/a/sa/x", "URI: spiffe://example.org/ns/a/sa/x"),
        List.of("dns:Scorer.Fraud.svc", "dns:scorer.fraud.svc"),
        List.of("uri:spiffe://example.org/ns/a/*", "uri: spiffe://example.org/ns/a/*"))) {
      assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    certificates: [\"" + twice.get(0) + "\"]\n"
          + "  b:\n    certificates: [\"" + twice.get(1) + "\"]\n")))
          .hasMessage("tenants.b.certificates: " + twice.get(1) + " is also listed for tenant 'a' (expected: each certificate"
              + " for one tenant)");
    }
    assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    certificates: [fraud-svc]\n")))
        .hasMessage("tenants.a.certificates: 'fraud-svc' is not a distinguished name, uri: or dns: name (expected a "
            + "certificate's subject, e.g. CN=fraud-svc,O=Example, or one of its alternative names, e.g. "
            + "uri:spiffe://example.org/ns/fraud/sa/scorer)");
    for (String invalid : List.of("\"\"", "\"uri:\"", "\"uri:not a uri\"", "\"uri:relative/path\"", "\"dns:\"", "\"dns:a b\"",
        "\"uri:spiffe://example.org/ns/a*\"", "\"uri:spiffe://example.org/*/sa/x\"", "\"uri:urn:example:a/*\"", "\"uri:*\"")) {
      assertThatThrownBy(() -> CallerPolicy.read(callers("tenants:\n  a:\n    certificates: [" + invalid + "]\n")))
          .as(invalid).hasMessageContaining("is not a distinguished name, uri: or dns: name");
    }
    assertThat(CallerPolicy.read(callers("tenants:\n  a:\n    api_keys: [" + CallerPolicy.hash(KEY_A) + ", "
        + CallerPolicy.hash(KEY_A) + "]\n")).tenants()).containsOnlyKeys("a");
    assertThatThrownBy(() -> CallerPolicy.read(callers("identify: [jwt]\ntenants:\n  a: {}\n")))
        .hasMessage("identify: jwt needs a jwt mapping (jwks, issuer, audience)");
    assertThatThrownBy(() -> gateway(callers("tenants: {}\n"))).hasMessageContaining(
        "callers file callers.yaml: tenants: expected a mapping of tenant names to their credentials");
  }
}

package io.modelgate.bench.jmh;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.gen.RSAKeyGenerator;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import io.modelgate.gateway.callers.CallerPolicy;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Date;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What identifying a caller costs each call with a callers file ({@link CallerPolicy#identify}, as
 * the inference port's interceptor calls it before the service): by an API key among {@code
 * tenants} tenants of one key each (the last tenant's key, so that every tenant is looked at if
 * they are looked at in turn), or by a signed token (RS256, a 2048-bit key) naming the last tenant.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class CallerIdentityBenchmark {
  @Param({"1", "100", "1000"})
  public int tenants;

  private CallerPolicy policy;
  private CallerPolicy.Presented byKey;
  private CallerPolicy.Presented byToken;

  @Setup
  public void setUp() throws IOException, JOSEException, CallerPolicy.InvalidCallersException {
    Path dir = Files.createTempDirectory("modelgate-bench-callers-");
    RSAKey key = new RSAKeyGenerator(2048).keyID("bench").generate();
    Files.writeString(dir.resolve("jwks.json"), new JWKSet(key.toPublicJWK()).toString());
    StringBuilder file = new StringBuilder("identify: [api_key, jwt]\njwt:\n  jwks: jwks.json\n  issuer: https://login.example\n"
        + "  audience: modelgate\ntenants:\n");
    String last = null;
    for (int i = 0; i < tenants; i++) {
      String apiKey = "mgk_bench-" + i + "-0123456789abcdef0123456789abcdef";
      file.append("  tenant-").append(i).append(":\n    api_keys: [").append(CallerPolicy.hash(apiKey)).append("]\n");
      last = apiKey;
    }
    Path callers = dir.resolve("callers.yaml");
    Files.writeString(callers, file);
    policy = CallerPolicy.read(callers);
    InetSocketAddress peer = new InetSocketAddress("127.0.0.1", 40000);
    byKey = new CallerPolicy.Presented(null, last, null, peer, null);
    SignedJWT token = new SignedJWT(new JWSHeader.Builder(JWSAlgorithm.RS256).keyID("bench").build(),
        new JWTClaimsSet.Builder().subject("tenant-" + (tenants - 1)).issuer("https://login.example").audience("modelgate")
            .expirationTime(new Date(System.currentTimeMillis() + TimeUnit.HOURS.toMillis(24))).build());
    token.sign(new RSASSASigner(key));
    byToken = new CallerPolicy.Presented(token.serialize(), null, null, peer, null);
    check(policy.identify(byKey));
    check(policy.identify(byToken));
  }

  private void check(CallerPolicy.Identity identity) {
    if (identity.tenant() == null || !identity.tenant().name().equals("tenant-" + (tenants - 1))) {
      throw new IllegalStateException("the benchmark's caller was not identified: " + identity);
    }
  }

  @Benchmark
  public CallerPolicy.Identity apiKey() {
    return policy.identify(byKey);
  }

  @Benchmark
  public CallerPolicy.Identity signedToken() {
    return policy.identify(byToken);
  }
}

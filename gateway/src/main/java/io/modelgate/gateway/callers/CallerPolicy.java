package io.modelgate.gateway.callers;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.source.ImmutableJWKSet;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.io.IOException;
import java.io.Reader;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.ParseException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import javax.security.auth.x500.X500Principal;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;

/**
 * Who may call the inference port, from a callers file ({@code --callers FILE}, YAML): the tenants,
 * how each proves who it is, and the models each may use. Validated, and immutable but for the
 * tokens it has verified (a thread-safe cache; any request thread identifies callers); {@link
 * io.modelgate.gateway.config.WatchedFile} reads it again when the file changes.
 *
 * <pre>
 * identify: [certificate, api_key, jwt, proxy]   # the methods tried, in this order
 * tenants:
 *   fraud:
 *     api_keys: [sha256:9f86d0...]     # SHA-256 of each key, hex (modelgate callers new-key)
 *     certificates: ["CN=fraud-svc,O=Example", "uri:spiffe://example.org/ns/fraud/sa/scorer"]
 *     models: [cnn_mnist]              # default: every model
 *     quota: {requests_per_second: 100, rows_per_second: 2000, in_flight: 32}
 *     weight: 3                        # its share when tenants contend, against 1 (default)
 * jwt:                                 # signed tokens, verified against a local JWKS file
 *   jwks: jwks.json                    # relative to this file
 *   issuer: https://login.example
 *   audience: modelgate
 *   tenant_claim: tenant               # default: sub
 * proxy:                               # a tenant header set by a trusted front proxy
 *   header: x-modelgate-tenant
 *   trusted: [127.0.0.1, 10.0.0.0/8]
 * </pre>
 *
 * <p>Every tenant a token or a proxy names must be listed under {@code tenants} (an unknown one is
 * PERMISSION_DENIED), so that the file is the one list of who may call. An API key or a
 * certificate belongs to one tenant: one listed for two is refused when the file is read. A
 * certificate is named by its subject's distinguished name, matched as X.500 compares names (RFC
 * 5280: attribute types and values without regard to case or the spaces around separators), so
 * that {@code "CN=svc, O=Example"} in the file is the certificate whose subject is {@code
 * CN=svc,O=Example}; or by one of its subject alternative names, {@code uri:} (exactly, as a
 * service mesh's SPIFFE ID; or, ending in {@code /*}, every URI below that path: {@code
 * uri:spiffe://example.org/ns/fraud/*} for a namespace's workloads) or {@code dns:} (without regard
 * to case). A certificate is its subject's tenant if the file lists the subject, else the tenant of
 * the first of its URIs the file lists, else of the longest listed prefix of its URI (of its first
 * URI that has one, where it has several: a SPIFFE certificate has one), else of its first DNS name
 * listed. An entry that is none of these is refused when the file is read.
 *
 * <p>Identifying a caller costs the same however many tenants the file lists: an API key is looked
 * up by its SHA-256 (the lookup's timing depends only on the hash of what the caller sent, which
 * tells nothing of any key kept), a certificate by its subject. A signed token is verified once and
 * then looked up by its SHA-256 until it expires ({@link #TOKENS_KEPT} at most, for {@link
 * #TOKEN_KEPT_FOR} at most), so that a client sending the same token on every call pays for the
 * signature's check once; reading the file again starts with none kept.
 */
public final class CallerPolicy {
  /** How a caller proves who it is. */
  public enum Method {
    CERTIFICATE("certificate"),
    API_KEY("api_key"),
    JWT("jwt"),
    PROXY("proxy");

    final String configName;

    Method(String configName) {
      this.configName = configName;
    }

    /** Its name in the callers file's {@code identify}. */
    public String configName() {
      return configName;
    }

    static Method named(String name) throws InvalidCallersException {
      for (Method m : values()) {
        if (m.configName.equals(name)) {
          return m;
        }
      }
      throw new InvalidCallersException("identify: '" + name + "' (expected: certificate, api_key, jwt or proxy)");
    }
  }

  /**
   * A tenant's limits; 0: none.
   *
   * @param requestsPerSecond requests a second, as a token bucket holding one second's worth
   * @param rowsPerSecond rows a second, likewise
   * @param inFlight requests admitted and not yet answered
   */
  public record Quota(double requestsPerSecond, double rowsPerSecond, int inFlight) {
    public static final Quota NONE = new Quota(0, 0, 0);

    public boolean limits() {
      return requestsPerSecond > 0 || rowsPerSecond > 0 || inFlight > 0;
    }
  }

  /**
   * A tenant's quota as set through the admin API: each measure either set there ({@code set}'s,
   * 0 meaning no limit) or left to the callers file's.
   */
  public record QuotaOverride(Quota set, boolean requestsFromFile, boolean rowsFromFile, boolean inFlightFromFile) {
    /** Every measure set through the API. */
    public static QuotaOverride of(Quota set) {
      return new QuotaOverride(set, false, false, false);
    }

    /** Sets at least one measure (else it leaves the quota to the file entirely). */
    public boolean setsAny() {
      return !(requestsFromFile && rowsFromFile && inFlightFromFile);
    }

    /** The quota in force over {@code file}'s: {@link #set} itself when every measure is set here. */
    public Quota over(Quota file) {
      if (!requestsFromFile && !rowsFromFile && !inFlightFromFile) {
        return set;
      }
      return new Quota(requestsFromFile ? file.requestsPerSecond() : set.requestsPerSecond(),
          rowsFromFile ? file.rowsPerSecond() : set.rowsPerSecond(),
          inFlightFromFile ? file.inFlight() : set.inFlight());
    }
  }

  /** The highest weight a tenant may have. */
  public static final int MAX_WEIGHT = 1000;

  /**
   * One tenant: its key hashes, certificate subjects, the models it may use (empty: all), its
   * quota, and its weight: when tenants contend for a version, each one's share of the queue's
   * places, of each batch's rows and of the request memory is its weight's part of the weights of
   * the tenants contending (1 to {@link #MAX_WEIGHT}; all 1: equal shares).
   */
  public record Tenant(String name, List<byte[]> keyHashes, Set<String> certificates, Set<String> models, Quota quota,
      int weight) {
    public Tenant {
      if (weight < 1 || weight > MAX_WEIGHT) {
        throw new IllegalArgumentException("weight " + weight + " is outside 1.." + MAX_WEIGHT);
      }
    }

    /** A tenant of weight 1. */
    public Tenant(String name, List<byte[]> keyHashes, Set<String> certificates, Set<String> models, Quota quota) {
      this(name, keyHashes, certificates, models, quota, 1);
    }

    public boolean allows(String model) {
      return models.isEmpty() || models.contains(model);
    }
  }

  /**
   * What a caller presented, for {@link #identify}.
   *
   * @param certificate the client certificate of its TLS connection, or null; read once per
   *     connection ({@link CallerAuth#PEER_CERTIFICATES})
   */
  public record Presented(String bearer, String apiKeyHeader, PeerCertificate certificate, SocketAddress peer,
      String proxyTenant) {}

  /** The outcome of identifying a caller: a tenant, or why not (a message that echoes no secret). */
  public record Identity(Tenant tenant, Method method, String refusal, boolean denied) {
    static Identity of(Tenant tenant, Method method) {
      return new Identity(tenant, method, null, false);
    }

    static Identity unauthenticated(String why) {
      return new Identity(null, null, why, false);
    }

    static Identity denied(String why) {
      return new Identity(null, null, why, true);
    }
  }

  /** Verified tokens kept at most, per reading of the file (about 200 bytes each). */
  static final int TOKENS_KEPT = 10_000;
  /** A verified token is checked again after this long at most, even before it expires. */
  static final java.time.Duration TOKEN_KEPT_FOR = java.time.Duration.ofMinutes(10);

  private final List<Method> identify;
  private final Map<String, Tenant> tenants;
  /** Each API key's tenant, by the key's SHA-256. */
  private final Map<java.nio.ByteBuffer, Tenant> byKeyHash;
  /** Each client certificate subject's tenant, by the subject's canonical form ({@link X500Principal#CANONICAL}). */
  private final Map<String, Tenant> bySubject;
  /** Each client certificate URI alternative name's tenant. */
  private final Map<String, Tenant> byUri;
  /** Each {@code uri:.../*} entry's tenant, by the URI's prefix up to and with its last {@code /}. */
  private final Map<String, Tenant> byUriPrefix;
  /** Each client certificate DNS alternative name's tenant, by the name in lower case. */
  private final Map<String, Tenant> byDnsName;
  /** Tokens verified, by their SHA-256, with their tenant and when they expire; null without jwt. */
  private final com.google.common.cache.Cache<java.nio.ByteBuffer, Verified> verified;

  /** A token verified: its caller (or why it is refused), and when it expires (milliseconds since the epoch). */
  private record Verified(Identity identity, long expiresMillis) {}
  private final DefaultJWTProcessor<SecurityContext> jwt;
  /** The JWKS file the tokens are verified against, or null. */
  private final Path jwks;
  private final String tenantClaim;
  private final String proxyHeader;
  /** The proxy's header as a gRPC metadata key, made once; null without a proxy. */
  private final io.grpc.Metadata.Key<String> proxyHeaderKey;
  private final List<Cidr> trusted;

  private CallerPolicy(List<Method> identify, Map<String, Tenant> tenants, DefaultJWTProcessor<SecurityContext> jwt,
      Path jwks, String tenantClaim, String proxyHeader, List<Cidr> trusted) {
    this.jwks = jwks;
    this.identify = List.copyOf(identify);
    this.tenants = Map.copyOf(tenants);
    Map<java.nio.ByteBuffer, Tenant> keys = new java.util.HashMap<>();
    Map<String, Tenant> subjects = new java.util.HashMap<>();
    Map<String, Tenant> uris = new java.util.HashMap<>();
    Map<String, Tenant> uriPrefixes = new java.util.HashMap<>();
    Map<String, Tenant> dnsNames = new java.util.HashMap<>();
    for (Tenant tenant : tenants.values()) {
      for (byte[] hash : tenant.keyHashes()) {
        keys.put(java.nio.ByteBuffer.wrap(hash.clone()), tenant);
      }
      for (String entry : tenant.certificates()) {
        CertificateName name = CertificateName.parse(entry);
        (switch (name.kind()) {
          case SUBJECT -> subjects;
          case URI -> uris;
          case URI_PREFIX -> uriPrefixes;
          case DNS -> dnsNames;
        }).put(name.value(), tenant);
      }
    }
    this.byKeyHash = Map.copyOf(keys);
    this.bySubject = Map.copyOf(subjects);
    this.byUri = Map.copyOf(uris);
    this.byUriPrefix = Map.copyOf(uriPrefixes);
    this.byDnsName = Map.copyOf(dnsNames);
    this.verified = jwt == null ? null
        : com.google.common.cache.CacheBuilder.newBuilder().maximumSize(TOKENS_KEPT).expireAfterWrite(TOKEN_KEPT_FOR)
            .<java.nio.ByteBuffer, Verified>build();
    this.jwt = jwt;
    this.tenantClaim = tenantClaim;
    this.proxyHeader = proxyHeader;
    this.proxyHeaderKey = proxyHeader == null ? null : io.grpc.Metadata.Key.of(proxyHeader, io.grpc.Metadata.ASCII_STRING_MARSHALLER);
    this.trusted = List.copyOf(trusted);
  }

  public List<Method> methods() {
    return identify;
  }

  public Map<String, Tenant> tenants() {
    return tenants;
  }

  /**
   * The files this policy was read from besides the callers file: its JWKS file, if any. The
   * server watches them too ({@link io.modelgate.gateway.config.WatchedFile#alsoWatching}), so that
   * keys rotated in the JWKS file are in force without touching the callers file.
   */
  public List<Path> alsoRead() {
    return jwks == null ? List.of() : List.of(jwks);
  }

  /** The header a trusted proxy names the tenant in, or null. */
  public String proxyHeader() {
    return proxyHeader;
  }

  /** The header a trusted proxy names the tenant in, as a metadata key; null without a proxy. */
  public io.grpc.Metadata.Key<String> proxyHeaderKey() {
    return proxyHeaderKey;
  }

  /**
   * The tenant a client certificate names: by its subject, else its first URI listed, else the
   * longest prefix of its first URI that has one a {@code uri:.../*} entry lists, else its first DNS
   * name listed. Map lookups only, as many as the certificate has names and path segments, however
   * many tenants the file lists.
   */
  private Tenant byCertificate(PeerCertificate certificate) {
    Tenant tenant = bySubject.get(certificate.subject().getName(X500Principal.CANONICAL));
    for (int i = 0; tenant == null && i < certificate.uris().size(); i++) {
      tenant = byUri.get(certificate.uris().get(i));
    }
    for (int i = 0; tenant == null && !byUriPrefix.isEmpty() && i < certificate.uriPrefixes().size(); i++) {
      tenant = byUriPrefix.get(certificate.uriPrefixes().get(i));
    }
    for (int i = 0; tenant == null && i < certificate.dnsNames().size(); i++) {
      tenant = byDnsName.get(certificate.dnsNames().get(i));
    }
    return tenant;
  }

  /**
   * An entry of a tenant's {@code certificates}, as it is compared: a subject in canonical form, a
   * URI alternative name as written, a URI prefix ({@code uri:spiffe://example.org/ns/fraud/*}:
   * every URI below {@code spiffe://example.org/ns/fraud/}, kept with its last {@code /}), or a DNS
   * alternative name in lower case.
   */
  record CertificateName(Kind kind, String value) {
    enum Kind { SUBJECT, URI, URI_PREFIX, DNS }

    /** Parses an entry; null when it is none of these. */
    static CertificateName parse(String entry) {
      String text = entry.strip();
      if (text.regionMatches(true, 0, "uri:", 0, 4)) {
        String uri = text.substring(4).strip();
        boolean prefix = uri.endsWith("/*");
        String name = prefix ? uri.substring(0, uri.length() - 1) : uri;
        if (name.isEmpty() || name.indexOf('*') >= 0) {
          return null;
        }
        try {
          java.net.URI parsed = new java.net.URI(name);
          if (!parsed.isAbsolute() || prefix && (parsed.getRawAuthority() == null || parsed.getRawPath().isEmpty())) {
            return null;
          }
        } catch (java.net.URISyntaxException e) {
          return null;
        }
        return new CertificateName(prefix ? Kind.URI_PREFIX : Kind.URI, name);
      }
      if (text.regionMatches(true, 0, "dns:", 0, 4)) {
        String dns = text.substring(4).strip().toLowerCase(java.util.Locale.ROOT);
        return dns.isEmpty() || dns.chars().anyMatch(Character::isWhitespace) ? null : new CertificateName(Kind.DNS, dns);
      }
      try {
        return text.isEmpty() ? null : new CertificateName(Kind.SUBJECT, new X500Principal(text).getName(X500Principal.CANONICAL));
      } catch (IllegalArgumentException e) {
        return null;
      }
    }
  }

  /** The SHA-256 of an API key, as the callers file writes it ({@code sha256:<hex>}). */
  public static String hash(String key) {
    return io.modelgate.gateway.config.Secrets.hash(key);
  }

  /**
   * Identifies a caller by the first of the configured methods it presented credentials for. A
   * method whose credentials are present but wrong refuses (it does not fall through to the next).
   */
  public Identity identify(Presented presented) {
    for (Method method : identify) {
      switch (method) {
        case CERTIFICATE -> {
          if (presented.certificate() != null) {
            Tenant tenant = byCertificate(presented.certificate());
            if (tenant != null) {
              return Identity.of(tenant, method);
            }
            return Identity.denied("client certificate " + presented.certificate().describe() + " is not a known tenant's");
          }
        }
        case API_KEY -> {
          String key = presented.apiKeyHeader() != null ? presented.apiKeyHeader()
              : presented.bearer() != null && !looksLikeJwt(presented.bearer()) ? presented.bearer() : null;
          if (key != null) {
            Tenant found = byKey(key);
            return found != null ? Identity.of(found, method) : Identity.unauthenticated("unknown API key");
          }
        }
        case JWT -> {
          if (jwt != null && presented.bearer() != null && looksLikeJwt(presented.bearer())) {
            return byToken(presented.bearer());
          }
        }
        case PROXY -> {
          if (proxyHeader != null && presented.proxyTenant() != null && trusted(presented.peer())) {
            Tenant tenant = tenants.get(presented.proxyTenant().strip());
            return tenant != null ? Identity.of(tenant, method)
                : Identity.denied("tenant named by the proxy is not in the callers file");
          }
        }
        default -> throw new IllegalStateException(method.name());
      }
    }
    return Identity.unauthenticated("inference calls need credentials: " + expected());
  }

  private String expected() {
    List<String> ways = new ArrayList<>();
    for (Method method : identify) {
      ways.add(switch (method) {
        case CERTIFICATE -> "a client certificate (mutual TLS)";
        case API_KEY -> "an API key (authorization: Bearer <key>, or x-api-key: <key>)";
        case JWT -> "a signed token (authorization: Bearer <JWT>)";
        case PROXY -> "the header " + proxyHeader + " from a trusted proxy";
      });
    }
    return String.join(", or ", ways);
  }

  private static boolean looksLikeJwt(String token) {
    int first = token.indexOf('.');
    return first > 0 && token.indexOf('.', first + 1) > first + 1;
  }

  /** The tenant whose key hashes to {@code key}'s, or null: looked up by the hash. */
  private Tenant byKey(String key) {
    return byKeyHash.get(java.nio.ByteBuffer.wrap(io.modelgate.gateway.config.Secrets.sha256(key)));
  }

  /** The tenant a signed token names: verified once, then looked up by its hash until it expires. */
  private Identity byToken(String token) {
    java.nio.ByteBuffer hash = java.nio.ByteBuffer.wrap(io.modelgate.gateway.config.Secrets.sha256(token));
    Verified known = verified.getIfPresent(hash);
    if (known != null) {
      if (System.currentTimeMillis() < known.expiresMillis()) {
        return known.identity();
      }
      verified.invalidate(hash);
    }
    JWTClaimsSet claims;
    try {
      claims = jwt.process(token, null);
    } catch (ParseException | com.nimbusds.jose.proc.BadJOSEException | com.nimbusds.jose.JOSEException e) {
      return Identity.unauthenticated("the token is not valid: " + e.getMessage());
    }
    Object named = claims.getClaim(tenantClaim);
    if (!(named instanceof String name)) {
      return Identity.unauthenticated("the token has no string claim '" + tenantClaim + "' naming the tenant");
    }
    Tenant tenant = tenants.get(name);
    // A genuine token is kept whatever tenant it names (one the file does not name is refused from
    // the cache, until a new reading); a token that fails verification is never kept, so that bad
    // tokens cannot push good ones out. The processor requires "exp": kept until then, the
    // verifier's leeway for clocks not counted.
    Identity identity = tenant != null ? Identity.of(tenant, Method.JWT)
        : Identity.denied("tenant '" + name + "' of the token is not in the callers file");
    verified.put(hash, new Verified(identity, claims.getExpirationTime().getTime()));
    return identity;
  }

  private boolean trusted(SocketAddress peer) {
    if (!(peer instanceof InetSocketAddress address) || address.getAddress() == null) {
      return false;
    }
    for (Cidr cidr : trusted) {
      if (cidr.contains(address.getAddress())) {
        return true;
      }
    }
    return false;
  }

  // ---- reading ----

  /** Reads and validates a callers file. */
  public static CallerPolicy read(Path file) throws IOException, InvalidCallersException {
    Object document;
    try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      document = new Yaml(new SafeConstructor(new LoaderOptions())).load(reader);
    } catch (org.yaml.snakeyaml.error.YAMLException e) {
      throw new InvalidCallersException("cannot be read as YAML: " + e.getMessage());
    }
    if (!(document instanceof Map<?, ?> map)) {
      throw new InvalidCallersException("expected a mapping with tenants");
    }
    known(map, "", Set.of("identify", "tenants", "jwt", "proxy"));
    Map<String, Tenant> tenants = new LinkedHashMap<>();
    Map<java.nio.ByteBuffer, String> keyOwners = new java.util.HashMap<>();
    Map<String, String> certificateOwners = new java.util.HashMap<>();
    if (!(map.get("tenants") instanceof Map<?, ?> listed) || listed.isEmpty()) {
      throw new InvalidCallersException("tenants: expected a mapping of tenant names to their credentials");
    }
    for (Map.Entry<?, ?> entry : listed.entrySet()) {
      String name = String.valueOf(entry.getKey());
      Map<?, ?> fields = entry.getValue() == null ? Map.of() : mapping(entry.getValue(), "tenants." + name);
      known(fields, "tenants." + name + ".", Set.of("api_keys", "certificates", "models", "quota", "weight"));
      List<byte[]> hashes = new ArrayList<>();
      for (String hash : strings(fields, "api_keys", "tenants." + name)) {
        try {
          hashes.add(io.modelgate.gateway.config.Secrets.parseHash(hash, "tenants." + name + ".api_keys"));
        } catch (io.modelgate.gateway.config.WatchedFile.InvalidFileException e) {
          throw new InvalidCallersException(e.getMessage());
        }
      }
      for (byte[] hash : hashes) {
        String other = keyOwners.putIfAbsent(java.nio.ByteBuffer.wrap(hash), name);
        if (other != null && !other.equals(name)) {
          throw new InvalidCallersException("tenants." + name + ".api_keys: a key also listed for tenant '" + other
              + "' (expected: each key for one tenant)");
        }
      }
      for (String subject : strings(fields, "certificates", "tenants." + name)) {
        CertificateName parsed = CertificateName.parse(subject);
        if (parsed == null) {
          throw new InvalidCallersException("tenants." + name + ".certificates: '" + subject + "'"
              + " is not a distinguished name, uri: or dns: name (expected a certificate's subject, e.g. "
              + "CN=fraud-svc,O=Example, or one of its alternative names, e.g. uri:spiffe://example.org/ns/fraud/sa/scorer)");
        }
        String other = certificateOwners.putIfAbsent(parsed.kind() + " " + parsed.value(), name);
        if (other != null && !other.equals(name)) {
          throw new InvalidCallersException("tenants." + name + ".certificates: " + subject + " is also listed for tenant '"
              + other + "' (expected: each certificate for one tenant)");
        }
      }
      tenants.put(name, new Tenant(name, List.copyOf(hashes),
          Set.copyOf(strings(fields, "certificates", "tenants." + name)),
          Set.copyOf(strings(fields, "models", "tenants." + name)),
          fields.containsKey("quota") ? quota(fields.get("quota"), "tenants." + name + ".quota") : Quota.NONE,
          weight(fields.get("weight"), "tenants." + name + ".weight")));
    }
    DefaultJWTProcessor<SecurityContext> jwt = null;
    Path jwksFile = null;
    String tenantClaim = "sub";
    if (map.containsKey("jwt")) {
      Map<?, ?> fields = mapping(map.get("jwt"), "jwt");
      known(fields, "jwt.", Set.of("jwks", "issuer", "audience", "tenant_claim"));
      Object jwksName = fields.get("jwks");
      if (!(jwksName instanceof String)) {
        throw new InvalidCallersException("jwt.jwks: expected the path of a JWKS file");
      }
      Path jwks = jwksFile = file.toAbsolutePath().getParent().resolve((String) jwksName);
      JWKSet keys;
      try {
        keys = JWKSet.load(jwks.toFile());
      } catch (IOException | ParseException e) {
        throw new InvalidCallersException("jwt.jwks: " + jwksName + " cannot be read as a JWK set: " + e.getMessage());
      }
      if (fields.get("tenant_claim") != null) {
        tenantClaim = String.valueOf(fields.get("tenant_claim"));
      }
      jwt = new DefaultJWTProcessor<>();
      jwt.setJWSKeySelector(new JWSVerificationKeySelector<>(
          Set.of(JWSAlgorithm.RS256, JWSAlgorithm.RS384, JWSAlgorithm.RS512, JWSAlgorithm.PS256, JWSAlgorithm.ES256,
              JWSAlgorithm.ES384, JWSAlgorithm.EdDSA),
          new ImmutableJWKSet<>(keys)));
      JWTClaimsSet.Builder exact = new JWTClaimsSet.Builder();
      if (fields.get("issuer") != null) {
        exact.issuer(String.valueOf(fields.get("issuer")));
      }
      Object audience = fields.get("audience");
      jwt.setJWTClaimsSetVerifier(new DefaultJWTClaimsVerifier<>(
          audience == null ? null : String.valueOf(audience), exact.build(), Set.of("exp", tenantClaim)));
    }
    String proxyHeader = null;
    List<Cidr> trusted = new ArrayList<>();
    if (map.containsKey("proxy")) {
      Map<?, ?> fields = mapping(map.get("proxy"), "proxy");
      known(fields, "proxy.", Set.of("header", "trusted"));
      if (!(fields.get("header") instanceof String header) || header.isBlank()) {
        throw new InvalidCallersException("proxy.header: expected the name of the header the proxy sets");
      }
      proxyHeader = header.strip().toLowerCase(java.util.Locale.ROOT);
      for (String cidr : strings(fields, "trusted", "proxy")) {
        trusted.add(Cidr.parse(cidr));
      }
      if (trusted.isEmpty()) {
        throw new InvalidCallersException("proxy.trusted: expected the addresses of the proxies (e.g. [10.0.0.0/8])");
      }
    }
    List<Method> identify = new ArrayList<>();
    if (map.containsKey("identify")) {
      for (String name : strings(map, "identify", "")) {
        identify.add(Method.named(name));
      }
    } else {
      identify.addAll(List.of(Method.CERTIFICATE, Method.API_KEY));
      if (jwt != null) {
        identify.add(Method.JWT);
      }
      if (proxyHeader != null) {
        identify.add(Method.PROXY);
      }
    }
    if (identify.contains(Method.JWT) && jwt == null) {
      throw new InvalidCallersException("identify: jwt needs a jwt mapping (jwks, issuer, audience)");
    }
    if (identify.contains(Method.PROXY) && proxyHeader == null) {
      throw new InvalidCallersException("identify: proxy needs a proxy mapping (header, trusted)");
    }
    return new CallerPolicy(identify, tenants, jwt, jwksFile, tenantClaim, proxyHeader, trusted);
  }

  private static Quota quota(Object value, String where) throws InvalidCallersException {
    Map<?, ?> fields = mapping(value, where);
    known(fields, where + ".", Set.of("requests_per_second", "rows_per_second", "in_flight"));
    double requests = positive(fields, "requests_per_second", where);
    double rows = positive(fields, "rows_per_second", where);
    for (String key : List.of("requests_per_second", "rows_per_second")) {
      if (positive(fields, key, where) > MAX_RATE) {
        throw new InvalidCallersException(where + "." + key + ": " + fields.get(key) + " (expected: at most 1000000; "
            + "leave it out for no limit)");
      }
    }
    double inFlight = positive(fields, "in_flight", where);
    if (inFlight != Math.rint(inFlight)) {
      throw new InvalidCallersException(where + ".in_flight: " + inFlight + " (expected: a whole number)");
    }
    return new Quota(requests, rows, (int) inFlight);
  }

  private static int weight(Object value, String where) throws InvalidCallersException {
    if (value == null) {
      return 1;
    }
    if (!(value instanceof Integer weight) || weight < 1 || weight > MAX_WEIGHT) {
      throw new InvalidCallersException(where + ": " + value + " (expected: a whole number from 1 to " + MAX_WEIGHT
          + "; leave it out for 1)");
    }
    return weight;
  }

  /** The highest rate a quota may set, a second (the token buckets count thousandths of a token). */
  public static final double MAX_RATE = 1_000_000;

  private static double positive(Map<?, ?> fields, String key, String where) throws InvalidCallersException {
    Object value = fields.get(key);
    if (value == null) {
      return 0;
    }
    if (!(value instanceof Number number) || !(number.doubleValue() > 0)) {
      throw new InvalidCallersException(where + "." + key + ": " + value + " (expected: a number above 0)");
    }
    return number.doubleValue();
  }

  private static Map<?, ?> mapping(Object value, String key) throws InvalidCallersException {
    if (!(value instanceof Map<?, ?> map)) {
      throw new InvalidCallersException(key + ": expected a mapping");
    }
    return map;
  }

  private static void known(Map<?, ?> map, String prefix, Set<String> keys) throws InvalidCallersException {
    for (Object key : map.keySet()) {
      if (!keys.contains(String.valueOf(key))) {
        throw new InvalidCallersException(prefix + key + ": unknown key (expected one of: " + new TreeSet<>(keys) + ")");
      }
    }
  }

  private static List<String> strings(Map<?, ?> map, String key, String where) throws InvalidCallersException {
    Object value = map.get(key);
    if (value == null) {
      return List.of();
    }
    if (!(value instanceof List<?> list)) {
      throw new InvalidCallersException((where.isEmpty() ? "" : where + ".") + key + ": expected a list");
    }
    List<String> out = new ArrayList<>();
    for (Object element : list) {
      out.add(String.valueOf(element));
    }
    return out;
  }

  /** An address range: an address and a prefix length. */
  record Cidr(byte[] network, int bits) {
    static Cidr parse(String text) throws InvalidCallersException {
      int slash = text.indexOf('/');
      String host = slash < 0 ? text : text.substring(0, slash);
      try {
        if (!host.matches("[0-9a-fA-F:.]+")) {
          throw new IllegalArgumentException();
        }
        byte[] address = InetAddress.getByName(host).getAddress();
        int bits = slash < 0 ? address.length * 8 : Integer.parseInt(text.substring(slash + 1));
        if (bits < 0 || bits > address.length * 8) {
          throw new IllegalArgumentException();
        }
        return new Cidr(address, bits);
      } catch (IOException | IllegalArgumentException e) {
        throw new InvalidCallersException("proxy.trusted: '" + text + "' (expected an address or a range such as 10.0.0.0/8)");
      }
    }

    boolean contains(InetAddress address) {
      byte[] bytes = address.getAddress();
      if (bytes.length != network.length) {
        return false;
      }
      int full = bits / 8;
      for (int i = 0; i < full; i++) {
        if (bytes[i] != network[i]) {
          return false;
        }
      }
      int rest = bits % 8;
      if (rest == 0) {
        return true;
      }
      int mask = (0xff << (8 - rest)) & 0xff;
      return (bytes[full] & mask) == (network[full] & mask);
    }
  }

  /** A callers file that cannot be used; the message names the key and what was expected. */
  public static final class InvalidCallersException extends io.modelgate.gateway.config.WatchedFile.InvalidFileException {
    private static final long serialVersionUID = 1L;

    public InvalidCallersException(String message) {
      super(message);
    }
  }

  @Override
  public String toString() {
    return tenants.size() + " tenants, identified by " + identify;
  }
}

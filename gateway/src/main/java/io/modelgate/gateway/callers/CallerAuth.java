package io.modelgate.gateway.callers;

import io.grpc.Attributes;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerTransportFilter;
import io.grpc.Status;
import io.modelgate.runtime.error.InferenceException;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.Set;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;
import javax.security.auth.x500.X500Principal;

/**
 * Caller identity on the inference port: for the methods it guards, identifies the caller by the
 * policy of the callers file and puts its {@link Caller} in the call's context, or closes the call
 * with UNAUTHENTICATED (no or wrong credentials) or PERMISSION_DENIED (a certificate, token or proxy
 * naming no known tenant) before the service sees it. Whether the tenant may use the model asked
 * for is checked by the service ({@link #requireModel}), which knows the model.
 *
 * <p>Without a callers file, nothing is checked and every call is the tenant {@link
 * Caller#ANONYMOUS}. A client certificate's subject comes from the connection's attributes, where
 * {@link #PEER_SUBJECTS} put it when the connection's handshake was done.
 */
public final class CallerAuth implements ServerInterceptor {
  static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> API_KEY = Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER);
  static final Context.Key<Caller> CALLER = Context.key("modelgate-caller");

  private final java.util.function.Supplier<CallerPolicy> file;
  private final Set<String> guarded;

  /**
   * @param guarded the full names of the methods that need a caller
   */
  public CallerAuth(java.util.function.Supplier<CallerPolicy> file, Set<String> guarded) {
    this.file = file;
    this.guarded = Set.copyOf(guarded);
  }

  /** A caller: its tenant's name, how it was identified, and the tenant's allowed models. */
  public record Caller(String tenant, String method, CallerPolicy.Tenant entry) {
    /** The tenant of every call when caller identity is off. */
    public static final Caller ANONYMOUS = new Caller("anonymous", "none", null);
  }

  /** The caller of the current call ({@link Caller#ANONYMOUS} when identity is off). Never blocks. */
  public static Caller current() {
    Caller caller = CALLER.get();
    return caller == null ? Caller.ANONYMOUS : caller;
  }

  /** The caller of a call whose context is {@code context} (a stream keeps its call's). */
  public static final java.util.function.Function<Context, Caller> CALLER_OF = context -> {
    Caller caller = CALLER.get(context);
    return caller == null ? Caller.ANONYMOUS : caller;
  };

  /**
   * Throws PERMISSION_DENIED when the current caller's tenant may not use {@code model}.
   */
  public static void requireModel(Caller caller, String model) {
    if (caller.entry() != null && !caller.entry().allows(model)) {
      throw InferenceException.permissionDenied(
          "tenant '" + caller.tenant() + "' may not use model " + InferenceException.quote(model)
              + " (its models in the callers file: " + new java.util.TreeSet<>(caller.entry().models()) + ")");
    }
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    if (!guarded.contains(call.getMethodDescriptor().getFullMethodName())) {
      return next.startCall(call, headers);
    }
    CallerPolicy policy = file.get();
    String authorization = headers.get(AUTHORIZATION);
    String bearer = authorization != null && authorization.regionMatches(true, 0, "Bearer ", 0, 7)
        ? authorization.substring(7).strip() : null;
    String proxy = policy.proxyHeaderKey() == null ? null : headers.get(policy.proxyHeaderKey());
    CallerPolicy.Identity identity = policy.identify(new CallerPolicy.Presented(
        bearer, headers.get(API_KEY), call.getAttributes().get(PEER_SUBJECT), call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR),
        proxy));
    if (identity.tenant() == null) {
      Status status = identity.denied() ? Status.PERMISSION_DENIED : Status.UNAUTHENTICATED;
      call.close(status.withDescription(identity.refusal()), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    Caller caller = new Caller(identity.tenant().name(), identity.method().configName, identity.tenant());
    return Contexts.interceptCall(Context.current().withValue(CALLER, caller), call, headers, next);
  }

  /** The subject of a TLS connection's client certificate, put in its attributes by {@link #PEER_SUBJECTS}. */
  static final Attributes.Key<X500Principal> PEER_SUBJECT = Attributes.Key.create("modelgate.peer-subject");

  /**
   * Reads the client certificate's subject once per connection, when its handshake is done, into
   * the transport's attributes, where every call of the connection finds it: a call then costs one
   * attribute lookup rather than the TLS session's certificate chain copied and its name built. The
   * inference port's server carries it ({@code addTransportFilter}); a connection without TLS or
   * without a client certificate gets nothing.
   *
   * <p>Threads: called by event loops, once a connection.
   */
  public static final ServerTransportFilter PEER_SUBJECTS = new ServerTransportFilter() {
    @Override
    public Attributes transportReady(Attributes attributes) {
      X500Principal subject = peerSubject(attributes.get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
      return subject == null ? attributes : attributes.toBuilder().set(PEER_SUBJECT, subject).build();
    }
  };

  /** The subject of the session's client certificate, or null (no session, or no client certificate). */
  public static X500Principal peerSubject(SSLSession session) {
    if (session == null) {
      return null;
    }
    try {
      Certificate[] certificates = session.getPeerCertificates();
      if (certificates.length > 0 && certificates[0] instanceof X509Certificate x509) {
        X500Principal subject = x509.getSubjectX500Principal();
        // The canonical form is made now, on the handshake's thread, and kept by the name.
        subject.getName(X500Principal.CANONICAL);
        return subject;
      }
    } catch (SSLPeerUnverifiedException e) {
      // TLS without a client certificate.
    }
    return null;
  }
}

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
import java.util.Set;

/**
 * Caller identity on the inference port: for the methods it guards, identifies the caller by the
 * policy of the callers file and puts its {@link Caller} in the call's context, or closes the call
 * with UNAUTHENTICATED (no or wrong credentials) or PERMISSION_DENIED (a certificate, token or proxy
 * naming no known tenant) before the service sees it. Whether the tenant may use the model asked
 * for is checked by the service ({@link #requireModel}), which knows the model.
 *
 * <p>Without a callers file, nothing is checked and every call is the tenant {@link
 * Caller#ANONYMOUS}. A client certificate comes from the connection's attributes, where
 * {@link #PEER_CERTIFICATES} put it when the connection's handshake was done.
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
        bearer, headers.get(API_KEY), call.getAttributes().get(PEER_CERTIFICATE), call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR),
        proxy));
    if (identity.tenant() == null) {
      Status status = identity.denied() ? Status.PERMISSION_DENIED : Status.UNAUTHENTICATED;
      call.close(status.withDescription(identity.refusal()), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    Caller caller = new Caller(identity.tenant().name(), identity.method().configName, identity.tenant());
    return Contexts.interceptCall(Context.current().withValue(CALLER, caller), call, headers, next);
  }

  /** A TLS connection's client certificate, put in its attributes by {@link #PEER_CERTIFICATES}. */
  static final Attributes.Key<PeerCertificate> PEER_CERTIFICATE = Attributes.Key.create("modelgate.peer-certificate");

  /**
   * Reads the client certificate's subject and alternative names once per connection, when its
   * handshake is done, into the transport's attributes, where every call of the connection finds
   * them: a call then costs one attribute lookup rather than the TLS session's certificate chain
   * copied and its names read. The inference port's server carries it ({@code addTransportFilter});
   * a connection without TLS or without a client certificate gets nothing.
   *
   * <p>Threads: called by event loops, once a connection.
   */
  public static final ServerTransportFilter PEER_CERTIFICATES = new ServerTransportFilter() {
    @Override
    public Attributes transportReady(Attributes attributes) {
      PeerCertificate certificate = PeerCertificate.of(attributes.get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
      return certificate == null ? attributes : attributes.toBuilder().set(PEER_CERTIFICATE, certificate).build();
    }
  };
}

package io.modelgate.gateway.admin;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * Admits admin calls that carry {@code authorization: Bearer <token>} with the admin token, and
 * names the caller for the audit log. Anything else is closed with UNAUTHENTICATED before the
 * service sees it. The comparison takes the same time whatever the token.
 */
public final class AdminAuth implements ServerInterceptor {
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  /** The operator name a client may send, recorded in the audit log. */
  public static final Metadata.Key<String> OPERATOR =
      Metadata.Key.of("x-modelgate-operator", Metadata.ASCII_STRING_MARSHALLER);

  static final Context.Key<String> CALLER = Context.key("modelgate-admin-caller");
  /** The call itself, for an unguarded method: who called is worked out only if it is asked. */
  static final Context.Key<ServerCall<?, ?>> CALL = Context.key("modelgate-call");

  private final byte[] token;
  /** The full method names it guards; null: every method. */
  private final java.util.Set<String> guarded;
  /** For the methods it does not guard: whether to keep the call (for its caller) in the context. */
  private final java.util.function.BooleanSupplier keepCalls;

  public AdminAuth(String token) {
    this(token, null, () -> false);
  }

  private AdminAuth(String token, java.util.Set<String> guarded, java.util.function.BooleanSupplier keepCalls) {
    if (token == null || token.length() < 16) {
      throw new IllegalArgumentException("admin token: at least 16 characters expected");
    }
    this.token = token.getBytes(StandardCharsets.UTF_8);
    this.guarded = guarded == null ? null : java.util.Set.copyOf(guarded);
    this.keepCalls = keepCalls;
  }

  /** Guards only {@code fullMethodNames} (the repository RPCs on the inference port); others pass. */
  public static AdminAuth forMethods(String token, java.util.Set<String> fullMethodNames) {
    return new AdminAuth(token, fullMethodNames, () -> false);
  }

  /**
   * As {@link #forMethods(String, java.util.Set)}; while {@code keepCalls} holds, other calls keep
   * their {@code ServerCall} in the context, so that {@link #caller} can name who made them (one
   * context per call; nothing while it does not hold).
   */
  public static AdminAuth forMethods(String token, java.util.Set<String> fullMethodNames, java.util.function.BooleanSupplier keepCalls) {
    return new AdminAuth(token, fullMethodNames, keepCalls);
  }

  /**
   * The caller of the current call: for an admin call as the audit log names it; for an inference
   * call its peer address and, under mutual TLS, its certificate's subject.
   */
  public static String caller() {
    String caller = CALLER.get();
    if (caller != null) {
      return caller;
    }
    ServerCall<?, ?> call = CALL.get();
    return call == null ? "internal" : describe(call, null);
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(
      ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    if (guarded != null && !guarded.contains(call.getMethodDescriptor().getFullMethodName())) {
      if (!keepCalls.getAsBoolean()) {
        return next.startCall(call, headers);
      }
      // Inference: keep the call, so that a request drawn for a payload log can name its caller.
      return Contexts.interceptCall(Context.current().withValue(CALL, call), call, headers, next);
    }
    String authorization = headers.get(AUTHORIZATION);
    if (authorization == null || !authorization.startsWith("Bearer ")) {
      call.close(
          Status.UNAUTHENTICATED.withDescription(
              "admin calls need the header authorization: Bearer <admin token>"),
          new Metadata());
      return new ServerCall.Listener<>() {};
    }
    byte[] presented = authorization.substring("Bearer ".length()).trim().getBytes(StandardCharsets.UTF_8);
    if (!MessageDigest.isEqual(presented, token)) {
      call.close(Status.UNAUTHENTICATED.withDescription("wrong admin token"), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    return Contexts.interceptCall(
        Context.current().withValue(CALLER, describe(call, headers)), call, headers, next);
  }

  private static String describe(ServerCall<?, ?> call, Metadata headers) {
    StringBuilder caller = new StringBuilder();
    Object address = call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
    caller.append(address == null ? "unknown" : address.toString());
    SSLSession session = call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION);
    if (session != null) {
      try {
        Certificate[] certificates = session.getPeerCertificates();
        if (certificates.length > 0 && certificates[0] instanceof X509Certificate) {
          caller.append(" cert:").append(((X509Certificate) certificates[0]).getSubjectX500Principal().getName());
        }
      } catch (SSLPeerUnverifiedException e) {
        // TLS without a client certificate.
      }
    }
    String operator = headers == null ? null : headers.get(OPERATOR);
    if (operator != null && !operator.isBlank()) {
      caller.append(" operator:").append(operator.strip());
    }
    return caller.toString();
  }
}

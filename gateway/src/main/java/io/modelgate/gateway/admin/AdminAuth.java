package io.modelgate.gateway.admin;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * Admits admin calls that carry {@code authorization: Bearer <token>} with a known token whose role
 * allows the method ({@link #ROLES}: viewers read, operators change, admins may also see who has
 * access), and names the caller, with the token's name, for the audit log. An unknown token is
 * closed with UNAUTHENTICATED, a role too low with PERMISSION_DENIED (audited), before the service
 * sees the call. Tokens are compared by their SHA-256 hashes, in constant time each.
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

  private final java.util.function.Supplier<AdminTokens> tokens;
  /** Told of each call refused for its role: (caller, what was refused). */
  private final java.util.function.BiConsumer<String, String> denied;
  /** The full method names it guards; null: every method. */
  private final java.util.Set<String> guarded;
  /** For the methods it does not guard: whether to keep the call (for its caller) in the context. */
  private final java.util.function.BooleanSupplier keepCalls;

  /** Only the server's own token, as {@code admin}. */
  public AdminAuth(String token) {
    this(checked(token), null, () -> false, (caller, what) -> {});
  }

  /** Every admin method, with {@code tokens}; {@code denied} hears of each refusal for a role. */
  public AdminAuth(java.util.function.Supplier<AdminTokens> tokens, java.util.function.BiConsumer<String, String> denied) {
    this(tokens, null, () -> false, denied);
  }

  private AdminAuth(java.util.function.Supplier<AdminTokens> tokens, java.util.Set<String> guarded,
      java.util.function.BooleanSupplier keepCalls, java.util.function.BiConsumer<String, String> denied) {
    this.tokens = tokens;
    this.guarded = guarded == null ? null : java.util.Set.copyOf(guarded);
    this.keepCalls = keepCalls;
    this.denied = denied;
  }

  private static java.util.function.Supplier<AdminTokens> checked(String token) {
    if (token == null || token.length() < 16) {
      throw new IllegalArgumentException("admin token: at least 16 characters expected");
    }
    AdminTokens only = AdminTokens.primary(token);
    return () -> only;
  }

  /**
   * Guards only {@code fullMethodNames} (the repository RPCs on the inference port: operators);
   * while {@code keepCalls} holds, other calls keep their {@code ServerCall} in the context, so that
   * {@link #caller} can name who made them (one context per call; nothing while it does not hold).
   */
  public static AdminAuth forMethods(java.util.function.Supplier<AdminTokens> tokens, java.util.Set<String> fullMethodNames,
      java.util.function.BooleanSupplier keepCalls, java.util.function.BiConsumer<String, String> denied) {
    return new AdminAuth(tokens, fullMethodNames, keepCalls, denied);
  }

  /** The role each admin method needs; a method not listed needs {@code admin}. */
  public static final java.util.Map<String, AdminTokens.Role> ROLES = roles();

  private static java.util.Map<String, AdminTokens.Role> roles() {
    java.util.Map<String, AdminTokens.Role> roles = new java.util.HashMap<>();
    for (var method : java.util.List.of(
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getListModelsMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetRoutingMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetStatsMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getWatchStatsMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetFleetStatsMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetRolloutMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetDriftMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetUsageMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetConnectionsMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getGetDiagnosticsMethod())) {
      roles.put(method.getFullMethodName(), AdminTokens.Role.VIEWER);
    }
    for (var method : java.util.List.of(
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getSetRoutingMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getLoadVersionMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getLoadModelMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getUnloadVersionMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getUnloadModelMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getForgetModelMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getPromoteMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getRollbackMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getStartRolloutMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getAbortRolloutMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getValidateMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getSetDriftBaselineMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getSetLogLevelMethod(),
        io.modelgate.proto.admin.v1.AdminServiceGrpc.getSetTraceSampleRateMethod(),
        io.modelgate.proto.inference.GRPCInferenceServiceGrpc.getRepositoryModelLoadMethod(),
        io.modelgate.proto.inference.GRPCInferenceServiceGrpc.getRepositoryModelUnloadMethod())) {
      roles.put(method.getFullMethodName(), AdminTokens.Role.OPERATOR);
    }
    return java.util.Map.copyOf(roles);
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
    AdminTokens.Token token = tokens.get().find(authorization.substring("Bearer ".length()).trim());
    if (token == null) {
      call.close(Status.UNAUTHENTICATED.withDescription("wrong admin token"), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    String method = call.getMethodDescriptor().getFullMethodName();
    AdminTokens.Role needed = ROLES.getOrDefault(method, AdminTokens.Role.ADMIN);
    // The server's own token is the default: only the tokens of the tokens file are named.
    String caller = token.name().equals("admin") ? describe(call, headers) : describe(call, headers) + " token:" + token.name();
    if (!token.role().allows(needed)) {
      String what = call.getMethodDescriptor().getBareMethodName() + " needs the role " + needed.configName()
          + "; token '" + token.name() + "' has " + token.role().configName();
      denied.accept(caller, what);
      call.close(Status.PERMISSION_DENIED.withDescription(what), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    return Contexts.interceptCall(Context.current().withValue(CALLER, caller), call, headers, next);
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

package io.modelgate.gateway.inference;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.modelgate.gateway.routing.Router;

/**
 * Makes the call's headers available to routing, and only while some policy routes by a header:
 * otherwise a call pays nothing for it.
 */
final class RoutingHeaders implements ServerInterceptor {
  private final Router router;

  RoutingHeaders(Router router) {
    this.router = router;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(
      ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    if (!router.routesByHeader()) {
      return next.startCall(call, headers);
    }
    return Contexts.interceptCall(
        Context.current().withValue(Router.HEADERS, headers), call, headers, next);
  }
}

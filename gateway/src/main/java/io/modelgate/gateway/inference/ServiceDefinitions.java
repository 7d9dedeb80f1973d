package io.modelgate.gateway.inference;

import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;

/** Rebuilding a bound service with some of its methods replaced. */
final class ServiceDefinitions {
  private ServiceDefinitions() {}

  /**
   * {@code definition} with each method passed through {@code replace}, which returns the method
   * itself or a replacement of the same full name (for instance with other marshallers); the service
   * descriptor is rebuilt around the methods' new descriptors, keeping its schema (for reflection).
   */
  static ServerServiceDefinition map(
      ServerServiceDefinition definition, UnaryOperator<ServerMethodDefinition<?, ?>> replace) {
    ServiceDescriptor original = definition.getServiceDescriptor();
    ServiceDescriptor.Builder service =
        ServiceDescriptor.newBuilder(original.getName()).setSchemaDescriptor(original.getSchemaDescriptor());
    List<ServerMethodDefinition<?, ?>> methods = new ArrayList<>();
    for (ServerMethodDefinition<?, ?> method : definition.getMethods()) {
      ServerMethodDefinition<?, ?> replaced = replace.apply(method);
      if (!replaced.getMethodDescriptor().getFullMethodName().equals(method.getMethodDescriptor().getFullMethodName())) {
        throw new IllegalArgumentException(
            "a replacement for " + method.getMethodDescriptor().getFullMethodName() + " must keep its name");
      }
      methods.add(replaced);
      service.addMethod(replaced.getMethodDescriptor());
    }
    ServerServiceDefinition.Builder rebuilt = ServerServiceDefinition.builder(service.build());
    for (ServerMethodDefinition<?, ?> method : methods) {
      rebuilt.addMethod(method);
    }
    return rebuilt.build();
  }
}

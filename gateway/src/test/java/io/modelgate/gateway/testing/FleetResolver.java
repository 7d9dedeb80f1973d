package io.modelgate.gateway.testing;

import io.grpc.EquivalentAddressGroup;
import io.grpc.NameResolver;
import io.grpc.NameResolverProvider;
import io.grpc.NameResolverRegistry;
import io.grpc.StatusOr;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;

/**
 * A fleet's addresses for a test's client-side balancing (what a headless Service gives a
 * {@code round_robin} channel), looked up as grpc-java's DNS resolver looks a name up: when the
 * channel starts and again whenever the channel asks (a connection ended), never on its own. Under
 * a scheme of its own ({@link #target}); {@link #close} deregisters it. Thread-safe.
 */
public final class FleetResolver extends NameResolverProvider implements AutoCloseable {
  private final String scheme = "modelgate-test-fleet-" + Long.toHexString(System.nanoTime());
  private volatile List<EquivalentAddressGroup> addresses = List.of();

  private FleetResolver() {}

  /** A resolver of {@code addresses}, registered with gRPC's default registry. */
  public static FleetResolver register(List<InetSocketAddress> addresses) {
    FleetResolver fleet = new FleetResolver();
    fleet.set(addresses);
    NameResolverRegistry.getDefaultRegistry().register(fleet);
    return fleet;
  }

  /** The channel target that resolves through this fleet. */
  public String target() {
    return scheme + ":///modelgate";
  }

  /** What the next lookup finds; a channel learns it only when it looks again. */
  public void set(List<InetSocketAddress> servers) {
    List<EquivalentAddressGroup> groups = new ArrayList<>();
    for (InetSocketAddress server : servers) {
      groups.add(new EquivalentAddressGroup(server));
    }
    addresses = List.copyOf(groups);
  }

  /** As {@link #set(List)}, for servers on 127.0.0.1. */
  public void set(int... ports) {
    List<InetSocketAddress> servers = new ArrayList<>();
    for (int port : ports) {
      servers.add(new InetSocketAddress("127.0.0.1", port));
    }
    set(servers);
  }

  @Override
  public NameResolver newNameResolver(URI target, NameResolver.Args args) {
    if (!scheme.equals(target.getScheme())) {
      return null;
    }
    return new NameResolver() {
      private Listener2 listener;

      @Override
      public void start(Listener2 listener) {
        this.listener = listener;
        refresh();
      }

      @Override
      public void refresh() {
        ResolutionResult result = ResolutionResult.newBuilder().setAddressesOrError(StatusOr.fromValue(addresses)).build();
        args.getSynchronizationContext().execute(() -> listener.onResult2(result));
      }

      @Override
      public String getServiceAuthority() {
        return "fleet";
      }

      @Override
      public void shutdown() {}
    };
  }

  @Override
  public String getDefaultScheme() {
    return scheme;
  }

  @Override
  protected boolean isAvailable() {
    return true;
  }

  @Override
  protected int priority() {
    return 5;
  }

  @Override
  public void close() {
    NameResolverRegistry.getDefaultRegistry().deregister(this);
  }
}

package io.modelgate.gateway.routing;

import io.grpc.Metadata;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.inference.InferParameter;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelVersion;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * One model's routing policy, compiled: which version serves each inference request. Immutable;
 * the {@link Router} swaps whole routes, so a request sees one policy or the next, never half of
 * either. {@link #select} and {@link #shadow} never block and allocate nothing.
 */
public final class Route {

  private final Model model;
  private final RoutingPolicy policy;
  private final ModelVersion[] versions;
  private final WeightedChoice choice;
  private final Rendezvous rendezvous;
  private final String stickyParameter;
  private final Metadata.Key<String> stickyHeader;
  private final ModelVersion shadow;
  private final double shadowRate;
  /** When set, every request not naming a version is refused UNAVAILABLE with this message. */
  private final String refusal;
  /** What the policy names that this route leaves out, or null. */
  private final String degraded;
  /** Whether everything {@code degraded} names was UNAVAILABLE (unloaded) when compiled. */
  private final boolean degradedByUnloads;

  private Route(
      Model model,
      RoutingPolicy policy,
      ModelVersion[] versions,
      long[] weights,
      ModelVersion shadow,
      String refusal,
      Missing missing) {
    this.model = model;
    this.refusal = refusal;
    this.degraded = missing == null ? null : missing.note();
    this.degradedByUnloads = missing != null && missing.unloadedOnly();
    this.policy = policy;
    this.versions = versions;
    if (versions == null) {
      this.choice = null;
      this.rendezvous = null;
    } else {
      this.choice = new WeightedChoice(weights);
      long[] ids = new long[versions.length];
      for (int i = 0; i < ids.length; i++) {
        ids[i] = versions[i].number();
      }
      this.rendezvous = new Rendezvous(ids, weights);
    }
    this.stickyParameter = policy.getSticky().getParameter().isEmpty() ? null : policy.getSticky().getParameter();
    this.stickyHeader =
        policy.getSticky().getHeader().isEmpty()
            ? null
            : Metadata.Key.of(policy.getSticky().getHeader(), Metadata.ASCII_STRING_MARSHALLER);
    this.shadow = shadow;
    this.shadowRate = shadow == null ? 0 : policy.getShadow().getSampleRate();
  }

  /** The default at revision 0: the highest READY version takes every request. */
  static Route latestReady(Model model) {
    return latestReady(
        model, RoutingPolicy.newBuilder().setModel(model.name()).setRevision(0).build(), null);
  }

  /** The highest READY version takes every request, under {@code policy} (which has no weights). */
  static Route latestReady(Model model, RoutingPolicy policy, ModelVersion shadow) {
    return new Route(model, policy, null, null, shadow, null, null);
  }

  /**
   * What a policy names that a route leaves out because it is not READY, in words ({@code note}),
   * and whether each of those versions was UNAVAILABLE — unloaded by an operator, as when a model
   * is taken down — rather than FAILED, loading, unloading or missing.
   */
  record Missing(String note, boolean unloadedOnly) {}

  /**
   * A compiled explicit policy; the caller validated it.
   *
   * @param missing what the policy names that {@code versions} leave out, or null
   */
  static Route weighted(
      Model model,
      RoutingPolicy policy,
      ModelVersion[] versions,
      long[] weights,
      ModelVersion shadow,
      Missing missing) {
    return new Route(model, policy, versions, weights, shadow, null, missing);
  }

  /** A policy none of whose weighted versions can serve: requests are refused with {@code refusal}. */
  static Route refusing(Model model, RoutingPolicy policy, ModelVersion shadow, String refusal, Missing missing) {
    return new Route(model, policy, null, null, shadow, refusal, missing);
  }

  /** The default route noting what its policy names that is not READY (null: nothing). */
  static Route latestReady(Model model, RoutingPolicy policy, ModelVersion shadow, Missing missing) {
    return new Route(model, policy, null, null, shadow, null, missing);
  }

  /**
   * What the policy names that this route leaves out because it is not READY (it then routes among
   * the READY versions the policy names, or refuses), or null when it serves the policy whole.
   */
  public String degraded() {
    return degraded;
  }

  /**
   * Whether the route is {@link #degraded()} only by versions that were unloaded (UNAVAILABLE), as
   * a model taken down is: an operator's doing rather than a fault.
   */
  public boolean degradedByUnloads() {
    return degradedByUnloads;
  }

  /**
   * Whether this route, compiled whole, sends traffic to a version (or shadows one) that is no
   * longer READY — unloaded since (its model taken down, say), or failed while serving — so that
   * recompiling it ({@link Router#compileKeeping}) would serve it in part or refuse. False for a route already {@link
   * #degraded()} and for the default, which follows the READY versions by itself. Any thread.
   */
  public boolean namesUnready() {
    if (degraded != null) {
      return false;
    }
    if (shadow != null && !shadow.isReady()) {
      return true;
    }
    if (versions != null) {
      for (ModelVersion version : versions) {
        if (!version.isReady()) {
          return true;
        }
      }
    }
    return false;
  }

  public RoutingPolicy policy() {
    return policy;
  }

  public Model model() {
    return model;
  }

  boolean routesByHeader() {
    return stickyHeader != null;
  }

  /** Weight of a version under this policy; for the default, 1 for the highest READY version. */
  public long weightOf(long version) {
    if (refusal != null) {
      return policy.getWeightsOrDefault(version, 0);
    }
    if (versions == null) {
      return model.latestReady().map(v -> v.number() == version ? 1L : 0L).orElse(0L);
    }
    return policy.getWeightsOrDefault(version, 0);
  }

  /**
   * The version that serves {@code request}: the one it names, or else the sticky key's version,
   * or else a weighted pick.
   *
   * @throws InferenceException INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE as the protocol says
   */
  public ModelVersion select(ModelInferRequest request) {
    String named = request.getModelVersion();
    if (!named.isEmpty()) {
      ModelVersion pinned = LatestReadyVersionSelector.version(model, named);
      if (!pinned.isReady()) {
        pinned.serving();
      }
      return pinned;
    }
    if (refusal != null) {
      throw InferenceException.unavailable(refusal);
    }
    if (versions == null) {
      ModelVersion latest = model.latestReadyOrNull();
      if (latest == null) {
        throw InferenceException.unavailable(
            "model '" + model.name() + "' has no READY version (" + model.describeVersions() + ")");
      }
      return latest;
    }
    String key = stickyKey(request);
    ModelVersion chosen = versions[key == null ? choice.pick() : rendezvous.pick(key)];
    if (!chosen.isReady()) {
      chosen.serving();
    }
    return chosen;
  }

  /** The shadow version when this request is sampled for it, else null. */
  public ModelVersion shadow() {
    if (shadow == null || ThreadLocalRandom.current().nextDouble() >= shadowRate || !shadow.isReady()) {
      return null;
    }
    return shadow;
  }

  private String stickyKey(ModelInferRequest request) {
    if (stickyParameter != null) {
      Map<String, InferParameter> parameters = request.getParametersMap();
      InferParameter value = parameters.get(stickyParameter);
      if (value == null) {
        return null;
      }
      switch (value.getParameterChoiceCase()) {
        case STRING_PARAM:
          return value.getStringParam();
        case INT64_PARAM:
          return Long.toString(value.getInt64Param());
        case UINT64_PARAM:
          return Long.toUnsignedString(value.getUint64Param());
        default:
          return null;
      }
    }
    if (stickyHeader != null) {
      Metadata headers = Router.HEADERS.get();
      return headers == null ? null : headers.get(stickyHeader);
    }
    return null;
  }
}

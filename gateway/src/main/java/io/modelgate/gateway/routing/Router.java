package io.modelgate.gateway.routing;

import io.grpc.Context;
import io.grpc.Metadata;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

/**
 * Every model's current {@link Route}. Request threads read a route with one map lookup and one
 * volatile read; the admin path validates a new policy ({@link #compile}) and swaps it in whole
 * ({@link #install}). Until a policy is set, a model's route is the default: the highest READY
 * version takes every request. Routes follow their versions' states ({@link #refresh}): a policy
 * naming a version that stops serving serves in part, and whole again once it is READY.
 *
 * <p>Locking: this router's own lock, held only for compiling and swapping routes (CPU work, no
 * I/O), and never while taking another lock; the control plane takes it under its own.
 */
public final class Router {
  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(Router.class);
  /** The gRPC headers of the current call, present while some policy routes by a header. */
  public static final Context.Key<Metadata> HEADERS = Context.key("modelgate-headers");

  private static final Pattern HEADER = Pattern.compile("[a-z0-9][a-z0-9._-]*");
  /** Weights are relative; their sum stays well inside a double's exact integers. */
  static final long MAX_TOTAL_WEIGHT = 1_000_000_000L;

  private final ModelRepository repository;
  private final Map<String, Route> routes = new ConcurrentHashMap<>();
  private volatile boolean routesByHeader;
  /** Set as the server stops: its versions drain and unload, and the routes stay as they were. */
  private volatile boolean stopping;

  public Router(ModelRepository repository) {
    this.repository = repository;
    for (Model model : repository.models()) {
      routes.put(model.name(), Route.latestReady(model));
    }
  }

  /**
   * The route of a model.
   *
   * @throws InferenceException INVALID_ARGUMENT for an empty name, NOT_FOUND for an unknown model
   */
  public Route route(String model) {
    Route route = routes.get(model);
    return route != null ? route : defaultRoute(model);
  }

  /**
   * The route of a model, or null for a model the repository does not have (never, or removed
   * since): for callers that go through every model, one of which may be removed meanwhile.
   */
  public Route routeOrNull(String model) {
    Route route = routes.get(model);
    if (route != null) {
      return route;
    }
    try {
      return defaultRoute(model);
    } catch (InferenceException e) {
      if (e.code() == io.modelgate.runtime.error.ErrorCode.NOT_FOUND) {
        return null;
      }
      throw e;
    }
  }

  /**
   * The route of a model that has none yet: one added since the start routes to its latest READY
   * version until a policy is set; an unknown one is NOT_FOUND with the models there are. Made
   * under this router's lock, as {@link #forget} is: a route made for a model being removed is
   * either made before it goes (and forgotten with it) or not at all.
   */
  private Route defaultRoute(String model) {
    // An unknown name is refused before the lock: clients may send many.
    LatestReadyVersionSelector.model(repository, model);
    synchronized (this) {
      Route route = routes.get(model);
      if (route == null) {
        route = Route.latestReady(LatestReadyVersionSelector.model(repository, model));
        routes.put(model, route);
      }
      return route;
    }
  }

  /** The names of the models it routes. */
  public java.util.Set<String> models() {
    return java.util.Collections.unmodifiableSet(new java.util.TreeSet<>(routes.keySet()));
  }

  /**
   * Drops the route of a model its repository has removed: a request naming it is NOT_FOUND from
   * now on, and a model of that name added later routes afresh (by the policy kept for it, if any).
   */
  public synchronized void forget(String model) {
    routes.remove(model);
    refreshHeaderFlag();
  }

  /** Installs a route restored from the state directory, whatever the current revision. */
  public synchronized void installRestored(Route route) {
    routes.put(route.policy().getModel(), current(route));
    refreshHeaderFlag();
  }

  private void refreshHeaderFlag() {
    boolean byHeader = false;
    for (Route r : routes.values()) {
      byHeader |= r.routesByHeader();
    }
    routesByHeader = byHeader;
  }

  /** Whether any policy routes by a gRPC header, so the service must make headers available. */
  public boolean routesByHeader() {
    return routesByHeader;
  }

  /**
   * Validates {@code policy} against the model's versions as they are now and compiles it.
   *
   * <p>Empty weights mean the default: the highest READY version takes every request.
   *
   * @throws InferenceException NOT_FOUND for an unknown model, INVALID_ARGUMENT for weights that
   *     name a version the model lacks, that are all 0, or a malformed sticky or shadow setting,
   *     FAILED_PRECONDITION for a named version that is not READY
   */
  public Route compile(RoutingPolicy policy) {
    Model model = LatestReadyVersionSelector.model(repository, policy.getModel());
    ModelVersion shadow = shadow(model, policy);
    Map<Long, Integer> weights = policy.getWeightsMap();
    if (weights.isEmpty()) {
      // No weights: the default, the highest READY version takes every request.
      return Route.latestReady(model, policy, shadow);
    }
    long[] numbers = weights.keySet().stream().mapToLong(Long::longValue).sorted().toArray();
    ModelVersion[] versions = new ModelVersion[numbers.length];
    long[] values = new long[numbers.length];
    for (int i = 0; i < numbers.length; i++) {
      versions[i] = readyVersion(model, numbers[i], "weights name");
      values[i] = Integer.toUnsignedLong(weights.get(numbers[i]));
    }
    validateWeights(model, policy, values);
    validateSticky(policy);
    return Route.weighted(model, policy, versions, values, shadow, null);
  }

  /**
   * Compiles a policy saved before a restart, or one whose versions changed state since it was
   * set, without giving up on it: versions it names that are not READY (or are gone) take no
   * traffic, and the others keep their relative weights. When none of its weighted versions is
   * READY, the route refuses requests with UNAVAILABLE rather than send them to another version —
   * a candidate is never promoted by accident. The route says what it left out ({@link
   * Route#degraded()}).
   *
   * @throws InferenceException for a policy that is invalid whatever the versions' states
   */
  public Route compileKeeping(RoutingPolicy policy) {
    Model model = LatestReadyVersionSelector.model(repository, policy.getModel());
    List<String> missing = new ArrayList<>();
    boolean unloadedOnly = true;
    ModelVersion shadow = null;
    if (hasShadow(policy)) {
      validateShadow(model, policy);
      shadow = model.version(policy.getShadow().getVersion()).orElse(null);
      if (shadow == null || !shadow.isReady()) {
        missing.add("shadow version " + policy.getShadow().getVersion() + " (" + describe(model, policy.getShadow().getVersion()) + ")");
        unloadedOnly &= unloaded(shadow);
      }
    }
    Map<Long, Integer> weights = policy.getWeightsMap();
    if (weights.isEmpty()) {
      return Route.latestReady(model, policy, shadow, note(missing, unloadedOnly));
    }
    long[] numbers = weights.keySet().stream().mapToLong(Long::longValue).sorted().toArray();
    long[] values = new long[numbers.length];
    for (int i = 0; i < numbers.length; i++) {
      values[i] = Integer.toUnsignedLong(weights.get(numbers[i]));
    }
    validateWeights(model, policy, values);
    validateSticky(policy);
    List<ModelVersion> ready = new ArrayList<>();
    List<Long> readyWeights = new ArrayList<>();
    for (int i = 0; i < numbers.length; i++) {
      ModelVersion version = model.version(numbers[i]).orElse(null);
      if (version != null && version.isReady()) {
        if (values[i] > 0) {
          ready.add(version);
          readyWeights.add(values[i]);
        }
      } else if (values[i] > 0 || version == null) {
        missing.add("version " + numbers[i] + " (" + describe(model, numbers[i]) + ", weight " + values[i] + ")");
        unloadedOnly &= unloaded(version);
      }
    }
    Route.Missing note = note(missing, unloadedOnly);
    if (ready.isEmpty()) {
      return Route.refusing(
          model,
          policy,
          shadow,
          "model '" + model.name() + "': routing revision " + policy.getRevision()
              + " sends traffic only to versions that are not READY: " + note.note()
              + "; load them, or set a routing policy that names READY versions",
          note);
    }
    return Route.weighted(
        model,
        policy,
        ready.toArray(new ModelVersion[0]),
        readyWeights.stream().mapToLong(Long::longValue).toArray(),
        shadow,
        note);
  }

  private static String describe(Model model, long number) {
    return model.version(number)
        .map(v -> v.state() + (v.reason().isEmpty() ? "" : ": " + v.reason()))
        .orElse("no such version");
  }

  private static Route.Missing note(List<String> missing, boolean unloadedOnly) {
    return missing.isEmpty() ? null : new Route.Missing("not READY: " + String.join("; ", missing), unloadedOnly);
  }

  /** Whether {@code version} is there and UNAVAILABLE: unloaded, rather than failed or in between. */
  private static boolean unloaded(ModelVersion version) {
    return version != null && version.state() == io.modelgate.runtime.repository.VersionState.UNAVAILABLE;
  }

  private static void validateWeights(Model model, RoutingPolicy policy, long[] values) {
    long total = 0;
    for (long value : values) {
      total += value;
    }
    if (total == 0) {
      throw InferenceException.invalidArgument(
          "weights for model '" + model.name() + "' are all 0 (expected: at least one > 0)");
    }
    if (total > MAX_TOTAL_WEIGHT) {
      throw InferenceException.invalidArgument(
          "weights for model '" + model.name() + "' add up to " + total + " (expected: at most " + MAX_TOTAL_WEIGHT + ")");
    }
  }

  private static void validateSticky(RoutingPolicy policy) {
    String parameter = policy.getSticky().getParameter();
    String header = policy.getSticky().getHeader();
    if (!parameter.isEmpty() && !header.isEmpty()) {
      throw InferenceException.invalidArgument(
          "sticky routing names both parameter '" + parameter + "' and header '" + header + "' (expected: one of them)");
    }
    if (!header.isEmpty() && (!HEADER.matcher(header).matches() || header.endsWith("-bin"))) {
      throw InferenceException.invalidArgument(
          "sticky header '" + header + "' (expected: a lower-case ASCII gRPC header name, not -bin)");
    }
  }

  private static boolean hasShadow(RoutingPolicy policy) {
    return policy.hasShadow() && policy.getShadow().getVersion() != 0;
  }

  private static ModelVersion shadow(Model model, RoutingPolicy policy) {
    if (!hasShadow(policy)) {
      return null;
    }
    validateShadow(model, policy);
    return readyVersion(model, policy.getShadow().getVersion(), "shadow names");
  }

  /**
   * A shadow's rate must be in (0, 1], and the shadow must not also take live traffic: a version
   * is either live or a shadow, or its figures would mix both.
   */
  private static void validateShadow(Model model, RoutingPolicy policy) {
    double rate = policy.getShadow().getSampleRate();
    if (!(rate > 0 && rate <= 1)) {
      throw InferenceException.invalidArgument(
          "shadow sample_rate " + rate + " (expected: more than 0, at most 1)");
    }
    long shadow = policy.getShadow().getVersion();
    int weight = policy.getWeightsOrDefault(shadow, 0);
    if (weight != 0) {
      throw InferenceException.invalidArgument(
          "shadow version " + shadow + " of model '" + model.name() + "' also has weight " + weight
              + " (expected: a shadow with no live weight; a version is either live or a shadow)");
    }
  }

  private static ModelVersion readyVersion(Model model, long number, String what) {
    ModelVersion version =
        model
            .version(number)
            .orElseThrow(
                () ->
                    InferenceException.invalidArgument(
                        what + " version " + number + ", which model '" + model.name() + "' does not have (versions: "
                            + model.versions().stream().map(ModelVersion::numberText).toList() + ")"));
    if (!version.isReady()) {
      throw InferenceException.failedPrecondition(
          what + " version " + number + " of model '" + model.name() + "', which is " + version.state()
              + (version.reason().isEmpty() ? "" : " (" + version.reason() + ")")
              + " (expected: a READY version)");
    }
    return version;
  }

  /**
   * Makes {@code route} its model's route if the current one has {@code expectedRevision} —
   * recompiled to serve in part where a version it names stopped serving since it was compiled.
   *
   * @throws InferenceException ABORTED when another change came first
   */
  public synchronized void install(Route route, long expectedRevision) {
    String model = route.policy().getModel();
    Route current = route(model);
    if (current.policy().getRevision() != expectedRevision) {
      throw InferenceException.aborted(
          "routing of model '" + model + "' is at revision " + current.policy().getRevision()
              + ", not " + expectedRevision + "; read it again and retry");
    }
    routes.put(model, current(route));
    refreshHeaderFlag();
  }

  /**
   * Recompiles the route of {@code model} against its versions' states as they are now, keeping
   * its policy and revision ({@link #compileKeeping}): a version it routes to (or shadows) that
   * stopped serving — unloaded, taken down, failed while serving — takes no more traffic, the
   * READY ones it names keep their relative weights (or requests are refused UNAVAILABLE, saying
   * what to load, when none is), and the route says so ({@link Route#degraded()}); once the
   * version is READY again, the policy serves whole. A no-op for a route that serves whole
   * versions that are all READY, or a model without a route.
   *
   * <p>Called after every change of a version's state (the server subscribes it to the
   * repository's events), on the thread that made it — a loader, an admin call, a failing batcher
   * — under this router's lock alone, which nothing holds for long.
   */
  public synchronized void refresh(String model) {
    if (stopping) {
      return;
    }
    Route current = routes.get(model);
    if (current == null || (current.degraded() == null && !current.namesUnready())) {
      return;
    }
    Route compiled;
    try {
      compiled = compileKeeping(current.policy());
    } catch (RuntimeException e) {
      log.error("model '{}': routing revision {} not recompiled after a version's change: {}", model,
          current.policy().getRevision(), e.getMessage());
      return;
    }
    routes.put(model, compiled);
    if (compiled.degraded() == null) {
      log.info("model '{}' routing revision {} serves whole again", model, current.policy().getRevision());
    } else if (!compiled.degraded().equals(current.degraded())) {
      // A fault is a warning; versions an operator unloaded (a model taken down) are news.
      String line = "model '{}' routing revision {} serves in part, {}; traffic goes only to the READY versions it"
          + " names (refused UNAVAILABLE when none is) until they serve again";
      if (compiled.degradedByUnloads()) {
        log.info(line, model, current.policy().getRevision(), compiled.degraded());
      } else {
        log.warn(line, model, current.policy().getRevision(), compiled.degraded());
      }
    }
  }

  /**
   * Stops {@link #refresh}: the server is stopping, its versions drain and unload, and the
   * requests that still arrive are refused as stopping, not as routed to unloaded versions.
   */
  public void stopFollowingVersions() {
    stopping = true;
  }

  /** {@code route}, or where a version it names stopped serving since it was compiled, recompiled. Under the lock. */
  private Route current(Route route) {
    if (!route.namesUnready()) {
      return route;
    }
    try {
      return compileKeeping(route.policy());
    } catch (RuntimeException e) {
      return route; // the model gone meanwhile: its route goes with it (forget)
    }
  }
}

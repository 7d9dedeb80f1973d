package io.modelgate.gateway.admin;

import io.modelgate.gateway.routing.Route;
import io.modelgate.gateway.routing.Router;
import io.modelgate.proto.admin.v1.AdminState;
import io.modelgate.proto.admin.v1.AuditRecord;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.runtime.error.InferenceException;
import java.time.Clock;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one way routing changes: validate the new policy, persist the state, append the audit
 * record, then swap the route in. Operators (through the admin service) and rollouts (an
 * automated operator) both change routing here. One change at a time; request threads never wait
 * for it.
 */
public final class PolicyStore {
  private static final Logger log = LoggerFactory.getLogger(PolicyStore.class);
  static final int HISTORY = 32;

  private final Router router;
  private final StateStore state;
  private final Clock clock;
  private final Map<String, Deque<RoutingPolicy>> history = new HashMap<>();
  private Supplier<List<Rollout>> rollouts = List::of;

  public PolicyStore(Router router, StateStore state, Clock clock) {
    this.router = router;
    this.state = state;
    this.clock = clock;
  }

  /** Where the persisted rollouts come from; set once by the rollout controller. */
  public synchronized void rolloutSource(Supplier<List<Rollout>> source) {
    this.rollouts = source;
  }

  public Router router() {
    return router;
  }

  public Clock clock() {
    return clock;
  }

  /**
   * Replaces the policy of {@code requested.getModel()}.
   *
   * @throws InferenceException ABORTED for a stale {@code expectedRevision}; INVALID_ARGUMENT,
   *     NOT_FOUND or FAILED_PRECONDITION for a policy that does not fit the model
   */
  public synchronized RoutingPolicy set(
      RoutingPolicy requested, long expectedRevision, String caller, String action, String reason) {
    return apply(requested, expectedRevision, caller, action, reason, true);
  }

  /** Sends all weighted traffic to {@code version}, keeping the sticky and shadow settings. */
  public synchronized RoutingPolicy promote(String model, long version, long expectedRevision, String caller) {
    RoutingPolicy current = router.route(model).policy();
    RoutingPolicy.Builder next = current.toBuilder().clearWeights().putWeights(version, 1);
    if (current.getShadow().getVersion() == version) {
      next.clearShadow();
    }
    return apply(next.build(), expectedRevision, caller, "Promote", "promote version " + version + " to 100%", true);
  }

  /**
   * Restores the policy the current one replaced.
   *
   * @throws InferenceException FAILED_PRECONDITION when there is none
   */
  public synchronized RoutingPolicy rollback(String model, long expectedRevision, String caller) {
    Route current = router.route(model);
    Deque<RoutingPolicy> earlier = history.get(model);
    if (earlier == null || earlier.isEmpty()) {
      throw InferenceException.failedPrecondition(
          "model '" + model + "' has no earlier routing policy to roll back to");
    }
    RoutingPolicy previous = earlier.peekLast();
    RoutingPolicy restored =
        apply(
            previous,
            expectedRevision,
            caller,
            "Rollback",
            "rollback to the policy of revision " + previous.getRevision(),
            false);
    earlier.pollLast();
    persist();
    log.info("model '{}' rolled back from revision {}", model, current.policy().getRevision());
    return restored;
  }

  private RoutingPolicy apply(
      RoutingPolicy requested,
      long expectedRevision,
      String caller,
      String action,
      String reason,
      boolean remember) {
    String model = requested.getModel();
    Route current = router.route(model);
    long revision = current.policy().getRevision();
    if (revision != expectedRevision) {
      throw InferenceException.aborted(
          "routing of model '" + model + "' is at revision " + revision + ", not " + expectedRevision
              + "; read it again and retry");
    }
    RoutingPolicy next =
        requested.toBuilder()
            .setRevision(revision + 1)
            .setUpdatedBy(caller)
            .setUpdatedAtMs(clock.millis())
            .setReason(reason)
            .build();
    Route compiled = router.compile(next);
    if (remember) {
      Deque<RoutingPolicy> earlier = history.computeIfAbsent(model, m -> new ArrayDeque<>());
      earlier.addLast(current.policy());
      while (earlier.size() > HISTORY) {
        earlier.pollFirst();
      }
    }
    persist(next);
    state.audit(
        AuditRecord.newBuilder()
            .setTimeMs(next.getUpdatedAtMs())
            .setCaller(caller)
            .setAction(action)
            .setModel(model)
            .setDetail(reason)
            .setOldPolicy(current.policy())
            .setNewPolicy(next)
            .build());
    router.install(compiled, revision);
    log.info("model '{}' routing revision {} by {}: {} {}", model, next.getRevision(), caller, reason, next.getWeightsMap());
    return next;
  }

  /** Records an admin action that is not a routing change (load, unload, rollout events). */
  public synchronized void audit(String caller, String action, String model, long version, String detail) {
    state.audit(
        AuditRecord.newBuilder()
            .setTimeMs(clock.millis())
            .setCaller(caller)
            .setAction(action)
            .setModel(model)
            .setVersion(version)
            .setDetail(detail)
            .build());
  }

  /** Writes the current policies, their history and the rollouts to the state directory. */
  public synchronized void persist() {
    persist(null);
  }

  /** As {@link #persist()}, with {@code pending} in place of its model's current policy. */
  private void persist(RoutingPolicy pending) {
    AdminState.Builder saved = AdminState.newBuilder();
    for (String name : router.models()) {
      RoutingPolicy policy =
          pending != null && pending.getModel().equals(name) ? pending : router.route(name).policy();
      if (policy.getRevision() > 0) {
        saved.addPolicies(policy);
      }
    }
    for (Deque<RoutingPolicy> earlier : history.values()) {
      saved.addAllHistory(earlier);
    }
    saved.addAllRollouts(rollouts.get());
    state.save(saved.build());
  }

  /**
   * Reinstalls saved policies after a restart. A policy is never dropped because a version it
   * names is not READY (a corrupt file, a folder removed): it is kept, at its revision, and routes
   * among the READY versions it names, or refuses requests when none is — traffic never falls
   * back to another version, so a candidate is not promoted by accident. Each such policy is
   * logged as an error and shown by {@code admin models}; loading the missing version restores it
   * whole. Only a policy invalid in itself (or for an unknown model) is skipped.
   */
  public synchronized void restore(AdminState saved) {
    for (RoutingPolicy policy : saved.getPoliciesList()) {
      try {
        Route compiled = router.compileKeeping(policy);
        router.installRestored(compiled);
        if (compiled.degraded() == null) {
          log.info("model '{}' routing restored at revision {}: {}", policy.getModel(), policy.getRevision(), policy.getWeightsMap());
        } else {
          log.error(
              "model '{}' routing restored at revision {} IN PART: {} {}; traffic goes only to the"
                  + " READY versions it names (refused UNAVAILABLE when none is) until they load",
              policy.getModel(), policy.getRevision(), policy.getWeightsMap(), compiled.degraded());
        }
      } catch (RuntimeException e) {
        log.error("model '{}': saved routing revision {} not restored: {}", policy.getModel(), policy.getRevision(), e.getMessage());
      }
    }
    for (RoutingPolicy policy : saved.getHistoryList()) {
      history.computeIfAbsent(policy.getModel(), m -> new ArrayDeque<>()).addLast(policy);
    }
  }

  /**
   * Recompiles the current policy of {@code model} against its versions' states, keeping its
   * revision: after a version it names was loaded again, the policy serves whole again. A no-op
   * for a policy that serves whole.
   */
  public synchronized void refresh(String model) {
    Route current = router.route(model);
    if (current.degraded() == null) {
      return;
    }
    Route compiled = router.compileKeeping(current.policy());
    router.install(compiled, current.policy().getRevision());
    if (compiled.degraded() == null) {
      log.info("model '{}' routing revision {} serves whole again", model, current.policy().getRevision());
    }
  }
}

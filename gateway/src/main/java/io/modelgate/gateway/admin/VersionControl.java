package io.modelgate.gateway.admin;

import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.inference.RepositoryControl;
import io.modelgate.gateway.routing.Route;
import io.modelgate.proto.inference.RepositoryIndexRequest;
import io.modelgate.proto.inference.RepositoryIndexResponse;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.repository.Model;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelVersion;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The one way versions are loaded and unloaded at run time, for the admin API and for the model
 * repository extension on the inference port: load (then let the routing policy serve whole again),
 * unload (draining first), each audited.
 *
 * <p>Loading and unloading block (an ONNX Runtime session loads, a queue drains). The admin API
 * calls them on its own executor; the inference port's repository calls run on this component's
 * single thread, one at a time, never on an event loop.
 */
public final class VersionControl implements RepositoryControl, AutoCloseable {
  private final ModelRepository repository;
  private final ControlPlane policies;
  private final Duration drainTimeout;
  private final ExecutorService worker =
      Executors.newSingleThreadExecutor(
          r -> {
            Thread t = new Thread(r, "modelgate-repository");
            t.setDaemon(true);
            return t;
          });

  public VersionControl(ModelRepository repository, ControlPlane policies, Duration drainTimeout) {
    this.repository = repository;
    this.policies = policies;
    this.drainTimeout = drainTimeout;
  }

  /** Loads one version (new, unloaded or failed; a READY one is left as it is). Blocks. */
  public ModelVersion load(String model, long number, String caller, String action) {
    ModelVersion version = repository.loadVersion(model, number);
    policies.refresh(model);
    policies.audit(caller, action, model, number, version.state() + " " + version.reason());
    return version;
  }

  /**
   * Unloads one READY version after draining it. Blocks.
   *
   * @param whileRouted whether a version that still takes traffic may go (the whole model is being
   *     taken down); else FAILED_PRECONDITION until its traffic is moved away
   */
  public ModelVersion unload(String model, long number, String caller, String action, boolean whileRouted) {
    if (!whileRouted) {
      Route route = policies.router().route(model);
      long weight = route.weightOf(number);
      if (weight > 0 || route.policy().getShadow().getVersion() == number) {
        throw InferenceException.failedPrecondition(
            "version " + number + " of model '" + model + "' still takes traffic under routing revision "
                + route.policy().getRevision()
                + (weight > 0 ? " (weight " + weight + ")" : " (as the shadow)")
                + "; move its traffic away first");
      }
    }
    ModelVersion version = repository.unloadVersion(model, number, drainTimeout);
    policies.audit(caller, action, model, number, "unloaded after draining");
    return version;
  }

  @Override
  public RepositoryIndexResponse index(RepositoryIndexRequest request) {
    RepositoryIndexResponse.Builder response = RepositoryIndexResponse.newBuilder();
    for (Model model : repository.models()) {
      for (ModelVersion version : model.versions()) {
        if (request.getReady() && !version.isReady()) {
          continue;
        }
        response.addModelsBuilder()
            .setName(model.name())
            .setVersion(version.numberText())
            .setState(version.state().name())
            .setReason(version.reason());
      }
    }
    return response.build();
  }

  @Override
  public CompletableFuture<Void> load(String model, String caller) {
    return CompletableFuture.runAsync(
        () -> {
          List<String> failed = new ArrayList<>();
          for (long number : repository.versionsOnDisk(model)) {
            ModelVersion version = load(model, number, caller, "RepositoryModelLoad");
            if (!version.isReady()) {
              failed.add("version " + number + " is " + version.state() + ": " + version.reason());
            }
          }
          if (!failed.isEmpty()) {
            throw InferenceException.failedPrecondition(
                "model '" + model + "' did not load whole: " + String.join("; ", failed));
          }
        },
        worker);
  }

  @Override
  public CompletableFuture<Void> unload(String model, String caller) {
    return CompletableFuture.runAsync(
        () -> {
          Model found = repository.model(model).orElseThrow(
              () -> InferenceException.notFound("unknown model " + InferenceException.quote(model)));
          for (ModelVersion version : found.versions()) {
            if (version.isReady()) {
              unload(model, version.number(), caller, "RepositoryModelUnload", true);
            }
          }
        },
        worker);
  }

  @Override
  public void close() {
    worker.shutdownNow();
  }
}

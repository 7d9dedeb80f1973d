package io.modelgate.gateway.server;

import io.modelgate.gateway.admin.VersionControl;
import io.modelgate.gateway.control.ControlPlane;
import io.modelgate.gateway.control.ControlStore;
import io.modelgate.gateway.control.StateStore;
import io.modelgate.gateway.stats.StatsRegistry;
import io.modelgate.runtime.repository.ModelRepository;
import io.modelgate.runtime.repository.ModelSettings;
import java.io.IOException;
import java.nio.file.Path;

/**
 * A server's model repository, loaded as the server starts, and its control store, opened for it
 * first: the versions its operators last asked unloaded are left unloaded ({@link
 * VersionControl#leftUnloaded}) — in a fleet (a shared store), those asked unloaded on every
 * replica, so that a replica that starts (or restarts) never loads them, not even until its first
 * reconciling unloads them again; in one process, those it unloaded before it stopped.
 * The one way a server's repository is loaded; hand both to {@link GatewayServer#start}, which
 * then owns the store.
 *
 * @param repository loaded: every version READY, FAILED, or UNAVAILABLE as its operators asked
 * @param store opened, read once; not yet watched
 * @param before where the repository folder is polled ({@link AdminSettings#repositoryPoll}), the
 *     poll's look at it taken just before it loaded ({@link io.modelgate.gateway.admin.RepositoryPoll#look}):
 *     what changes while it loads is then acted on; else null
 */
public record RepositoryAtStart(ModelRepository repository, ControlStore store, java.util.Map<String, String> before) {
  /**
   * Opens the control store {@code admin} names and loads the repository at {@code root}, each
   * model's settings over {@code defaults}, recording to {@code stats}, up to {@code loadThreads}
   * models at once ({@link ModelRepository#load(Path, ModelSettings,
   * io.modelgate.runtime.execution.StageRecorder.Factory, ModelRepository.LeftUnloaded, int)}).
   * Blocks while versions load.
   *
   * @throws IOException when the store cannot be opened or read (etcd unreachable: a replica starts
   *     only with its fleet's records), or {@code root} is not a readable folder; nothing is left open
   */
  public static RepositoryAtStart load(Path root, ModelSettings defaults, AdminSettings admin, StatsRegistry stats,
      int loadThreads) throws IOException {
    ControlStore store = ControlStore.open(admin.control(), new StateStore(admin.stateDirectory()), stats.prometheus(),
        stats.clock());
    try {
      ModelRepository.LeftUnloaded left = VersionControl.leftUnloaded(ControlPlane.loads(store.load().values()),
          store.shared());
      java.util.Map<String, String> before = admin.repositoryPoll().isZero() ? null
          : io.modelgate.gateway.admin.RepositoryPoll.look(root);
      long started = System.nanoTime();
      ModelRepository repository = ModelRepository.load(root, defaults, stats, left, loadThreads);
      int versions = 0;
      int ready = 0;
      for (io.modelgate.runtime.repository.Model model : repository.models()) {
        for (io.modelgate.runtime.repository.ModelVersion version : model.versions()) {
          versions++;
          ready += version.isReady() ? 1 : 0;
        }
      }
      org.slf4j.LoggerFactory.getLogger(RepositoryAtStart.class).info(
          "model repository loaded in {} ms, up to {} models at once: {} models, {} versions, {} READY",
          (System.nanoTime() - started) / 1_000_000, loadThreads, repository.models().size(), versions, ready);
      return new RepositoryAtStart(repository, store, before);
    } catch (IOException | RuntimeException | Error e) {
      store.close();
      throw e;
    }
  }
}

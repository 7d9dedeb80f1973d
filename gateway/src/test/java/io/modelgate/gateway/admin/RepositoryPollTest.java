package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.admin.RepositoryPoll.Action;
import io.modelgate.gateway.control.StateStore;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.repository.VersionState;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The repository folder polled ({@code serve --repository-poll}): each change is acted on once it
 * has held still for one look, as an operator's load, reload or unload would be, audited; what an
 * operator or routing decided is kept. The test makes each look itself ({@link RepositoryPoll#poll}).
 */
class RepositoryPollTest {
  @TempDir Path root;
  Gateway gateway;
  RepositoryPoll poll;

  @BeforeEach
  void start() throws IOException {
    Gateway.write(root, "m", 1, Gateway.affine());
    Gateway.write(root, "m", 2, Gateway.affineTimes(2));
    open();
  }

  /** Starts the gateway on the repository as it is, polled every second (the test makes the looks). */
  private void open() throws IOException {
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve(".state"), -1).withRepositoryPoll(Duration.ofSeconds(1)), Clock.systemUTC());
    poll = gateway.server.repositoryPoll();
  }

  @AfterEach
  void stop() {
    gateway.close();
  }

  /** Writes version {@code version}'s model file, dated a second after what was there (a file system's coarse clock aside). */
  private void write(String model, int version, byte[] bytes) throws IOException {
    Path file = root.resolve(model).resolve(Integer.toString(version)).resolve("model.onnx");
    FileTime before = Files.exists(file) ? Files.getLastModifiedTime(file) : FileTime.fromMillis(0);
    Gateway.write(root, model, version, bytes);
    Files.setLastModifiedTime(file, FileTime.fromMillis(Math.max(before.toMillis() + 1000, System.currentTimeMillis())));
  }

  private ModelVersion version(String model, long number) {
    return gateway.repository.model(model).flatMap(m -> m.version(number)).orElse(null);
  }

  private float y0(String model, String version) {
    return Tensors.floats(gateway.blocking().modelInfer(Tensors.affine(1, 2, 3).setModelName(model)
        .setModelVersion(version).build()).getRawOutputContents(0))[0];
  }

  private List<String> audit(String action) throws IOException {
    return Files.readAllLines(root.resolve(".state").resolve(StateStore.AUDIT_FILE)).stream()
        .filter(line -> line.contains("\"action\":\"" + action + "\"")).toList();
  }

  private void route(long expected, long version, int weight) {
    gateway.admin().setRouting(SetRoutingRequest.newBuilder().setExpectedRevision(expected)
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(version, weight)).build());
  }

  @Test
  void aVersionFolderThatAppears_isLoadedOnceItHoldsStill_audited_andNotLoadedAgain() throws Exception {
    write("m", 3, Gateway.affineTimes(3));
    poll.poll();
    assertThat(version("m", 3)).as("seen once: it may still be being copied").isNull();
    // Changed again before the next look: still not loaded.
    write("m", 3, Gateway.affineTimes(4));
    poll.poll();
    assertThat(version("m", 3)).isNull();
    poll.poll();
    assertThat(version("m", 3).state()).isEqualTo(VersionState.READY);
    assertThat(y0("m", "3")).isEqualTo(5f);
    poll.poll();
    poll.poll();
    assertThat(poll.actions(Action.LOAD, true)).isEqualTo(1);
    assertThat(audit("PollLoad")).singleElement().satisfies(line -> assertThat(line)
        .contains("\"caller\":\"" + RepositoryPoll.CALLER + "\"").contains("\"version\":\"3\"").contains("READY"));
    assertThat(gateway.stats.scrape())
        .contains("modelgate_repository_poll_actions_total{action=\"load\",result=\"done\"} 1.0")
        .contains("modelgate_repository_polls_total{result=\"ok\"} 6.0")
        .contains("modelgate_repository_poll_waiting 0.0");
  }

  @Test
  void aFileReplacedByOneOfTheSameSizeAndTime_isStillSeen_andLoadedAgain() throws Exception {
    Path file = root.resolve("m").resolve("2").resolve("model.onnx");
    FileTime time = Files.getLastModifiedTime(file);
    long size = Files.size(file);
    // A copy that keeps its source's time (cp -p, rsync -a), renamed over the file.
    Path copy = root.resolve("m").resolve(".model.onnx.new");
    Files.write(copy, Gateway.affineTimes(5));
    Files.setLastModifiedTime(copy, time);
    Files.move(copy, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    assertThat(Files.size(file)).isEqualTo(size);
    assertThat(Files.getLastModifiedTime(file)).isEqualTo(time);
    poll.poll();
    poll.poll();
    assertThat(y0("m", "2")).isEqualTo(6f);
    assertThat(poll.actions(Action.RELOAD, true)).isEqualTo(1);
  }

  @Test
  void aFileWrittenAgainInPlace_withItsSizeKeptAndItsTimeSetBack_isStillSeen_andLoadedAgain() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(
        java.nio.file.FileSystems.getDefault().supportedFileAttributeViews().contains("unix"),
        "a file's change time is told by Unix file systems only");
    Path file = root.resolve("m").resolve("2").resolve("model.onnx");
    FileTime time = Files.getLastModifiedTime(file);
    Object inode = Files.readAttributes(file, java.nio.file.attribute.BasicFileAttributes.class).fileKey();
    long size = Files.size(file);
    // cp -p or rsync --inplace -t over it: the same file truncated and written, its time set back.
    Thread.sleep(20); // a file system's change-time clock is coarse (the kernel's tick)
    Files.write(file, Gateway.affineTimes(5));
    Files.setLastModifiedTime(file, time);
    assertThat(Files.size(file)).isEqualTo(size);
    assertThat(Files.getLastModifiedTime(file)).isEqualTo(time);
    assertThat(Files.readAttributes(file, java.nio.file.attribute.BasicFileAttributes.class).fileKey()).isEqualTo(inode);
    poll.poll();
    poll.poll();
    assertThat(y0("m", "2")).isEqualTo(6f);
    assertThat(poll.actions(Action.RELOAD, true)).isEqualTo(1);
  }

  @Test
  void aFileWhoseOwnerPermissionsOrLinksChange_butNotWhatItHolds_isNotLoadedAgain_butAnyOtherFileOfTheFolderIs()
      throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(
        java.nio.file.FileSystems.getDefault().supportedFileAttributeViews().contains("posix"),
        "permissions and hard links as Unix file systems have them");
    Path file = root.resolve("m").resolve("2").resolve("model.onnx");
    Gateway.config(root, "m", "max_batch_size: 4\n");
    poll.poll();
    poll.poll();
    long reloads = gateway.server.versions().reloads(false);
    assertThat(reloads).as("model.yaml written: each serving version loaded again").isEqualTo(2);
    Map<String, String> before = RepositoryPoll.look(root);
    Thread.sleep(20); // a file system's change-time clock is coarse (the kernel's tick)
    Files.setPosixFilePermissions(file, java.nio.file.attribute.PosixFilePermissions.fromString("r--r-----"));
    Files.setPosixFilePermissions(root.resolve("m").resolve("model.yaml"),
        java.nio.file.attribute.PosixFilePermissions.fromString("r--r-----"));
    Files.createLink(root.resolve("m").resolve(".model.onnx.backup"), root.resolve("m").resolve("1").resolve("model.onnx"));
    assertThat(RepositoryPoll.look(root)).as("each change time changed").doesNotContainEntry("m", before.get("m"))
        .doesNotContainEntry("m/1", before.get("m/1")).doesNotContainEntry("m/2", before.get("m/2"));
    poll.poll();
    poll.poll();
    poll.poll();
    assertThat(gateway.server.versions().reloads(false)).isEqualTo(reloads);
    assertThat(poll.waiting()).isEmpty();
    assertThat(y0("m", "2")).isEqualTo(3f);

    // The same bytes written again in place, its time set back: what serves was made from them.
    FileTime time = Files.getLastModifiedTime(file);
    Files.setPosixFilePermissions(file, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r-----"));
    Thread.sleep(20);
    Files.write(file, Gateway.affineTimes(2));
    Files.setLastModifiedTime(file, time);
    poll.poll();
    poll.poll();
    assertThat(gateway.server.versions().reloads(false)).isEqualTo(reloads);

    // Another file of the folder: its content is not what a load records, so the version is loaded again.
    Path labels = root.resolve("m").resolve("2").resolve("labels.txt");
    Files.writeString(labels, "zero\n");
    poll.poll();
    poll.poll();
    assertThat(gateway.server.versions().reloads(false)).isEqualTo(reloads + 1);
    Thread.sleep(20);
    Files.setPosixFilePermissions(labels, java.nio.file.attribute.PosixFilePermissions.fromString("r--------"));
    poll.poll();
    poll.poll();
    assertThat(gateway.server.versions().reloads(false)).isEqualTo(reloads + 2);
  }

  @Test
  void aLookTakingOverAShareOfTheInterval_spacesTheNextOut_andIsSaid() {
    assertThat(RepositoryPoll.slowLook(40_000_000, Duration.ofSeconds(1), 120)).isNull();
    assertThat(RepositoryPoll.spacing(40_000_000, Duration.ofSeconds(1))).isEqualTo(1_000_000_000L);
    assertThat(RepositoryPoll.spacing(184_000_000, Duration.ofSeconds(1))).as("20 times the look: 5% of a core")
        .isEqualTo(3_680_000_000L);
    assertThat(RepositoryPoll.slowLook(184_000_000, Duration.ofSeconds(1), 4_000)).isEqualTo(
        "a look at the model repository (4000 model and version folders) took 184 ms, 18% of the poll's interval of 1s:"
            + " the next look waits 3680ms instead, so that looks take at most 5% of a core from serving, and changes are"
            + " found that much later; a shorter look needs fewer files or a faster disk (logged at most every 10"
            + " minutes)");
    assertThat(RepositoryPoll.slowLook(184_000_000, Duration.ofSeconds(30), 4_000)).isNull();
    assertThat(RepositoryPoll.spacing(184_000_000, Duration.ofSeconds(30))).isEqualTo(30_000_000_000L);
  }

  @Test
  void aVersionFolderWithALinkLoop_holdsStill_andIsLoaded() throws Exception {
    write("m", 3, Gateway.affineTimes(3));
    Path folder = root.resolve("m").resolve("3");
    Files.createDirectories(folder.resolve("assets"));
    Files.createSymbolicLink(folder.resolve("assets").resolve("up"), folder);
    poll.poll();
    poll.poll();
    assertThat(version("m", 3).state()).isEqualTo(VersionState.READY);
    poll.poll();
    assertThat(poll.actions(Action.LOAD, true)).isEqualTo(1);
    assertThat(poll.actions(Action.RELOAD, true)).isZero();
  }

  @Test
  void aServingVersionWhoseFileChanges_isLoadedAgainWhileItServes_andAModelYamlChangeLoadsEachServingVersionOnce()
      throws Exception {
    assertThat(y0("m", "2")).isEqualTo(3f);
    write("m", 2, Gateway.affineTimes(5));
    poll.poll();
    assertThat(y0("m", "2")).isEqualTo(3f);
    poll.poll();
    assertThat(y0("m", "2")).isEqualTo(6f);
    assertThat(poll.actions(Action.RELOAD, true)).isEqualTo(1);
    assertThat(audit("PollReload")).singleElement().satisfies(line -> assertThat(line)
        .contains("READY, loaded again while it served"));

    // model.yaml and version 1's file change together: each serving version is loaded again once.
    long reloads = gateway.server.versions().reloads(false);
    Gateway.config(root, "m", "max_batch_size: 4\n");
    write("m", 1, Gateway.affineTimes(7));
    poll.poll();
    poll.poll();
    assertThat(gateway.server.versions().reloads(false)).isEqualTo(reloads + 2);
    assertThat(y0("m", "1")).isEqualTo(8f);
    assertThat(version("m", 1).serving().settings().maxBatchSize()).isEqualTo(4);
    assertThat(version("m", 2).serving().settings().maxBatchSize()).isEqualTo(4);
    poll.poll();
    assertThat(gateway.server.versions().reloads(false)).isEqualTo(reloads + 2);
  }

  @Test
  void aBrokenFile_failsOnce_isNotTriedAgainUntilItChanges_andAServingVersionKeepsServingWhenItsNewFileIsBroken()
      throws Exception {
    write("m", 3, "not a model".getBytes());
    poll.poll();
    poll.poll();
    assertThat(version("m", 3).state()).isEqualTo(VersionState.FAILED);
    poll.poll();
    poll.poll();
    assertThat(poll.actions(Action.LOAD, false)).isEqualTo(1);
    write("m", 3, Gateway.affineTimes(3));
    poll.poll();
    poll.poll();
    assertThat(version("m", 3).state()).isEqualTo(VersionState.READY);
    assertThat(poll.actions(Action.LOAD, true)).isEqualTo(1);

    write("m", 3, "broken now".getBytes());
    poll.poll();
    poll.poll();
    assertThat(version("m", 3).state()).isEqualTo(VersionState.READY);
    assertThat(y0("m", "3")).isEqualTo(4f);
    assertThat(poll.actions(Action.RELOAD, false)).isEqualTo(1);
    assertThat(gateway.stats.scrape()).contains("modelgate_version_reloads_total{result=\"failed\"} 1.0");
  }

  @Test
  void aVersionAnOperatorUnloaded_staysUnloadedWhateverItsFilesDo() throws Exception {
    gateway.server.versions().unload("m", 1, "test", "UnloadVersion", false);
    write("m", 1, Gateway.affineTimes(9));
    poll.poll();
    poll.poll();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThat(poll.actions(Action.LOAD, true) + poll.actions(Action.LOAD, false)).isZero();
  }

  @Test
  void aVersionWhoseFolderGoes_isUnloaded_butOneRoutingNamesServesUntilItsTrafficMoves() throws Exception {
    route(0, 1, 100);
    Gateway.deleteModel(root, "m/1");
    poll.poll();
    poll.poll();
    poll.poll();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.READY);
    assertThat(poll.waiting()).containsOnlyKeys("m/1");
    assertThat(poll.waiting().get("m/1")).contains("its folder has gone, but routing revision 1 gives it weight 100");
    assertThat(gateway.stats.scrape()).contains("modelgate_repository_poll_waiting 1.0");
    io.modelgate.proto.admin.v1.ListModelsResponse listed =
        gateway.admin().listModels(io.modelgate.proto.admin.v1.ListModelsRequest.getDefaultInstance());
    assertThat(listed.getRepositoryPollMs()).isEqualTo(1000);
    assertThat(listed.getPollWaitingList()).singleElement().asString()
        .startsWith("m/1: its folder has gone, but routing revision 1 gives it weight 100");

    route(1, 2, 100);
    poll.poll();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThat(poll.waiting()).isEmpty();
    assertThat(audit("PollUnload")).singleElement().satisfies(line -> assertThat(line).contains("\"version\":\"1\""));
    assertThat(y0("m", "")).isEqualTo(3f);

    // Its folder back: loaded again, the poll having unloaded it (not an operator).
    write("m", 1, Gateway.affineTimes(6));
    poll.poll();
    poll.poll();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.READY);
    assertThat(y0("m", "1")).isEqualTo(7f);
  }

  @Test
  void whatChangesWhileTheServerStarts_isActedOnLikeAnyChange() throws Exception {
    gateway.close();
    // The repository loads, then (the start-up warm-up, say) version 3 appears and version 2's file
    // is replaced, before the server and its poll start.
    gateway = Gateway.inProcess(root, Duration.ofSeconds(10), Duration.ZERO,
        Gateway.adminSettings(root.resolve(".state"), -1).withRepositoryPoll(Duration.ofSeconds(1)), Clock.systemUTC(),
        () -> {
          try {
            write("m", 3, Gateway.affineTimes(3));
            write("m", 2, Gateway.affineTimes(5));
          } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        });
    poll = gateway.server.repositoryPoll();
    assertThat(version("m", 3)).isNull();
    assertThat(y0("m", "2")).isEqualTo(3f);
    poll.poll();
    assertThat(version("m", 3).state()).isEqualTo(VersionState.READY);
    assertThat(y0("m", "2")).isEqualTo(6f);
  }

  @Test
  void aVersionThePollUnloaded_isLoadedAtTheNextStartWhereItsFolderIsBack() throws Exception {
    Gateway.deleteModel(root, "m/1");
    poll.poll();
    poll.poll();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.UNAVAILABLE);
    gateway.close();
    write("m", 1, Gateway.affineTimes(6));
    open();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.READY);
    assertThat(y0("m", "1")).isEqualTo(7f);
  }

  @Test
  void aModelFolderThatAppears_isAddedAndLoaded_andOneThatGoes_isTakenDownWhole() throws Exception {
    write("n", 1, Gateway.affineTimes(3));
    write("n", 2, Gateway.affineTimes(4));
    poll.poll();
    poll.poll();
    assertThat(version("n", 1).state()).isEqualTo(VersionState.READY);
    assertThat(y0("n", "")).isEqualTo(5f);

    Gateway.deleteModel(root, "m");
    poll.poll();
    poll.poll();
    assertThat(version("m", 1).state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThat(version("m", 2).state()).isEqualTo(VersionState.UNAVAILABLE);
    assertThat(audit("PollUnload")).hasSize(2);
    assertThat(poll.actions(Action.UNLOAD, true)).isEqualTo(1);
  }
}

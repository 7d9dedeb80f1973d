package io.modelgate.gateway.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.testing.Gateway;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code modelgate infer} against a gateway on loopback. */
class CliTest {
  @TempDir static Path root;
  static Gateway gateway;

  @BeforeAll
  static void start() throws Exception {
    gateway = Gateway.netty(Gateway.standardRepository(root), 16 << 20);
  }

  @AfterAll
  static void stop() {
    gateway.close();
  }

  private record Run(int exitCode, String out, String err) {}

  private static Run run(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    CommandLine cli = ModelgateCli.commandLine();
    cli.setOut(new PrintWriter(out));
    cli.setErr(new PrintWriter(err));
    int code = cli.execute(args);
    return new Run(code, out.toString(), err.toString());
  }

  private static String target() {
    return "localhost:" + gateway.server.port();
  }

  @Test
  void aLoadTheReplicaOwes_isOneLineOfAdminModels_sayingWhoAskedWhyItFailedAndWhenItTriesNext() {
    io.modelgate.proto.admin.v1.OwedLoad fleet = io.modelgate.proto.admin.v1.OwedLoad.newBuilder().setModel("m")
        .setVersion(4).setAsks("fleet").setAskedBy("/10.0.0.7:5123 operator:ana").setReplica("r1").setFailures(3)
        .setNextTryMs(10_500).setReason("model 'm' has no version folder m/4 in the repository").build();
    assertThat(AdminCommand.owedLine(fleet, 2_000)).isEqualTo("NOT LOADED HERE: model m version 4 (loaded by"
        + " /10.0.0.7:5123 operator:ana on replica r1): failure 3 in a row, next try in 9 s: model 'm' has no version"
        + " folder m/4 in the repository");
    io.modelgate.proto.admin.v1.OwedLoad control = fleet.toBuilder().setVersion(3).setAsks("control").setAskedBy("rollout")
        .clearReplica().setFailures(1).setReason("FAILED: missing model file m/1/model.onnx").build();
    // A try that is due says 0 s.
    assertThat(AdminCommand.owedLine(control, 11_000)).isEqualTo("NOT LOADED HERE: model m version 3 (the copied"
        + " control of its running rollout): failure 1 in a row, next try in 0 s: FAILED: missing model file m/1/model.onnx");
    io.modelgate.proto.admin.v1.OwedLoad reload = fleet.toBuilder().setAsks("reload").setFailures(2)
        .setReason("the model.onnx here (sha256 81602d5ede13) is not the one replica r1 loaded (sha256 8907e772ed92)")
        .build();
    assertThat(AdminCommand.owedLine(reload, 2_000)).isEqualTo("NOT LOADED AGAIN HERE: model m version 4 (loaded again"
        + " by /10.0.0.7:5123 operator:ana on replica r1): failure 2 in a row, next try in 9 s: the model.onnx here"
        + " (sha256 81602d5ede13) is not the one replica r1 loaded (sha256 8907e772ed92)");
  }

  @Test
  void aControlStoreOutOfSpace_isUpButSaysChangesAreRefusedAndHowToFreeIt() {
    io.modelgate.proto.admin.v1.ControlStoreStatus full = io.modelgate.proto.admin.v1.ControlStoreStatus.newBuilder()
        .setKind("etcd").setTarget("http://e:2379 prefix /modelgate/").setUp(true).setOutOfSpace(true)
        .setAppliedRevision(7).setJudge("r1").build();
    java.io.StringWriter text = new java.io.StringWriter();
    AdminCommand.printControlStore(new java.io.PrintWriter(text, true), "r2", full);
    assertThat(text.toString().strip()).isEqualTo("replica r2; control store etcd http://e:2379 prefix /modelgate/: up,"
        + " but OUT OF SPACE: etcd refuses every write, so changes are refused (free it: etcdctl compact, etcdctl defrag,"
        + " etcdctl alarm disarm); traffic keeps the routing last applied; applied revision 7; rollouts judged by r1");
  }

  @Test
  void infer_sendsADigit_andPrintsTheVersionAndThePrediction() {
    MnistDigits.Digit digit = MnistDigits.get(7);
    Run run = run("infer", "--target", target(), "--model", "cnn_mnist", "--digit", "7");
    assertThat(run.exitCode()).as(run.err()).isZero();
    assertThat(run.out())
        .contains("model cnn_mnist version 2 answered in")
        .contains("output_probs FP32 [1, 10]")
        .contains("digit #7: label " + digit.label() + ", predicted " + digit.label());
  }

  @Test
  void infer_overMutualTls_withTheCaAndAClientCertificate_andClearErrorsWithout() throws Exception {
    io.modelgate.gateway.testing.TestCertificates certs =
        io.modelgate.gateway.testing.TestCertificates.create(java.nio.file.Files.createDirectories(root.resolve("pki")));
    Path repo = java.nio.file.Files.createDirectories(root.resolve("tls-repo"));
    Gateway.write(repo, "affine", 1, Gateway.affine());
    io.modelgate.gateway.stats.StatsRegistry stats =
        new io.modelgate.gateway.stats.StatsRegistry(java.time.Duration.ofSeconds(5), java.time.Clock.systemUTC(), false);
    io.modelgate.runtime.repository.ModelRepository repository = io.modelgate.runtime.repository.ModelRepository.load(
        repo, io.modelgate.runtime.repository.ModelSettings.defaults(io.modelgate.runtime.onnx.SessionSettings.DEFAULTS), stats);
    io.modelgate.gateway.server.GatewayServer server = io.modelgate.gateway.server.GatewayServer.start(
        new io.modelgate.gateway.server.ServerSettings("127.0.0.1", 0, 1 << 20, 1, java.time.Duration.ofSeconds(5),
            new io.modelgate.gateway.tls.TlsSettings(certs.serverChain, certs.serverKey, certs.caCert)),
        new io.modelgate.gateway.server.AdminSettings("127.0.0.1", 0, Gateway.ADMIN_TOKEN,
            new io.modelgate.gateway.tls.TlsSettings(certs.serverChain, certs.serverKey, certs.caCert),
            "127.0.0.1", -1, java.nio.file.Files.createDirectories(repo.resolve(".state"))).withWarmup(0),
        repository, stats);
    try {
      String target = "localhost:" + server.port();
      Run ok = run("infer", "--target", target, "--model", "affine", "--tls-ca", certs.caCert.toString(),
          "--tls-cert", certs.clientChain.toString(), "--tls-key", certs.clientKey.toString());
      assertThat(ok.exitCode()).as(ok.err()).isZero();
      assertThat(ok.out()).contains("model affine version 1");
      // Plaintext to a TLS port, or TLS without the client certificate it asks for: UNAVAILABLE.
      Run plaintext = run("infer", "--target", target, "--model", "affine", "--timeout", "5s");
      assertThat(plaintext.exitCode()).isNotZero();
      assertThat(plaintext.err()).contains("UNAVAILABLE");
      Run noCertificate = run("infer", "--target", target, "--model", "affine", "--tls-ca", certs.caCert.toString(),
          "--timeout", "5s");
      assertThat(noCertificate.exitCode()).isNotZero();
      assertThat(noCertificate.err()).contains("UNAVAILABLE");
      // The admin CLI goes the same way to the admin port's mutual TLS.
      Path token = java.nio.file.Files.writeString(repo.resolve("admin-token"), Gateway.ADMIN_TOKEN);
      Run admin = run("admin", "--target", "localhost:" + server.adminPort(), "--token-file", token.toString(),
          "--tls-ca", certs.caCert.toString(), "--tls-cert", certs.clientChain.toString(), "--tls-key", certs.clientKey.toString(),
          "models");
      assertThat(admin.exitCode()).as(admin.err()).isZero();
      assertThat(admin.out()).contains("affine");
      Run adminHalf = run("admin", "--target", "localhost:" + server.adminPort(), "--token-file", token.toString(),
          "--tls-ca", certs.caCert.toString(), "--tls-key", certs.clientKey.toString(), "models");
      assertThat(adminHalf.exitCode()).isNotZero();
      assertThat(adminHalf.err()).contains("--tls-cert and --tls-key go together");
      // A certificate without its key is a usage error, before anything is sent.
      Run half = run("infer", "--target", target, "--model", "affine", "--tls-ca", certs.caCert.toString(),
          "--tls-cert", certs.clientChain.toString());
      assertThat(half.exitCode()).isEqualTo(2);
      assertThat(half.err()).contains("--tls-cert and --tls-key go together");
      // An unreadable CA is a local file that could not be read.
      Run noCa = run("infer", "--target", target, "--model", "affine", "--tls-ca", root.resolve("missing.pem").toString());
      assertThat(noCa.exitCode()).as(noCa.err()).isEqualTo(3);
    } finally {
      server.stop();
      repository.close(java.time.Duration.ZERO);
      stats.close();
    }
  }

  @Test
  void infer_aNamedVersion() {
    Run run = run("infer", "--target", target(), "--model", "cnn_mnist", "--version", "1");
    assertThat(run.out()).contains("model cnn_mnist version 1 answered in");
  }

  @Test
  void infer_anyOtherModel_getsRandomInputsFromItsMetadata() {
    Run run = run("infer", "--target", target(), "--model", "affine");
    assertThat(run.exitCode()).as(run.err()).isZero();
    assertThat(run.out()).contains("model affine version 1").contains("y FP32 [1, 3]").contains("z FP32 [1, 3]");
  }

  @Test
  void infer_errorsPrintTheStatus_andExitNonZero() {
    Run run = run("infer", "--target", target(), "--model", "nope");
    assertThat(run.exitCode()).isEqualTo(1);
    assertThat(run.err()).contains("NOT_FOUND: unknown model 'nope'");
  }

  private static String[] admin(String... args) throws Exception {
    Path token = root.resolve(".state").resolve("cli-token");
    java.nio.file.Files.writeString(token, Gateway.ADMIN_TOKEN);
    String[] prefix = {"admin", "--target", "localhost:" + gateway.server.adminPort(), "--token-file", token.toString()};
    String[] all = java.util.Arrays.copyOf(prefix, prefix.length + args.length);
    System.arraycopy(args, 0, all, prefix.length, args.length);
    return all;
  }

  /** {@code admin connections}: each port's connections and limits, and the addresses holding them. */
  @Test
  void admin_connections_listsThePorts_andTheAddressesHoldingTheMost() throws Exception {
    // A call on the inference port first: the gateway's own client holds a connection there.
    run("infer", "--target", target(), "--model", "cnn_mnist", "--digit", "7");
    Run connections = run(admin("connections", "--top", "3"));
    assertThat(connections.exitCode()).as(connections.err()).isZero();
    assertThat(connections.out()).contains("PORT").contains("HELD").contains("LIMIT").contains("REFUSED");
    assertThat(connections.out().lines().filter(l -> l.matches("(inference|admin|metrics) .*")).map(l -> l.split(" ")[0]))
        .containsExactly("inference", "admin", "metrics");
    assertThat(connections.out()).as("the loopback address, listed under a port").containsPattern("\\n  127\\.0\\.0\\.1 +\\d+\\n");
    assertThat(connections.out()).contains("address 0, limit 0, rate 0");

    Run none = run(admin("connections", "--top", "0"));
    assertThat(none.exitCode()).isEqualTo(2);
    assertThat(none.err()).contains("--top: 0 (expected: 1 to 1000)");
  }

  /** {@code admin log} and {@code admin trace}: a level set for a while, listed, set back; a rate without tracing refused. */
  @Test
  void admin_log_setsALevelForAWhile_andTrace_saysWhenNoCallIsTraced() throws Exception {
    Run set = run(admin("log", "--logger", "io.modelgate.gateway.stats", "--level", "DEBUG", "--for", "10m"));
    assertThat(set.exitCode()).as(set.err()).isZero();
    assertThat(set.out()).contains("LOGGER").containsPattern("io\\.modelgate\\.gateway\\.stats +DEBUG +INHERITED +20\\d\\d-");
    Run listed = run(admin("log"));
    assertThat(listed.out()).contains("io.modelgate.gateway.stats");
    Run back = run(admin("log", "--logger", "io.modelgate.gateway.stats", "--restore"));
    assertThat(back.exitCode()).as(back.err()).isZero();
    assertThat(back.out()).contains("log levels: the server's own (none set for a while)");
    Run again = run(admin("log", "--logger", "io.modelgate.gateway.stats", "--restore"));
    assertThat(again.exitCode()).isNotZero();
    assertThat(again.err()).contains("has no level set through the admin API");
    Run both = run(admin("log", "--level", "DEBUG", "--restore"));
    assertThat(both.exitCode()).isEqualTo(2);
    assertThat(both.err()).contains("--level and --restore: one or the other");

    Run trace = run(admin("trace"));
    assertThat(trace.exitCode()).as(trace.err()).isZero();
    assertThat(trace.out()).contains("trace sample rate: none (no --trace-endpoint: no call is traced)");
    Run refused = run(admin("trace", "--sample-rate", "0.5"));
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.err()).contains("FAILED_PRECONDITION").contains("started without --trace-endpoint");
  }

  @Test
  void admin_models_routes_stats_rollout() throws Exception {
    Run models = run(admin("models"));
    assertThat(models.exitCode()).as(models.err()).isZero();
    assertThat(models.out()).contains("MODEL").contains("cnn_mnist").contains("READY").contains("routing revision");
    // The file each version loaded: its SHA-256's first 12 hex digits, as the server's log gives it whole.
    String sha256 = gateway.server.router().route("cnn_mnist").model().version(1).orElseThrow().serving().modelSha256();
    assertThat(models.out()).contains("SHA-256").containsPattern("cnn_mnist +1 +READY +\\S+ +cpu +\\d+ +" + sha256.substring(0, 12) + " ");

    Run set = run(admin("routes", "set", "--model", "cnn_mnist", "--weights", "1=80,2=20", "--reason", "canary"));
    assertThat(set.exitCode()).as(set.err()).isZero();
    assertThat(set.out()).contains("weights: v1=80 (80.0%), v2=20 (20.0%)").contains("canary");

    Run get = run(admin("routes", "get", "--model", "cnn_mnist"));
    assertThat(get.out()).contains("v1=80");

    run("infer", "--target", target(), "--model", "cnn_mnist", "--version", "1");
    gateway.stats.rotate();
    Run stats = run(admin("stats", "--model", "cnn_mnist", "--window", "1m"));
    assertThat(stats.exitCode()).as(stats.err()).isZero();
    assertThat(stats.out()).contains("P99 MS").contains("cnn_mnist        1    1m")
        .containsPattern("windows end \\S+Z, \\d+\\.\\d s before this report \\(intervals close every 5 s\\)");
    // A window the server does not report is refused, naming those it does (it printed an empty table).
    Run noWindow = run(admin("stats", "--model", "cnn_mnist", "--window", "7m"));
    assertThat(noWindow.exitCode()).isEqualTo(2);
    assertThat(noWindow.err()).contains("Invalid value for option '--window': '7m' (expected one of: 1m, 5m, 15m, all,"
        + " all-windows)");

    run(admin("routes", "set", "--model", "cnn_mnist", "--weights", "1=100"));
    Run rollout = run(admin("rollout", "start", "--model", "cnn_mnist", "--baseline", "1", "--candidate", "2",
        "--steps", "10,100", "--interval", "60s"));
    assertThat(rollout.exitCode()).as(rollout.err()).isZero();
    assertThat(rollout.out()).contains("RUNNING").contains("START");
    Run status = run(admin("rollout", "status", "--model", "cnn_mnist"));
    assertThat(status.out()).contains("now at step 1/2: 10% to the candidate");
    Run abort = run(admin("rollout", "abort", "--model", "cnn_mnist"));
    assertThat(abort.out()).contains("ABORTED");
    Run back = run(admin("rollback", "--model", "cnn_mnist"));
    assertThat(back.exitCode()).as(back.err()).isZero();
    // Leave version 2 with all traffic, as the other tests expect.
    Run promote = run(admin("promote", "--model", "cnn_mnist", "--version", "2"));
    assertThat(promote.out()).contains("weights: v2=1 (100.0%)");

    // A control the gateway makes: the baseline's model loaded again, as version 3.
    Run badControl = run(admin("rollout", "start", "--model", "cnn_mnist", "--baseline", "2", "--candidate", "1",
        "--steps", "10,100", "--control", "three"));
    assertThat(badControl.exitCode()).isEqualTo(2);
    assertThat(badControl.err()).contains("Invalid value for option '--control': 'three' (expected: a version number, 0 for none, or copy)");
    Run copied = run(admin("rollout", "start", "--model", "cnn_mnist", "--baseline", "2", "--candidate", "1",
        "--steps", "10,100", "--interval", "60s", "--control", "copy"));
    assertThat(copied.exitCode()).as(copied.err()).isZero();
    assertThat(copied.out()).contains("control v3 (the baseline's model, loaded again by the gateway until the rollout ends)");
    Run listed = run(admin("models"));
    assertThat(listed.out()).containsPattern("cnn_mnist +3 +READY +10 .*a copy of v2 \\(a rollout's control\\)");
    run(admin("rollout", "abort", "--model", "cnn_mnist"));
    gateway.server.versions().reconcileCopies();
    assertThat(run(admin("models")).out()).containsPattern("cnn_mnist +3 +UNAVAILABLE .*unloaded; a copy of v2");
  }

  @Test
  void admin_loadReload_loadsAReadyVersionAgainFromItsEditedFolder_orEveryReadyVersionOfTheModel() throws Exception {
    Gateway.config(root, "unbatched", "max_batch_size: 0\nmax_queue_delay_us: 50\n");
    Run reloaded = run(admin("load", "--model", "unbatched", "--version", "1", "--reload"));
    assertThat(reloaded.exitCode()).as(reloaded.err()).isZero();
    String sha = gateway.repository.model("unbatched").orElseThrow().version(1).orElseThrow().serving().modelSha256();
    assertThat(reloaded.out()).isEqualTo("model unbatched version 1: READY, loaded again: model.onnx sha256 "
        + sha.substring(0, 12) + ", max_batch_size 0" + System.lineSeparator());
    assertThat(gateway.repository.model("unbatched").orElseThrow().version(1).orElseThrow().serving().settings()
        .scheduler().maxQueueDelayMicros()).isEqualTo(50);

    Gateway.config(root, "unbatched", "max_batch_size: lots\n");
    try {
      Run refused = run(admin("load", "--model", "unbatched", "--version", "1", "--reload"));
      assertThat(refused.exitCode()).isEqualTo(1);
      assertThat(refused.err()).contains("model 'unbatched' version 1 not loaded again: model.yaml: max_batch_size: 'lots'")
          .contains("; it serves as before");
    } finally {
      // The server is the class's: its repository as the other tests expect it.
      Gateway.config(root, "unbatched", "max_batch_size: 0\n");
    }
    // Without --version: every READY version of the model (here its one).
    Run whole = run(admin("load", "--model", "unbatched", "--reload"));
    assertThat(whole.exitCode()).as(whole.err()).isZero();
    assertThat(whole.out()).startsWith("model unbatched version 1: READY, loaded again: model.onnx sha256 " + sha.substring(0, 12));
    assertThat(gateway.repository.model("unbatched").orElseThrow().version(1).orElseThrow().serving().settings()
        .scheduler().maxQueueDelayMicros()).isNotEqualTo(50);
  }

  @Test
  void admin_unloadWithoutAVersion_takesTheModelDown_andLoadWithoutOneBringsItBack() throws Exception {
    Run down = run(admin("unload", "--model", "unbatched"));
    assertThat(down.exitCode()).as(down.err()).isZero();
    assertThat(down.out()).isEqualTo("model unbatched version 1: UNAVAILABLE unloaded" + System.lineSeparator());
    assertThat(run(admin("models")).out()).containsPattern("unbatched +1 +UNAVAILABLE");
    Run up = run(admin("load", "--model", "unbatched"));
    assertThat(up.exitCode()).as(up.err()).isZero();
    assertThat(up.out()).startsWith("model unbatched version 1: READY");

    // A model whose folder is deleted says so, and how to take it down while it is loaded.
    Gateway.write(root, "retired", 1, Gateway.affine());
    assertThat(run(admin("load", "--model", "retired")).out()).startsWith("model retired version 1: READY");
    Gateway.deleteModel(root, "retired");
    String gone = "FOLDER GONE from the repository: removed ";
    assertThat(run(admin("models")).out()).containsPattern("(?m)^retired +1 +READY .*\\n +routing revision 0: .*\\n +"
        + gone + "once no version of it has been in memory for 15 minutes \\(admin unload --model retired takes it down\\)$");
    assertThat(run(admin("unload", "--model", "retired")).out()).startsWith("model retired version 1: UNAVAILABLE");
    assertThat(run(admin("models")).out())
        .containsPattern("(?m)^ +" + gone + "at 20\\d\\d-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ, in 1[45] min \\(none of its versions in memory\\)$")
        .doesNotContain("takes it down")
        .containsPattern("(?m)^unbatched +1 +READY").doesNotContainPattern("(?m)^unbatched.*\\n.*\\n +FOLDER GONE");
    // Listed still: what is kept for it cannot be forgotten yet; a name never seen has nothing kept.
    Run early = run(admin("forget", "--model", "retired"));
    assertThat(early.exitCode()).isEqualTo(1);
    assertThat(early.err()).contains("FAILED_PRECONDITION: model 'retired' is in this replica's repository");
    Run never = run(admin("forget", "--model", "never"));
    assertThat(never.exitCode()).isEqualTo(1);
    assertThat(never.err()).contains("NOT_FOUND: nothing is kept for model 'never' in the control store");
  }

  @Test
  void keptLine_saysWhatTheStoreKeepsForAModelNotHere_andHowToDropIt() {
    var kept = io.modelgate.proto.admin.v1.KeptModel.newBuilder().setModel("digits");
    assertThat(AdminCommand.keptLine(kept.setRoutingRevision(3).setRolloutState("ABORTED").setVersionLoads(1).build()))
        .isEqualTo("KEPT: model digits, not in this replica's repository: the control store keeps routing revision 3,"
            + " a rollout ABORTED, the last load or unload of 1 version, for a folder of that name (admin forget --model"
            + " digits drops it)");
    assertThat(AdminCommand.keptLine(kept.clear().setModel("m").setVersionLoads(2).build())).isEqualTo("KEPT: model m,"
        + " not in this replica's repository: the control store keeps the last load or unload of 2 versions, for a folder"
        + " of that name (admin forget --model m drops it)");
    assertThat(AdminCommand.keptLine(kept.setRoutingRevision(2).addLoadedOn("r2 (version 1)").addLoadedOn("r3 (version 1)")
        .build())).isEqualTo("KEPT: model m, not in this replica's repository, loaded on replica r2 (version 1), r3"
        + " (version 1): the control store keeps routing revision 2, the last load or unload of 2 versions, by which they"
        + " route it");
    assertThat(AdminCommand.keptLine(kept.clear().setModel("d").addDriftReferenceVersions(1).build())).isEqualTo("KEPT:"
        + " model d, not in this replica's repository: the control store keeps the fleet's drift reference of version 1,"
        + " for a folder of that name (admin forget --model d drops it)");
    assertThat(AdminCommand.keptLine(kept.setVersionLoads(1).addDriftReferenceVersions(3).build())).isEqualTo("KEPT:"
        + " model d, not in this replica's repository: the control store keeps the last load or unload of 1 version, the"
        + " fleet's drift references of versions 1, 3, for a folder of that name (admin forget --model d drops it)");
  }

  @Test
  void anUnreachableServer_isNamed_byTheCommandsTarget_orElseByTheTransportsOwnMessage() {
    Exception why = new java.net.ConnectException("finishConnect(..) failed: Connection refused");
    Exception annotated = new java.net.ConnectException("finishConnect(..) failed: Connection refused: localhost/127.0.0.1:9");
    annotated.initCause(why);
    io.grpc.StatusRuntimeException refused = io.grpc.Status.UNAVAILABLE.withDescription("io exception").withCause(annotated)
        .asRuntimeException();
    assertThat(CliErrors.describe(refused, "localhost:9"))
        .isEqualTo("UNAVAILABLE: cannot reach the server at localhost:9: finishConnect(..) failed: Connection refused");
    assertThat(CliErrors.describe(refused))
        .isEqualTo("UNAVAILABLE: cannot reach the server: finishConnect(..) failed: Connection refused: localhost/127.0.0.1:9");
    assertThat(CliErrors.exitCode(refused)).isEqualTo(CliErrors.UNREACHABLE);
  }

  @Test
  void routingLine_saysWhenTheDefaultFindsNoReadyVersion() {
    var model = io.modelgate.proto.admin.v1.ModelInfo.newBuilder().setName("m")
        .setRouting(io.modelgate.proto.admin.v1.RoutingPolicy.newBuilder().setModel("m"))
        .addVersions(io.modelgate.proto.admin.v1.VersionInfo.newBuilder().setVersion(1).setState("UNAVAILABLE"));
    assertThat(AdminCommand.routingLine(model.build()))
        .isEqualTo("default (highest READY version takes 100%); none is READY: requests are refused UNAVAILABLE");
    model.addVersions(io.modelgate.proto.admin.v1.VersionInfo.newBuilder().setVersion(2).setState("READY"));
    assertThat(AdminCommand.routingLine(model.build())).isEqualTo("default (highest READY version takes 100%)");
  }

  @Test
  void goldenColumn_pendingOnlyForAVersionInMemoryOrLoading() {
    var pending = io.modelgate.proto.admin.v1.GoldenResult.newBuilder().setState("PENDING");
    var version = io.modelgate.proto.admin.v1.VersionInfo.newBuilder().setGolden(pending);
    assertThat(AdminCommand.golden(version.setState("READY").build())).isEqualTo("PENDING");
    assertThat(AdminCommand.golden(version.setState("LOADING").build())).isEqualTo("PENDING");
    assertThat(AdminCommand.golden(version.setState("UNAVAILABLE").build())).isEqualTo("-");
    assertThat(AdminCommand.golden(version.setState("FAILED").build())).isEqualTo("-");
    assertThat(AdminCommand.golden(version.setState("READY")
        .setGolden(pending.setState("DONE").setScore(1).setPassed(62).setExamples(62)).build())).isEqualTo("1.000 (62/62)");
    assertThat(AdminCommand.golden(version.setGolden(pending.setState("NONE")).build())).isEqualTo("-");
  }

  @Test
  void folderGoneLine_saysWhenTheModelIsRemoved_inWholeMinutesRoundedUp() {
    var model = io.modelgate.proto.admin.v1.ModelInfo.newBuilder().setName("m").setFolderGone(true);
    long now = java.time.Instant.parse("2026-12-05T23:00:00Z").toEpochMilli();
    assertThat(AdminCommand.folderGoneLine(model.build(), now)).isEqualTo("FOLDER GONE from the repository: removed once no"
        + " version of it has been in memory for 15 minutes (admin unload --model m takes it down)");
    assertThat(AdminCommand.folderGoneLine(model.setRemovalDueUnixMs(now + 14 * 60_000 + 1).build(), now)).isEqualTo(
        "FOLDER GONE from the repository: removed at 2026-12-05T23:14:00Z, in 15 min (none of its versions in memory)");
    assertThat(AdminCommand.folderGoneLine(model.setRemovalDueUnixMs(now + 60_000).build(), now)).endsWith("23:01:00Z, in 1 min"
        + " (none of its versions in memory)");
    assertThat(AdminCommand.folderGoneLine(model.setRemovalDueUnixMs(now - 5_000).build(), now))
        .isEqualTo("FOLDER GONE from the repository: removed at 2026-12-05T22:59:55Z, within the minute (none of its versions"
            + " in memory)");
  }

  @Test
  void fleetStats_nameTheReplicasThatLoadedDifferentFilesForAVersion() {
    io.modelgate.proto.admin.v1.FleetStatsResponse stats = io.modelgate.proto.admin.v1.FleetStatsResponse.newBuilder()
        .setReplica("r1")
        .addVersions(io.modelgate.proto.admin.v1.FleetVersionStats.newBuilder().setModel("cnn_mnist").setVersion(2)
            .addReplicas(io.modelgate.proto.admin.v1.ReplicaWindowStats.newBuilder().setReplica("r1"))
            .addReplicas(io.modelgate.proto.admin.v1.ReplicaWindowStats.newBuilder().setReplica("r2"))
            .setDifferentFiles("r1 8907e772ed92, r2 0c1d2e3f4a5b"))
        .addVersions(io.modelgate.proto.admin.v1.FleetVersionStats.newBuilder().setModel("cnn_mnist").setVersion(1)
            .addReplicas(io.modelgate.proto.admin.v1.ReplicaWindowStats.newBuilder().setReplica("r1")))
        .build();
    StringWriter text = new StringWriter();
    AdminCommand.printFleetStats(new PrintWriter(text, true), stats);
    assertThat(text.toString().lines().filter(l -> l.contains("DIFFERENT")))
        .containsExactly("                 2    DIFFERENT MODEL FILES (sha256): r1 8907e772ed92, r2 0c1d2e3f4a5b");
  }

  @Test
  void aMergedDriftReport_saysWhichReplicasItMergedAndWhichNot() {
    io.modelgate.proto.admin.v1.DriftReport report = io.modelgate.proto.admin.v1.DriftReport.newBuilder()
        .setModel("cnn_mnist")
        .setReplica("fleet of 3 (r1, r2, r3), merged on r1")
        .addVersions(io.modelgate.proto.admin.v1.VersionDrift.newBuilder().setVersion(2).setState("READY")
            .setReplica(io.modelgate.gateway.health.DriftMerge.FLEET).setAsOfMs(1_800_000_000_000L).setSampleRate(1)
            .setProfiled(300).addMergedFrom("r1").addMergedFrom("r2")
            .addNotMerged("r3: did not answer within 6000 ms").setReference("merged from 2 replicas' references: ...")
            .setReferenceSamples(186))
        .build();
    StringWriter text = new StringWriter();
    AdminCommand.DriftCommand.print(new PrintWriter(text, true), report, 10);
    assertThat(text.toString().lines()).containsExactly(
        "fleet of 3 (r1, r2, r3), merged on r1",
        "model cnn_mnist version 2 across the fleet (as of 2027-01-15T08:00:00Z): drift READY, sampling 100% of requests:"
            + " 300 profiled, 0 dropped",
        "  merged from 2 replicas: r1, r2",
        "  not merged: r3: did not answer within 6000 ms",
        "  reference: merged from 2 replicas' references: ..., 186 requests");
  }

  @Test
  void admin_usage_asCsv_quotesAFieldThatHoldsACommaOrAQuote() throws Exception {
    run("infer", "--target", target(), "--model", "cnn_mnist", "--digit", "3");
    Run usage = run(admin("usage", "--since", "2000-01-01", "--format", "csv"));
    assertThat(usage.exitCode()).as(usage.err()).isZero();
    List<String> lines = usage.out().lines().toList();
    assertThat(lines.get(0)).isEqualTo("since,until,replica,tenant,model,version,requests,errors,rows,bytes_in,bytes_out,compute_seconds");
    assertThat(lines).anySatisfy(line -> assertThat(line).contains(",anonymous,cnn_mnist,"));
    assertThat(lines).allSatisfy(line -> assertThat(line.split(",")).hasSize(12));
    // A fleet's report names its replicas with commas: one field, quoted.
    assertThat(AdminCommand.csv("fleet of 2: r1, r2")).isEqualTo("\"fleet of 2: r1, r2\"");
    assertThat(AdminCommand.csv("say \"hi\"")).isEqualTo("\"say \"\"hi\"\"\"");
    assertThat(AdminCommand.csv("r1")).isEqualTo("r1");
  }

  @Test
  void admin_withAWrongToken_isRefused() throws Exception {
    Path token = root.resolve(".state").resolve("wrong-token");
    java.nio.file.Files.writeString(token, "definitely-not-the-token");
    Run run = run("admin", "--target", "localhost:" + gateway.server.adminPort(), "--token-file", token.toString(), "models");
    assertThat(run.exitCode()).isEqualTo(1);
    assertThat(run.err()).contains("UNAUTHENTICATED: wrong admin token");
  }

  @Test
  void serve_help_documentsTheOptions() {
    Run run = run("serve", "--help");
    assertThat(run.exitCode()).isZero();
    assertThat(run.out()).contains("--model-repository").contains("--grpc-port").contains("--max-inbound-message-size");
  }

  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(
      strings = {
        "infer", "admin", "admin models", "admin stats", "admin watch", "admin promote", "admin rollback",
        "admin load", "admin unload", "admin routes", "admin routes get", "admin routes set", "admin rollout",
        "admin rollout start", "admin rollout status", "admin rollout abort", "serve"
      })
  void help_worksOnEveryCommand_withoutWarnings(String command) {
    String[] words = (command + " --help").split(" ");
    // picocli warns on the process's stderr, not the command's, of a description it cannot format.
    java.io.ByteArrayOutputStream stderr = new java.io.ByteArrayOutputStream();
    java.io.PrintStream saved = System.err;
    System.setErr(new java.io.PrintStream(stderr, true, java.nio.charset.StandardCharsets.UTF_8));
    Run run;
    try {
      run = run(words);
    } finally {
      System.setErr(saved);
    }
    assertThat(run.exitCode()).as(run.err()).isZero();
    assertThat(run.out()).startsWith("Usage: modelgate " + command);
    assertThat(run.out() + run.err() + stderr.toString(java.nio.charset.StandardCharsets.UTF_8))
        .doesNotContain("WARN").doesNotContain("Exception");
  }

  @Test
  void adminConnectionFlags_mayFollowTheSubcommand() throws Exception {
    Path token = root.resolve(".state").resolve("cli-token-after");
    java.nio.file.Files.writeString(token, Gateway.ADMIN_TOKEN);
    Run run = run("admin", "models", "--target", "localhost:" + gateway.server.adminPort(), "--token-file",
        token.toString(), "--timeout", "30s");
    assertThat(run.exitCode()).as(run.err()).isZero();
    assertThat(run.out()).contains("cnn_mnist");
  }

  @Test
  void userErrors_areOneLine_withTheDocumentedExitCode_andNoStackTrace() throws Exception {
    Run missing = run("serve", "--model-repository", root.resolve("no-such-folder").toString(), "--grpc-port", "0");
    assertThat(missing.exitCode()).isEqualTo(CliErrors.UNREACHABLE);
    assertThat(missing.err().strip()).startsWith("modelgate: model repository").endsWith("is not a folder");
    assertThat(missing.err().lines().count()).isEqualTo(1);

    int port;
    try (java.net.ServerSocket free = new java.net.ServerSocket(0)) {
      port = free.getLocalPort();
    }
    Run refused = run("infer", "--target", "localhost:" + port, "--model", "cnn_mnist");
    assertThat(refused.exitCode()).isEqualTo(CliErrors.UNREACHABLE);
    assertThat(refused.err()).startsWith("modelgate infer: UNAVAILABLE: cannot reach the server at localhost:" + port + ": ");
    assertThat(refused.err().lines().count()).isEqualTo(1);
    java.nio.file.Path token = java.nio.file.Files.writeString(root.resolve("unreached-admin-token"), "not-used-by-any-server");
    Run adminRefused = run("admin", "--target", "localhost:" + port, "--token-file", token.toString(), "models");
    assertThat(adminRefused.exitCode()).isEqualTo(CliErrors.UNREACHABLE);
    assertThat(adminRefused.err()).startsWith("modelgate admin: UNAVAILABLE: cannot reach the server at localhost:" + port + ": ");
    // A replica whose etcd cannot be reached does not start: it is read before the repository loads.
    Run noEtcd = run("serve", "--model-repository", root.toString(), "--state-dir", root.resolve(".state-no-etcd").toString(),
        "--control-store", "etcd://127.0.0.1:" + port, "--replica", "r1", "--grpc-port", "0", "--admin-port", "0",
        "--metrics-port", "-1", "--warmup-inference", "0s");
    assertThat(noEtcd.exitCode()).isEqualTo(CliErrors.UNREACHABLE);
    assertThat(noEtcd.err().strip()).startsWith("modelgate: the control store etcd http://127.0.0.1:" + port
        + " prefix /modelgate/ cannot be read: ").endsWith("(a replica starts only with the fleet's routing; start etcd,"
        + " or check --control-store)");
    assertThat(noEtcd.err().lines().count()).isEqualTo(1);

    Run unknown = run(admin("routes", "get", "--model", "nope"));
    assertThat(unknown.exitCode()).isEqualTo(CliErrors.FAILED);
    assertThat(unknown.err()).isEqualTo("modelgate admin: NOT_FOUND: unknown model 'nope' (available: "
        + unknown.err().substring(unknown.err().indexOf("(available: ") + 12));
    assertThat(unknown.err().lines().count()).isEqualTo(1);

    Run usage = run("admin", "promote", "--model", "x");
    assertThat(usage.exitCode()).isEqualTo(CliErrors.USAGE);

    Run warmup = run("serve", "--warmup-rounds", "-1", "--grpc-port", "0");
    assertThat(warmup.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(warmup.err()).contains("--warmup-rounds: -1 (expected: 0 to 100000)");

    Run inference = run("serve", "--warmup-inference", "2m", "--grpc-port", "0");
    assertThat(inference.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(inference.err()).contains("--warmup-inference: 2m (expected: 0s to 1m)");

    Run auditRetention = run("serve", "--audit-retention", "30m", "--grpc-port", "0");
    assertThat(auditRetention.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(auditRetention.err()).contains("audit retention: 30m (expected: at least an hour, or 0 to keep every record)");
    Run compaction = run("serve", "--etcd-compaction", "30s", "--grpc-port", "0");
    assertThat(compaction.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(compaction.err()).contains("etcd compaction interval: 30s (expected: at least 1m, or 0 to leave compaction to etcd)");
    Run fleetDrift = run("serve", "--fleet-drift-every", "5s", "--grpc-port", "0");
    assertThat(fleetDrift.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(fleetDrift.err()).contains("fleet drift interval: 5s (expected: at least 10s, or 0 for never)");
    Run auditRecords = run("serve", "--audit-max-records", "-1", "--grpc-port", "0");
    assertThat(auditRecords.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(auditRecords.err()).contains("audit max records: -1 (expected: at least 1, or 0 for no limit)");

    Run age = run("serve", "--max-connection-age", "500ms", "--grpc-port", "0");
    assertThat(age.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(age.err()).contains("max connection age: 500ms (expected: 0 for no limit, or at least 1s)");
    Run keepalive = run("serve", "--keepalive-time", "5s", "--grpc-port", "0");
    assertThat(keepalive.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(keepalive.err()).contains("keepalive time: 5s (expected: at least 10s)");
    Run connections = run("serve", "--max-connections", "0", "--grpc-port", "0");
    assertThat(connections.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(connections.err()).contains("max connections: 0 (expected: at least 1)");
    Run rate = run("serve", "--max-connection-rate", "-1", "--grpc-port", "0");
    assertThat(rate.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(rate.err()).contains("max connection rate: -1 (expected: 0 for none, or at least 1)");
    Run resets = run("serve", "--max-stream-resets", "-5", "--grpc-port", "0");
    assertThat(resets.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(resets.err()).contains("max stream resets: -5 (expected: 0 for any, or at least 1)");
    Run idle = run("serve", "--max-connection-idle", "500ms", "--grpc-port", "0");
    assertThat(idle.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(idle.err()).contains("max connection idle: 500ms (expected: 0 for no limit, or at least 1s)");
    Run handshake = run("serve", "--handshake-timeout", "50ms", "--grpc-port", "0");
    assertThat(handshake.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(handshake.err()).contains("handshake timeout: 50ms (expected: at least 100ms)");
    Run perAddress = run("serve", "--max-connections-per-address", "-1", "--grpc-port", "0");
    assertThat(perAddress.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(perAddress.err()).contains("max connections per address: -1 (expected: 0 for no limit, or at least 1)");

    Run receive = run("serve", "--receive-timeout", "2h", "--grpc-port", "0");
    assertThat(receive.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(receive.err()).contains("receive timeout: 2h (expected: 0 for none, or 1s to 1h)");

    Run clientAuth = run("serve", "--tls-client-auth", "sometimes", "--grpc-port", "0");
    assertThat(clientAuth.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(clientAuth.err()).contains("--tls-client-auth: 'sometimes' (expected require or optional)");
    Run optionalAlone = run("serve", "--tls-client-auth", "optional", "--grpc-port", "0");
    assertThat(optionalAlone.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(optionalAlone.err()).contains("--tls-client-auth optional needs --tls-client-ca");
    Run certificateAlone = run("serve", "--tls-cert", "server.pem", "--grpc-port", "0");
    assertThat(certificateAlone.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(certificateAlone.err()).contains("--tls-cert and --tls-key go together");

    Run loadThreads = run("serve", "--load-threads", "-1", "--grpc-port", "0");
    assertThat(loadThreads.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(loadThreads.err()).contains("--load-threads: -1 (expected: 0 for one per core, or at least 1)");
    Run retention = run("serve", "--usage-retention", "30m", "--grpc-port", "0");
    assertThat(retention.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(retention.err()).contains("usage retention: 30m (expected: at least an hour, or 0 to keep every hour)");
    Run poll = run("serve", "--repository-poll", "500ms", "--grpc-port", "0");
    assertThat(poll.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(poll.err()).contains("repository poll: 500ms (expected: at least 1s, or 0 not to poll)");
    assertThat(new Converters.TimeSpan().convert("400d")).isEqualTo(java.time.Duration.ofDays(400));
    assertThat(new Converters.TimeSpan().convert("12h")).isEqualTo(java.time.Duration.ofHours(12));
    assertThat(new Converters.TimeSpan().convert("0")).isZero();
    Run badSpan = run("serve", "--drain-timeout", "5 minutes", "--grpc-port", "0");
    assertThat(badSpan.exitCode()).isEqualTo(CliErrors.USAGE);
    assertThat(badSpan.err()).contains("'5 minutes' (expected: a duration such as 500ms, 30s, 2m, 12h or 400d)");
    // Written back as read, in the largest whole unit.
    for (String span : List.of("500ms", "1500ms", "5s", "90s", "2m", "12h", "400d", "0ms")) {
      assertThat(io.modelgate.gateway.config.TimeSpans.format(new Converters.TimeSpan().convert(span))).isEqualTo(span);
    }
  }

  /**
   * {@code modelgate callers check}: a file a server would take is summarized, tenant by tenant,
   * exit 0; one it would not, the reason, exit 1; a file that is not there, exit 3.
   */
  @Test
  void callersCheck_summarizesAFileAServerWouldTake_andSaysWhyItWouldNotTakeAnother() throws Exception {
    java.nio.file.Path good = java.nio.file.Files.writeString(root.resolve("checked-callers.yaml"), "identify: [certificate, api_key]\n"
        + "tenants:\n  fraud:\n    api_keys: [" + io.modelgate.gateway.callers.CallerPolicy.hash("mgk_a") + "]\n"
        + "    models: [cnn_mnist]\n    quota: {requests_per_second: 2.5, in_flight: 8}\n    weight: 3\n"
        + "  risk:\n    certificates: [\"uri:spiffe://example.org/ns/fraud/*\"]\n");
    Run check = run("callers", "check", good.toString());
    assertThat(check.exitCode()).as(check.err()).isZero();
    assertThat(check.out()).isEqualTo(good + ": 2 tenants, identified by certificate, api_key\n"
        + "  fraud: 1 API keys, certificates [], models [cnn_mnist], quota 2.5 requests/s, 8 in flight, weight 3\n"
        + "  risk: 0 API keys, certificates [uri:spiffe://example.org/ns/fraud/*], models all, quota none, weight 1\n");
    java.nio.file.Path bad = java.nio.file.Files.writeString(root.resolve("checked-bad.yaml"), "tenants:\n  a:\n    certificates: [fraud-svc]\n");
    Run refused = run("callers", "check", bad.toString());
    assertThat(refused.exitCode()).isEqualTo(CliErrors.FAILED);
    assertThat(refused.err()).startsWith("modelgate callers: " + bad + ": tenants.a.certificates: 'fraud-svc' is not a"
        + " distinguished name");
    assertThat(run("callers", "check", root.resolve("missing.yaml").toString()).exitCode()).isEqualTo(CliErrors.UNREACHABLE);
  }
}

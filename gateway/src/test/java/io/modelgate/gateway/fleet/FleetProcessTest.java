package io.modelgate.gateway.fleet;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.testing.EtcdServer;
import io.modelgate.gateway.testing.FleetResolver;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.gateway.testing.Tensors;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.GetRolloutRequest;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.Rollout;
import io.modelgate.proto.admin.v1.RolloutSpec;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import io.modelgate.proto.admin.v1.StartRolloutRequest;
import io.modelgate.proto.admin.v1.Thresholds;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The fleet with real parts: a real etcd, three gateway processes (the CLI's {@code serve}, each
 * its own JVM) sharing it, and a client that balances across them (grpc-java {@code round_robin}
 * over a static list, with client-side health checking) under steady load. Every count is printed
 * and written to {@code target/fleet-report.txt}; the assertions are on counts and outcomes, with
 * bounded waits for liveness, never on how long something took.
 */
class FleetProcessTest {
  private static final String TOKEN = "fleet-test-admin-token-0123456789";
  @TempDir Path dir;
  private final List<String> report = new ArrayList<>();

  /** One replica process and its ports. */
  private final class Replica {
    final String name;
    final int grpcPort;
    final int adminPort;
    final int metricsPort;
    Process process;
    ManagedChannel admin;
    ManagedChannel direct;

    Replica(String name) throws IOException {
      this.name = name;
      this.grpcPort = freePort();
      this.adminPort = freePort();
      this.metricsPort = freePort();
    }

    void start(String store) throws IOException {
      String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
      process =
          new ProcessBuilder(
                  java, "-Xmx256m", "-cp", System.getProperty("java.class.path"),
                  "io.modelgate.gateway.cli.ModelgateCli", "serve",
                  "--model-repository", dir.resolve("models").toString(),
                  "--host", "127.0.0.1",
                  "--grpc-port", Integer.toString(grpcPort),
                  "--admin-port", Integer.toString(adminPort),
                  "--metrics-host", "127.0.0.1",
                  "--metrics-port", Integer.toString(metricsPort),
                  "--admin-token-file", dir.resolve("token").toString(),
                  "--state-dir", dir.resolve("state-" + name).toString(),
                  "--control-store", store,
                  "--replica", name,
                  "--judge-lease", "3s",
                  "--drain-timeout", "5s",
                  "--shutdown-delay", "1500ms",
                  // A short inference warm-up: the path runs in every replica, at a second of test time each.
                  "--warmup-inference", "1s",
                  "--intra-op-threads", "1")
              .redirectErrorStream(true)
              .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve(name + ".log").toFile()))
              .start();
      if (admin == null) {
        admin = ManagedChannelBuilder.forAddress("127.0.0.1", adminPort).usePlaintext().build();
        direct = ManagedChannelBuilder.forAddress("127.0.0.1", grpcPort).usePlaintext().build();
      }
    }

    boolean ready() {
      return io.modelgate.gateway.testing.HttpProbe.ready(metricsPort);
    }

    AdminServiceGrpc.AdminServiceBlockingStub admin() {
      return AdminServiceGrpc.newBlockingStub(admin).withCallCredentials(Gateway.bearer(TOKEN)).withDeadlineAfter(10, TimeUnit.SECONDS);
    }

    void close() {
      if (process != null && process.isAlive()) {
        process.destroyForcibly();
      }
      if (admin != null) {
        admin.shutdownNow();
        direct.shutdownNow();
      }
    }
  }

  /**
   * {@code replica} once it is ready. Its ports were free when chosen, but another process's
   * connection can take one before the replica binds it: a replica that exits for that is started
   * again on new ports (at most twice); one that exits for anything else fails the test with its log.
   */
  private Replica ready(Replica replica, String store) throws Exception {
    for (int attempt = 1; ; attempt++) {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
      while (!replica.ready() && replica.process.isAlive() && System.nanoTime() < deadline) {
        Thread.sleep(25);
      }
      if (replica.ready()) {
        return replica;
      }
      Path logFile = dir.resolve(replica.name + ".log");
      String log = Files.exists(logFile) ? Files.readString(logFile) : "";
      String tail = log.substring(Math.max(0, log.length() - 4000));
      boolean portTaken = log.contains("Address already in use");
      if (replica.process.isAlive() || !portTaken || attempt == 3) {
        throw new AssertionError("not within 90 s: " + replica.name + " ready (process "
            + (replica.process.isAlive() ? "running" : "exited " + replica.process.exitValue()) + "); its log ends:\n" + tail);
      }
      say("%s: a port was taken before it bound it; started again on new ports", replica.name);
      replica.close();
      Files.delete(logFile);
      replica = new Replica(replica.name);
      replica.start(store);
    }
  }

  private static int freePort() throws IOException {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }

  /** Steady load through the balancing client, outcomes counted per phase. */
  private static final class Load implements AutoCloseable {
    final FleetResolver fleet;
    final ManagedChannel channel;
    final Map<String, Map<String, AtomicLong>> outcomes = new ConcurrentHashMap<>();
    volatile String phase = "start";
    volatile boolean running = true;
    final List<Thread> threads = new ArrayList<>();

    Load(List<InetSocketAddress> replicas) {
      Map<String, Object> serviceConfig =
          Map.of(
              "loadBalancingConfig", List.of(Map.of("round_robin", Map.of())),
              "healthCheckConfig", Map.of("serviceName", ""));
      fleet = FleetResolver.register(replicas);
      channel =
          ManagedChannelBuilder.forTarget(fleet.target())
              .defaultServiceConfig(serviceConfig)
              .usePlaintext()
              .build();
      for (int t = 0; t < 4; t++) {
        Thread thread = new Thread(this::run, "fleet-load-" + t);
        thread.setDaemon(true);
        threads.add(thread);
        thread.start();
      }
    }

    void run() {
      GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
      ModelInferRequest request = Tensors.affine(1, 2, 3).setModelName("m").build();
      while (running) {
        String outcome;
        try {
          stub.withDeadlineAfter(10, TimeUnit.SECONDS).modelInfer(request);
          outcome = "OK";
        } catch (StatusRuntimeException e) {
          outcome = e.getStatus().getCode() + ": " + e.getStatus().getDescription();
        }
        outcomes.computeIfAbsent(phase, p -> new ConcurrentHashMap<>()).computeIfAbsent(outcome, o -> new AtomicLong()).incrementAndGet();
        try {
          Thread.sleep(20);
        } catch (InterruptedException e) {
          return;
        }
      }
    }

    Map<String, Long> counts(String phase) {
      Map<String, Long> counts = new TreeMap<>();
      outcomes.getOrDefault(phase, Map.of()).forEach((k, v) -> counts.put(k, v.get()));
      return counts;
    }

    long failures(String phase) {
      return counts(phase).entrySet().stream().filter(e -> !e.getKey().equals("OK")).mapToLong(Map.Entry::getValue).sum();
    }

    @Override
    public void close() {
      running = false;
      try {
        for (Thread t : threads) {
          t.join(15_000);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      channel.shutdownNow();
      fleet.close();
    }
  }

  /**
   * Waits (bounded: liveness, not timing) until {@code condition} holds. A replica answering an
   * error (NOT_FOUND for a rollout it has not seen yet, say) counts as "not yet".
   */
  private static void eventually(String what, BooleanSupplier condition) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (!holds(condition)) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("not within 90 s: " + what);
      }
      Thread.sleep(25);
    }
  }

  private static boolean holds(BooleanSupplier condition) {
    try {
      return condition.getAsBoolean();
    } catch (StatusRuntimeException notYet) {
      return false;
    }
  }

  private void say(String format, Object... args) {
    String line = String.format(format, args);
    report.add(line);
    System.out.println("fleet: " + line);
  }

  private static RoutingPolicy routing(Replica r) {
    return r.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build());
  }

  private static RoutingPolicy set(Replica r, Map<Long, Integer> weights) {
    RoutingPolicy current = routing(r);
    return r.admin().setRouting(SetRoutingRequest.newBuilder()
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putAllWeights(weights))
        .setExpectedRevision(current.getRevision())
        .build());
  }

  /** The version a replica answers with, asked directly (not through the balancer). */
  private static String answeredBy(Replica r) {
    return GRPCInferenceServiceGrpc.newBlockingStub(r.direct).withDeadlineAfter(10, TimeUnit.SECONDS)
        .modelInfer(Tensors.affine(1, 2, 3).setModelName("m").build()).getModelVersion();
  }

  private static String judge(Replica r) {
    return r.admin().listModels(ListModelsRequest.getDefaultInstance()).getControlStore().getJudge();
  }

  private Rollout rollout(Replica r, long baseline, long candidate, Thresholds thresholds) {
    return r.admin().startRollout(StartRolloutRequest.newBuilder().setSpec(RolloutSpec.newBuilder()
            .setModel("m").setBaseline(baseline).setCandidate(candidate)
            .addSteps(25).addSteps(50).addSteps(100).setIntervalS(4).setThresholds(thresholds))
        .build());
  }

  private static Rollout current(Replica r) {
    return r.admin().getRollout(GetRolloutRequest.newBuilder().setModel("m").build());
  }

  @Test
  void threeReplicasOnOneEtcd_underLoad_shareRoutingAndRollouts_surviveKillsAndAnEtcdOutage() throws Exception {
    Gateway.write(dir.resolve("models"), "m", 1, Gateway.affine());
    Gateway.write(dir.resolve("models"), "m", 2, Gateway.affine());
    // Slower by tens of ms a call: well past the judge's p99 limit however loaded the machine (with 60
    // layers, a few ms, the candidate's p99 came within 1.5x of a baseline slowed by the machine's load).
    Gateway.write(dir.resolve("models"), "m", 3, Gateway.slowAffine(240));
    Files.writeString(dir.resolve("models/m/model.yaml"), "max_batch_size: 0\n");
    Files.writeString(dir.resolve("token"), TOKEN + "\n");
    List<Replica> replicas = new ArrayList<>();
    try (EtcdServer etcd = EtcdServer.start(dir.resolve("etcd"))) {
      for (String name : List.of("r1", "r2", "r3")) {
        Replica r = new Replica(name);
        r.start(etcd.store());
        replicas.add(r);
      }
      for (int i = 0; i < replicas.size(); i++) {
        replicas.set(i, ready(replicas.get(i), etcd.store()));
      }
      Replica r1 = replicas.get(0);
      set(r1, Map.of(1L, 1));
      for (Replica r : replicas) {
        eventually(r.name + " routes to version 1", () -> answeredBy(r).equals("1"));
      }
      try (Load load = new Load(replicas.stream().map(r -> new InetSocketAddress("127.0.0.1", r.grpcPort)).toList())) {
        eventually("load flowing", () -> load.counts("start").getOrDefault("OK", 0L) > 100);

        // 1. A weight change on r1, seen in the answers of every replica.
        load.phase = "weights";
        long[] seenAfterMicros = new long[replicas.size()];
        long changed = System.nanoTime();
        RoutingPolicy toTwo = set(r1, Map.of(2L, 1));
        for (int i = 0; i < replicas.size(); i++) {
          Replica r = replicas.get(i);
          eventually(r.name + " answers with version 2", () -> answeredBy(r).equals("2"));
          seenAfterMicros[i] = (System.nanoTime() - changed) / 1000;
        }
        say("1. weights {1:1} -> {2:1} set on r1 (revision %d); first answer from version 2 after: r1 %.1f ms, r2 %.1f ms, r3 %.1f ms;"
                + " requests %s", toTwo.getRevision(), seenAfterMicros[0] / 1000.0, seenAfterMicros[1] / 1000.0,
            seenAfterMicros[2] / 1000.0, load.counts("weights"));
        set(r1, Map.of(1L, 1));
        for (Replica r : replicas) {
          eventually(r.name + " back on version 1", () -> answeredBy(r).equals("1"));
        }

        // 5. etcd stopped for 10 s: nothing fails, changes are refused, then resume.
        load.phase = "etcd-outage";
        etcd.kill();
        for (Replica r : replicas) {
          eventually(r.name + " finds etcd down", () -> !r.admin().listModels(ListModelsRequest.getDefaultInstance()).getControlStore().getUp());
        }
        String refused;
        try {
          set(r1, Map.of(2L, 1));
          refused = "ACCEPTED (wrong)";
        } catch (StatusRuntimeException e) {
          refused = e.getStatus().getCode().toString();
        }
        Thread.sleep(10_000);
        etcd.start();
        for (Replica r : replicas) {
          eventually(r.name + " finds etcd up", () -> r.admin().listModels(ListModelsRequest.getDefaultInstance()).getControlStore().getUp());
        }
        RoutingPolicy afterOutage = set(replicas.get(1), Map.of(1L, 3, 2L, 1));
        for (Replica r : replicas) {
          eventually(r.name + " applies the change made after the outage", () -> routing(r).getRevision() == afterOutage.getRevision());
        }
        say("5. etcd down 10 s: a change during it was answered %s; requests %s; after it, a change on r2 (revision %d)"
            + " applied by all three", refused, load.counts("etcd-outage"), afterOutage.getRevision());
        assertThat(refused).isEqualTo("UNAVAILABLE");
        assertThat(load.failures("etcd-outage")).isZero();
        RoutingPolicy baseline = set(r1, Map.of(1L, 1));
        for (Replica r : replicas) {
          eventually(r.name + " applies the baseline policy", () -> routing(r).getRevision() == baseline.getRevision());
        }

        // 2 and 3. An equal candidate, its judge killed mid-way: another judge finishes it.
        Thresholds lenient = Thresholds.newBuilder().setMinSamples(60).setMaxP99Ratio(1.5).setSignificance(1e-4).build();
        load.phase = "rollout-equal";
        rollout(replicas.get(2), 1, 2, lenient);
        eventually("the rollout advances once", () -> current(r1).getStepIndex() >= 1 || !current(r1).getState().equals("RUNNING"));
        String firstJudge = judge(r1);
        Rollout atKill = current(r1);
        int stepAtKill = atKill.getSpec().getSteps(Math.min(atKill.getStepIndex(), atKill.getSpec().getStepsCount() - 1));
        Replica killed = replicas.stream().filter(r -> r.name.equals(firstJudge)).findFirst().orElseThrow();
        load.phase = "judge-killed";
        killed.process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        List<Replica> alive = new ArrayList<>(replicas);
        alive.remove(killed);
        eventually("another replica judges", () -> {
          String now = judge(alive.get(0));
          return !now.isEmpty() && !now.equals(firstJudge);
        });
        String secondJudge = judge(alive.get(0));
        eventually("the rollout ends", () -> !current(alive.get(0)).getState().equals("RUNNING"));
        Rollout equal = current(alive.get(0));
        say("2/3. equal candidate: %s after %d decisions; judge %s killed with SIGKILL at step %d%%, %s took over; last evidence:"
                + " %d replicas, %d/%d samples; requests while it ran %s, after the kill %s",
            equal.getState(), equal.getDecisionsCount(), firstJudge, stepAtKill, secondJudge,
            last(equal).getEvidence().getReplicas(), last(equal).getEvidence().getBaselineSamples(),
            last(equal).getEvidence().getCandidateSamples(), load.counts("rollout-equal"), load.counts("judge-killed"));
        assertThat(equal.getState()).as(last(equal).getReason()).isEqualTo("PROMOTED");
        assertThat(last(equal).getEvidence().getReplicas()).isGreaterThanOrEqualTo(2);
        for (Replica r : alive) {
          eventually(r.name + " answers with the promoted version", () -> answeredBy(r).equals("2"));
        }
        // The killed replica comes back: it reads the whole state and serves the fleet's routing.
        load.phase = "rejoin";
        killed.start(etcd.store());
        eventually(killed.name + " ready again", killed::ready);
        assertThat(answeredBy(killed)).isEqualTo("2");
        say("   %s restarted: reads the fleet's routing (revision %d) before it serves", killed.name, routing(killed).getRevision());

        // 2. A slower candidate is rolled back on the fleet's samples.
        load.phase = "rollout-slower";
        rollout(r1, 2, 3, lenient);
        eventually("the slower rollout ends", () -> !current(r1).getState().equals("RUNNING"));
        Rollout slower = current(r1);
        say("2. slower candidate: %s: %s; requests %s", slower.getState(), last(slower).getReason(), load.counts("rollout-slower"));
        assertThat(slower.getState()).isEqualTo("ROLLED_BACK");
        assertThat(last(slower).getEvidence().getReplicas()).isGreaterThanOrEqualTo(2);

        // 4. SIGTERM to one replica: the client moves to the others, nothing fails.
        load.phase = "sigterm";
        Replica stopped = replicas.get(1);
        stopped.process.destroy();
        assertThat(stopped.process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        Thread.sleep(1000);
        load.phase = "after-sigterm";
        Thread.sleep(2000);
        say("4. SIGTERM to %s (exit %d): requests while it stopped %s, after %s", stopped.name, stopped.process.exitValue(),
            load.counts("sigterm"), load.counts("after-sigterm"));
        assertThat(load.failures("sigterm")).isZero();
        assertThat(load.failures("after-sigterm")).isZero();
        assertThat(load.counts("after-sigterm").getOrDefault("OK", 0L)).isPositive();
        assertThat(load.failures("weights")).isZero();
        assertThat(load.failures("rollout-equal")).isZero();
        assertThat(load.failures("rollout-slower")).isZero();
        assertThat(load.failures("rejoin")).isZero();
      }
    } finally {
      for (Replica r : replicas) {
        r.close();
      }
      Path out = Path.of("target", "fleet-report.txt");
      Files.createDirectories(out.getParent());
      Files.write(out, report);
    }
  }

  private static io.modelgate.proto.admin.v1.Decision last(Rollout rollout) {
    return rollout.getDecisions(rollout.getDecisionsCount() - 1);
  }
}

package io.modelgate.bench;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.util.JsonFormat;
import io.modelgate.bench.load.Reports;
import io.modelgate.proto.inference.ModelInferRequest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A flooding tenant's load generator in a JVM of its own: {@code modelgate-bench load} in closed
 * loop, backing off as each refusal's RetryInfo asks, optionally under {@code nice}. On one
 * machine, this is the nearest thing to a flood from other machines: the flood's client has its own
 * event loop, heap and collector, and (niced) takes the cores only when the server and the measured
 * tenant leave them.
 *
 * <p>Threads: started and finished by one thread.
 */
final class FloodProcess implements AutoCloseable {
  private final Process process;
  private final Path log;
  private final Path out;

  private FloodProcess(Process process, Path log, Path out) {
    this.process = process;
    this.log = log;
    this.out = out;
  }

  /**
   * Starts the flood and returns once it floods with its JIT settled: its own compilers busy under
   * {@link JitSettleOption#QUIET_PERCENT} of a second, or {@code settleSeconds} passed. A load
   * generator started fresh compiles for tens of seconds on a small machine, on the cores the
   * server needs: measured on 2 cores, its C2 thread took half a core 8 s into the flood.
   *
   * @param dir a folder of this run's own, for the request, the log and the result
   * @param seconds how long the flood records once settled, warm-up none
   * @param settleSeconds the most its settling may take ({@code load --jit-settle}); 0: none
   * @param nice the {@code nice -n} increment, 0 for none
   * @param cpus the CPUs it runs on ({@code taskset -c} list, Linux), null for those of this JVM
   */
  static FloodProcess start(Path dir, String target, String apiKey, ModelInferRequest request,
      int callers, int connections, int seconds, int settleSeconds, int nice, String cpus)
      throws IOException, InterruptedException {
    Path input = dir.resolve("flood-request.json");
    Files.writeString(input, JsonFormat.printer().print(request));
    Path out = dir.resolve("flood-out");
    Path log = dir.resolve("flood.log");
    List<String> command = new ArrayList<>();
    if (cpus != null) {
      command.addAll(List.of("taskset", "-c", cpus));
    }
    if (nice > 0) {
      command.addAll(List.of("nice", "-n", Integer.toString(nice)));
    }
    command.addAll(ChildJvm.command());
    command.addAll(List.of("-Xms512m", "-Xmx512m", "-cp", System.getProperty("java.class.path"),
        BenchCli.class.getName(), "load", "--target", target, "--model", request.getModelName(),
        "--input-file", input.toString(), "--concurrency", Integer.toString(callers), "--back-off",
        "--connections", Integer.toString(connections), "--jit-settle", Integer.toString(settleSeconds),
        "--warmup", "0", "--duration", Integer.toString(seconds),
        "--label", "flood", "--out", out.toString()));
    ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
    // The key travels in the environment, not on a command line that any local user can list.
    builder.environment().put("MODELGATE_API_KEY", apiKey);
    FloodProcess flood = new FloodProcess(builder.start(), log, out);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60 + settleSeconds);
    // Without settling the load generator starts its recorded run at once, after its setup line.
    while (settleSeconds > 0 ? flood.settling().isEmpty() : !Files.readString(log).contains(" against ")) {
      if (!flood.process.isAlive() || System.nanoTime() - deadline > 0) {
        flood.close();
        throw new IllegalStateException("the flood's load generator did not start and settle: " + flood.tail());
      }
      Thread.sleep(50);
    }
    return flood;
  }

  /** How the flood's JIT settling ended, as its load generator said it; empty until it has. */
  String settling() throws IOException {
    return Files.readString(log).lines().filter(line -> line.contains(LoadCommand.SETTLING_ENDED))
        .map(line -> line.substring(line.indexOf(LoadCommand.SETTLING_ENDED) + LoadCommand.SETTLING_ENDED.length()))
        .findFirst().orElse("");
  }

  /** Waits for the flood to end and returns what it measured. */
  Reports.Summary finish(Duration timeout) throws IOException, InterruptedException {
    if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      close();
      throw new IllegalStateException("the flood's load generator did not end in " + timeout + ": " + tail());
    }
    Path result = out.resolve("flood.json");
    if (!Files.exists(result)) {
      throw new IllegalStateException("the flood's load generator ended (exit " + process.exitValue()
          + ") without a result: " + tail());
    }
    return new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
        .treeToValue(new ObjectMapper().readTree(result.toFile()).get("result"), Reports.Summary.class);
  }

  private String tail() throws IOException {
    String text = Files.exists(log) ? Files.readString(log) : "";
    return text.length() > 2000 ? text.substring(text.length() - 2000) : text;
  }

  @Override
  public void close() {
    process.destroyForcibly();
  }
}

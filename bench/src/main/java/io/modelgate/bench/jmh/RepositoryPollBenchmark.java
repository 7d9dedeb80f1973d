package io.modelgate.bench.jmh;

import io.modelgate.gateway.admin.RepositoryPoll;
import io.modelgate.runtime.repository.ModelRepository;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * One look of {@code serve --repository-poll} at a repository folder of {@code models} models of
 * three versions each (a {@code model.onnx} and a second file per version, a {@code model.yaml}
 * per model), on the local disk: what the poll's thread spends every interval while nothing
 * changes ({@link RepositoryPoll#look}); no session loads. The baseline, {@link #listingOnly}, walks the same tree without
 * reading any file's attributes.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
@State(Scope.Thread)
public class RepositoryPollBenchmark {
  @Param({"10", "100", "1000"})
  public int models;

  private Path root;

  @Setup(Level.Trial)
  public void write() throws IOException {
    root = Files.createTempDirectory("modelgate-poll-bench");
    byte[] model = new byte[4096];
    for (int m = 0; m < models; m++) {
      Path dir = Files.createDirectories(root.resolve("model-" + m));
      Files.writeString(dir.resolve("model.yaml"), "max_batch_size: 8\n");
      for (int v = 1; v <= 3; v++) {
        Path version = Files.createDirectories(dir.resolve(Integer.toString(v)));
        Files.write(version.resolve("model.onnx"), model);
        Files.write(version.resolve("model.onnx.data"), model);
      }
    }
  }

  @Benchmark
  public Map<String, String> look() throws IOException {
    return RepositoryPoll.look(root);
  }

  /**
   * The baseline: the same folders listed and every file under each version folder walked to,
   * without its attributes or any record of it — the least a look at this tree can read.
   */
  @Benchmark
  public long listingOnly() throws IOException {
    long files = 0;
    for (Map.Entry<String, java.util.List<Long>> model : io.modelgate.runtime.repository.RepositoryFolder.onDisk(root).entrySet()) {
      Path dir = root.resolve(model.getKey());
      files += Files.exists(dir.resolve("model.yaml")) ? 1 : 0;
      for (long version : model.getValue()) {
        try (Stream<Path> under = Files.walk(dir.resolve(Long.toString(version)))) {
          files += under.count();
        }
      }
    }
    return files;
  }

  @TearDown(Level.Trial)
  public void remove() throws IOException {
    try (Stream<Path> paths = Files.walk(root)) {
      for (Path path : paths.sorted(Comparator.reverseOrder()).toList()) {
        Files.delete(path);
      }
    }
  }
}

package io.modelgate.bench.jmh;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Collection;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.BenchmarkList;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/**
 * Every JMH benchmark of the project runs, so that none rots between the sessions that measure with
 * them: each benchmark method at each of its parameters, in this JVM, without warm-up and for one
 * short iteration. What this checks is that setups succeed (several check that what they measure
 * works: a caller identified, a batch answered) and that every benchmark listed gives a result; the
 * figures are not looked at.
 */
class BenchmarksRunTest {
  @Test
  void everyBenchmark_runsAtEachOfItsParameters() throws Exception {
    Set<String> listed = BenchmarkList.defaultList().getAll(null, java.util.List.of()).stream()
        .map(b -> b.getUsername()).collect(Collectors.toCollection(TreeSet::new));
    assertThat(listed).as("the benchmarks compiled into the module").hasSizeGreaterThan(20)
        .contains("io.modelgate.bench.jmh.PeerCertificateBenchmark.perCall");
    Options options = new OptionsBuilder()
        .include("io\\.modelgate\\.bench\\.jmh\\.")
        .forks(0)
        .warmupIterations(0)
        .measurementIterations(1)
        .measurementTime(TimeValue.milliseconds(50))
        .shouldFailOnError(true)
        .build();
    Collection<RunResult> results = new Runner(options).run();
    Set<String> ran = results.stream().map(r -> r.getParams().getBenchmark()).collect(Collectors.toCollection(TreeSet::new));
    assertThat(ran).isEqualTo(listed);
    assertThat(results).allSatisfy(r -> assertThat(r.getPrimaryResult().getSampleCount()).isPositive());
  }
}

package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The soak run's arithmetic: trends by least squares, and series read from a Prometheus scrape. */
class SoakCommandTest {
  @Test
  void theSlope_isTheLeastSquaresOne_soOneOutlierDoesNotMakeATrend() {
    assertThat(SoakCommand.slope(List.of(10.0, 12.0, 14.0, 16.0))).isCloseTo(2.0, within(1e-9));
    assertThat(SoakCommand.slope(List.of(5.0, 5.0, 5.0))).isZero();
    // Level but for one high window in the middle: no trend.
    assertThat(SoakCommand.slope(List.of(16.0, 16.0, 30.0, 16.0, 16.0))).isCloseTo(0.0, within(1e-9));
    assertThat(SoakCommand.slope(List.of(7.0))).isZero();
  }

  @Test
  void aSeries_isSummedOverItsLabels_andNoOtherSeriesThatStartsAlike() {
    String scrape = String.join("\n",
        "# HELP jvm_memory_used_bytes The amount of used memory",
        "jvm_memory_used_bytes{area=\"heap\",id=\"G1 Eden Space\"} 1048576.0",
        "jvm_memory_used_bytes{area=\"heap\",id=\"G1 Old Gen\"} 2097152.0",
        "jvm_memory_used_bytes{area=\"nonheap\",id=\"Metaspace\"} 9.9E7",
        "modelgate_request_memory_held_bytes 0.0",
        "modelgate_request_memory_held_bytes_max 5.0",
        "jvm_threads_live_threads 61.0",
        "modelgate_requests_total{code=\"OK\",model=\"cnn_mnist\",version=\"1\"} 100.0",
        "modelgate_requests_total{code=\"OK\",model=\"cnn_mnist\",version=\"2\"} 300.0",
        "modelgate_requests_total{code=\"RESOURCE_EXHAUSTED\",model=\"cnn_mnist\",version=\"2\"} 7.0");
    assertThat(SoakCommand.ServerProcess.sum(scrape, "jvm_memory_used_bytes{area=\"heap\"")).isEqualTo(3145728.0);
    assertThat(SoakCommand.ServerProcess.sum(scrape, "modelgate_request_memory_held_bytes")).isZero();
    assertThat(SoakCommand.ServerProcess.sum(scrape, "jvm_threads_live_threads")).isEqualTo(61.0);
    // The calls answered OK, over every version, and no other code.
    assertThat(SoakCommand.ServerProcess.sum(scrape, "modelgate_requests_total{code=\"OK\"")).isEqualTo(400.0);
  }

  @Test
  void theNativeMemorySummary_isReadAsCommittedMiBByCategory_withTheTotalFirst() {
    String summary = String.join("\n",
        "17653:",
        "",
        "Native Memory Tracking:",
        "",
        "(Omitting categories weighting less than 1KB)",
        "",
        "Total: reserved=7842533KB, committed=484749KB",
        "       malloc: 10141KB #61168",
        "       mmap:   reserved=7832392KB, committed=474608KB",
        "",
        "-                 Java Heap (reserved=6172672KB, committed=397312KB)",
        "                            (mmap: reserved=6172672KB, committed=397312KB) ",
        " ",
        "-                     Class (reserved=1048785KB, committed=1361KB)",
        "                            (mmap: reserved=1048576KB, committed=1152KB) ",
        "                            (    reserved=65536KB, committed=7936KB)",
        " ",
        "-                    Thread (reserved=19506KB, committed=890KB)",
        "                            (stack: reserved=19456KB, committed=840KB)",
        "-    Native Memory Tracking (reserved=969KB, committed=969KB)",
        "");
    Map<String, Double> committed = SoakCommand.ServerProcess.nativeCommitted(summary);
    assertThat(committed.keySet()).containsExactly("Total", "Java Heap", "Class", "Thread", "Native Memory Tracking");
    assertThat(committed.get("Total")).isCloseTo(484749 / 1024.0, within(1e-9));
    assertThat(committed.get("Class")).isCloseTo(1361 / 1024.0, within(1e-9));
    SoakCommand.Sample sample = new SoakCommand.Sample(20, 600, 12, 22, 115, 4, 0, committed, 1, 1, 0, 0);
    assertThat(sample.jvmNativeMiB()).isCloseTo((484749 - 397312) / 1024.0, within(1e-9));
    assertThat(sample.untrackedMiB()).isCloseTo(600 - 484749 / 1024.0, within(1e-9));
    assertThat(new SoakCommand.Sample(20, 600, 12, 22, 115, 4, 0, Map.of(), 1, 1, 0, 0).untrackedMiB()).isNaN();
    assertThatThrownBy(() -> SoakCommand.ServerProcess.nativeCommitted("Native memory tracking is not enabled"))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("not enabled");
  }
}

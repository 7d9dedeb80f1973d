package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.List;
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
        "jvm_threads_live_threads 61.0");
    assertThat(SoakCommand.ServerProcess.sum(scrape, "jvm_memory_used_bytes{area=\"heap\"")).isEqualTo(3145728.0);
    assertThat(SoakCommand.ServerProcess.sum(scrape, "modelgate_request_memory_held_bytes")).isZero();
    assertThat(SoakCommand.ServerProcess.sum(scrape, "jvm_threads_live_threads")).isEqualTo(61.0);
  }
}

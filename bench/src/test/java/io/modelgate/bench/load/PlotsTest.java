package io.modelgate.bench.load;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.jfree.chart.axis.ValueTick;
import org.jfree.chart.ui.TextAnchor;
import org.junit.jupiter.api.Test;

class PlotsTest {
  private static List<Double> ticks(double lower, double upper) {
    Plots.RoundLogAxis axis = new Plots.RoundLogAxis("ms");
    axis.setRange(lower, upper);
    return axis.roundTicks(TextAnchor.CENTER_RIGHT).stream().map(ValueTick::getValue).toList();
  }

  @Test
  void logAxisTicks_fallOnOneTwoFiveTimesAPowerOfTen() {
    assertThat(ticks(0.13, 20)).containsExactly(0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0);
    assertThat(ticks(1, 1000)).containsExactly(1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0);
  }

  @Test
  void logAxisTicks_overManyDecades_arePowersOfTen() {
    assertThat(ticks(0.001, 100_000)).containsExactly(0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0);
  }

  private static org.HdrHistogram.Histogram lag(long micros) {
    org.HdrHistogram.Histogram h = new org.HdrHistogram.Histogram(3);
    h.recordValue(micros);
    return h;
  }

  @Test
  void terminalText_hasNoMarkdown() {
    LoadGenerator.Result result =
        new LoadGenerator.Result(10, 9, 1.0, new org.HdrHistogram.Histogram(3), java.util.Map.of(),
            java.util.Map.of("RESOURCE_EXHAUSTED", 1L),
            java.util.Map.of("RESOURCE_EXHAUSTED", new org.HdrHistogram.Histogram(3)), 12.5, 2048, lag(1_500), new org.HdrHistogram.Histogram(3),
            new org.HdrHistogram.Histogram(3));
    String text = Reports.text(Reports.summarize("m closed loop", "closed loop", result));
    assertThat(text).doesNotContain("|").doesNotContain("&nbsp;").contains("RESOURCE_EXHAUSTED")
        .contains("process CPU per call sent: 12.5 us, heap allocated per call: 2048 bytes; calls sent late by the client: p99 1.500 ms");
  }

  @Test
  void aClientThatSentLate_saysItsFiguresArePartlyItsOwn() {
    org.HdrHistogram.Histogram latency = new org.HdrHistogram.Histogram(3);
    for (int i = 0; i < 100; i++) {
      latency.recordValue(2_000);
    }
    LoadGenerator.Result late = new LoadGenerator.Result(100, 100, 1.0, latency, java.util.Map.of(), java.util.Map.of(),
        java.util.Map.of(), 10, 0, lag(1_500), new org.HdrHistogram.Histogram(3), new org.HdrHistogram.Histogram(3));
    LoadGenerator.Result onTime = new LoadGenerator.Result(100, 100, 1.0, latency, java.util.Map.of(), java.util.Map.of(),
        java.util.Map.of(), 10, 0, lag(200), new org.HdrHistogram.Histogram(3), new org.HdrHistogram.Histogram(3));

    // 1.5 ms late against a 2 ms p99: the client's share is too large to ignore.
    assertThat(Reports.text(Reports.summarize("late", "open loop", late)))
        .contains("the client itself was late: it sent 1% of the calls 1.500 ms or more after their time, against a p99 latency of 2.000 ms");
    assertThat(Reports.text(Reports.summarize("on time", "open loop", onTime))).doesNotContain("the client itself was late");
  }

  @Test
  void aMachineThatStalledWhileMeasuring_saysTheTailIsPartlyItsOwn() {
    org.HdrHistogram.Histogram latency = new org.HdrHistogram.Histogram(3);
    for (int i = 0; i < 1000; i++) {
      latency.recordValue(i < 990 ? 300 : 20_000);
    }
    org.HdrHistogram.Histogram stalls = new org.HdrHistogram.Histogram(3);
    org.HdrHistogram.Histogram quiet = new org.HdrHistogram.Histogram(3);
    for (int i = 0; i < 1000; i++) {
      stalls.recordValue(i == 0 ? 15_000 : 60);
      quiet.recordValue(i == 0 ? 900 : 60);
    }
    org.HdrHistogram.Histogram waited = new org.HdrHistogram.Histogram(3);
    waited.recordValue(12_000);
    LoadGenerator.Result stalled = new LoadGenerator.Result(1000, 1000, 1.0, latency, java.util.Map.of(), java.util.Map.of(),
        java.util.Map.of(), 10, 0, lag(100), stalls, waited);
    LoadGenerator.Result steady = new LoadGenerator.Result(1000, 1000, 1.0, latency, java.util.Map.of(), java.util.Map.of(),
        java.util.Map.of(), 10, 0, lag(100), quiet, new org.HdrHistogram.Histogram(3));

    // A 15 ms stall of a thread that does no work, against a 20 ms p99.9: the machine's share.
    String text = Reports.text(Reports.summarize("stalled", "open loop", stalled));
    assertThat(text)
        .contains("stalls of the client's JVM (a thread sleeping 1 ms at a time, how late it woke): p99 0.060 ms")
        .contains("max 15.007 ms; 1 of 1 ms or more, 15.0 ms in all, 80% of it waiting for a core")
        .contains("the machine stalled while measuring: a thread that does no work woke up to 15.007 ms late, "
            + "against a p99.9 latency of 20.015 ms");
    // Under a millisecond: not worth a warning, whatever the tail.
    assertThat(Reports.text(Reports.summarize("steady", "open loop", steady))).doesNotContain("the machine stalled");
    // Rounds add up their stalls as they do their latencies.
    assertThat(stalled.plus(steady).hiccupMicros().getTotalCount()).isEqualTo(2000);
    assertThat(stalled.plus(steady).hiccupMicros().getMaxValue()).isEqualTo(stalls.getMaxValue());
    assertThat(stalled.plus(steady).stallWaitMicros().getTotalCount()).isEqualTo(1);
    // Without the kernel's count, the stalls are told without a split.
    assertThat(Reports.text(Reports.summarize("steady", "open loop", steady))).doesNotContain("waiting for a core");
    Reports.Summary unknown = Reports.summarize("stalled", "open loop", new LoadGenerator.Result(1000, 1000, 1.0, latency,
        java.util.Map.of(), java.util.Map.of(), java.util.Map.of(), 10, 0, lag(100), stalls, new org.HdrHistogram.Histogram(3)));
    assertThat(unknown.stallsWaitingShare()).isEqualTo(-1);
    assertThat(Reports.text(unknown)).contains("1 of 1 ms or more, 15.0 ms in all").doesNotContain("waiting for a core");
  }
}

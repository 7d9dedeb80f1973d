package io.modelgate.gateway.server;

import static io.modelgate.gateway.testing.Eventually.eventually;
import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.Gateway;
import io.modelgate.runtime.threads.DaemonThreads;
import java.nio.file.Path;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A background job's failures in the scrape: every job the process made exported from 0, one made
 * after the server started too, and a periodic task that keeps throwing counted while it keeps
 * running.
 */
class BackgroundFailuresTest {
  @TempDir Path root;

  @Test
  void aFailingPeriodicTask_isCountedInTheScrape_andEveryJobIsExportedFromItsStart() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    try (Gateway gateway = Gateway.inProcess(root)) {
      String before = gateway.stats.prometheus().scrape();
      // The version's batcher (a job made before the server's meters) and the repository's thread.
      assertThat(before).contains("modelgate_background_failures_total{thread=\"modelgate-model\"}")
          .contains("modelgate_background_failures_total{thread=\"modelgate-repository\"}");

      ScheduledExecutorService job = DaemonThreads.scheduled("modelgate-test-failing-job");
      try {
        assertThat(failures(gateway.stats.prometheus().scrape(), "modelgate-test-failing-job")).isZero();
        int[] runs = new int[1];
        job.scheduleWithFixedDelay(() -> {
          runs[0]++;
          throw new IllegalStateException("run " + runs[0] + " fails");
        }, 0, 5, TimeUnit.MILLISECONDS);
        eventually("three failures counted, the task running on",
            () -> failures(gateway.stats.prometheus().scrape(), "modelgate-test-failing-job") >= 3);
      } finally {
        job.shutdownNow();
      }
    }
  }

  private static double failures(String scrape, String thread) {
    Matcher m = Pattern.compile("modelgate_background_failures_total\\{thread=\"" + Pattern.quote(thread) + "\"} (\\S+)")
        .matcher(scrape);
    assertThat(m.find()).as("series of %s in the scrape", thread).isTrue();
    return Double.parseDouble(m.group(1));
  }
}

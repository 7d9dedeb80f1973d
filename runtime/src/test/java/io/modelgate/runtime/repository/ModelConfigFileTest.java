package io.modelgate.runtime.repository;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.runtime.execution.SchedulerSettings;
import io.modelgate.runtime.onnx.SessionSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * model.yaml's drift mapping and large-batch session: defaults, every key, and errors that name the
 * key and what was expected.
 */
class ModelConfigFileTest {
  @TempDir Path dir;

  private static final ModelSettings DEFAULTS =
      new ModelSettings(null, new SessionSettings(1, 1), new SchedulerSettings(1024, 1));

  private ModelSettings read(String yaml) throws Exception {
    Files.writeString(dir.resolve(ModelConfigFile.FILE_NAME), yaml);
    return ModelConfigFile.read(dir, DEFAULTS);
  }

  @Test
  void drift_isOffWithoutTheKey_andTakesItsDefaultsFromASampleRate() throws Exception {
    assertThat(read("max_batch_size: 8\n").drift()).isNull();
    DriftSettings drift = read("drift:\n  sample_rate: 0.25\n").drift();
    assertThat(drift).isEqualTo(DriftSettings.sampled(0.25));
    assertThat(drift.reference()).isNull();
    assertThat(drift.window()).isEqualTo("5m");
    assertThat(drift.ksThreshold()).isEqualTo(0.2);
    assertThat(drift.psiThreshold()).isEqualTo(0.2);
    assertThat(drift.referenceRequests()).isEqualTo(1000);
    assertThat(drift.maxFeatures()).isEqualTo(32);
    assertThat(drift.minSamples()).isEqualTo(100);
  }

  @Test
  void drift_readsEveryKey() throws Exception {
    DriftSettings drift = read("drift:\n  sample_rate: 1\n  reference: requests\n  reference_requests: 500\n"
        + "  window: 15m\n  ks_threshold: 0.1\n  psi_threshold: 0.25\n  max_features: 8\n  min_samples: 50\n").drift();
    assertThat(drift).isEqualTo(new DriftSettings(1.0, DriftSettings.Reference.REQUESTS, 500, "15m", 0.1, 0.25, 8, 50));
    assertThat(read("drift:\n  sample_rate: 0.5\n  reference: golden\n").drift().reference())
        .isEqualTo(DriftSettings.Reference.GOLDEN);
  }

  @Test
  void drift_errorsNameTheKeyAndWhatWasExpected() {
    assertThatThrownBy(() -> read("drift: yes\n")).hasMessage("model.yaml: drift: expected a mapping, got true");
    assertThatThrownBy(() -> read("drift:\n  window: 1m\n"))
        .hasMessage("model.yaml: drift.sample_rate: expected a number, got nothing");
    assertThatThrownBy(() -> read("drift:\n  sample_rate: 2\n"))
        .hasMessage("model.yaml: drift.sample_rate: 2.0 (expected: 0 to 1)");
    assertThatThrownBy(() -> read("drift:\n  sample_rate: 1\n  windows: 1m\n"))
        .hasMessageStartingWith("model.yaml: drift: unknown key 'windows' (expected one of: [");
    assertThatThrownBy(() -> read("drift:\n  sample_rate: 1\n  window: 2h\n"))
        .hasMessage("model.yaml: drift.window: '2h' (expected one of: [1m, 5m, 15m])");
    assertThatThrownBy(() -> read("drift:\n  sample_rate: 1\n  reference: yesterday\n"))
        .hasMessage("model.yaml: drift.reference: 'yesterday' (expected: golden or requests)");
    assertThatThrownBy(() -> read("drift:\n  sample_rate: 1\n  ks_threshold: 1.5\n"))
        .hasMessage("model.yaml: drift.ks_threshold: 1.5 (expected: above 0 and below 1)");
    assertThatThrownBy(() -> read("drift:\n  sample_rate: 1\n  max_features: 1000\n"))
        .hasMessage("model.yaml: drift.max_features: 1000 (expected: 0 to 256)");
  }

  @Test
  void cudaTf32_isOffUnlessAsked_andOnlyForCuda() throws Exception {
    assertThat(read("execution_provider: cuda\n").session().cudaTf32()).isFalse();
    assertThat(read("execution_provider: cuda\ncuda_tf32: true\n").session().cudaTf32()).isTrue();
    assertThat(read("execution_provider: cuda\ncuda_tf32: false\n").session().cudaTf32()).isFalse();
    assertThatThrownBy(() -> read("cuda_tf32: true\n"))
        .hasMessage("model.yaml: cuda_tf32: true is for the cuda execution provider, not cpu");
    assertThatThrownBy(() -> read("execution_provider: cuda\ncuda_tf32: fast\n"))
        .hasMessageStartingWith("model.yaml: cuda_tf32: 'fast'");
  }

  @Test
  void largeBatches_areOffWithoutTheKeys_andReadTogether() throws Exception {
    assertThat(read("max_batch_size: 8\n").session().largeBatches()).isFalse();
    SessionSettings session = read("large_batch_rows: 16\nlarge_batch_intra_op_threads: 2\n").session();
    assertThat(session.largeBatches()).isTrue();
    assertThat(session.largeBatchRows()).isEqualTo(16);
    assertThat(session.largeBatchIntraOpThreads()).isEqualTo(2);
    assertThat(session.intraOpThreads()).isEqualTo(1);
  }

  @Test
  void largeBatches_errorsNameTheKeyAndWhatWasExpected() {
    assertThatThrownBy(() -> read("large_batch_rows: 16\n"))
        .hasMessage("model.yaml: large_batch_rows and large_batch_intra_op_threads go together"
            + " (got 16 and 0; set both, or neither)");
    assertThatThrownBy(() -> read("large_batch_intra_op_threads: 2\n"))
        .hasMessage("model.yaml: large_batch_rows and large_batch_intra_op_threads go together"
            + " (got 0 and 2; set both, or neither)");
    assertThatThrownBy(() -> read("large_batch_rows: 1\nlarge_batch_intra_op_threads: 2\n"))
        .hasMessage("model.yaml: large_batch_rows: 1 (expected: at least 2 rows)");
    assertThatThrownBy(() -> read("large_batch_rows: 16\nlarge_batch_intra_op_threads: 1\n"))
        .hasMessage("model.yaml: large_batch_intra_op_threads: 1 (expected: more than intra_op_threads 1,"
            + " at most 256)");
    assertThatThrownBy(() -> read("intra_op_threads: 2\nlarge_batch_rows: 16\nlarge_batch_intra_op_threads: 2\n"))
        .hasMessage("model.yaml: large_batch_intra_op_threads: 2 (expected: more than intra_op_threads 2,"
            + " at most 256)");
    assertThatThrownBy(() -> read("intra_op_threads: 0\nlarge_batch_rows: 16\nlarge_batch_intra_op_threads: 2\n"))
        .hasMessage("model.yaml: large_batch_intra_op_threads: 2 with intra_op_threads 0 (one per core"
            + " already; expected: intra_op_threads >= 1)");
    assertThatThrownBy(() -> read("execution_provider: cuda\nlarge_batch_rows: 16\nlarge_batch_intra_op_threads: 2\n"))
        .hasMessage("model.yaml: large_batch_rows: a second session with more threads is for the cpu"
            + " execution provider, not cuda");
    assertThatThrownBy(() -> read("large_batch_rows: -1\nlarge_batch_intra_op_threads: 2\n"))
        .hasMessage("model.yaml: large_batch_rows: -1, large_batch_intra_op_threads: 2 (expected: both 0,"
            + " or rows >= 2 and threads above intra_op_threads)");
  }
}

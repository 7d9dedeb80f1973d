package io.modelgate.runtime.repository;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.modelgate.runtime.error.ErrorCode;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.onnx.SessionSettings;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The repository folder as it is on disk: which folders count, in what order, and what the files hash to. */
class RepositoryFolderTest {
  @TempDir Path root;

  private static String sha256(byte[] bytes) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
  }

  @Test
  void onDisk_listsModelAndVersionFolders_inOrder_leavingOutWhatIsNotOne() throws Exception {
    for (String dir : List.of("m/10", "m/2", "m/golden", "m/02", "m/v3", "other/1", ".hidden/1", "bad name/1")) {
      Files.createDirectories(root.resolve(dir));
    }
    Files.writeString(root.resolve("m/7"), "a file, not a folder");
    Files.writeString(root.resolve("loose.txt"), "not a model");
    RepositoryFolder folder = new RepositoryFolder(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
    assertThat(folder.onDisk()).isEqualTo(Map.of("m", List.of(2L, 10L), "other", List.of(1L)));
    assertThat(folder.versions("m")).containsExactly(2L, 10L);
    assertThat(RepositoryFolder.isModelName("bad name")).isFalse();
    assertThat(RepositoryFolder.isModelName(".hidden")).isFalse();
    assertThat(RepositoryFolder.isModelName("resnet-50_v1.5")).isTrue();
    assertThat(RepositoryFolder.isVersionName("02")).isFalse();
    assertThat(RepositoryFolder.isVersionName("1234567890123456789")).as("19 digits").isFalse();
    assertThat(folder.modelFolderGone("m")).isFalse();
    assertThat(folder.modelFolderGone("gone")).isTrue();
  }

  @Test
  void theFilesHashes_andTheSettingsOnDisk_areReadAsTheyAreNow() throws Exception {
    Files.createDirectories(root.resolve("m/1"));
    byte[] model = "not really a model, but bytes".getBytes(StandardCharsets.UTF_8);
    Files.write(root.resolve("m/1/model.onnx"), model);
    RepositoryFolder folder = new RepositoryFolder(root, ModelSettings.defaults(SessionSettings.DEFAULTS));
    assertThat(folder.fileSha256("m", 1)).isEqualTo(sha256(model));
    assertThat(folder.configSha256("m")).isEqualTo(RepositoryFolder.NO_CONFIG);
    assertThat(folder.settings("m").maxBatchSize()).isEqualTo(ModelSettings.defaults(SessionSettings.DEFAULTS).maxBatchSize());

    String yaml = "max_batch_size: 4\n";
    Files.writeString(root.resolve("m/model.yaml"), yaml);
    assertThat(folder.configSha256("m")).isEqualTo(sha256(yaml.getBytes(StandardCharsets.UTF_8)));
    assertThat(folder.settings("m").maxBatchSize()).isEqualTo(4);
    assertThatThrownBy(() -> folder.fileSha256("m", 2)).isInstanceOfSatisfying(InferenceException.class, e -> {
      assertThat(e.code()).isEqualTo(ErrorCode.UNAVAILABLE);
      assertThat(e.getMessage()).isEqualTo("model 'm' version 2: model.onnx cannot be read");
    });
  }
}

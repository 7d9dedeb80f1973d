package io.modelgate.gateway.health;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import io.modelgate.proto.health.v1.GoldenExample;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * A model's golden set: the labelled examples in {@code <repo>/<model>/golden/*.jsonl}, one
 * {@link GoldenExample} per line in protobuf JSON, files in name order, blank lines and lines
 * starting with {@code #} skipped. Immutable.
 */
public record GoldenSet(List<GoldenExample> examples) {
  /** The folder of a model that holds its golden set. */
  public static final String DIRECTORY = "golden";
  /** Examples read at most, so that a mistaken folder cannot exhaust memory. */
  public static final int MAX_EXAMPLES = 100_000;

  public GoldenSet {
    examples = List.copyOf(examples);
  }

  /** Whether {@code modelDirectory} has a golden set. */
  public static boolean exists(Path modelDirectory) {
    return Files.isDirectory(modelDirectory.resolve(DIRECTORY));
  }

  /**
   * Reads the golden set of the model in {@code modelDirectory}.
   *
   * @throws IOException naming the file and line of what cannot be read
   */
  public static GoldenSet read(Path modelDirectory) throws IOException {
    Path dir = modelDirectory.resolve(DIRECTORY);
    List<Path> files;
    try (Stream<Path> listed = Files.list(dir)) {
      files = listed.filter(f -> f.getFileName().toString().endsWith(".jsonl")).sorted().toList();
    }
    if (files.isEmpty()) {
      throw new IOException("golden/ has no .jsonl file");
    }
    List<GoldenExample> examples = new ArrayList<>();
    JsonFormat.Parser parser = JsonFormat.parser();
    for (Path file : files) {
      List<String> lines = Files.readAllLines(file);
      for (int i = 0; i < lines.size(); i++) {
        String line = lines.get(i).strip();
        if (line.isEmpty() || line.startsWith("#")) {
          continue;
        }
        String where = DIRECTORY + "/" + file.getFileName() + ":" + (i + 1);
        GoldenExample.Builder example = GoldenExample.newBuilder();
        try {
          parser.merge(line, example);
        } catch (InvalidProtocolBufferException e) {
          throw new IOException(where + " is not a golden example: " + e.getMessage(), e);
        }
        if (example.getExpectationCase() == GoldenExample.ExpectationCase.EXPECTATION_NOT_SET) {
          throw new IOException(where + " has neither a label nor expected values");
        }
        if (example.getName().isEmpty()) {
          example.setName(where);
        }
        examples.add(example.build());
        if (examples.size() > MAX_EXAMPLES) {
          throw new IOException("more than " + MAX_EXAMPLES + " golden examples");
        }
      }
    }
    if (examples.isEmpty()) {
      throw new IOException("golden/ has no example");
    }
    return new GoldenSet(examples);
  }
}

package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.proto.inference.ModelInferRequest;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class LoadCommandTest {
  @TempDir Path dir;

  @Test
  void writeGrpcFrame_writesOneLengthPrefixedMessage_forH2load() throws Exception {
    Path json = dir.resolve("row.json");
    Files.writeString(json, "{\"modelName\":\"m\",\"id\":\"1\",\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[\"1\",\"2\"]}],"
        + "\"rawInputContents\":[\"AAAAAAAAAAA=\"]}");
    Path frame = dir.resolve("m.grpc");
    StringWriter out = new StringWriter();
    CommandLine cli = new CommandLine(new LoadCommand());
    cli.setOut(new PrintWriter(out));
    int code = cli.execute("--model", "m", "--input-file", json.toString(), "--write-grpc-frame", frame.toString());
    assertThat(code).as(out.toString()).isZero();
    byte[] bytes = Files.readAllBytes(frame);
    ByteBuffer header = ByteBuffer.wrap(bytes, 0, 5);
    assertThat(header.get()).isZero();
    int length = header.getInt();
    assertThat(length).isEqualTo(bytes.length - 5);
    ModelInferRequest request = ModelInferRequest.parseFrom(Arrays.copyOfRange(bytes, 5, bytes.length));
    assertThat(request.getModelName()).isEqualTo("m");
    assertThat(request.getInputs(0).getShapeList()).containsExactly(1L, 2L);
  }
}

package io.modelgate.bench;

import io.modelgate.bench.load.TransportCeiling;
import io.modelgate.proto.inference.ModelInferResponse;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code modelgate-bench ceiling}: the bare server of the suite's calibration in a process of its
 * own, until stopped: a grpc-java server that answers every ModelInfer with canned bytes, computing
 * nothing. Load it with {@code modelgate-bench load} (or h2load) to see what the client and the
 * transport manage on a machine before any model is involved.
 */
@Command(
    name = "ceiling",
    mixinStandardHelpOptions = true,
    description = "Serve the bare transport ceiling (canned ModelInfer answers, no model) until stopped.")
final class CeilingCommand implements Callable<Integer> {
  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--port", defaultValue = "8001", description = "Loopback port (0: any free one). Default: ${DEFAULT-VALUE}.")
  int port;

  @Option(names = "--event-loops", defaultValue = "1", description = "Server event loops. Default: ${DEFAULT-VALUE}.")
  int eventLoops;

  @Option(names = "--model", defaultValue = "cnn_mnist", description = "Model name the answers carry. Default: ${DEFAULT-VALUE}.")
  String model;

  @Option(names = "--output-elements", defaultValue = "10",
      description = "FP32 elements of the one output each answer carries (cnn_mnist: 10). Default: ${DEFAULT-VALUE}.")
  int outputElements;

  @Override
  public Integer call() throws Exception {
    if (outputElements < 0 || eventLoops < 1 || port < 0) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--output-elements >= 0, --event-loops >= 1 and --port >= 0 expected");
    }
    ModelInferResponse canned = ModelInferResponse.newBuilder()
        .setModelName(model)
        .setModelVersion("1")
        .addOutputs(ModelInferResponse.InferOutputTensor.newBuilder()
            .setName("output").setDatatype("FP32").addShape(1).addShape(outputElements))
        .addRawOutputContents(com.google.protobuf.ByteString.copyFrom(new byte[4 * outputElements]))
        .build();
    PrintWriter console = spec.commandLine().getOut();
    try (TransportCeiling ceiling = new TransportCeiling(canned, port, eventLoops)) {
      console.printf("bare server on 127.0.0.1:%d: every ModelInfer answered with %d canned bytes (model %s), %d event loop(s); "
          + "stop with Ctrl-C%n", ceiling.port(), canned.getSerializedSize(), model, eventLoops);
      console.flush();
      CountDownLatch stopped = new CountDownLatch(1);
      Runtime.getRuntime().addShutdownHook(new Thread(stopped::countDown));
      stopped.await();
    }
    return 0;
  }
}

package io.modelgate.gateway.cli;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.demo.MnistDigits;
import io.modelgate.gateway.tls.ClientTls;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub;
import io.modelgate.proto.inference.GRPCInferenceServiceGrpc;
import io.modelgate.proto.inference.ModelInferRequest.InferInputTensor;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse.InferOutputTensor;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.proto.inference.ModelMetadataRequest;
import io.modelgate.proto.inference.ModelMetadataResponse.TensorMetadata;
import io.modelgate.proto.inference.ModelMetadataResponse;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code modelgate infer}: one ModelInfer call against any KServe v2 server. A model whose single
 * FP32 input holds 784 values per row (an MNIST image) gets one of the 62 bundled digits; any other
 * model gets random inputs built from its metadata.
 */
@Command(
    name = "infer",

    description = "Sends one inference request and prints the outputs and the version that answered.")
final class InferCommand implements Callable<Integer> {
  @Spec CommandSpec spec;
  @picocli.CommandLine.Mixin HelpOption help;

  @Option(names = "--target", defaultValue = "localhost:8001", description = "Server address. Default: ${DEFAULT-VALUE}.")
  String target;

  @Option(names = "--model", required = true, description = "Model name.")
  String model;

  @Option(names = "--version", defaultValue = "", description = "Model version. Default: the server's choice.")
  String version;

  @Option(
      names = "--digit",
      defaultValue = "0",
      description = "For MNIST models: which of the 62 bundled digits to send, 0 to 61. Default: ${DEFAULT-VALUE}.")
  int digit;

  @Option(
      names = "--every-digit",
      description = "For MNIST models, with --repeat: send the 62 bundled digits in turn, from --digit on.")
  boolean everyDigit;

  @Option(names = "--invert", description = "For MNIST models: send the digit inverted (255 - pixel), as a drifted input.")
  boolean invert;

  @Option(
      names = "--shift",
      defaultValue = "0",
      description = "For MNIST models: move the digit this many pixels right and down (0 to 27), as a drifted input."
          + " Default: ${DEFAULT-VALUE}.")
  int shift;

  @Option(names = "--seed", defaultValue = "1", description = "Seed for random inputs. Default: ${DEFAULT-VALUE}.")
  long seed;

  @Option(names = "--id", defaultValue = "modelgate-cli", description = "Request id, echoed by the server. Default: ${DEFAULT-VALUE}.")
  String id;

  @Option(names = "--timeout", defaultValue = "10s", converter = Converters.TimeSpan.class, description = "Deadline. Default: ${DEFAULT-VALUE}.")
  java.time.Duration timeout;

  @Option(
      names = "--repeat",
      defaultValue = "1",
      description = "Send the request this many times, one after another, and print which versions answered"
          + " and how fast. Default: ${DEFAULT-VALUE}.")
  int repeat;

  @Option(names = "--api-key", paramLabel = "KEY",
      description = "Send this API key (authorization: Bearer KEY), for a server with a callers file.")
  String apiKey;

  @Option(names = "--trace",
      description = "Send the calls in a new sampled W3C trace (a traceparent header) and print its trace id: a server"
          + " with --trace-endpoint records each call as a span of it.")
  boolean trace;

  @Option(names = "--tls-ca", paramLabel = "PEM", description = "Use TLS, trusting this CA for the server's certificate.")
  java.nio.file.Path tlsCa;

  @Option(names = "--tls-cert", paramLabel = "PEM", description = "Client certificate, for mutual TLS (and callers identified by it).")
  java.nio.file.Path tlsCert;

  @Option(names = "--tls-key", paramLabel = "PEM", description = "Client key (PKCS#8), for mutual TLS.")
  java.nio.file.Path tlsKey;

  @Option(names = "--sticky-key", description = "Set this value as the request parameter 'user' (for sticky routing).")
  String stickyKey;

  @Override
  public Integer call() throws InterruptedException {
    if (shift < 0 || shift >= 28) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--shift: " + shift + " (expected: 0 to 27)");
    }
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    ManagedChannel channel;
    try {
      channel = ClientTls.apply(io.grpc.netty.NettyChannelBuilder.forTarget(target), tlsCa, tlsCert, tlsKey)
          .maxInboundMessageSize(Integer.MAX_VALUE).build();
    } catch (IllegalArgumentException e) {
      err.printf("modelgate infer: %s%n", e.getMessage());
      err.flush();
      return CliErrors.USAGE;
    } catch (java.io.IOException e) {
      err.printf("modelgate infer: %s%n", CliErrors.describe(e, target));
      err.flush();
      return CliErrors.exitCode(e);
    }
    try {
      io.grpc.Channel calls = calls(channel, out);
      GRPCInferenceServiceBlockingStub stub =
          GRPCInferenceServiceGrpc.newBlockingStub(calls)
              .withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS);
      ModelMetadataResponse metadata =
          stub.modelMetadata(ModelMetadataRequest.newBuilder().setName(model).setVersion(version).build());
      ModelInferRequest.Builder request =
          ModelInferRequest.newBuilder().setModelName(model).setModelVersion(version).setId(id);
      Integer label = null;
      java.util.List<ModelInferRequest> cycle = null;
      if (isMnist(metadata)) {
        MnistDigits.Digit sample = MnistDigits.get(digit);
        label = sample.label();
        request.addInputs(tensor(metadata.getInputs(0))).addRawInputContents(floats(pixels(sample)));
        if (everyDigit) {
          cycle = new java.util.ArrayList<>();
          for (int i = 0; i < MnistDigits.all().size(); i++) {
            MnistDigits.Digit next = MnistDigits.get((digit + i) % MnistDigits.all().size());
            cycle.add(request.clone().setRawInputContents(0, floats(pixels(next))).build());
          }
        }
      } else {
        Random random = new Random(seed);
        for (TensorMetadata input : metadata.getInputsList()) {
          InferInputTensor.Builder tensor = tensor(input);
          request.addInputs(tensor).addRawInputContents(random(input.getDatatype(), count(tensor), random));
        }
      }
      if (stickyKey != null) {
        request.putParameters(
            "user", io.modelgate.proto.inference.InferParameter.newBuilder().setStringParam(stickyKey).build());
      }
      if (repeat > 1) {
        return repeat(out, calls, cycle == null ? java.util.List.of(request.build()) : cycle);
      }
      long start = System.nanoTime();
      ModelInferResponse response = stub.modelInfer(request.build());
      double millis = (System.nanoTime() - start) / 1e6;
      out.printf(
          "model %s version %s answered in %.2f ms (id %s)%n",
          response.getModelName(), response.getModelVersion(), millis, response.getId());
      for (int i = 0; i < response.getOutputsCount(); i++) {
        InferOutputTensor output = response.getOutputs(i);
        ByteString raw = response.getRawOutputContents(i);
        out.printf(
            "  %s %s %s: %s%n",
            output.getName(), output.getDatatype(), output.getShapeList(), format(output.getDatatype(), raw, 10));
        if (label != null && output.getDatatype().equals("FP32") && raw.size() / 4 == 10) {
          out.printf("digit #%d: label %d, predicted %d%n", digit, label, argmax(raw));
        }
      }
      out.flush();
      return 0;
    } catch (StatusRuntimeException e) {
      err.printf("modelgate infer: %s%n", CliErrors.describe(e, target));
      err.flush();
      return CliErrors.exitCode(e);
    } catch (IllegalArgumentException e) {
      err.printf("modelgate infer: %s%n", e.getMessage());
      err.flush();
      return CliErrors.USAGE;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** A digit's pixels, inverted and shifted as asked. */
  private float[] pixels(MnistDigits.Digit digit) {
    float[] pixels = digit.pixels();
    if (shift != 0) {
      pixels = MnistDigits.shifted(pixels, shift);
    }
    return invert ? MnistDigits.inverted(pixels) : pixels;
  }

  /** The channel the calls go through: with the API key, and in a trace, when asked. */
  private io.grpc.Channel calls(ManagedChannel channel, PrintWriter out) {
    if (apiKey == null && !trace) {
      return channel;
    }
    io.grpc.Metadata headers = new io.grpc.Metadata();
    if (apiKey != null) {
      headers.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER), "Bearer " + apiKey);
    }
    if (trace) {
      java.security.SecureRandom random = new java.security.SecureRandom();
      byte[] traceId = new byte[16];
      byte[] spanId = new byte[8];
      random.nextBytes(traceId);
      random.nextBytes(spanId);
      java.util.HexFormat hex = java.util.HexFormat.of();
      headers.put(io.modelgate.gateway.tracing.Tracing.TRACEPARENT,
          "00-" + hex.formatHex(traceId) + "-" + hex.formatHex(spanId) + "-01");
      out.printf("trace %s (the calls' parent span %s)%n", hex.formatHex(traceId), hex.formatHex(spanId));
    }
    return io.grpc.ClientInterceptors.intercept(channel, io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(headers));
  }

  private int repeat(PrintWriter out, io.grpc.Channel channel, java.util.List<ModelInferRequest> requests) {
    org.HdrHistogram.Histogram latency = new org.HdrHistogram.Histogram(3);
    java.util.Map<String, Integer> versions = new java.util.TreeMap<>();
    java.util.Map<String, Integer> errors = new java.util.TreeMap<>();
    GRPCInferenceServiceBlockingStub stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
    for (int i = 0; i < repeat; i++) {
      long start = System.nanoTime();
      try {
        ModelInferResponse response =
            stub.withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS).modelInfer(requests.get(i % requests.size()));
        latency.recordValue(Math.max(1, (System.nanoTime() - start) / 1000));
        versions.merge(response.getModelVersion(), 1, Integer::sum);
      } catch (StatusRuntimeException e) {
        errors.merge(e.getStatus().getCode().name(), 1, Integer::sum);
      }
    }
    out.printf("%d requests to %s: answered by version %s; errors %s%n", repeat, model, versions, errors);
    out.printf("client latency: p50 %.3f ms, p99 %.3f ms, max %.3f ms%n",
        latency.getValueAtPercentile(50) / 1000.0, latency.getValueAtPercentile(99) / 1000.0,
        latency.getMaxValue() / 1000.0);
    out.flush();
    return errors.isEmpty() ? 0 : 1;
  }

  private static boolean isMnist(ModelMetadataResponse metadata) {
    if (metadata.getInputsCount() != 1 || !metadata.getInputs(0).getDatatype().equals("FP32")) {
      return false;
    }
    long perRow = 1;
    for (int i = 1; i < metadata.getInputs(0).getShapeCount(); i++) {
      perRow *= metadata.getInputs(0).getShape(i);
    }
    return perRow == MnistDigits.PIXELS;
  }

  /** The tensor header with every variable dimension set to 1. */
  private static InferInputTensor.Builder tensor(TensorMetadata input) {
    InferInputTensor.Builder tensor =
        InferInputTensor.newBuilder().setName(input.getName()).setDatatype(input.getDatatype());
    for (long dim : input.getShapeList()) {
      tensor.addShape(dim < 0 ? 1 : dim);
    }
    return tensor;
  }

  private static int count(InferInputTensor.Builder tensor) {
    long n = 1;
    for (long dim : tensor.getShapeList()) {
      n *= dim;
    }
    return Math.toIntExact(n);
  }

  private static ByteString floats(float[] values) {
    ByteBuffer buffer = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float value : values) {
      buffer.putFloat(value);
    }
    return ByteString.copyFrom(buffer.array());
  }

  private static ByteString random(String datatype, int n, Random random) {
    ByteBuffer buffer = ByteBuffer.allocate(n * 16 + 16).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      switch (datatype) {
        case "BOOL" -> buffer.put((byte) (random.nextBoolean() ? 1 : 0));
        case "UINT8", "INT8" -> buffer.put((byte) random.nextInt(100));
        case "INT16", "FP16", "BF16" -> buffer.putShort((short) random.nextInt(100));
        case "INT32" -> buffer.putInt(random.nextInt(100));
        case "INT64" -> buffer.putLong(random.nextInt(100));
        case "FP32" -> buffer.putFloat(random.nextFloat());
        case "FP64" -> buffer.putDouble(random.nextDouble());
        case "BYTES" -> buffer.putInt(9).put("modelgate".getBytes(StandardCharsets.UTF_8));
        default -> throw new IllegalArgumentException("cannot make random " + datatype + " input");
      }
    }
    buffer.flip();
    return ByteString.copyFrom(buffer);
  }

  /** The first {@code limit} elements of a raw tensor, as text. */
  static String format(String datatype, ByteString raw, int limit) {
    ByteBuffer buffer = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    StringBuilder sb = new StringBuilder("[");
    int shown = 0;
    while (buffer.hasRemaining() && shown < limit) {
      if (shown > 0) {
        sb.append(", ");
      }
      switch (datatype) {
        case "BOOL" -> sb.append(buffer.get() != 0);
        case "UINT8" -> sb.append(buffer.get() & 0xFF);
        case "INT8" -> sb.append(buffer.get());
        case "INT16" -> sb.append(buffer.getShort());
        case "INT32" -> sb.append(buffer.getInt());
        case "INT64" -> sb.append(buffer.getLong());
        case "FP32" -> sb.append(String.format("%.4f", buffer.getFloat()));
        case "FP64" -> sb.append(String.format("%.4f", buffer.getDouble()));
        case "FP16", "BF16" -> sb.append(String.format("0x%04x", buffer.getShort() & 0xFFFF));
        case "BYTES" -> {
          byte[] value = new byte[buffer.getInt()];
          buffer.get(value);
          sb.append('"').append(new String(value, StandardCharsets.UTF_8)).append('"');
        }
        default -> {
          return "(" + raw.size() + " bytes of " + datatype + ")";
        }
      }
      shown++;
    }
    if (buffer.hasRemaining()) {
      sb.append(", ...");
    }
    return sb.append(']').toString();
  }

  private static int argmax(ByteString raw) {
    ByteBuffer buffer = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    int best = 0;
    float bestValue = Float.NEGATIVE_INFINITY;
    for (int i = 0; buffer.hasRemaining(); i++) {
      float value = buffer.getFloat();
      if (value > bestValue) {
        bestValue = value;
        best = i;
      }
    }
    return best;
  }
}

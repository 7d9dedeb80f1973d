package io.modelgate.bench;

import com.sun.net.httpserver.HttpServer;
import io.modelgate.gateway.tracing.TraceSettings;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
import io.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;
import io.opentelemetry.proto.common.v1.AnyValue;
import io.opentelemetry.proto.common.v1.KeyValue;
import io.opentelemetry.proto.trace.v1.ResourceSpans;
import io.opentelemetry.proto.trace.v1.ScopeSpans;
import io.opentelemetry.proto.trace.v1.Span;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.util.HexFormat;
import java.util.StringJoiner;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * An OTLP trace receiver, over HTTP or gRPC, that prints each span it is sent, one line each: a way
 * to see what {@code serve --trace-endpoint} sends without running a collector (and the operator's
 * guide's transcript). Decodes OTLP's protobuf messages as a collector does; keeps nothing.
 */
@Command(
    name = "trace-sink",
    mixinStandardHelpOptions = true,
    description = "Receive spans over OTLP/HTTP (POST /v1/traces) or OTLP/gRPC (TraceService/Export) and print each"
        + " one, until stopped.")
final class TraceSinkCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--port", defaultValue = "4318", description = "Port to listen on (0: any free one). Default: ${DEFAULT-VALUE}.")
  int port;

  @Option(names = "--protocol", defaultValue = "http/protobuf",
      description = "http/protobuf (OTLP/HTTP, a collector's port 4318) or grpc (OTLP/gRPC, its port 4317). Default:"
          + " ${DEFAULT-VALUE}.")
  String protocol;

  @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to listen on. Default: ${DEFAULT-VALUE}.")
  String host;

  @Option(names = "--for", paramLabel = "SECONDS", defaultValue = "0",
      description = "Stop after this many seconds (0: only when stopped). Default: ${DEFAULT-VALUE}.")
  int seconds;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    Runnable stop;
    if (TraceSettings.Protocol.named(protocol) == TraceSettings.Protocol.GRPC) {
      io.grpc.Server server = grpc(out);
      out.printf("trace sink: listening on http://%s:%d (OTLP/gRPC)%n", host, server.getPort());
      stop = server::shutdownNow;
    } else {
      HttpServer server = http(out);
      out.printf("trace sink: listening on http://%s:%d%s%n", host, server.getAddress().getPort(), TraceSettings.TRACES_PATH);
      stop = () -> server.stop(0);
    }
    out.flush();
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(stopped::countDown));
    if (seconds > 0) {
      stopped.await(seconds, TimeUnit.SECONDS);
    } else {
      stopped.await();
    }
    stop.run();
    return 0;
  }

  private HttpServer http(PrintWriter out) throws java.io.IOException {
    HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 0);
    server.createContext(TraceSettings.TRACES_PATH, exchange -> {
      try {
        print(out, ExportTraceServiceRequest.parseFrom(exchange.getRequestBody().readAllBytes()));
        byte[] answer = ExportTraceServiceResponse.getDefaultInstance().toByteArray();
        exchange.getResponseHeaders().add("Content-Type", "application/x-protobuf");
        exchange.sendResponseHeaders(200, answer.length);
        exchange.getResponseBody().write(answer);
      } catch (com.google.protobuf.InvalidProtocolBufferException e) {
        exchange.sendResponseHeaders(400, -1);
      } finally {
        exchange.close();
      }
    });
    server.start();
    return server;
  }

  private io.grpc.Server grpc(PrintWriter out) throws java.io.IOException {
    return grpcReceiver(new InetSocketAddress(host, port), request -> print(out, request));
  }

  /**
   * OTLP's {@code TraceService/Export}, served by grpc-java at {@code address} as a collector's gRPC
   * receiver serves it: each export handed to {@code receive} (on grpc-java's threads), then answered.
   */
  static io.grpc.Server grpcReceiver(InetSocketAddress address, java.util.function.Consumer<ExportTraceServiceRequest> receive)
      throws java.io.IOException {
    var export = io.grpc.MethodDescriptor.<ExportTraceServiceRequest, ExportTraceServiceResponse>newBuilder()
        .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
        .setFullMethodName("opentelemetry.proto.collector.trace.v1.TraceService/Export")
        .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(ExportTraceServiceRequest.getDefaultInstance()))
        .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(ExportTraceServiceResponse.getDefaultInstance()))
        .build();
    return io.grpc.netty.NettyServerBuilder.forAddress(address)
        .addService(io.grpc.ServerServiceDefinition.builder("opentelemetry.proto.collector.trace.v1.TraceService")
            .addMethod(export, io.grpc.stub.ServerCalls.asyncUnaryCall((request, answer) -> {
              receive.accept(request);
              answer.onNext(ExportTraceServiceResponse.getDefaultInstance());
              answer.onCompleted();
            }))
            .build())
        .build()
        .start();
  }

  private static void print(PrintWriter out, ExportTraceServiceRequest request) {
    synchronized (out) {
      for (ResourceSpans resource : request.getResourceSpansList()) {
        String service = attributes(resource.getResource().getAttributesList(), "service.name", "service.instance.id");
        for (ScopeSpans scope : resource.getScopeSpansList()) {
          for (Span span : scope.getSpansList()) {
            out.println(line(service, span));
          }
        }
      }
      out.flush();
    }
  }

  /** A span as one line: its name, trace, parent, duration, status and attributes. */
  static String line(String service, Span span) {
    HexFormat hex = HexFormat.of();
    StringJoiner attributes = new StringJoiner(" ");
    for (KeyValue pair : span.getAttributesList()) {
      attributes.add(pair.getKey() + "=" + value(pair.getValue()));
    }
    return String.format(java.util.Locale.ROOT, "span %s [%s] trace %s span %s parent %s %.3f ms status %s %s",
        span.getName(), service, hex.formatHex(span.getTraceId().toByteArray()), hex.formatHex(span.getSpanId().toByteArray()),
        span.getParentSpanId().isEmpty() ? "none" : hex.formatHex(span.getParentSpanId().toByteArray()),
        (span.getEndTimeUnixNano() - span.getStartTimeUnixNano()) / 1e6,
        span.getStatus().getCode().name().substring("STATUS_CODE_".length())
            + (span.getStatus().getMessage().isEmpty() ? "" : " (" + span.getStatus().getMessage() + ")"),
        attributes);
  }

  private static String attributes(java.util.List<KeyValue> pairs, String... keys) {
    StringJoiner found = new StringJoiner(" ");
    for (String key : keys) {
      for (KeyValue pair : pairs) {
        if (pair.getKey().equals(key)) {
          found.add(value(pair.getValue()));
        }
      }
    }
    return found.toString();
  }

  private static String value(AnyValue value) {
    return switch (value.getValueCase()) {
      case STRING_VALUE -> value.getStringValue();
      case INT_VALUE -> Long.toString(value.getIntValue());
      case DOUBLE_VALUE -> String.format(java.util.Locale.ROOT, "%.3f", value.getDoubleValue());
      case BOOL_VALUE -> Boolean.toString(value.getBoolValue());
      default -> value.toString().strip();
    };
  }
}

package io.modelgate.gateway.server;

import io.grpc.Channel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import io.modelgate.proto.admin.v1.AdminServiceGrpc;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.GetStatsRequest;
import io.modelgate.proto.admin.v1.GetUsageRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Calls the gateway's own admin API and HTTP endpoints a number of rounds at startup, before it
 * reports ready, so that the first scrape or admin call under load finds their classes loaded and
 * their code compiled.
 *
 * <p>Why: on a loaded JVM the first run of a path that shares code with the serving path — a
 * scrape goes through Netty's pipeline with other handler and buffer types, an admin call through
 * gRPC's server with another executor — makes the JIT drop the serving path's compiled code
 * ("made not entrant") and compile again, while the new path's classes load and compile too. On a
 * 2-core machine at 15 k calls/s the first scrape or the first {@code admin stats} stalled
 * inference long enough to fill the version's queue in most runs (hundreds to a few thousand calls
 * refused); after this warm-up, in none (BENCHMARKS.md).
 *
 * <p>What a round does: {@code GET /metrics}, {@code /livez} and {@code /readyz} on one keep-alive
 * connection to the metrics port, then ListModels, GetStats, GetRouting for each model (at most
 * {@value #MAX_MODELS}) and GetUsage on the admin API with the server's token: over loopback to the
 * admin port when it is plaintext, else in-process (which warms the admin service but not the
 * transport under it). It reads only: no state changes, nothing audited, no inference (usage and
 * statistics stay the callers'). It stops early after {@code budget}; a failure is logged and ends
 * the warm-up, never the start.
 *
 * <p>Threading: runs on the starting thread, once.
 */
final class StartupWarmup {
  private static final Logger log = LoggerFactory.getLogger(StartupWarmup.class);
  /** The most models whose routing a round reads. */
  static final int MAX_MODELS = 16;
  private static final Duration CALL_TIMEOUT = Duration.ofSeconds(10);

  /** What a warm-up did: rounds completed, and how long it took in milliseconds. */
  record Summary(int rounds, long millis, String stoppedBy) {}

  private StartupWarmup() {}

  /**
   * Runs up to {@code rounds} rounds.
   *
   * @param admin a channel to the admin service: its port over loopback, or in-process
   * @param token a token the admin service admits
   * @param metrics the metrics endpoint's address, or null when it is off
   * @param models the models whose routing to read
   * @param budget the longest the warm-up may take; it stops after the round that passes it
   */
  static Summary run(
      int rounds, Channel admin, String token, InetSocketAddress metrics, List<String> models, Duration budget) {
    long start = System.nanoTime();
    long deadline = start + budget.toNanos();
    Http http = null;
    int done = 0;
    String stoppedBy = "";
    try {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      AdminServiceGrpc.AdminServiceBlockingStub stub =
          AdminServiceGrpc.newBlockingStub(admin).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
      List<String> routed = models.subList(0, Math.min(models.size(), MAX_MODELS));
      if (metrics != null) {
        http = new Http(metrics, CALL_TIMEOUT);
      }
      while (done < rounds) {
        if (http != null) {
          http.get("/metrics");
          http.get("/livez");
          http.get("/readyz");
        }
        AdminServiceGrpc.AdminServiceBlockingStub call = stub.withDeadlineAfter(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        call.listModels(ListModelsRequest.getDefaultInstance());
        call.getStats(GetStatsRequest.getDefaultInstance());
        for (String model : routed) {
          call.getRouting(GetRoutingRequest.newBuilder().setModel(model).build());
        }
        call.getUsage(GetUsageRequest.getDefaultInstance());
        done++;
        if (done < rounds && System.nanoTime() - deadline > 0) {
          stoppedBy = "its time budget of " + budget.toMillis() + " ms";
          break;
        }
      }
    } catch (IOException | RuntimeException e) {
      stoppedBy = "a failure: " + e;
      log.warn("start-up warm-up stopped after {} of {} rounds: {}", done, rounds, e.toString());
    } finally {
      if (http != null) {
        try {
          http.close();
        } catch (IOException ignored) {
          // closing a loopback socket: nothing to do
        }
      }
    }
    long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    return new Summary(done, millis, stoppedBy);
  }

  /** One keep-alive HTTP/1.1 connection to the metrics endpoint. */
  static final class Http implements java.io.Closeable {
    private final Socket socket;
    private final InputStream in;
    private final OutputStream out;

    Http(InetSocketAddress address, Duration timeout) throws IOException {
      socket = new Socket();
      try {
        socket.connect(address, (int) timeout.toMillis());
        socket.setSoTimeout((int) timeout.toMillis());
        in = new java.io.BufferedInputStream(socket.getInputStream());
        out = socket.getOutputStream();
      } catch (IOException e) {
        socket.close();
        throw e;
      }
    }

    /**
     * GETs {@code path}; reads the head and the {@code Content-Length} body and returns the status.
     * Any status is fine to the warm-up ({@code /readyz} answers 503 while the server starts).
     */
    int get(String path) throws IOException {
      out.write(("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: modelgate-warmup\r\n\r\n")
          .getBytes(StandardCharsets.US_ASCII));
      out.flush();
      String head = head();
      int status = Integer.parseInt(head.substring(9, 12));
      long length = -1;
      for (String line : head.split("\r\n")) {
        int colon = line.indexOf(':');
        if (colon > 0 && line.substring(0, colon).trim().toLowerCase(Locale.ROOT).equals("content-length")) {
          length = Long.parseLong(line.substring(colon + 1).trim());
        }
      }
      if (length < 0) {
        throw new IOException("GET " + path + ": no Content-Length in the answer");
      }
      in.skipNBytes(length);
      return status;
    }

    private String head() throws IOException {
      ByteArrayOutputStream head = new ByteArrayOutputStream(256);
      int matched = 0;
      while (matched < 4) {
        int b = in.read();
        if (b < 0) {
          throw new IOException("the connection closed within an answer's head");
        }
        head.write(b);
        matched = b == (matched % 2 == 0 ? '\r' : '\n') ? matched + 1 : (b == '\r' ? 1 : 0);
        if (head.size() > 16384) {
          throw new IOException("an answer's head over 16 KiB");
        }
      }
      String text = head.toString(StandardCharsets.US_ASCII);
      if (!text.startsWith("HTTP/1.1 ") || text.length() < 12) {
        throw new IOException("not an HTTP/1.1 answer: " + text.lines().findFirst().orElse(""));
      }
      return text;
    }

    @Override
    public void close() throws IOException {
      socket.close();
    }
  }
}

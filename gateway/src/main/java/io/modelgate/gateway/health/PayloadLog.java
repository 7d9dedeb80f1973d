package io.modelgate.gateway.health;

import com.google.protobuf.ByteString;
import com.google.protobuf.util.JsonFormat;
import io.grpc.Status;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.modelgate.proto.health.v1.PayloadRecord;
import io.modelgate.proto.inference.InferTensorContents;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.PayloadLogSettings;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sampled payload logs: for a model whose {@code model.yaml} has {@code payload_log}, a share of
 * its requests, with their answers, as JSON lines ({@link PayloadRecord}) in {@code
 * <directory>/<model>/payloads.jsonl}, rotated by size into {@code payloads-<time>.jsonl}, the
 * oldest deleted beyond {@code max_files}.
 *
 * <p>Never on a request's path: the request thread only draws the sample (no allocation when not
 * sampled) and the answer thread hands the record to a bounded queue, dropping it (and counting
 * it) when the queue is full; one writer thread ({@code modelgate-payload-log}) redacts, encodes
 * and writes. A write that fails (a full disk) drops the record and counts it; requests never
 * notice.
 */
public final class PayloadLog implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(PayloadLog.class);
  /** Records waiting for the writer; more are dropped. */
  static final int QUEUE = 4096;
  /** Bytes of requests and responses waiting for the writer; more are dropped (large tensors). */
  static final long MAX_QUEUED_BYTES = 64L << 20;
  public static final String CURRENT = "payloads.jsonl";
  private static final DateTimeFormatter ROTATED =
      DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss-SSS").withZone(ZoneOffset.UTC);

  private final Path directory;
  private final MeterRegistry registry;
  private final Clock clock;
  private final BlockingQueue<Entry> queue = new ArrayBlockingQueue<>(QUEUE);
  private final java.util.concurrent.atomic.AtomicLong queuedBytes = new java.util.concurrent.atomic.AtomicLong();
  private final Map<String, Counter[]> counters = new ConcurrentHashMap<>();
  /** Writer thread only. */
  private final Map<String, ModelFile> files = new HashMap<>();
  /** Models removed from the repository, whose open files the writer closes. */
  private final java.util.Queue<String> removed = new java.util.concurrent.ConcurrentLinkedQueue<>();
  private final Thread writer;
  private volatile boolean closed;
  private long lastFailureLog;
  /** Writer thread only: rotations so far, to order files rotated within one millisecond. */
  private long rotations;

  /** A request drawn for the log, with what is known when it arrives. */
  public static final class Sample {
    final PayloadLogSettings settings;
    final ModelInferRequest request;
    final String caller;
    final String tenant;

    Sample(PayloadLogSettings settings, ModelInferRequest request, String caller, String tenant) {
      this.settings = settings;
      this.request = request;
      this.caller = caller;
      this.tenant = tenant;
    }
  }

  private record Entry(Sample sample, String model, String version, ModelInferResponse response, Status status,
      long latencyNanos, long timeMillis, long bytes) {}

  private static final class ModelFile {
    OutputStream out;
    long bytes;
  }

  /** Whether any loaded version has a payload log: only then do inference calls keep their caller. */
  private volatile boolean active;

  public PayloadLog(Path directory, MeterRegistry registry, Clock clock) {
    this.directory = directory;
    this.registry = registry;
    this.clock = clock;
    this.writer = DaemonThreads.thread("modelgate-payload-log", this::write);
    writer.start();
  }

  public Path directory() {
    return directory;
  }

  /**
   * Follows {@code repository}'s versions: {@link #active} while any loaded version's model has a
   * {@code payload_log}.
   */
  public PayloadLog follow(io.modelgate.runtime.repository.ModelRepository repository) {
    repository.events().subscribe(v -> active = anyLogging(repository));
    repository.onModelRemoved(this::modelRemoved);
    active = anyLogging(repository);
    return this;
  }

  /**
   * A model its repository removed (none of its versions has been in memory for a while, so none
   * of its records waits): its counters go now, its open file when the writer next wakes. Its files
   * on disk stay.
   */
  private void modelRemoved(String model) {
    Counter[] gone = counters.remove(model);
    if (gone != null) {
      for (Counter counter : gone) {
        registry.remove(counter);
      }
    }
    removed.add(model);
  }

  private static boolean anyLogging(io.modelgate.runtime.repository.ModelRepository repository) {
    for (var model : repository.models()) {
      for (var version : model.versions()) {
        LoadedVersion loaded = version.loadedOrNull();
        if (loaded != null && loaded.settings().payloadLog() != null && loaded.settings().payloadLog().sampleRate() > 0) {
          return true;
        }
      }
    }
    return false;
  }

  /** Whether any loaded version logs payloads (so that calls must keep who made them). Never blocks. */
  public boolean active() {
    return active;
  }

  /**
   * Draws whether this request of {@code loaded} is logged: null (most of the time, allocating
   * nothing) or a sample to complete with {@link #offer}. Request thread.
   */
  public Sample sample(LoadedVersion loaded, ModelInferRequest request, java.util.function.Supplier<String> caller, String tenant) {
    PayloadLogSettings settings = loaded.settings().payloadLog();
    if (settings == null || settings.sampleRate() <= 0 || ThreadLocalRandom.current().nextDouble() >= settings.sampleRate()) {
      return null;
    }
    return new Sample(settings, request, caller.get(), tenant);
  }

  /**
   * Hands a sampled request's answer to the writer; drops it when the writer is behind (4,096
   * records or 64 MiB of requests and responses waiting). Never blocks.
   */
  public void offer(Sample sample, String model, String version, ModelInferResponse response, Status status, long latencyNanos) {
    long bytes = sample.request.getSerializedSize() + (response == null ? 0 : response.getSerializedSize());
    if (closed || queuedBytes.addAndGet(bytes) > MAX_QUEUED_BYTES
        || !queue.offer(new Entry(sample, model, version, response, status, latencyNanos, clock.millis(), bytes))) {
      queuedBytes.addAndGet(-bytes);
      counter(model, 1).increment();
    }
  }

  /** (written, dropped, failed) counters of a model. */
  private Counter counter(String model, int outcome) {
    return counters.computeIfAbsent(model, m -> {
      Counter[] made = new Counter[3];
      String[] outcomes = {"written", "dropped", "failed"};
      for (int i = 0; i < 3; i++) {
        made[i] = Counter.builder("modelgate.payload.log.records")
            .description("Sampled requests for the payload log: written, dropped (the writer was behind) or failed (the write failed)")
            .tags("model", m, "outcome", outcomes[i])
            .register(registry);
      }
      return made;
    })[outcome];
  }

  private void write() {
    JsonFormat.Printer printer = JsonFormat.printer().omittingInsignificantWhitespace().preservingProtoFieldNames();
    while (!closed || !queue.isEmpty()) {
      for (String model = removed.poll(); model != null; model = removed.poll()) {
        ModelFile file = files.remove(model);
        if (file != null) {
          try {
            file.out.close();
          } catch (IOException e) {
            log.warn("payload log of model '{}' (removed) did not close cleanly: {}", model, e.toString());
          }
        }
      }
      Entry entry;
      try {
        entry = queue.poll(200, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        if (closed) {
          break;
        }
        continue;
      }
      if (entry == null) {
        continue;
      }
      queuedBytes.addAndGet(-entry.bytes());
      try {
        byte[] line = (printer.print(record(entry)) + "\n").getBytes(StandardCharsets.UTF_8);
        append(entry.model(), entry.sample().settings, line);
        counter(entry.model(), 0).increment();
      } catch (IOException | RuntimeException e) {
        counter(entry.model(), 2).increment();
        ModelFile broken = files.remove(entry.model());
        if (broken != null && broken.out != null) {
          try {
            broken.out.close();
          } catch (IOException ignored) {
            // already failing
          }
        }
        long now = System.currentTimeMillis();
        if (now - lastFailureLog > 60_000) {
          lastFailureLog = now;
          log.warn("payload log of model '{}' cannot be written (records are dropped; logged once a minute): {}",
              entry.model(), e.toString());
        }
      }
    }
    for (ModelFile file : files.values()) {
      try {
        file.out.close();
      } catch (IOException ignored) {
        // closing
      }
    }
  }

  private PayloadRecord record(Entry entry) {
    PayloadRecord.Builder record = PayloadRecord.newBuilder()
        .setTime(Instant.ofEpochMilli(entry.timeMillis()).toString())
        .setId(entry.sample().request.getId())
        .setModel(entry.model())
        .setVersion(entry.version())
        .setCaller(entry.sample().caller)
        .setTenant(entry.sample().tenant)
        .setLatencyMs(entry.latencyNanos() / 1e6)
        .setStatus(entry.status().getCode().name())
        .setRequest(redacted(entry.sample().request, entry.sample().settings));
    if (entry.status().getDescription() != null) {
      record.setMessage(entry.status().getDescription());
    }
    if (entry.response() != null) {
      record.setResponse(redacted(entry.response(), entry.sample().settings));
    }
    return record.build();
  }

  /** The request without the data of the inputs the settings do not keep. */
  static ModelInferRequest redacted(ModelInferRequest request, PayloadLogSettings settings) {
    ModelInferRequest.Builder out = request.toBuilder();
    for (int i = 0; i < out.getInputsCount(); i++) {
      if (!settings.logs(out.getInputs(i).getName())) {
        out.setInputs(i, out.getInputs(i).toBuilder().setContents(InferTensorContents.getDefaultInstance()));
        if (i < out.getRawInputContentsCount()) {
          out.setRawInputContents(i, ByteString.EMPTY);
        }
      }
    }
    return out.build();
  }

  /** The response without the data of the outputs the settings do not keep. */
  static ModelInferResponse redacted(ModelInferResponse response, PayloadLogSettings settings) {
    ModelInferResponse.Builder out = response.toBuilder();
    for (int i = 0; i < out.getOutputsCount(); i++) {
      if (!settings.logs(out.getOutputs(i).getName())) {
        out.setOutputs(i, out.getOutputs(i).toBuilder().setContents(InferTensorContents.getDefaultInstance()));
        if (i < out.getRawOutputContentsCount()) {
          out.setRawOutputContents(i, ByteString.EMPTY);
        }
      }
    }
    return out.build();
  }

  /** Appends one line to the model's current file, rotating it first when it is full. Writer thread. */
  private void append(String model, PayloadLogSettings settings, byte[] line) throws IOException {
    Path dir = directory.resolve(model);
    ModelFile file = files.get(model);
    if (file != null && file.bytes > 0 && file.bytes + line.length > settings.maxFileBytes()) {
      file.out.close();
      files.remove(model);
      file = null;
      Files.move(dir.resolve(CURRENT),
          dir.resolve(String.format("payloads-%s-%06d.jsonl", ROTATED.format(Instant.ofEpochMilli(clock.millis())), ++rotations)),
          StandardCopyOption.ATOMIC_MOVE);
      prune(dir, settings.maxFiles());
    }
    if (file == null) {
      Files.createDirectories(dir);
      file = new ModelFile();
      Path current = dir.resolve(CURRENT);
      file.out = Files.newOutputStream(current, StandardOpenOption.CREATE, StandardOpenOption.APPEND, StandardOpenOption.WRITE);
      file.bytes = Files.isRegularFile(current) ? Files.size(current) : 0;
      files.put(model, file);
    }
    file.out.write(line);
    file.out.flush();
    file.bytes += line.length;
  }

  /** Deletes the oldest rotated files beyond {@code keep}. */
  private static void prune(Path dir, int keep) throws IOException {
    List<Path> rotated;
    try (Stream<Path> listed = Files.list(dir)) {
      rotated = listed.filter(p -> {
        String name = p.getFileName().toString();
        return name.startsWith("payloads-") && name.endsWith(".jsonl");
      }).sorted().toList();
    }
    for (int i = 0; i < rotated.size() - keep; i++) {
      Files.deleteIfExists(rotated.get(i));
    }
  }

  /** Writes what is queued (up to a few seconds), then stops. */
  @Override
  public void close() {
    closed = true;
    try {
      writer.join(5000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}

package io.modelgate.gateway.usage;

import com.google.protobuf.util.JsonFormat;
import io.grpc.Status;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.modelgate.proto.admin.v1.UsageRecord;
import io.modelgate.proto.admin.v1.UsageReport;
import io.modelgate.runtime.logging.LogThrottle;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.DoubleAdder;
import java.util.concurrent.atomic.LongAdder;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Usage for chargeback: per tenant, model and version, the requests (by status code), rows, bytes
 * in and out, and compute time — each request's share of its batch's run of the model, by its
 * share of the batch's rows, so that the shares of a batch add up to its measured time.
 *
 * <p>Kept twice: as Prometheus counters since start ({@code modelgate_usage_*}; the tenant label
 * takes the tenants of the callers file, {@code anonymous} without one, and at most {@link
 * #MAX_TENANT_LABELS} values, the rest as {@code other}), and as a ledger of hourly buckets (UTC),
 * written every {@link #FLUSH_SECONDS} s and on close to {@code <state>/usage/<hour>-<replica>.jsonl},
 * one {@link UsageRecord} per line: a restart loses at most the last seconds. Memory holds the last
 * {@link #LIVE_HOURS} hours; a report reads older ones from the files.
 * Each record names the replica that served it, so the ledgers of a fleet add up.
 *
 * <p>Threads: {@link #record} runs on the answering threads and only adds to counters (no lock,
 * no I/O); one thread, {@code modelgate-usage}, writes the ledger.
 */
public final class Usage implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Usage.class);
  static final int MAX_TENANT_LABELS = 100;
  static final long FLUSH_SECONDS = 10;
  /** Hours kept in memory (the current one and those before it); older ones are read from the ledger. */
  static final int LIVE_HOURS = 3;
  static final DateTimeFormatter HOUR = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH").withZone(ZoneOffset.UTC);
  private static final Status.Code[] CODES = Status.Code.values();

  private final MeterRegistry registry;
  private final Clock clock;
  private final String replica;
  private final Path directory;
  private final AccessLog access;
  /** Hands each hour that changed to the fleet's store (etcd), or does nothing. Writer thread. */
  private volatile java.util.function.BiConsumer<String, UsageReport> fleet = (hour, report) -> {};
  /** Deletes the fleet's hours before the one given (etcd), returning how many; or does nothing. Writer thread. */
  private volatile java.util.function.ToLongFunction<String> fleetDelete = hour -> 0;
  /** How long an hour is kept; zero: for ever. */
  private final Duration retention;
  /** The hour (epoch hours) whose retention has been applied; the writer's own. */
  private long retainedAt = Long.MIN_VALUE;
  /** Hours handed to the fleet since they last changed; the writer's own. */
  private final Map<Long, Long> published = new ConcurrentHashMap<>();
  /** Hourly buckets: hour (epoch hours) → key → cell. */
  private final Map<Long, Map<Key, Cell>> hours = new ConcurrentHashMap<>();
  /** Since start, for Prometheus. */
  private final Map<Key, Cell> totals = new ConcurrentHashMap<>();
  private final Map<String, String> tenantLabels = new ConcurrentHashMap<>();
  private final ScheduledExecutorService writer;
  /** Set as the server stops: the flush then is the last. */
  private volatile boolean stopping;
  /** A failing disk or fleet is retried every flush (10 s), and said once a minute. */
  private final LogThrottle notWritten = new LogThrottle(java.time.Duration.ofMinutes(1));
  private final LogThrottle notShared = new LogThrottle(java.time.Duration.ofMinutes(1));
  private final LogThrottle notDeleted = new LogThrottle(java.time.Duration.ofMinutes(1));
  /** Hours written at least once since they last changed; the writer's own. */
  private final Map<Long, Long> written = new ConcurrentHashMap<>();

  record Key(String tenant, String model, String version) {}

  /** One tenant's use of one version, over an hour or since start. */
  static final class Cell {
    final LongAdder[] requests = new LongAdder[CODES.length];
    final LongAdder rows = new LongAdder();
    final LongAdder bytesIn = new LongAdder();
    final LongAdder bytesOut = new LongAdder();
    final DoubleAdder computeNanos = new DoubleAdder();
    final LongAdder changes = new LongAdder();
    /** Answered requests' latency, in the exported (total) cells only; null in hourly cells. */
    LatencyWindow latency;
    /**
     * RESOURCE_EXHAUSTED refusals by {@link io.modelgate.runtime.error.Refusal}, in the exported
     * (total) cells only; null in hourly cells (the ledger counts them by code).
     */
    LongAdder[] refused;
    /** The exported (total) cell's meters; empty in hourly cells. */
    final List<io.micrometer.core.instrument.Meter> meters = new ArrayList<>();

    Cell() {
      for (int i = 0; i < requests.length; i++) {
        requests[i] = new LongAdder();
      }
    }

    long requests() {
      long sum = 0;
      for (LongAdder adder : requests) {
        sum += adder.sum();
      }
      return sum;
    }
  }

  /**
   * @param directory where the ledger is kept ({@code <state>/usage}); null keeps none
   */
  public Usage(MeterRegistry registry, Clock clock, String replica, Path directory) {
    this(registry, clock, replica, directory, AccessLog.off(), Duration.ZERO);
  }

  /**
   * @param directory where the ledger is kept ({@code <state>/usage}); null keeps none
   * @param access the access log, which sees every request recorded here
   * @param retention how long the ledger keeps an hour (checked once an hour, by the writer): its
   *     files, of whatever replica name, and the fleet's keys ({@link #shareWith}); zero keeps every
   *     hour
   */
  public Usage(MeterRegistry registry, Clock clock, String replica, Path directory, AccessLog access, Duration retention) {
    this.access = access;
    this.retention = java.util.Objects.requireNonNull(retention, "retention");
    this.registry = registry;
    this.clock = clock;
    this.replica = replica;
    this.directory = directory;
    if (directory != null) {
      load();
      writer = DaemonThreads.scheduled("modelgate-usage");
      writer.scheduleWithFixedDelay(this::flushQuietly, FLUSH_SECONDS, FLUSH_SECONDS, TimeUnit.SECONDS);
    } else {
      writer = null;
    }
  }

  /**
   * Records one answered (or refused) request. Never blocks.
   *
   * @param rows the request's rows (1 for a model that does not batch)
   * @param batchRows rows of the execution it was part of (0: not executed)
   * @param batchComputeNanos that execution's run of the model (0: not executed)
   * @param bytesIn the request message's size
   * @param bytesOut the bytes of the output tensors answered
   * @param id the request's id, for the access log
   * @param latencyNanos from its arrival to its answer, for the access log and the tenant's latency
   */
  public void record(String tenant, String model, String version, Status.Code code, int rows, int batchRows,
      long batchComputeNanos, long bytesIn, long bytesOut, String id, long latencyNanos) {
    record(tenant, model, version, code, null, rows, batchRows, batchComputeNanos, bytesIn, bytesOut, id, latencyNanos);
  }

  /**
   * As {@link #record(String, String, String, Status.Code, int, int, long, long, long, String, long)},
   * for a request refused for {@code refusal} (null: not refused, or for another reason).
   */
  public void record(String tenant, String model, String version, Status.Code code,
      io.modelgate.runtime.error.Refusal refusal, int rows, int batchRows, long batchComputeNanos, long bytesIn,
      long bytesOut, String id, long latencyNanos) {
    record(tenant, model, version, code, refusal, rows, batchRows, batchComputeNanos, bytesIn, bytesOut, id, latencyNanos,
        null);
  }

  /**
   * As {@link #record(String, String, String, Status.Code, io.modelgate.runtime.error.Refusal, int, int, long, long,
   * long, String, long)}, for a request traced in {@code traceId} (32 hex digits; null: not traced),
   * which its access log line, if it has one, names.
   */
  public void record(String tenant, String model, String version, Status.Code code,
      io.modelgate.runtime.error.Refusal refusal, int rows, int batchRows, long batchComputeNanos, long bytesIn,
      long bytesOut, String id, long latencyNanos, String traceId) {
    if (access.sampled()) {
      access.log(id, tenant, model, version, code, latencyNanos, rows, bytesIn, bytesOut, traceId);
    }
    double share = batchRows > 0 ? batchComputeNanos * (double) rows / batchRows : 0;
    Key key = new Key(tenant, model, version);
    long hour = Math.floorDiv(clock.millis(), 3_600_000L);
    add(hours.computeIfAbsent(hour, h -> new ConcurrentHashMap<>()).computeIfAbsent(key, k -> new Cell()),
        code, rows, share, bytesIn, bytesOut);
    String label = tenantLabel(tenant);
    // Tenants beyond the exported limit share one label; all others are their own (one key for both maps).
    Cell total = totals.computeIfAbsent(label.equals(tenant) ? key : new Key(label, model, version), this::exported);
    add(total, code, rows, share, bytesIn, bytesOut);
    if (code == Status.Code.OK) {
      total.latency.record(latencyNanos);
    } else if (refusal != null) {
      total.refused[refusal.ordinal()].increment();
    }
  }

  /**
   * The {@code quantile} (0 to 1) of {@code tenant}'s latency to {@code version} of {@code model}
   * in seconds: arrival to answer as the server sees it (not the network's), over the last minute.
   * NaN before its first answer.
   */
  public double latency(String tenant, String model, String version, double quantile) {
    Cell cell = totals.get(new Key(tenantLabel(tenant), model, version));
    return cell == null ? Double.NaN : cell.latency.quantileSeconds(quantile);
  }

  private static void add(Cell cell, Status.Code code, int rows, double share, long bytesIn, long bytesOut) {
    cell.requests[code.ordinal()].increment();
    if (code == Status.Code.OK) {
      cell.rows.add(rows);
    }
    cell.bytesIn.add(bytesIn);
    cell.bytesOut.add(bytesOut);
    if (share > 0) {
      cell.computeNanos.add(share);
    }
    cell.changes.increment();
  }

  /** A new total cell and its Prometheus counters. */
  private Cell exported(Key key) {
    Cell cell = new Cell();
    Tags tags = Tags.of("tenant", key.tenant(), "model", key.model(), "version", key.version());
    for (Status.Code code : List.of(Status.Code.OK, Status.Code.INVALID_ARGUMENT, Status.Code.RESOURCE_EXHAUSTED,
        Status.Code.DEADLINE_EXCEEDED, Status.Code.UNAVAILABLE, Status.Code.INTERNAL, Status.Code.CANCELLED,
        Status.Code.NOT_FOUND, Status.Code.PERMISSION_DENIED)) {
      cell.meters.add(FunctionCounter.builder("modelgate.usage.requests", cell.requests[code.ordinal()], LongAdder::sum)
          .description("Requests per tenant, model, version and status code, for chargeback")
          .tags(tags.and("code", code.name()))
          .register(registry));
    }
    // Percentiles per tenant (not mergeable across replicas): whether one tenant waits while
    // another floods shows here first. The last minute, so a past storm does not linger.
    cell.latency = new LatencyWindow(clock);
    for (double quantile : new double[] {0.5, 0.99, 0.999}) {
      cell.meters.add(io.micrometer.core.instrument.Gauge.builder("modelgate.usage.latency", cell.latency, w -> w.quantileSeconds(quantile))
          .description("Server-side latency of answered requests per tenant, model and version over the last minute"
              + " (arrival to answer)")
          .baseUnit("seconds")
          .tags(tags.and("quantile", String.valueOf(quantile)))
          .register(registry));
    }
    cell.refused = new LongAdder[io.modelgate.runtime.error.Refusal.values().length];
    for (io.modelgate.runtime.error.Refusal refusal : io.modelgate.runtime.error.Refusal.values()) {
      LongAdder count = new LongAdder();
      cell.refused[refusal.ordinal()] = count;
      cell.meters.add(FunctionCounter.builder("modelgate.usage.refused", count, LongAdder::sum)
          .description("Requests refused RESOURCE_EXHAUSTED per tenant, model and version, by reason: quota, fair_share,"
              + " queue_full, request_memory")
          .tags(tags.and("reason", refusal.label()))
          .register(registry));
    }
    cell.meters.add(FunctionCounter.builder("modelgate.usage.rows", cell.rows, LongAdder::sum)
        .description("Rows answered per tenant, model and version")
        .tags(tags).register(registry));
    cell.meters.add(FunctionCounter.builder("modelgate.usage.compute", cell.computeNanos, a -> a.sum() / 1e9)
        .description("Seconds of the model's run per tenant, model and version: each request's share of its batch by rows")
        .baseUnit("seconds").tags(tags).register(registry));
    cell.meters.add(FunctionCounter.builder("modelgate.usage.bytes", cell.bytesIn, LongAdder::sum)
        .description("Bytes per tenant, model and version: in (request messages) and out (output tensors)")
        .tags(tags.and("direction", "in")).register(registry));
    cell.meters.add(FunctionCounter.builder("modelgate.usage.bytes", cell.bytesOut, LongAdder::sum)
        .description("Bytes per tenant, model and version: in (request messages) and out (output tensors)")
        .tags(tags.and("direction", "out")).register(registry));
    return cell;
  }

  /**
   * Forgets the exported totals of {@code version} of {@code model} and takes their meters from the
   * registry: the version has been out of memory long enough ({@code VersionRetirement}). The
   * ledger's hours keep its usage; a request recorded against it later starts new totals.
   */
  public void retire(String model, String version) {
    totals.entrySet().removeIf(entry -> {
      if (!entry.getKey().model().equals(model) || !entry.getKey().version().equals(version)) {
        return false;
      }
      for (io.micrometer.core.instrument.Meter meter : entry.getValue().meters) {
        registry.remove(meter);
      }
      return true;
    });
  }

  /** The tenant's label value: itself while fewer than the limit are labelled, else {@code other}. */
  private String tenantLabel(String tenant) {
    String label = tenantLabels.get(tenant);
    if (label != null) {
      return label;
    }
    synchronized (tenantLabels) {
      return tenantLabels.computeIfAbsent(tenant, t -> tenantLabels.size() < MAX_TENANT_LABELS ? t : "other");
    }
  }

  /**
   * Hands every hour that changes to {@code publish} too, from the writer thread (for a fleet: the
   * control store); a failure is logged and the hour handed again at the next write.
   */
  public void shareWith(java.util.function.BiConsumer<String, UsageReport> publish,
      java.util.function.ToLongFunction<String> deleteBefore) {
    this.fleet = publish;
    this.fleetDelete = deleteBefore;
  }

  /**
   * The usage of every replica of a fleet: the hourly reports they shared ({@link #shareWith}),
   * added up per tenant, model and version, over the hours between {@code since} and {@code until}.
   */
  public static UsageReport fleetReport(List<UsageReport> hours, Instant since, Instant until, String tenant, String model) {
    long from = Math.floorDiv(since.toEpochMilli(), 3_600_000L);
    long to = Math.floorDiv(until.toEpochMilli() + 3_600_000L - 1, 3_600_000L);
    Map<Key, UsageRecord.Builder> sums = new TreeMap<>(java.util.Comparator.comparing(Key::tenant)
        .thenComparing(Key::model).thenComparing(Key::version));
    java.util.Set<String> replicas = new java.util.TreeSet<>();
    for (UsageReport hour : hours) {
      for (UsageRecord r : hour.getRecordsList()) {
        if ((!tenant.isEmpty() && !tenant.equals(r.getTenant())) || (!model.isEmpty() && !model.equals(r.getModel()))) {
          continue;
        }
        replicas.add(r.getReplica());
        UsageRecord.Builder sum = sums.computeIfAbsent(new Key(r.getTenant(), r.getModel(), r.getVersion()),
            k -> UsageRecord.newBuilder().setTenant(k.tenant()).setModel(k.model()).setVersion(k.version()));
        r.getErrorsMap().forEach((code, n) -> sum.putErrors(code, sum.getErrorsOrDefault(code, 0) + n));
        sum.setRequests(sum.getRequests() + r.getRequests())
            .setErrorCount(sum.getErrorCount() + r.getErrorCount())
            .setRows(sum.getRows() + r.getRows())
            .setBytesIn(sum.getBytesIn() + r.getBytesIn())
            .setBytesOut(sum.getBytesOut() + r.getBytesOut())
            .setComputeSeconds(sum.getComputeSeconds() + r.getComputeSeconds());
      }
    }
    UsageReport.Builder report = UsageReport.newBuilder()
        .setSince(HOUR.format(Instant.ofEpochMilli(from * 3_600_000L)))
        .setUntil(HOUR.format(Instant.ofEpochMilli(to * 3_600_000L)))
        .setReplica("fleet of " + replicas.size() + ": " + String.join(", ", replicas));
    sums.values().forEach(report::addRecords);
    return report.build();
  }

  /** The hour (yyyy-MM-ddTHH) holding {@code instant}, rounded up when {@code up} and not on the hour. */
  public static String hour(Instant instant, boolean up) {
    long h = up ? Math.floorDiv(instant.toEpochMilli() + 3_600_000L - 1, 3_600_000L) : Math.floorDiv(instant.toEpochMilli(), 3_600_000L);
    return HOUR.format(Instant.ofEpochMilli(h * 3_600_000L));
  }

  // ---- the report ----

  /**
   * Usage between {@code since} (inclusive) and {@code until} (exclusive), whole hours, per tenant,
   * model and version; {@code tenant} and {@code model} narrow it down when not empty.
   */
  public UsageReport report(Instant since, Instant until, String tenant, String model) {
    long from = Math.floorDiv(since.toEpochMilli(), 3_600_000L);
    long to = Math.floorDiv(until.toEpochMilli() + 3_600_000L - 1, 3_600_000L);
    Map<Key, UsageRecord.Builder> sums = new TreeMap<>(java.util.Comparator.comparing(Key::tenant)
        .thenComparing(Key::model).thenComparing(Key::version));
    // This process's recent hours are in memory; the rest is in the ledger files: its own older
    // hours, and those of the processes that kept this state directory under other names before
    // it (a restart without --replica takes a new name).
    List<Map<Key, Cell>> inRange = new ArrayList<>();
    java.util.Set<Long> inMemory = new java.util.HashSet<>();
    for (Map.Entry<Long, Map<Key, Cell>> hour : hours.entrySet()) {
      if (hour.getKey() >= from && hour.getKey() < to) {
        inRange.add(hour.getValue());
        inMemory.add(hour.getKey());
      }
    }
    java.util.SortedSet<String> ledgers = new java.util.TreeSet<>();
    for (LedgerFile file : ledgerFiles()) {
      boolean own = file.replica().equals(replica);
      if (file.hour() >= from && file.hour() < to && !(own && inMemory.contains(file.hour()))) {
        Map<Key, Cell> cells = readFile(file.path());
        if (!cells.isEmpty()) {
          inRange.add(cells);
          if (!own) {
            ledgers.add(file.replica());
          }
        }
      }
    }
    for (Map<Key, Cell> hour : inRange) {
      for (Map.Entry<Key, Cell> entry : hour.entrySet()) {
        Key key = entry.getKey();
        if ((!tenant.isEmpty() && !tenant.equals(key.tenant())) || (!model.isEmpty() && !model.equals(key.model()))) {
          continue;
        }
        merge(sums.computeIfAbsent(key, k -> UsageRecord.newBuilder().setTenant(k.tenant()).setModel(k.model())
            .setVersion(k.version())), entry.getValue());
      }
    }
    UsageReport.Builder report = UsageReport.newBuilder()
        .setSince(HOUR.format(Instant.ofEpochMilli(from * 3_600_000L)))
        .setUntil(HOUR.format(Instant.ofEpochMilli(to * 3_600_000L)))
        .setReplica(replica)
        .addLedgers(replica)
        .addAllLedgers(ledgers);
    sums.values().forEach(report::addRecords);
    return report.build();
  }

  private static void merge(UsageRecord.Builder record, Cell cell) {
    long errors = 0;
    for (Status.Code code : CODES) {
      long n = cell.requests[code.ordinal()].sum();
      if (n > 0 && code != Status.Code.OK) {
        record.putErrors(code.name(), record.getErrorsOrDefault(code.name(), 0) + n);
        errors += n;
      }
    }
    record.setRequests(record.getRequests() + cell.requests())
        .setErrorCount(record.getErrorCount() + errors)
        .setRows(record.getRows() + cell.rows.sum())
        .setBytesIn(record.getBytesIn() + cell.bytesIn.sum())
        .setBytesOut(record.getBytesOut() + cell.bytesOut.sum())
        .setComputeSeconds(record.getComputeSeconds() + cell.computeNanos.sum() / 1e9);
  }

  // ---- the ledger ----

  private void flushQuietly() {
    try {
      flush();
    } catch (IOException | RuntimeException e) {
      long heldBack = notWritten.pass();
      if (heldBack >= 0) {
        log.warn("usage ledger not written (it is tried again in {} s; said once a minute): {}{}", FLUSH_SECONDS,
            e.toString(), LogThrottle.since(heldBack));
      }
    }
  }

  /** Writes every hour that changed since it was last written. */
  public synchronized void flush() throws IOException {
    if (directory == null) {
      return;
    }
    Files.createDirectories(directory);
    JsonFormat.Printer printer = JsonFormat.printer().omittingInsignificantWhitespace().preservingProtoFieldNames();
    for (Map.Entry<Long, Map<Key, Cell>> hour : hours.entrySet()) {
      long changes = 0;
      for (Cell cell : hour.getValue().values()) {
        changes += cell.changes.sum();
      }
      if (written.getOrDefault(hour.getKey(), -1L) == changes && published.getOrDefault(hour.getKey(), -1L) == changes) {
        continue;
      }
      String name = HOUR.format(Instant.ofEpochMilli(hour.getKey() * 3_600_000L));
      StringBuilder lines = new StringBuilder();
      UsageReport.Builder shared = UsageReport.newBuilder().setSince(name).setReplica(replica);
      for (Map.Entry<Key, Cell> entry : hour.getValue().entrySet()) {
        UsageRecord.Builder record = UsageRecord.newBuilder().setHour(name).setReplica(replica)
            .setTenant(entry.getKey().tenant()).setModel(entry.getKey().model()).setVersion(entry.getKey().version());
        merge(record, entry.getValue());
        lines.append(printer.print(record)).append('\n');
        shared.addRecords(record);
      }
      if (published.getOrDefault(hour.getKey(), -1L) != changes) {
        try {
          fleet.accept(name, shared.build());
          published.put(hour.getKey(), changes);
        } catch (RuntimeException e) {
          if (stopping) {
            log.warn("usage of {} not shared with the fleet as the replica stops: {}; the ledger in the state directory"
                + " keeps it, shared when a replica of the same --replica starts within {} hours", name, e.getMessage(),
                LIVE_HOURS);
          } else {
            long heldBack = notShared.pass();
            if (heldBack >= 0) {
              log.warn("usage of {} not shared with the fleet (tried again in {} s; said once a minute): {}{}", name,
                  FLUSH_SECONDS, e.getMessage(), LogThrottle.since(heldBack));
            }
          }
        }
      }
      Path file = directory.resolve(name + "-" + replica + ".jsonl");
      Path temporary = directory.resolve("." + file.getFileName() + ".tmp");
      Files.writeString(temporary, lines, StandardCharsets.UTF_8);
      Files.move(temporary, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      written.put(hour.getKey(), changes);
    }
    retain();
    // Memory stays bounded: an hour that is over, written and shared lives on in its file only.
    long now = Math.floorDiv(clock.millis(), 3_600_000L);
    for (Long hour : List.copyOf(hours.keySet())) {
      if (hour <= now - LIVE_HOURS) {
        long changes = 0;
        for (Cell cell : hours.get(hour).values()) {
          changes += cell.changes.sum();
        }
        if (written.getOrDefault(hour, -1L) == changes && published.getOrDefault(hour, -1L) == changes) {
          hours.remove(hour);
          written.remove(hour);
          published.remove(hour);
        }
      }
    }
  }

  /**
   * Once an hour, deletes the ledger's hours older than the retention: the files in the state
   * directory, whichever replica name wrote them, and the fleet's keys. A failure is logged and
   * tried again at the next write. Writer thread (under the flush's lock).
   */
  private void retain() {
    long now = Math.floorDiv(clock.millis(), 3_600_000L);
    if (retention.isZero() || retainedAt == now) {
      return;
    }
    long keepFrom = now - Math.max(1, retention.toHours());
    String cutoff = HOUR.format(Instant.ofEpochMilli(keepFrom * 3_600_000L));
    int files = 0;
    for (LedgerFile file : ledgerFiles()) {
      if (file.hour() < keepFrom) {
        try {
          Files.deleteIfExists(file.path());
          files++;
        } catch (IOException e) {
          log.warn("usage ledger file {} is past its retention but cannot be deleted: {}", file.path(), e.toString());
        }
      }
    }
    long keys;
    try {
      keys = fleetDelete.applyAsLong(cutoff);
    } catch (RuntimeException e) {
      long heldBack = notDeleted.pass();
      if (heldBack >= 0) {
        log.warn("the fleet's usage before {} not deleted (tried again in {} s; said once a minute): {}{}", cutoff,
            FLUSH_SECONDS, e.getMessage(), LogThrottle.since(heldBack));
      }
      return;
    }
    retainedAt = now;
    if (files > 0 || keys > 0) {
      log.info("usage ledger: {} files and {} fleet hours of replicas before {} deleted (retention {} h)", files, keys, cutoff,
          retention.toHours());
    }
  }

  /** Reads this replica's recent hours of the ledger back into the hourly buckets (at start). */
  private void load() {
    long now = Math.floorDiv(clock.millis(), 3_600_000L);
    int read = 0;
    for (long hour = now - LIVE_HOURS + 1; hour <= now; hour++) {
      Map<Key, Cell> cells = readHour(hour);
      if (!cells.isEmpty()) {
        hours.put(hour, new ConcurrentHashMap<>(cells));
        read += cells.size();
      }
    }
    if (read > 0) {
      log.info("usage ledger: {} records of the last {} hours read back from {}", read, LIVE_HOURS, directory);
    }
  }

  /** One file of the ledger: {@code <hour>-<replica>.jsonl}, the hour in epoch hours. */
  record LedgerFile(Path path, long hour, String replica) {}

  /**
   * Every file of the ledger in the state directory, whichever replica name wrote it; none without
   * a ledger. Files of other names than the ledger's are left out.
   */
  List<LedgerFile> ledgerFiles() {
    List<LedgerFile> found = new ArrayList<>();
    if (directory == null || !Files.isDirectory(directory)) {
      return found;
    }
    int hourLength = "yyyy-MM-ddTHH".length();
    try (Stream<Path> files = Files.list(directory)) {
      for (Path file : files.toList()) {
        String name = file.getFileName().toString();
        if (!name.endsWith(".jsonl") || name.length() <= hourLength + 1 + ".jsonl".length() || name.charAt(hourLength) != '-') {
          continue;
        }
        try {
          long hour = Instant.from(HOUR.parse(name.substring(0, hourLength))).toEpochMilli() / 3_600_000L;
          found.add(new LedgerFile(file, hour, name.substring(hourLength + 1, name.length() - ".jsonl".length())));
        } catch (java.time.DateTimeException e) {
          // Not a ledger file.
        }
      }
    } catch (IOException e) {
      log.error("usage ledger in {} cannot be listed (its hours are missing from this report): {}", directory, e.toString());
    }
    return found;
  }

  /** This replica's ledger file of {@code hour}, as cells; empty when there is none (or no ledger). */
  private Map<Key, Cell> readHour(long hour) {
    if (directory == null) {
      return new java.util.HashMap<>();
    }
    return readFile(directory.resolve(HOUR.format(Instant.ofEpochMilli(hour * 3_600_000L)) + "-" + replica + ".jsonl"));
  }

  /** A ledger file, as cells; empty when there is none. */
  private Map<Key, Cell> readFile(Path file) {
    Map<Key, Cell> cells = new java.util.HashMap<>();
    if (!Files.isRegularFile(file)) {
      return cells;
    }
    try {
      for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
        if (line.isBlank()) {
          continue;
        }
        UsageRecord.Builder record = UsageRecord.newBuilder();
        JsonFormat.parser().merge(line, record);
        Cell cell = cells.computeIfAbsent(new Key(record.getTenant(), record.getModel(), record.getVersion()), k -> new Cell());
        long errors = 0;
        for (Map.Entry<String, Long> error : record.getErrorsMap().entrySet()) {
          cell.requests[Status.Code.valueOf(error.getKey()).ordinal()].add(error.getValue());
          errors += error.getValue();
        }
        cell.requests[Status.Code.OK.ordinal()].add(record.getRequests() - errors);
        cell.rows.add(record.getRows());
        cell.bytesIn.add(record.getBytesIn());
        cell.bytesOut.add(record.getBytesOut());
        cell.computeNanos.add(record.getComputeSeconds() * 1e9);
      }
    } catch (IOException | RuntimeException e) {
      log.error("usage ledger file {} cannot be read (its hour is missing from reports): {}", file, e.toString());
    }
    return cells;
  }

  /** Hours held in memory (for tests of the bound). */
  int hoursInMemory() {
    return hours.size();
  }

  /** Writes the ledger one last time and stops its writer. */
  @Override
  public void close() {
    if (writer != null) {
      writer.shutdownNow();
      stopping = true;
      flushQuietly();
    }
  }
}

package io.modelgate.gateway.control;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.ClientBuilder;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.DeleteOption;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.PutOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import io.etcd.jetcd.watch.WatchResponse;
import io.micrometer.core.instrument.MeterRegistry;
import io.modelgate.gateway.config.WatchedFile;
import io.modelgate.gateway.tls.ReloadingSslContext;
import io.modelgate.proto.admin.v1.AuditRecord;
import io.modelgate.proto.admin.v1.ControlStoreStatus;
import io.modelgate.proto.admin.v1.ModelControl;
import io.modelgate.proto.admin.v1.ReplicaSnapshot;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.threads.DaemonThreads;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The control store of a fleet: etcd, through the jetcd client. Under the prefix ({@code
 * /modelgate/} by default):
 *
 * <ul>
 *   <li>{@code models/<model>}: the model's {@link ModelControl} record (protobuf). A change is an
 *       etcd transaction: if the key's mod revision is still the one this replica read, put the
 *       record and the change's audit records; else read the key (the change lost to another
 *       replica's).
 *   <li>{@code audit/<time ms, 13 digits>-<replica>-<n>}: one {@link AuditRecord} each, as JSON, so
 *       that {@code etcdctl get --prefix /modelgate/audit/} reads the audit log. Keys sort by
 *       time: every replica deletes, once an hour, those older than the retention and the oldest
 *       past the most kept ({@link #applyAuditLimits}).
 *   <li>{@code judge}: the name of the replica that judges rollouts, put under that replica's
 *       lease; it expires when that replica stops renewing it (dies, or loses etcd).
 * </ul>
 *
 * <p>Every replica watches {@code models/} from the revision of its full read. Its own thread
 * ({@code modelgate-control-store}) delivers the watch's changes, checks every {@code
 * probeInterval} that etcd answers (a read of the judge's key), campaigns for that key when it is
 * free, renews the judge's lease and the replica's at a third of their TTL, and after any outage
 * (or a watch error) reads every record again and watches from that read's revision, so that no
 * change is missed. The same thread tries a password newly read from the password file and, once
 * etcd accepts it, replaces the client: other threads read the client in use (a volatile field)
 * once per operation. While etcd cannot be reached, {@link #status} says so and since when, changes
 * are refused with UNAVAILABLE, and traffic keeps the routing last applied.
 *
 * <p>What a replica follows besides ({@link #follow}, {@link EtcdTopics}: {@code access}, {@code
 * diagnostics}, {@code drift-baselines/}, {@code drift-sketch-asks/}) is watched too, each topic from the revision of a
 * read made as its watch starts, and its followers told of each change at once; they read it whole
 * on their own threads. The store thread starts these watches again, and tells every follower,
 * whenever it watches {@code models/} anew (after an outage, a watch error or a new password), and
 * tells every follower once every {@link ControlSettings#rereadEvery} while etcd answers, in case a
 * watch went quiet without failing.
 */
public final class EtcdControlStore implements ControlStore {
  private static final Logger log = LoggerFactory.getLogger(EtcdControlStore.class);

  private final ControlSettings settings;
  /** Where connections are made: the endpoints, timeouts and TLS; the password set per connection. */
  private final ClientBuilder builder;
  /** The password file followed, null where the password is fixed. */
  private final WatchedFile<Password> passwordFile;
  /** The client every operation uses: replaced (on the store thread) once a new password works. */
  private volatile Connection connection;
  /** A client with a password newly read, tried at every probe until etcd accepts it. Store thread. */
  private Connection pending;
  /** Whether {@link #pending} is set, for {@link #passwordPending()}. */
  private volatile boolean passwordPending;
  /** The client replaced last, closed once the operations begun on it have ended. Store thread. */
  private Connection retired;
  private final ByteSequence modelsPrefix;
  private final ByteSequence judgeKey;
  private final String auditPrefix;
  private final String statsPrefix;
  private final String usagePrefix;
  private final ByteSequence accessKey;
  private final ByteSequence diagnosticsKey;
  /** {@code <prefix>drift-baselines/<model>/<version>}: the latest drift reference asked of every replica. */
  private final String driftBaselinesPrefix;
  /** The fleet's drift references as last read, by key: each read again once written again. Any thread. */
  private final Map<String, ReadAsk> driftBaselinesRead = new java.util.concurrent.ConcurrentHashMap<>();
  private final String driftAsksPrefix;
  private final String driftSketchesPrefix;
  private final String target;
  private final long timeoutMs;
  private final ScheduledExecutorService thread;
  /** The TLS context that follows the CA and client certificate files; null without those. */
  private final ReloadingSslContext tls;
  private final AtomicLong auditSequence = new AtomicLong();
  /** Whether etcd refused this replica's last write for want of space (its NOSPACE alarm). */
  private volatile boolean outOfSpace;
  private final Clock clock;
  /** The judge's compaction of etcd's history, and every replica's deletion of old audit records. */
  private final EtcdUpkeep upkeep;

  private volatile long downSinceMs;
  private volatile String error = "";
  /** The newest etcd revision whose changes this replica has delivered. Store thread. */
  private volatile long appliedRevision;
  /**
   * The models whose records this replica has been given (by a read or the watch) and not told
   * deleted since: a full read tells it of those deleted while it was not watching. Read and
   * written by {@link #load} before the watch starts, then on the store's thread only.
   */
  private final java.util.Set<String> given = new java.util.HashSet<>();
  /** This replica's lease and, while it judges, the judge's; the campaign for the judge's key. */
  private final EtcdLeases leases;
  /** Store thread only from here on. */
  private Consumer<Map<String, Stored>> listener;
  private Watch.Watcher watcher;
  /**
   * How many watches of the records have been started: what a watch replaced since tells (an error
   * as etcd came back, a response already read whole) is dropped. Store thread.
   */
  private long watchesStarted;
  /** What this replica follows besides the models' records, and its watches ({@link #follow}). */
  private final EtcdTopics topics;
  private boolean resync;
  /** Set by {@link #leave}: the store thread stops and nothing more is handed to it. */
  private volatile boolean closed;
  /** Set by {@link #close}; guarded by this. */
  private boolean connectionsClosed;

  /** A password; its text is never shown (the file watcher logs what it reads). */
  private record Password(String text) {
    @Override
    public String toString() {
      return "a password (not shown)";
    }
  }

  /** One jetcd client and what hangs off it, made with one password. */
  private record Connection(Client client, KV kv, EtcdReconnect reconnect, Password password) {
    void close() {
      client.close();
    }
  }

  /**
   * Connects (lazily: the first request connects) to {@code settings}' etcd. Over TLS with a CA
   * or client certificate file, those files are followed: a renewed certificate, key or CA is
   * checked and used for every connection to etcd from then on (the connection open then keeps
   * its handshake until it ends), and {@code registry} gets its expiry and reload failures under
   * the port label {@code etcd}. A password file is followed too: a new password is tried at every
   * probe and used by every operation from the moment etcd accepts it (until then the one in use
   * stays), and an unreadable or empty file is counted as {@code
   * modelgate_config_reload_failures_total{file="etcd password"}}.
   *
   * @throws IOException when those files cannot be read or used, naming the file
   */
  public EtcdControlStore(ControlSettings settings, MeterRegistry registry, Clock clock) throws IOException {
    if (!settings.etcd()) {
      throw new IllegalArgumentException("no etcd endpoints");
    }
    this.settings = settings;
    this.clock = clock;
    this.target =
        settings.etcdEndpoints().stream().map(URI::toString).collect(Collectors.joining(",")) + " prefix " + settings.prefix();
    this.timeoutMs = settings.timeout().toMillis();
    ClientBuilder builder =
        Client.builder()
            .endpoints(settings.etcdEndpoints().toArray(URI[]::new))
            .connectTimeout(settings.timeout())
            .retryMaxDuration(settings.timeout())
            .keepaliveTime(java.time.Duration.ofSeconds(10))
            .keepaliveTimeout(settings.timeout())
            .waitForReady(false);
    if (settings.user() != null) {
      builder.user(bytes(settings.user()));
    }
    boolean https = settings.etcdEndpoints().get(0).getScheme().equals("https");
    this.tls = https && (settings.trustedCa() != null || settings.clientCertificate() != null)
        ? ReloadingSslContext.openClient("etcd", settings.trustedCa(), settings.clientCertificate(), settings.clientKey(), clock)
            .bindTo(registry)
        : null;
    if (tls != null) {
      builder.sslContext(tls);
    } else if (https) {
      builder.sslContext(io.grpc.netty.GrpcSslContexts.forClient().build());
    }
    this.builder = builder;
    WatchedFile<Password> followed = null;
    try {
      if (settings.passwordFile() != null) {
        followed = WatchedFile.open("etcd password", settings.passwordFile(), EtcdControlStore::readPassword)
            .countFailures(registry);
      }
      this.connection = connect(followed != null ? followed.get()
          : settings.password() != null ? new Password(settings.password()) : null);
    } catch (WatchedFile.InvalidFileException | IOException | RuntimeException e) {
      if (followed != null) {
        followed.close();
      }
      if (tls != null) {
        tls.close();
      }
      if (e instanceof RuntimeException runtime) {
        throw runtime;
      }
      throw new IOException(e instanceof WatchedFile.InvalidFileException ? e.getMessage()
          : "etcd password file " + settings.passwordFile() + " cannot be read: " + e, e);
    }
    this.passwordFile = followed;
    this.modelsPrefix = bytes(settings.prefix() + "models/");
    this.judgeKey = bytes(settings.prefix() + "judge");
    this.auditPrefix = settings.prefix() + "audit/";
    this.statsPrefix = settings.prefix() + "stats/";
    this.usagePrefix = settings.prefix() + "usage/";
    this.accessKey = bytes(settings.prefix() + "access");
    this.diagnosticsKey = bytes(settings.prefix() + "diagnostics");
    this.driftBaselinesPrefix = settings.prefix() + "drift-baselines/";
    this.driftAsksPrefix = settings.prefix() + "drift-sketch-asks/";
    this.driftSketchesPrefix = settings.prefix() + "drift-sketches/";
    this.leases = new EtcdLeases(settings, judgeKey, this::await, () -> downSinceMs != 0);
    this.upkeep = new EtcdUpkeep(settings, clock, registry, () -> connection.kv(), this::await, e -> unreachable(e, ""),
        leases::judges, judgeKey, auditPrefix);
    this.topics = new EtcdTopics(Map.of(
        Topic.ACCESS, new EtcdTopics.Key(accessKey, false),
        Topic.DIAGNOSTICS, new EtcdTopics.Key(diagnosticsKey, false),
        Topic.DRIFT_BASELINES, new EtcdTopics.Key(bytes(driftBaselinesPrefix), true),
        Topic.DRIFT_SKETCH_ASKS, new EtcdTopics.Key(bytes(driftAsksPrefix), true)));
    this.thread =
        DaemonThreads.scheduled("modelgate-control-store");
  }

  private static Password readPassword(Path file) throws IOException, WatchedFile.InvalidFileException {
    String text = Files.readString(file).strip();
    if (text.isEmpty()) {
      throw new WatchedFile.InvalidFileException("empty (expected: the etcd password)");
    }
    return new Password(text);
  }

  /** A client with {@code password} (null: none); it connects at its first request. */
  private Connection connect(Password password) {
    ClientBuilder copy = builder.copy();
    if (password != null) {
      copy.password(bytes(password.text()));
    }
    Client client = copy.build();
    return new Connection(client, client.getKVClient(), EtcdReconnect.of(client), password);
  }

  private static ByteSequence bytes(String s) {
    return ByteSequence.from(s, StandardCharsets.UTF_8);
  }

  private String model(ByteSequence key) {
    return key.toString(StandardCharsets.UTF_8).substring(settings.prefix().length() + "models/".length());
  }

  /** One request to etcd waited for within the store's timeout, its failure said as an IOException. */
  interface Await {
    <T> T await(CompletableFuture<T> request) throws IOException;
  }

  private <T> T await(CompletableFuture<T> future) throws IOException {
    try {
      return future.get(timeoutMs, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      future.cancel(true);
      throw new IOException("interrupted", e);
    } catch (TimeoutException e) {
      future.cancel(true);
      throw new IOException("no answer from etcd within " + timeoutMs + " ms", e);
    } catch (ExecutionException e) {
      Throwable cause = e.getCause() == null ? e : e.getCause();
      String message = cause.getMessage() == null ? cause.toString() : cause.getMessage();
      if (message.startsWith("UNAUTHENTICATED") && settings.user() != null) {
        message += ": etcd refuses user '" + settings.user() + "' with this password"
            + (settings.passwordFile() != null ? " (from " + settings.passwordFile() + ")" : "");
      }
      throw new IOException(message, cause);
    }
  }

  @Override
  public Map<String, Stored> load() throws IOException {
    try {
      return readAll();
    } catch (IOException e) {
      throw new IOException("the control store etcd " + target + " cannot be read: " + e.getMessage()
          + " (a replica starts only with the fleet's routing; start etcd, or check --control-store)", e);
    }
  }

  /** Reads every record; the read's revision becomes the applied revision. */
  private Map<String, Stored> readAll() throws IOException {
    GetResponse response = await(connection.kv().get(modelsPrefix, GetOption.builder().isPrefix(true).build()));
    Map<String, Stored> records = new LinkedHashMap<>();
    for (KeyValue kv : response.getKvs()) {
      Stored stored = parse(kv);
      if (stored != null) {
        records.put(stored.control().getModel(), stored);
      }
    }
    appliedRevision = Math.max(appliedRevision, response.getHeader().getRevision());
    for (String model : given) {
      if (!records.containsKey(model)) {
        // Deleted while this replica was not watching (an outage, a failed watch).
        records.put(model, new Stored(ModelControl.newBuilder().setModel(model).build(), 0));
      }
    }
    given.clear();
    for (Map.Entry<String, Stored> record : records.entrySet()) {
      if (record.getValue().revision() != 0) {
        given.add(record.getKey());
      }
    }
    return records;
  }

  private Stored parse(KeyValue kv) {
    String model = model(kv.getKey());
    try {
      ModelControl control = ModelControl.parseFrom(kv.getValue().getBytes()).toBuilder().setModel(model).build();
      return new Stored(control, kv.getModRevision());
    } catch (InvalidProtocolBufferException e) {
      log.error("etcd key {} is not a modelgate record ({}); ignored", kv.getKey(), e.getMessage());
      return null;
    }
  }

  @Override
  public long commit(ModelControl next, long expectedRevision, List<AuditRecord> audit) {
    return replace(next.getModel(), next, expectedRevision, audit);
  }

  @Override
  public void forget(String model, long expectedRevision, AuditRecord audit) {
    replace(model, null, expectedRevision, List.of(audit));
  }

  /**
   * Writes ({@code next}) or deletes (null) {@code model}'s record by compare-and-swap, with its
   * audit records in the same transaction; the store revision written at.
   */
  private long replace(String model, ModelControl next, long expectedRevision, List<AuditRecord> audit) {
    ByteSequence key = bytes(settings.prefix() + "models/" + model);
    Cmp unchanged =
        expectedRevision == 0
            ? new Cmp(key, Cmp.Op.EQUAL, CmpTarget.version(0))
            : new Cmp(key, Cmp.Op.EQUAL, CmpTarget.modRevision(expectedRevision));
    List<Op> ops = new ArrayList<>(audit.size() + 1);
    if (next == null) {
      ops.add(Op.delete(key, DeleteOption.DEFAULT));
      // A model forgotten takes its versions' fleet drift references with it (a model of that name
      // added later is another model).
      ops.add(Op.delete(bytes(driftBaselinesPrefix(model)), DeleteOption.builder().isPrefix(true).build()));
    } else {
      ops.add(Op.put(key, ByteSequence.from(next.toByteArray()), PutOption.DEFAULT));
    }
    for (AuditRecord record : audit) {
      ops.add(auditPut(record));
    }
    TxnResponse response;
    reconnectBeforeChange();
    try {
      response = await(connection.kv().txn().If(unchanged).Then(ops.toArray(Op[]::new)).Else(Op.get(key, GetOption.DEFAULT)).commit());
    } catch (IOException e) {
      throw writeFailed(e, outOfSpace(e) ? "; traffic keeps the routing last applied"
          : "; changes are refused until it returns (if this one reached etcd before the failure, it"
              + " is applied when the store returns: read the routing again before retrying); traffic"
              + " keeps the routing last applied");
    }
    wrote();
    if (response.isSucceeded()) {
      return response.getHeader().getRevision();
    }
    List<KeyValue> kvs = response.getGetResponses().get(0).getKvs();
    Stored current = kvs.isEmpty() ? null : parse(kvs.get(0));
    throw new Conflict(current != null ? current : new Stored(ModelControl.newBuilder().setModel(model).build(), 0));
  }

  private Op auditPut(AuditRecord record) {
    AuditRecord stamped = record.toBuilder().setReplica(settings.replica()).build();
    String key = String.format("%s%013d-%s-%d", auditPrefix, stamped.getTimeMs(), settings.replica(), auditSequence.incrementAndGet());
    try {
      return Op.put(bytes(key), bytes(JsonFormat.printer().omittingInsignificantWhitespace().print(stamped)), PutOption.DEFAULT);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException(e);
    }
  }

  @Override
  public void audit(AuditRecord record) {
    reconnectBeforeChange();
    try {
      await(connection.kv().txn().Then(auditPut(record)).commit());
      wrote();
    } catch (IOException e) {
      throw writeFailed(e, "");
    }
  }

  @Override
  public void watch(Consumer<Map<String, Stored>> changes) {
    thread.execute(() -> {
      listener = changes;
      startWatch();
    });
    long every = settings.probeInterval().toMillis();
    thread.scheduleWithFixedDelay(this::probe, every, every, TimeUnit.MILLISECONDS);
    long reread = settings.rereadEvery().toMillis();
    thread.scheduleWithFixedDelay(this::tellWhileUp, reread, reread, TimeUnit.MILLISECONDS);
    upkeep.scheduleOn(thread);
  }

  /** {@link EtcdUpkeep#compactHistory}: the judge compacts etcd's history (the store's thread on its schedule; tests). */
  public long compactHistory() {
    return upkeep.compactHistory();
  }

  /** {@link EtcdUpkeep#applyAuditLimits}: the audit records past the retention and the most kept deleted (tests). */
  public long applyAuditLimits() {
    return upkeep.applyAuditLimits(EtcdUpkeep.AUDIT_DELETE_CHUNK);
  }

  /** {@link #applyAuditLimits()}, reading and deleting at most {@code chunk} keys a request. */
  long applyAuditLimits(long chunk) {
    return upkeep.applyAuditLimits(chunk);
  }

  /**
   * Watches the records from the revision after the last one delivered, in place of the watch
   * before. Store thread.
   */
  private void startWatch() {
    if (watcher != null) {
      watcher.close();
    }
    WatchOption option = WatchOption.builder().isPrefix(true).withRevision(appliedRevision + 1).build();
    long number = ++watchesStarted;
    watcher =
        connection.client().getWatchClient().watch(modelsPrefix, option, Watch.listener(
            response -> onStoreThread(() -> {
              if (number == watchesStarted) {
                deliver(response);
              }
            }),
            failure -> onStoreThread(() -> {
              if (number != watchesStarted) {
                return; // told by a watch replaced since (as etcd came back, say): no news
              }
              if (!resync) {
                log.warn("watch of the control store failed ({}); it will be read again whole", failure.toString());
              }
              resync = true;
            })));
  }

  @Override
  public void follow(Topic topic, java.util.concurrent.Executor executor, Runnable reread) {
    EtcdTopics.Follower follower = topics.add(topic, executor, reread);
    onStoreThread(() -> {
      if (topics.watching(topic)) {
        follower.tell();
      } else {
        startFollowing(topic);
      }
    });
  }

  /**
   * Watches {@code topic} from the revision of a read made now (a count of its keys, no values)
   * and tells its followers. Where etcd does not answer, the probe starts it again once etcd is back
   * (false). Store thread.
   */
  private boolean startFollowing(Topic topic) {
    long revision;
    try {
      revision = await(connection.kv().get(topics.key(topic), topics.count(topic))).getHeader().getRevision();
    } catch (IOException | RuntimeException e) {
      resync = true; // watched from the probe that finds etcd answering
      return false;
    }
    topics.watch(topic, connection.client().getWatchClient(), revision, this::onStoreThread, failure -> {
      if (!resync) {
        log.warn("watch of the control store's {} failed ({}); it will be watched again",
            topics.key(topic).toString(StandardCharsets.UTF_8).substring(settings.prefix().length()), failure.toString());
      }
      resync = true;
    });
    return true;
  }

  /** Starts the watch of every topic followed, and tells every follower. Store thread. */
  private void startFollowingAll() {
    for (Topic topic : topics.followed()) {
      if (!startFollowing(topic)) {
        return; // the rest with it, once etcd answers
      }
    }
  }

  /** Tells every follower to read again, while etcd answers (once it is back, it is told anyway). Store thread. */
  private void tellWhileUp() {
    if (downSinceMs == 0) {
      topics.tellAll();
    }
  }

  /** Runs {@code task} on the store's thread, unless the store is closed. */
  private void onStoreThread(Runnable task) {
    if (closed) {
      return;
    }
    try {
      thread.execute(task);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // Closed meanwhile.
    }
  }

  /** Hands one watch response's records to the listener. Store thread. */
  private void deliver(WatchResponse response) {
    Map<String, Stored> changed = new LinkedHashMap<>();
    for (WatchEvent event : response.getEvents()) {
      KeyValue kv = event.getKeyValue();
      if (kv.getModRevision() <= appliedRevision) {
        // Delivered already, by a full read.
        continue;
      }
      if (event.getEventType() == WatchEvent.EventType.DELETE) {
        String model = model(kv.getKey());
        given.remove(model);
        changed.put(model, new Stored(ModelControl.newBuilder().setModel(model).build(), 0));
      } else if (event.getEventType() == WatchEvent.EventType.PUT) {
        Stored stored = parse(kv);
        if (stored != null) {
          given.add(stored.control().getModel());
          changed.put(stored.control().getModel(), stored);
        }
      }
      appliedRevision = Math.max(appliedRevision, kv.getModRevision());
    }
    if (!changed.isEmpty() && listener != null) {
      listener.accept(changed);
    }
  }

  /**
   * Checks that etcd answers (reading the judge's key), renews or campaigns for the judge's lease,
   * and after an outage or a watch error reads everything again and watches anew. Store thread.
   */
  private void probe() {
    if (closed) {
      return;
    }
    tryNewPassword();
    reconnectIfDown();
    try {
      GetResponse judgeRecord = await(connection.kv().get(judgeKey));
      boolean wasDown = downSinceMs != 0;
      up();
      if (wasDown || resync) {
        Map<String, Stored> all = readAll();
        resync = false;
        startWatch();
        startFollowingAll();
        if (listener != null) {
          listener.accept(all);
        }
        log.info("control store etcd {} reached again: {} records read whole at revision {}", target, all.size(), appliedRevision);
      }
      leases.renewReplicaLease(connection.client());
      leases.campaign(connection.client(), connection.kv(), judgeRecord);
    } catch (IOException | RuntimeException e) {
      if (e instanceof IOException io && outOfSpace(io)) {
        // Etcd answers but takes no write (a new judge's lease, say): not down.
        writeFailed(io, "");
      } else {
        down(e);
      }
      leases.stepDown();
    } catch (Error e) {
      // A scheduled task that throws is never run again: keep probing unless the JVM is failing.
      if (e instanceof VirtualMachineError) {
        throw e;
      }
      log.error("control store probe failed", e);
      down(new IOException(e.toString(), e));
      leases.stepDown();
    }
  }

  /**
   * When the password file holds a password other than the one in use, tries it (a read that
   * authenticates a client made with it) and, once etcd accepts it, makes every operation use it
   * and closes the client before, after the longest an operation begun on it waits. Until then the
   * client in use stays: a password file can be changed before or after the password in etcd.
   * Store thread.
   */
  private void tryNewPassword() {
    if (passwordFile == null) {
      return;
    }
    Password read = passwordFile.get();
    if (pending != null && !pending.password().equals(read)) {
      pending.close();
      pending = null;
    }
    if (read.equals(connection.password())) {
      passwordPending = false;
      return;
    }
    boolean first = pending == null;
    passwordPending = true;
    if (first) {
      pending = connect(read);
    }
    try {
      await(pending.kv().get(judgeKey));
    } catch (IOException e) {
      if (first) {
        log.warn("the etcd password file {} holds a new password, which etcd refuses for now ({}); the password in"
            + " use stays until etcd accepts the new one (tried every {} ms)", passwordFile.file(), e.getMessage(),
            settings.probeInterval().toMillis());
      }
      return;
    }
    if (retired != null) {
      retired.close();
    }
    retired = connection;
    connection = pending;
    pending = null;
    passwordPending = false;
    log.info("etcd accepted the new password from {}; every request to etcd uses it from now on", passwordFile.file());
    if (listener != null) {
      startWatch();
    }
    startFollowingAll();
    Connection before = retired;
    thread.schedule(() -> {
      if (retired == before) {
        retired = null;
        before.close();
      }
    }, 2 * timeoutMs, TimeUnit.MILLISECONDS);
  }

  /**
   * While etcd is found down, every probe tries to connect at once (see {@link EtcdReconnect}): a
   * replica finds etcd back at its next probe however long the outage was. Store thread.
   */
  private void reconnectIfDown() {
    if (downSinceMs != 0) {
      connection.reconnect().now();
    }
  }

  /**
   * While etcd is found down, an operator's change tries to connect at once and waits for the
   * connection, at most the store's timeout, before it is sent: without the wait a change made
   * moments after etcd returns, before the channel has connected, would be refused without trying.
   * While etcd stays down the change is refused after that wait. Admin threads (they already wait
   * up to the timeout for etcd's answer).
   */
  private void reconnectBeforeChange() {
    if (downSinceMs != 0) {
      try {
        connection.reconnect().nowAndAwaitConnected(timeoutMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Whether {@code e} is etcd refusing a write for want of space (its NOSPACE alarm is raised). */
  private static boolean outOfSpace(IOException e) {
    return String.valueOf(e.getMessage()).contains("database space exceeded");
  }

  /** A write succeeded: etcd is up, and has room. */
  private void wrote() {
    outOfSpace = false;
    up();
  }

  /**
   * The failure a write that failed with {@code e} is answered with (UNAVAILABLE), {@code after}
   * appended to its message. Etcd out of space answers: the store is up but takes no write until
   * an operator frees it, and says how; anything else is the store found down.
   */
  private InferenceException writeFailed(IOException e, String after) {
    if (!outOfSpace(e)) {
      down(e);
      return unreachable(e, after);
    }
    if (!outOfSpace) {
      outOfSpace = true;
      log.error("control store etcd {} is out of space and refuses every write: {}", target, OUT_OF_SPACE);
    }
    return InferenceException.unavailable("the control store (etcd " + target + ") is out of space and refuses every"
        + " write (" + e.getMessage() + "): " + OUT_OF_SPACE + after);
  }

  /** UNAVAILABLE: etcd could not be reached for a request that failed with {@code e}, {@code after} appended. */
  private InferenceException unreachable(IOException e, String after) {
    return InferenceException.unavailable("the control store (etcd " + target + ") cannot be reached: " + e.getMessage() + after);
  }

  /** What an operator does about etcd out of space. */
  static final String OUT_OF_SPACE = "its database reached its quota (--quota-backend-bytes) and its NOSPACE alarm is"
      + " raised; changes are refused until an operator frees it: etcdctl compact, etcdctl defrag, etcdctl alarm"
      + " disarm (the operator's guide, Operating etcd)";

  private void up() {
    if (downSinceMs != 0) {
      log.info("control store etcd {} reachable again after {} ms", target, System.currentTimeMillis() - downSinceMs);
    }
    downSinceMs = 0;
    error = "";
  }

  private void down(Exception e) {
    if (closed) {
      return;
    }
    leases.renewAtNextProbe();
    if (downSinceMs == 0) {
      downSinceMs = System.currentTimeMillis();
      log.error("control store etcd {} unreachable: {}; changes are refused, traffic keeps the routing last applied",
          target, e.getMessage());
    }
    error = String.valueOf(e.getMessage());
  }

  @Override
  public ControlStoreStatus status() {
    long since = downSinceMs;
    return ControlStoreStatus.newBuilder()
        .setKind("etcd")
        .setTarget(target)
        .setUp(since == 0)
        .setDownSinceMs(since)
        .setError(error)
        .setAppliedRevision(appliedRevision)
        .setJudge(leases.judgeName())
        .setOutOfSpace(outOfSpace)
        .build();
  }

  @Override
  public void publish(ReplicaSnapshot snapshot) {
    long lease = leases.replicaLease();
    if (lease == 0) {
      throw InferenceException.unavailable("no replica lease yet (the control store etcd " + target + " was not reached)");
    }
    try {
      await(connection.kv().put(snapshotKey(snapshot.getModel(), snapshot.getVersion()),
          ByteSequence.from(snapshot.toByteArray()), PutOption.builder().withLeaseId(lease).build()));
      // Every 2 s a version: this write finds etcd out of space, and finds it freed, within seconds.
      outOfSpace = false;
    } catch (IOException e) {
      throw outOfSpace(e) ? writeFailed(e, "")
          : unreachable(e, "");
    }
  }

  @Override
  public void unpublish(String model, long version) {
    try {
      await(connection.kv().delete(snapshotKey(model, version)));
    } catch (IOException e) {
      throw unreachable(e, "");
    }
  }

  /** This replica's snapshot of {@code version} of {@code model}. */
  private ByteSequence snapshotKey(String model, long version) {
    return bytes(statsPrefix + model + "/" + version + "/" + settings.replica());
  }

  @Override
  public StoredAccess access() {
    KeyValue value = read(accessKey);
    if (value == null) {
      return StoredAccess.NONE;
    }
    try {
      return new StoredAccess(io.modelgate.proto.admin.v1.ManagedAccess.parseFrom(value.getValue().getBytes()),
          value.getModRevision());
    } catch (InvalidProtocolBufferException e) {
      throw InferenceException.internal("etcd key " + accessKey + " is not modelgate's managed access: " + e.getMessage(), e);
    }
  }

  @Override
  public long commitAccess(io.modelgate.proto.admin.v1.ManagedAccess next, long expectedRevision, AuditRecord audit) {
    long revision = compareAndPut(accessKey, next.toByteArray(), expectedRevision, audit);
    if (revision < 0) {
      throw new AccessConflict();
    }
    return revision;
  }

  @Override
  public StoredDiagnostics diagnostics() {
    KeyValue value = read(diagnosticsKey);
    if (value == null) {
      return StoredDiagnostics.NONE;
    }
    try {
      return new StoredDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics.parseFrom(value.getValue().getBytes()),
          value.getModRevision());
    } catch (InvalidProtocolBufferException e) {
      throw InferenceException.internal("etcd key " + diagnosticsKey + " is not modelgate's fleet diagnostics: "
          + e.getMessage(), e);
    }
  }

  @Override
  public long commitDiagnostics(io.modelgate.proto.admin.v1.FleetDiagnostics next, long expectedRevision,
      AuditRecord audit) {
    long revision = compareAndPut(diagnosticsKey, next.toByteArray(), expectedRevision, audit);
    if (revision < 0) {
      throw new DiagnosticsConflict();
    }
    return revision;
  }

  /** {@code key}'s value now, or null where it has none. */
  private KeyValue read(ByteSequence key) {
    GetResponse response;
    try {
      response = await(connection.kv().get(key));
    } catch (IOException e) {
      throw unreachable(e, "");
    }
    return response.getKvs().isEmpty() ? null : response.getKvs().get(0);
  }

  /**
   * Puts {@code value} at {@code key} with {@code audit}, in one transaction, if the key is still
   * at {@code expectedRevision} (0: absent); returns the new revision, or -1 where another change
   * came first.
   */
  private long compareAndPut(ByteSequence key, byte[] value, long expectedRevision, AuditRecord audit) {
    Cmp unchanged = expectedRevision == 0
        ? new Cmp(key, Cmp.Op.EQUAL, CmpTarget.version(0))
        : new Cmp(key, Cmp.Op.EQUAL, CmpTarget.modRevision(expectedRevision));
    TxnResponse response;
    reconnectBeforeChange();
    try {
      response = await(connection.kv().txn().If(unchanged)
          .Then(Op.put(key, ByteSequence.from(value), PutOption.DEFAULT), auditPut(audit))
          .commit());
    } catch (IOException e) {
      throw writeFailed(e, outOfSpace(e) ? "; the change was not made" : ", so the change was not made");
    }
    wrote();
    return response.isSucceeded() ? response.getHeader().getRevision() : -1;
  }

  @Override
  public void putDriftBaseline(io.modelgate.proto.admin.v1.DriftBaselineAsked asked, AuditRecord audit) {
    reconnectBeforeChange();
    try {
      await(connection.kv().txn()
          .Then(Op.put(bytes(driftBaselinesPrefix + asked.getModel() + "/" + asked.getVersion()),
              ByteSequence.from(asked.toByteArray()), PutOption.DEFAULT), auditPut(audit))
          .commit());
    } catch (IOException e) {
      throw writeFailed(e, outOfSpace(e) ? "; the change was not made" : ", so the change was not made");
    }
    wrote();
  }

  /**
   * {@inheritDoc}
   *
   * <p>Reads the keys alone with the revisions they were written at, and the value of a key only
   * where it is new or written again since this replica last read it ({@link #driftBaselinesRead}):
   * a merged reference runs to some 20 KB and every replica looks every 2 s.
   */
  @Override
  public List<io.modelgate.proto.admin.v1.DriftBaselineAsked> driftBaselines(String model) {
    String prefix = driftBaselinesPrefix(model);
    List<io.modelgate.proto.admin.v1.DriftBaselineAsked> asks = new ArrayList<>();
    java.util.Set<String> present = new java.util.HashSet<>();
    try {
      Connection using = connection;
      GetResponse keys = await(using.kv().get(bytes(prefix), GetOption.builder().isPrefix(true).withKeysOnly(true).build()));
      for (KeyValue listed : keys.getKvs()) {
        String key = listed.getKey().toString(StandardCharsets.UTF_8);
        present.add(key);
        ReadAsk read = driftBaselinesRead.get(key);
        if (read == null || read.revision() != listed.getModRevision()) {
          List<KeyValue> value = await(using.kv().get(listed.getKey())).getKvs();
          if (value.isEmpty()) {
            continue; // deleted since the keys were read
          }
          read = new ReadAsk(value.get(0).getModRevision(), parseAsk(value.get(0)));
          driftBaselinesRead.put(key, read);
        }
        if (read.ask() != null) {
          asks.add(read.ask());
        }
      }
    } catch (IOException e) {
      throw unreachable(e, "");
    }
    driftBaselinesRead.keySet().removeIf(key -> key.startsWith(prefix) && !present.contains(key));
    return asks;
  }

  /** A drift reference asked of the fleet as read, at the revision it was written at; null where it does not parse. */
  private record ReadAsk(long revision, io.modelgate.proto.admin.v1.DriftBaselineAsked ask) {}

  private static io.modelgate.proto.admin.v1.DriftBaselineAsked parseAsk(KeyValue kv) {
    try {
      return io.modelgate.proto.admin.v1.DriftBaselineAsked.parseFrom(kv.getValue().getBytes());
    } catch (InvalidProtocolBufferException e) {
      log.warn("etcd key {} is not a drift reference asked of the fleet; ignored until it is written again", kv.getKey());
      return null;
    }
  }

  /** Where the fleet's drift references of {@code model} are kept ("": of every model). */
  private String driftBaselinesPrefix(String model) {
    return model.isEmpty() ? driftBaselinesPrefix : driftBaselinesPrefix + model + "/";
  }

  @Override
  public void askDriftSketches(io.modelgate.proto.admin.v1.DriftSketchesAsked asked, java.time.Duration keep) {
    // One key per ask: two asks at once from one replica each get their answers.
    putKept(driftAsksPrefix + asked.getModel() + "/" + settings.replica() + "/" + asked.getAskedAtMs(), asked.toByteArray(), keep);
  }

  @Override
  public List<io.modelgate.proto.admin.v1.DriftSketchesAsked> driftSketchAsks() {
    return readAll(bytes(driftAsksPrefix), GetOption.builder().isPrefix(true).build(),
        io.modelgate.proto.admin.v1.DriftSketchesAsked.parser(), "an ask for drift sketches");
  }

  @Override
  public void answerDriftSketches(io.modelgate.proto.admin.v1.DriftSketchesAsked asked,
      io.modelgate.proto.admin.v1.DriftSketchesAnswer answer, java.time.Duration keep) {
    putKept(driftSketchesPrefix + asked.getModel() + "/" + asked.getReplica() + "/" + asked.getAskedAtMs() + "/"
        + settings.replica(), answer.toByteArray(), keep); // read by the asker at its answersPrefix
  }

  @Override
  public java.util.Set<String> driftSketchAnswerers(String model, long askedAtMs) {
    String prefix = answersPrefix(model, askedAtMs);
    java.util.Set<String> replicas = new java.util.TreeSet<>();
    try {
      for (KeyValue kv : await(connection.kv().get(bytes(prefix), GetOption.builder().isPrefix(true).withKeysOnly(true)
          .build())).getKvs()) {
        replicas.add(kv.getKey().toString(StandardCharsets.UTF_8).substring(prefix.length()));
      }
    } catch (IOException e) {
      throw unreachable(e, "");
    }
    return replicas;
  }

  @Override
  public List<io.modelgate.proto.admin.v1.DriftSketchesAnswer> driftSketchAnswers(String model, long askedAtMs) {
    return readAll(bytes(answersPrefix(model, askedAtMs)), GetOption.builder().isPrefix(true).build(),
        io.modelgate.proto.admin.v1.DriftSketchesAnswer.parser(), "drift sketches");
  }

  /** Where the answers to this replica's ask for {@code model}'s drift sketches made at {@code askedAtMs} are kept. */
  private String answersPrefix(String model, long askedAtMs) {
    return driftSketchesPrefix + model + "/" + settings.replica() + "/" + askedAtMs + "/";
  }

  /** Puts {@code value} at {@code key} under a lease of its own that ends after {@code keep}. */
  private void putKept(String key, byte[] value, java.time.Duration keep) {
    try {
      long lease = await(connection.client().getLeaseClient().grant(Math.max(1, keep.toSeconds()))).getID();
      await(connection.kv().put(bytes(key), ByteSequence.from(value), PutOption.builder().withLeaseId(lease).build()));
    } catch (IOException e) {
      throw outOfSpace(e) ? writeFailed(e, "") : unreachable(e, "");
    }
  }

  @Override
  public void putUsage(String hour, io.modelgate.proto.admin.v1.UsageReport report) {
    try {
      await(connection.kv().put(bytes(usagePrefix + hour + "/" + settings.replica()), ByteSequence.from(report.toByteArray())));
    } catch (IOException e) {
      throw outOfSpace(e) ? writeFailed(e, "")
          : unreachable(e, "");
    }
  }

  @Override
  public long deleteUsageBefore(String hour) {
    try {
      // Keys sort by hour: the range [usage/, usage/<hour>) holds exactly the hours before it.
      return await(connection.kv().delete(bytes(usagePrefix),
          io.etcd.jetcd.options.DeleteOption.builder().withRange(bytes(usagePrefix + hour)).build())).getDeleted();
    } catch (IOException e) {
      throw unreachable(e, "");
    }
  }

  @Override
  public List<io.modelgate.proto.admin.v1.UsageReport> usage(String fromHour, String toHour) {
    // Keys sort by hour: the range [usage/<from>, usage/<to>) holds exactly those hours.
    return readAll(bytes(usagePrefix + fromHour), GetOption.builder().withRange(bytes(usagePrefix + toHour)).build(),
        io.modelgate.proto.admin.v1.UsageReport.parser(), "a usage report");
  }

  /**
   * Every value in the keys {@code option} reads from {@code key}, parsed by {@code parser}; a
   * value that does not parse is logged ({@code what} it should have been) and left out.
   *
   * @throws InferenceException UNAVAILABLE when etcd cannot be read
   */
  private <T> List<T> readAll(ByteSequence key, GetOption option, com.google.protobuf.Parser<T> parser, String what) {
    GetResponse response;
    try {
      response = await(connection.kv().get(key, option));
    } catch (IOException e) {
      throw unreachable(e, "");
    }
    List<T> values = new ArrayList<>();
    for (KeyValue kv : response.getKvs()) {
      try {
        values.add(parser.parseFrom(kv.getValue().getBytes()));
      } catch (InvalidProtocolBufferException e) {
        log.warn("etcd key {} is not {}; ignored", kv.getKey(), what);
      }
    }
    return values;
  }

  @Override
  public List<ReplicaSnapshot> snapshots(String model) {
    List<ReplicaSnapshot> snapshots = readAll(bytes(statsPrefix + (model.isEmpty() ? "" : model + "/")),
        GetOption.builder().isPrefix(true).build(), ReplicaSnapshot.parser(), "a replica snapshot");
    snapshots.removeIf(snapshot -> !model.isEmpty() && !snapshot.getModel().equals(model));
    return snapshots;
  }

  @Override
  public boolean passwordPending() {
    return passwordPending;
  }

  @Override
  public boolean shared() {
    return true;
  }

  @Override
  public boolean judges() {
    return leases.judges() && downSinceMs == 0;
  }

  /**
   * Stops the store thread (probe, watch, campaign), then gives up the judge's key and the
   * replica's lease, so that another replica takes over at once and this one's snapshots go; the
   * client stays connected for the writes still to come until {@link #close}. Idempotent.
   */
  @Override
  public synchronized void leave() {
    if (closed) {
      return;
    }
    closed = true;
    thread.shutdownNow();
    try {
      thread.awaitTermination(timeoutMs, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (watcher != null) {
      watcher.close();
    }
    topics.close();
    leases.revokeAll(connection.client(), timeoutMs);
  }

  /** Leaves (above) if it has not, then disconnects. Idempotent. */
  @Override
  public synchronized void close() {
    if (connectionsClosed) {
      return;
    }
    leave();
    connectionsClosed = true;
    for (Connection open : new Connection[] {connection, pending, retired}) {
      if (open != null) {
        open.close();
      }
    }
    if (passwordFile != null) {
      passwordFile.close();
    }
    if (tls != null) {
      tls.close();
    }
  }
}

package io.modelgate.gateway.control;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.PutOption;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * This replica's leases in etcd: its own, under which it publishes its snapshots (they go when it
 * stops renewing it), and, while it judges rollouts, the judge's, under which it holds the judge's
 * key. Each is renewed at a third of its TTL ({@link ControlSettings#judgeLease}), as etcd's own
 * clients do, not at every probe, and at the first probe after an outage; the store's probe reads
 * the judge's key (which finds an outage) and hands the read here to campaign for the key when it
 * is free. Logged under the store's logger, as operators know its lines.
 *
 * <p>Threading: {@link EtcdControlStore}'s thread campaigns, renews and revokes; {@link #judges},
 * {@link #judgeName} and {@link #replicaLease} are read from any thread, {@link #renewAtNextProbe}
 * called from whichever thread finds etcd down.
 */
final class EtcdLeases {
  private static final Logger log = LoggerFactory.getLogger(EtcdControlStore.class);

  private final ControlSettings settings;
  private final ByteSequence judgeKey;
  private final EtcdControlStore.Await etcd;
  /** Whether the store finds etcd down now. */
  private final BooleanSupplier down;
  /** A third of the leases' TTL, in nanoseconds. */
  private final long renewEveryNanos;
  private volatile boolean judge;
  private volatile String judgeName = "";
  /** The judge's lease while this replica holds it or campaigns (0: none). Store thread. */
  private long judgeLease;
  /** This replica's lease for its published snapshots (0: none yet). Written on the store thread. */
  private volatile long replicaLease;
  /** When ({@link System#nanoTime}) each lease was last renewed; 0: at the next probe. */
  private volatile long replicaRenewed;
  private volatile long judgeRenewed;

  EtcdLeases(ControlSettings settings, ByteSequence judgeKey, EtcdControlStore.Await etcd, BooleanSupplier down) {
    this.settings = settings;
    this.judgeKey = judgeKey;
    this.etcd = etcd;
    this.down = down;
    this.renewEveryNanos = settings.judgeLease().toNanos() / 3;
  }

  /** Whether this replica holds the judge's key (as its last probe found). Any thread. */
  boolean judges() {
    return judge;
  }

  /** The replica that holds the judge's key, as the last probe read it ("" before any). Any thread. */
  String judgeName() {
    return judgeName;
  }

  /** This replica's lease for its snapshots (0: none yet). Any thread. */
  long replicaLease() {
    return replicaLease;
  }

  /** Etcd found down: this replica no longer judges. Store thread. */
  void stepDown() {
    judge = false;
  }

  /** Etcd found down: both leases are renewed at the first probe that reaches it (they may have expired). */
  void renewAtNextProbe() {
    replicaRenewed = 0;
    judgeRenewed = 0;
  }

  /**
   * Keeps this replica's lease alive, or takes a new one when it expired (after an outage longer
   * than its TTL). Its snapshots expire with it. Store thread.
   */
  void renewReplicaLease(Client client) throws IOException {
    if (replicaLease != 0) {
      if (!due(replicaRenewed)) {
        return;
      }
      try {
        etcd.await(client.getLeaseClient().keepAliveOnce(replicaLease));
        replicaRenewed = System.nanoTime();
        return;
      } catch (IOException e) {
        if (down.getAsBoolean()) {
          throw e;
        }
        log.info("replica lease expired ({}); taking a new one", e.getMessage());
      }
    }
    replicaLease = etcd.await(client.getLeaseClient().grant(settings.judgeLease().toSeconds())).getID();
    replicaRenewed = System.nanoTime();
  }

  /**
   * Takes the judge's key when {@code judgeRecord} (the probe's read of it) finds it free, renews
   * the judge's lease while this replica holds it. Store thread.
   */
  void campaign(Client client, KV kv, GetResponse judgeRecord) throws IOException {
    List<KeyValue> holder = judgeRecord.getKvs();
    if (!holder.isEmpty()) {
      judgeName = holder.get(0).getValue().toString(StandardCharsets.UTF_8);
      if (judgeLease != 0 && holder.get(0).getLease() == judgeLease) {
        if (judge && !due(judgeRenewed)) {
          return; // the key is this replica's, under a lease renewed less than a third of its TTL ago
        }
        try {
          etcd.await(client.getLeaseClient().keepAliveOnce(judgeLease));
          judgeRenewed = System.nanoTime();
          judge = true;
        } catch (IOException e) {
          log.warn("judge lease {} could not be renewed ({}); this replica stops judging", judgeLease, e.getMessage());
          judge = false;
          judgeLease = 0;
        }
        return;
      }
      if (judge) {
        log.warn("replica {} judges rollouts now; this replica ({}) stops", judgeName, settings.replica());
      }
      judge = false;
      dropJudgeLease(client);
      return;
    }
    judge = false;
    dropJudgeLease(client);
    long lease = etcd.await(client.getLeaseClient().grant(settings.judgeLease().toSeconds())).getID();
    TxnResponse won =
        etcd.await(kv.txn()
            .If(new Cmp(judgeKey, Cmp.Op.EQUAL, CmpTarget.createRevision(0)))
            .Then(Op.put(judgeKey, ByteSequence.from(settings.replica(), StandardCharsets.UTF_8),
                PutOption.builder().withLeaseId(lease).build()))
            .commit());
    judgeLease = lease;
    if (won.isSucceeded()) {
      judgeRenewed = System.nanoTime();
      judge = true;
      judgeName = settings.replica();
      log.info("this replica ({}) was elected to judge rollouts (lease TTL {} s)", settings.replica(),
          settings.judgeLease().toSeconds());
    } else {
      dropJudgeLease(client);
    }
  }

  /** Whether a lease last renewed at {@code renewed} ({@link System#nanoTime}; 0: not since an outage) is due. */
  private boolean due(long renewed) {
    return renewed == 0 || System.nanoTime() - renewed >= renewEveryNanos;
  }

  /** Revokes the judge's lease this replica holds, if any, without waiting. Store thread. */
  private void dropJudgeLease(Client client) {
    if (judgeLease != 0) {
      client.getLeaseClient().revoke(judgeLease);
      judgeLease = 0;
    }
  }

  /**
   * Gives both leases up as the replica stops, so that another replica judges at once and this
   * one's snapshots go: revoked together and waited for together, so that where etcd does not
   * answer the stop waits one timeout, not two, and says so once. A lease etcd no longer has (it
   * expired while the replica was cut off) is revoked as much as it can be. The store's thread has
   * ended.
   */
  void revokeAll(Client client, long timeoutMs) {
    judge = false;
    List<CompletableFuture<Throwable>> revoked = new ArrayList<>();
    for (long lease : new long[] {judgeLease, replicaLease}) {
      if (lease != 0) {
        revoked.add(client.getLeaseClient().revoke(lease).handle((done, failure) ->
            failure == null || io.grpc.Status.fromThrowable(failure).getCode() == io.grpc.Status.Code.NOT_FOUND
                ? null : failure));
      }
    }
    String cause;
    try {
      CompletableFuture.allOf(revoked.toArray(CompletableFuture[]::new)).get(timeoutMs, TimeUnit.MILLISECONDS);
      Throwable failed = revoked.stream().map(CompletableFuture::join).filter(java.util.Objects::nonNull).findFirst()
          .orElse(null);
      if (failed == null) {
        return;
      }
      cause = (failed instanceof java.util.concurrent.CompletionException && failed.getCause() != null
          ? failed.getCause() : failed).toString();
    } catch (InterruptedException | ExecutionException | TimeoutException e) {
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
      cause = e instanceof TimeoutException ? "no answer within " + timeoutMs + " ms" : e.toString();
    }
    boolean judged = judgeLease != 0;
    log.warn("{} not revoked as the replica stops ({}); {} within {} s", judged ? "this replica's leases (as judge"
        + " and replica)" : "this replica's lease", cause, judged ? "the judge's key and its snapshots expire"
        : "its snapshots expire", settings.judgeLease().toSeconds());
  }
}

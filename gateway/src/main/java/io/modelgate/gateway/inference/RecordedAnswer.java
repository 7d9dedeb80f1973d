package io.modelgate.gateway.inference;

import io.grpc.Deadline;
import io.grpc.Status;
import io.modelgate.gateway.callers.CallerAuth;
import io.modelgate.gateway.stats.VersionStats;
import io.modelgate.proto.inference.ModelInferRequest;
import io.modelgate.proto.inference.ModelInferResponse;
import io.modelgate.runtime.error.InferenceException;
import io.modelgate.runtime.execution.InferenceCallback;
import io.modelgate.runtime.execution.InferenceResult;
import io.modelgate.runtime.repository.LoadedVersion;
import io.modelgate.runtime.repository.ModelVersion;
import io.modelgate.runtime.tensor.DecodedRequest;
import java.time.Clock;

/**
 * An answer recorded on its version's statistics: end-to-end time from {@code arrival}
 * ({@link System#nanoTime()}) to the moment it is recorded. {@code stats} is null for a version
 * that keeps none. Besides statistics it carries what the request drew at admission — payload log,
 * drift profiling, usage, quota and fair-share places, its bytes in the server's request memory,
 * classification, shadow comparison — and
 * settles each when the request is answered. Subclasses write the answer: {@link UnaryAnswer},
 * {@link StreamAnswer}, and {@link ShadowAnswer} for a shadow copy, which writes nothing.
 *
 * <p>Threading: made and filled on the event loop that admitted the request, before it is
 * published to the scheduler (which publishes it to the executor); then exactly one of
 * {@code onSuccess} or {@code onFailure} runs, on the executor thread that ran the request — or
 * {@link #answered} runs on the event loop when admission refused it.
 */
abstract class RecordedAnswer implements InferenceCallback {
  private final VersionStats stats;
  private final long arrival;
  private final Clock clock;
  private final boolean shadowCopy;

  RecordedAnswer(VersionStats stats, long arrival, Clock clock, boolean shadowCopy) {
    this.stats = stats;
    this.arrival = arrival;
    this.clock = clock;
    this.shadowCopy = shadowCopy;
  }

  /** The call's deadline, if any: a call cancelled once it passed counts as DEADLINE_EXCEEDED. */
  Deadline deadline;

  /** The outputs the request asked classified, or null. */
  Classification.Plan classification;

  /** The comparison with the shadow copy of this request, or null when none was sent. */
  ShadowComparison shadow;

  private io.modelgate.gateway.health.PayloadLog payloadLog;
  private io.modelgate.gateway.health.PayloadLog.Sample payload;

  /** Draws this request into its model's payload log (when {@code sample} is not null). */
  final void payload(io.modelgate.gateway.health.PayloadLog log, io.modelgate.gateway.health.PayloadLog.Sample sample) {
    this.payloadLog = log;
    this.payload = sample;
  }

  private io.modelgate.gateway.health.Drift drift;
  private ModelVersion driftVersion;
  private LoadedVersion driftLoaded;
  /** The inputs of a request drawn for drift profiling, set before it is queued; else null. */
  private io.modelgate.runtime.tensor.InputTensor[] driftInputs;

  /** Draws this request for drift profiling (when the version's model profiles drift). */
  final void drift(io.modelgate.gateway.health.Drift monitor, ModelVersion version, LoadedVersion loaded) {
    if (monitor.sampled(loaded)) {
      this.drift = monitor;
      this.driftVersion = version;
      this.driftLoaded = loaded;
    }
  }

  private io.modelgate.gateway.usage.Usage usage;
  private String tenant;
  private ModelVersion usageVersion;
  private long bytesIn;
  private int rows = 1;
  private String requestId;

  /** Counts this request for {@code tenant} when it is answered. */
  final void usage(io.modelgate.gateway.usage.Usage counter, String tenant, ModelVersion version, long bytesIn, String id) {
    this.requestId = id;
    this.usage = counter;
    this.tenant = tenant;
    this.usageVersion = version;
    this.bytesIn = bytesIn;
  }

  private io.modelgate.gateway.tracing.Tracing tracing;
  private io.modelgate.gateway.tracing.Tracing.Traced traced;

  /** Records this request as a span of {@code traced} when it is answered. */
  final void trace(io.modelgate.gateway.tracing.Tracing tracing, io.modelgate.gateway.tracing.Tracing.Traced traced) {
    this.tracing = tracing;
    this.traced = traced;
  }

  /** The RPC this answer answers, as a span names it. */
  String method() {
    return UnaryAnswer.METHOD;
  }

  /** Called with the decoded request before it is queued (so before any answer). */
  final void decoded(DecodedRequest decoded) {
    rows = Math.max(1, decoded.rows());
    if (drift != null) {
      driftInputs = decoded.inputs();
    }
  }

  private io.modelgate.gateway.callers.Quotas.Admission admission;
  private io.modelgate.gateway.callers.FairShare.Place place;

  /**
   * Admits the request under its tenant's quota (rows: the first input's first dimension when the
   * model batches, else 1) and its fair share of the version's queue at its tenant's weight ({@link
   * #weight}), or throws RESOURCE_EXHAUSTED; both are released when it is answered.
   */
  final void admit(io.modelgate.gateway.callers.Quotas quotas, io.modelgate.gateway.callers.FairShare fairShare,
      CallerAuth.Caller caller, ModelVersion version, LoadedVersion loaded, ModelInferRequest request) {
    int requestRows = 1;
    if (request.getInputsCount() > 0 && request.getInputs(0).getShapeCount() > 0) {
      requestRows = (int) Math.max(1, Math.min(Integer.MAX_VALUE, request.getInputs(0).getShape(0)));
    }
    memoryTenant = caller.entry() == null ? null : caller.tenant();
    weight = quotas.weight(caller);
    admission = quotas.admit(caller, requestRows);
    try {
      place = fairShare.admit(caller, weight, version, loaded);
    } catch (InferenceException e) {
      admission.release();
      admission = null;
      throw e;
    }
  }

  /** The tenant whose share of the request memory the request counts in ({@link #admit}); null: none. */
  private String memoryTenant;
  /** Its tenant's weight where tenants contend ({@link #admit}; 1 before, or for no tenant). */
  private int weight = 1;

  /** The request's tenant's weight where tenants contend, as admitted (1 for no tenant). */
  final int weight() {
    return weight;
  }
  private RequestMemory memory;
  private RequestMemory.Tenant heldFor;
  private long heldBytes;

  /**
   * Holds the request's {@code bytes} in {@code memory} until it is answered, or throws
   * RESOURCE_EXHAUSTED (asking for a retry at {@code loaded}'s pace) when that would pass the limit
   * — the whole of it for a tenant with nothing else waiting for the version ({@link #admit} first)
   * or within its share of the rest, three quarters for the others.
   */
  final void hold(RequestMemory memory, long bytes, LoadedVersion loaded) {
    RequestMemory.Tenant tenant = memoryTenant == null ? null : memory.tenant(memoryTenant, weight);
    memory.acquire(bytes, loaded.scheduler(), place == null || place.mayUseReserve(), tenant);
    this.memory = memory;
    this.heldFor = tenant;
    this.heldBytes = bytes;
  }

  /** Why the request was refused RESOURCE_EXHAUSTED ({@link #refusedFor}), or null. */
  private io.modelgate.runtime.error.Refusal refusal;

  /** The request is being refused with {@code error}: its reason reaches the usage counts. */
  final void refusedFor(RuntimeException error) {
    refusal = error instanceof io.modelgate.runtime.error.InferenceException e ? e.refusal() : null;
  }

  /** End-to-end time (ns) as {@link #answered} took it; -1 before. */
  private long latencyNanos = -1;
  /** The model's time a failed request is charged ({@link #onFailure(InferenceException, long)}); the answering thread's. */
  private long failedComputeNanos;

  /** Notes the model's time the request cost though it failed, then answers it as {@link #onFailure(InferenceException)}. */
  @Override
  public final void onFailure(InferenceException error, long computeNanos) {
    failedComputeNanos = computeNanos;
    onFailure(error);
  }

  /**
   * The request is answered with {@code code} ({@code result} null: not executed): records it on
   * its version's statistics, counts it for its tenant and frees its quota and its bytes, all with
   * one reading of the clock.
   */
  final void answered(Status.Code code, InferenceResult result) {
    latencyNanos = System.nanoTime() - arrival;
    record(code);
    account(code, result);
  }

  private void account(Status.Code code, InferenceResult result) {
    if (memory != null) {
      memory.release(heldBytes, heldFor);
      memory = null;
      heldFor = null;
    }
    if (admission != null) {
      admission.release();
      admission = null;
    }
    if (place != null) {
      place.release();
      place = null;
    }
    // The span first: a trace the gateway starts has its id once its span is made, for the access log.
    String traceId = null;
    if (traced != null) {
      traceId = tracing.record(traced, method(), latencyNanos, usageVersion == null ? null : usageVersion.model(),
          usageVersion == null ? null : usageVersion.numberText(), tenant, requestId, code, rows,
          result == null ? 0 : result.batchRows(), result == null ? failedComputeNanos : result.computeNanos(),
          result == null || result.computeStartNanos() == 0 ? -1 : result.computeStartNanos() - arrival);
    }
    if (usage != null) {
      // A failed request pays for the failed runs it was charged, its rows its whole share.
      usage.record(tenant, usageVersion.model(), usageVersion.numberText(), code, refusal, rows,
          result == null ? rows : result.batchRows(), result == null ? failedComputeNanos : result.computeNanos(), bytesIn,
          result == null ? 0 : result.outputBytes(), requestId, latencyNanos, traceId);
    }
  }

  /** Hands an answered request drawn for drift profiling to the profiler; a no-op otherwise. */
  private void profile(InferenceResult result) {
    if (driftInputs != null) {
      drift.offer(driftVersion, driftLoaded, driftInputs, result.outputs());
    }
  }

  /** The result's outputs as answered: classified where the request asked it. */
  final io.modelgate.runtime.tensor.OutputTensor[] outputs(InferenceResult result) {
    io.modelgate.runtime.tensor.OutputTensor[] outputs = result.outputs();
    if (classification == null) {
      return outputs;
    }
    io.modelgate.runtime.tensor.OutputTensor[] classified = new io.modelgate.runtime.tensor.OutputTensor[outputs.length];
    for (int i = 0; i < outputs.length; i++) {
      classified[i] = classification.apply(i, outputs[i]);
    }
    return classified;
  }

  /**
   * What follows a primary request's answer once it is written (or refused as cancelled): its
   * payload log entry, its drift profile and its side of the shadow comparison. {@code response}
   * is null when none was written; {@code result} is null when the request failed.
   */
  final void afterAnswer(ModelVersion version, EncodedResponse response, Status status, InferenceResult result) {
    if (payload != null) {
      logPayload(version, response == null ? null : response.toMessage(), status);
    }
    if (result != null) {
      profile(result);
    }
    if (shadow != null) {
      if (result != null) {
        shadow.primary(result);
      } else {
        shadow.primaryFailed();
      }
    }
  }

  /** Logs a request refused at admission when it was drawn for the payload log. */
  final void logPayload(Status status) {
    if (usageVersion != null) {
      logPayload(usageVersion, null, status);
    }
  }

  /** Hands the answer of a request drawn for the payload log to its writer; a no-op otherwise. */
  private void logPayload(ModelVersion version, ModelInferResponse response, Status status) {
    if (payload != null) {
      payloadLog.offer(payload, version.model(), version.numberText(), response, status,
          latencyNanos >= 0 ? latencyNanos : System.nanoTime() - arrival);
    }
  }

  private void record(Status.Code code) {
    if (stats != null) {
      if (code == Status.Code.CANCELLED && deadline != null && deadline.isExpired()) {
        code = Status.Code.DEADLINE_EXCEEDED;
      }
      stats.recordAnswer(code, latencyNanos, clock.millis(), shadowCopy);
    }
  }
}

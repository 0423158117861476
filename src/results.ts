/**
 * The one home of results: the pure builders of a request's result and of its terminal event, and
 * {@link publishFinal}, the one way a request's final result leaves fleet.
 */
import type { Redis } from 'ioredis';
import {
  channels,
  LEGACY_RESULT_KEYS,
  RESULT_TTL_SECONDS,
  type ContainerEvent,
  type AgentUsage,
  type ErrorType,
  type FleetEvent,
  type SpawnResult,
  type WorkerType,
} from './protocol.ts';
import { redactor } from './redact.ts';
import { currentTraceId, inSpan } from './tracing.ts';
import type { RunOutcome } from './run-worker.ts';

export type ResultFormat = 'legacy' | 'v2';

/** Drops every key the legacy orchestrator does not know, whatever the builder added. */
export function toLegacyResult(result: SpawnResult): SpawnResult {
  return Object.fromEntries(LEGACY_RESULT_KEYS.map((key) => [key, result[key]])) as unknown as SpawnResult;
}

export function failureResult(
  requestId: string,
  errorType: ErrorType,
  errorMessage: string,
  extra: { exitCode?: number; logsTail?: string | null; branch?: string | null } = {},
): SpawnResult {
  const logsTail = extra.logsTail ?? null;
  return {
    request_id: requestId,
    success: false,
    exit_code: extra.exitCode ?? -1,
    output: logsTail ? `${errorMessage}\n\n${logsTail}` : errorMessage,
    commit_sha: null,
    branch: extra.branch ?? null,
    files_changed: null,
    summary: null,
    error_type: errorType,
    error_message: errorMessage,
    logs_tail: logsTail,
  };
}

/**
 * Pure: the §3 result of one finished container run, with the agent's usage (a v2 key) when its stream
 * was read. `toLegacyResult` drops it for legacy senders.
 */
export function resultFromOutcome(
  requestId: string,
  outcome: Omit<RunOutcome, 'stoppedBy'> & { stoppedBy: 'timeout' | 'cancelled' | 'budget' | null },
  context: { timeoutSeconds: number; branch: string | null; memoryBytes?: number },
): SpawnResult & { usage?: AgentUsage } {
  const result = resultOfRun(requestId, outcome, context);
  return outcome.usage ? { ...result, usage: outcome.usage } : result;
}

function resultOfRun(
  requestId: string,
  outcome: Omit<RunOutcome, 'stoppedBy'> & { stoppedBy: 'timeout' | 'cancelled' | 'budget' | null },
  context: { timeoutSeconds: number; branch: string | null; memoryBytes?: number },
): SpawnResult {
  const logsTail = outcome.tail.length ? outcome.tail.join('\n') : null;
  const branch = outcome.completed?.branch ?? (context.branch || null);
  if (outcome.stoppedBy === 'budget') {
    const message = outcome.budget?.message ?? 'the agent passed its budget; the worker was killed before it committed';
    return failureResult(requestId, 'budget_exceeded', message, { logsTail, branch });
  }
  if (outcome.stoppedBy === 'timeout') {
    return failureResult(requestId, 'timeout', `the worker ran longer than timeout_seconds=${context.timeoutSeconds} and was killed`, {
      logsTail,
      branch,
    });
  }
  if (outcome.stoppedBy === 'cancelled') {
    return failureResult(requestId, 'cancelled', 'the request was cancelled while its worker ran; the worker was killed', {
      logsTail,
      branch,
    });
  }
  const exitCode = outcome.exitCode ?? -1;
  if (exitCode === 0) {
    const done = outcome.completed;
    const summary = done?.summary ?? null;
    return {
      request_id: requestId,
      success: true,
      exit_code: 0,
      output: summary ?? (done ? 'completed' : 'the worker exited 0 without a completed event'),
      commit_sha: done?.commit_sha ?? null,
      branch,
      files_changed: done?.files_changed ?? [],
      summary,
      error_type: null,
      error_message: null,
      logs_tail: logsTail,
    };
  }
  if (outcome.oomKilled) {
    // Before the worker's own failure: a process it ran died of the limit, whatever the worker made of that.
    return failureResult(requestId, 'oom_killed', oomMessage(context.memoryBytes), { exitCode, logsTail, branch });
  }
  if (outcome.failed) {
    const failedTail = outcome.failed.logs_tail ?? logsTail;
    // The worker's own error type passes through; the metrics count one fleet does not know as `other`.
    return {
      ...failureResult(requestId, 'task_failed', outcome.failed.error_message, { exitCode, logsTail: failedTail, branch }),
      error_type: outcome.failed.error_type,
    };
  }
  return failureResult(requestId, 'crash', `the worker exited with code ${exitCode} without reporting a failure`, {
    exitCode,
    logsTail,
    branch,
  });
}

function oomMessage(memoryBytes: number | undefined): string {
  const limit = memoryBytes ? `${Math.round(memoryBytes / 1024 ** 2)} MiB` : 'its memory limit';
  return `the worker was killed for using more memory than its limit of ${limit}: raise FLEET_WORKER_MEMORY on the spawn hosts, or make the task use less`;
}

/**
 * The terminal event (§4) that goes with a result: `completed` on success, `failed` otherwise, with the
 * result's `usage` as an extra field when it has one (§4 allows extra fields).
 */
export function terminalEvent(result: SpawnResult & { usage?: AgentUsage }): ContainerEvent & { usage?: AgentUsage } {
  const event: ContainerEvent = result.success
    ? {
        event_type: 'completed',
        commit_sha: result.commit_sha,
        branch: result.branch,
        files_changed: result.files_changed ?? [],
        summary: result.summary,
      }
    : {
        event_type: 'failed',
        error_type: result.error_type ?? 'crash',
        error_message: result.error_message ?? '',
        logs_tail: result.logs_tail,
      };
  return result.usage ? { ...event, usage: result.usage } : event;
}

/** The published form: exactly the eleven legacy keys unless the sender asked for v2. */
export function formatResult(result: SpawnResult, format: ResultFormat = 'legacy'): string {
  const body = format === 'v2' ? result : toLegacyResult(result);
  return redactor.redact(JSON.stringify(body));
}

/**
 * SET NX, then the terminal event on both event channels, then the result, in one script: whichever
 * process gets there first publishes, and no retry, second bridge or late failure handler can send a
 * request's result (or its terminal event) twice. Listeners see the event before the result.
 */
const PUBLISH_FINAL = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if ARGV[4] ~= '' then
    redis.call('PUBLISH', ARGV[5], ARGV[4])
    redis.call('PUBLISH', ARGV[6], ARGV[4])
  end
  redis.call('PUBLISH', ARGV[3], ARGV[1])
  return 1
end
return 0`;

export interface FinalOptions {
  /** Absent only on a job stored before result_format had a default: legacy then. */
  format: ResultFormat | undefined;
  /** The terminal event's worker_type; without it (or with `event: false`) no event is sent. */
  workerType?: WorkerType;
  /** False when the container already sent its own terminal event. @defaultValue true */
  event?: boolean;
  /** Extra event fields (a flow step's `scope`). */
  eventFields?: Record<string, unknown>;
  now?: Date;
  /** The request's trace (job data), `trace_id` of a v2 result; default: the active span's trace, if any. */
  traceId?: string;
}

/**
 * Publishes a request's final result, and its terminal event, unless a result was published
 * before; true when this call did. Every place that ends a request calls this.
 */
export function publishFinal(redis: Redis, result: SpawnResult, options: FinalOptions): Promise<boolean> {
  return inSpan('result publish', { 'fleet.request_id': result.request_id, 'fleet.success': result.success }, async (span) => {
    const published = await publishFinalOnce(redis, result, options);
    span.setAttribute('fleet.published', published);
    return published;
  });
}

async function publishFinalOnce(redis: Redis, result: SpawnResult, options: FinalOptions): Promise<boolean> {
  const id = result.request_id;
  // A v2 key after the others; formatResult drops it from a legacy result with every other extra key.
  const traceId = options.traceId ?? currentTraceId();
  const traced: SpawnResult & { trace_id?: string } = traceId && options.format === 'v2' ? { ...result, trace_id: traceId } : result;
  const json = formatResult(traced, options.format);
  const sendEvent = options.workerType !== undefined && options.event !== false;
  const event: FleetEvent | undefined = sendEvent
    ? {
        ...terminalEvent(result),
        request_id: id,
        timestamp: (options.now ?? new Date()).toISOString(),
        worker_type: options.workerType!,
        ...options.eventFields,
      }
    : undefined;
  const eventJson = event ? redactor.redact(JSON.stringify(event)) : '';
  const published = await redis.eval(
    PUBLISH_FINAL,
    1,
    channels.resultKey(id),
    json,
    String(RESULT_TTL_SECONDS),
    channels.result(id),
    eventJson,
    channels.events(id),
    channels.allEvents,
  );
  return published === 1;
}

/** The final result of a request, if one was published in the last 24 hours. */
export async function readResult(redis: Pick<Redis, 'get'>, requestId: string): Promise<SpawnResult | null> {
  const json = await redis.get(channels.resultKey(requestId));
  return json === null ? null : (JSON.parse(json) as SpawnResult);
}

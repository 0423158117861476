import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RequestJobData } from '../queues/merge.ts';
import { allChildEnds } from '../src/flow/children.ts';
import { scopeBranch, stepJobId } from '../src/flow/ids.ts';
import { aggregateFlowResult, emptyOutcome, outcomeFromWorker } from '../src/flow/result.ts';
import type { FleetKeys } from '../src/keys.ts';
import { WORKER_TYPES, type FlowResult, type ScopeOutcome, type WorkerResult } from '../src/protocol.ts';
import { publishFinal } from '../src/results.ts';

export interface RequestDeps {
  redis: Redis;
  keys: FleetKeys;
  logger: Logger;
  now?: () => number;
}

/**
 * The root of a request's flow: it runs once every scope has ended, and publishes the request's
 * one result (v2 with every scope's PR, verdict and merge when asked; legacy otherwise).
 */
export async function processRequest(job: Job<RequestJobData>, deps: RequestDeps): Promise<FlowResult> {
  const { request, scopes } = job.data;
  const finishedAt = deps.now?.() ?? Date.now();
  const ends = await allChildEnds<ScopeOutcome | WorkerResult>(job);
  const cancelled = (await deps.redis.exists(deps.keys.cancelled(request.request_id))) === 1;
  const step = request.merge ? 'merge' : request.review ? 'review' : 'spawn';
  const outcomes = scopes.map((scope): ScopeOutcome => {
    const branch = scopeBranch(request.request_id, scope);
    const end = ends.get(stepJobId(request.request_id, scope, step));
    if (!end) return { ...emptyOutcome({ scope, branch }), error_type: 'crash', error_message: 'the scope ended without a result' };
    if (!end.ok) return { ...emptyOutcome({ scope, branch }), error_type: 'crash', error_message: end.reason };
    const value = end.value;
    const outcome = 'reviews' in value ? value : outcomeFromWorker(scope, branch, value);
    return cancelled && !outcome.error_type && !outcome.merged
      ? { ...outcome, error_type: 'cancelled', error_message: 'the request was cancelled' }
      : outcome;
  });
  const result = aggregateFlowResult(
    request.request_id,
    outcomes,
    { review: Boolean(request.review), merge: Boolean(request.merge) },
    {
      acceptedAt: job.data.acceptedAt,
      finishedAt,
    },
  );
  await publishFinal(deps.redis, result, {
    format: request.result_format,
    workerType: WORKER_TYPES[request.agent],
    now: new Date(finishedAt),
    traceId: job.data.traceId,
  });
  deps.logger.info(
    { request_id: request.request_id, success: result.success, scopes: scopes.length, error_type: result.error_type },
    'request finished',
  );
  return result;
}

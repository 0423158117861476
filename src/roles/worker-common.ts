import type { ConnectionOptions, Job, WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { FleetConfig } from '../config.ts';
import { failureResult, publishFinal, type ResultFormat } from '../results.ts';
import { bullTelemetry } from '../tracing.ts';

/** The BullMQ worker settings every role shares; only the concurrency differs between them. */
export function workerOptions(config: FleetConfig, connection: ConnectionOptions, concurrency: number): WorkerOptions {
  return {
    connection,
    prefix: config.prefix,
    concurrency,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.stalledIntervalMs,
    // Two stalls (two hosts lost under it) before a job counts as failed: a job that kills its hosts must stop.
    maxStalledCount: 2,
    name: config.hostId,
    // BullMQ's own spans (process, complete) join each job to its request's trace while tracing runs.
    ...bullTelemetry(),
  };
}

/**
 * A job can fail without its processor publishing anything: it stalled too often (its hosts kept
 * dying) or an unexpected error used up its attempts. Its request is final then and must still get
 * a result, or the orchestrator waits forever; publishFinal makes this a no-op when the
 * processor already published one.
 */
export function publishResultOfFailedJob(
  job: Job,
  error: Error,
  request: { request_id: string; result_format?: ResultFormat },
  deps: { redis: Redis; logger: Logger },
): void {
  const final = error.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1) || /stalled/i.test(error.message);
  if (!final) return;
  const result = failureResult(request.request_id, 'crash', `the job failed on the fleet side: ${error.message}`);
  publishFinal(deps.redis, result, { format: request.result_format }).catch((e) =>
    deps.logger.error({ err: e, request_id: request.request_id }, 'could not publish the result of a failed job'),
  );
}

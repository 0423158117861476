import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { processMerge } from '../../processors/merge.ts';
import { processRequest } from '../../processors/request.ts';
import { processReview } from '../../processors/review.ts';
import type { MergeJobData, MergeQueueJobData, RequestJobData } from '../../queues/merge.ts';
import type { ReviewJobData, ReviewJobResult } from '../../queues/review.ts';
import { QUEUE_NAMES, type SpawnJobData, type SpawnJobResult } from '../../queues/spawn.ts';
import type { FleetConfig } from '../config.ts';
import type { Reviewer } from '../forge.ts';
import type { GitHubForges } from '../github/index.ts';
import type { FleetKeys } from '../keys.ts';
import type { SecretBox } from '../secrets.ts';
import { failureResult } from '../protocol.ts';
import { publishResultOnce } from '../results.ts';

export interface FlowRoleDeps {
  config: FleetConfig;
  connection: { url: string };
  redis: Redis;
  secrets: SecretBox;
  keys: FleetKeys;
  forges: GitHubForges;
  logger: Logger;
}

export interface FlowRole {
  worker: Worker;
  stop(): Promise<void>;
}

/** Review and merge steps mostly wait on GitHub and the model, so a host runs several at once. */
const STEP_CONCURRENCY = 8;

function workerOptions(config: FleetConfig, connection: { url: string }) {
  return {
    connection,
    prefix: config.prefix,
    concurrency: STEP_CONCURRENCY,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.stalledIntervalMs,
    maxStalledCount: 2,
    name: config.hostId,
  };
}

/** The `review` role: one worker on the review queue. */
export async function startReviewRole(deps: FlowRoleDeps & { reviewer: Reviewer | undefined }): Promise<FlowRole> {
  const log = deps.logger.child({ role: 'review', host: deps.config.hostId });
  const spawnQueue = new Queue<SpawnJobData, SpawnJobResult>(QUEUE_NAMES.spawn, { connection: deps.connection, prefix: deps.config.prefix });
  const reviewDeps = {
    forges: deps.forges,
    reviewer: deps.reviewer,
    reviewerKind: deps.config.reviewer.kind,
    reviewerToken: deps.config.github.reviewerToken,
    hostToken: deps.config.githubToken,
    secrets: deps.secrets,
    redis: deps.redis,
    keys: deps.keys,
    prefix: deps.config.prefix,
    spawnQueue,
    logger: log,
  };
  const worker = new Worker<ReviewJobData, ReviewJobResult>(
    QUEUE_NAMES.review,
    (job, token) => processReview(job, reviewDeps, { token }),
    workerOptions(deps.config, deps.connection),
  );
  worker.on('error', (error) => log.error({ err: error }, 'review worker error'));
  await worker.waitUntilReady();
  log.info({ reviewer: deps.config.reviewer.kind, reviewer_token: Boolean(deps.config.github.reviewerToken) }, 'review role ready');
  return {
    worker,
    async stop() {
      await worker.close();
      await spawnQueue.close();
    },
  };
}

/** The `merge` role: merges scopes (one at a time per repository) and finishes requests. */
export async function startMergeRole(deps: FlowRoleDeps): Promise<FlowRole> {
  const log = deps.logger.child({ role: 'merge', host: deps.config.hostId });
  const spawnQueue = new Queue<SpawnJobData, SpawnJobResult>(QUEUE_NAMES.spawn, { connection: deps.connection, prefix: deps.config.prefix });
  const reviewQueue = new Queue<ReviewJobData, ReviewJobResult>(QUEUE_NAMES.review, { connection: deps.connection, prefix: deps.config.prefix });
  const mergeDeps = {
    forges: deps.forges,
    hostToken: deps.config.githubToken,
    secrets: deps.secrets,
    redis: deps.redis,
    keys: deps.keys,
    prefix: deps.config.prefix,
    spawnQueue,
    reviewQueue,
    conflictRounds: deps.config.mergeConflictRounds,
    logger: log,
  };
  const requestDeps = { redis: deps.redis, keys: deps.keys, logger: log };
  const worker = new Worker<MergeQueueJobData>(
    QUEUE_NAMES.merge,
    // One queue, two kinds of job: a scope's merge step and the request's root, which ends the flow.
    (job, token) =>
      job.data.kind === 'request'
        ? processRequest(job as Job<RequestJobData>, requestDeps)
        : processMerge(job as Job<MergeJobData>, mergeDeps, { token }),
    workerOptions(deps.config, deps.connection),
  );
  worker.on('error', (error) => log.error({ err: error }, 'merge worker error'));
  // The root of a flow failing for good (Redis trouble through all its attempts, stalls) would
  // leave the orchestrator waiting forever: it still gets a final result.
  worker.on('failed', (job, error) => {
    if (!job || job.data.kind !== 'request') return;
    if (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(error.message)) return;
    const { request } = job.data;
    publishResultOnce(deps.redis, failureResult(request.request_id, 'crash', `the request's flow failed on the fleet side: ${error.message}`), request.result_format ?? 'legacy').catch((e) =>
      log.error({ err: e, request_id: request.request_id }, 'could not publish the result of a failed flow'),
    );
  });
  await worker.waitUntilReady();
  log.info({ conflict_rounds: deps.config.mergeConflictRounds }, 'merge role ready');
  return {
    worker,
    async stop() {
      await worker.close();
      await Promise.all([spawnQueue.close(), reviewQueue.close()]);
    },
  };
}

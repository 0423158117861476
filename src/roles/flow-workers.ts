import { Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { processMerge } from '../../processors/merge.ts';
import { processRequest } from '../../processors/request.ts';
import { processReview } from '../../processors/review.ts';
import { QUEUE_NAMES } from '../../queues/common.ts';
import type { MergeJobData, MergeQueue, MergeQueueJobData, MergeQueueJobResult, RequestJobData } from '../../queues/merge.ts';
import type { ReviewJobData, ReviewJobResult, ReviewQueue } from '../../queues/review.ts';
import type { SpawnQueue } from '../../queues/spawn.ts';
import type { FleetConfig } from '../config.ts';
import type { Reviewer } from '../forge.ts';
import type { GitHubForges } from '../github/index.ts';
import type { FleetKeys } from '../keys.ts';
import type { FlowStepDeps } from '../flow/steps.ts';
import { publishResultOfFailedJob, workerOptions } from './worker-common.ts';
import type { SecretBox } from '../secrets.ts';

export interface FlowRoleDeps {
  config: FleetConfig;
  /** The process's BullMQ connection (src/redis-connection.ts); each worker duplicates it for blocking reads. */
  connection: ConnectionOptions;
  /** The process's queue objects: steps add follow-up children to them. */
  queues: { spawn: SpawnQueue; review: ReviewQueue; merge: MergeQueue };
  redis: Redis;
  secrets: SecretBox;
  keys: FleetKeys;
  forges: GitHubForges;
  logger: Logger;
  /** Metrics hook: how a merge's wait for CI ended and how long it took. */
  onCiWait?: (outcome: string, waitedMs: number) => void;
}

export interface FlowRole {
  worker: Worker;
  stop(): Promise<void>;
}

/** Review and merge steps mostly wait on GitHub and the model, so a host runs several at once. */
const STEP_CONCURRENCY = 8;

function stepDeps(deps: FlowRoleDeps, log: Logger): FlowStepDeps {
  return {
    forges: deps.forges,
    hostToken: deps.config.githubToken,
    githubAuth: deps.config.githubAuth,
    repoAllow: deps.config.repoAllow,
    secrets: deps.secrets,
    redis: deps.redis,
    keys: deps.keys,
    spawnQueue: deps.queues.spawn,
    reviewQueue: deps.queues.review,
    requestQueue: deps.queues.merge,
    now: Date.now,
    logger: log,
  };
}

/** The `review` role: one worker on the review queue. */
export async function startReviewRole(deps: FlowRoleDeps & { reviewer: Reviewer | undefined }): Promise<FlowRole> {
  const log = deps.logger.child({ role: 'review', host: deps.config.hostId });
  const reviewDeps = {
    ...stepDeps(deps, log),
    reviewer: deps.reviewer,
    reviewerKind: deps.config.reviewer.kind,
    reviewerToken: deps.config.github.reviewerToken,
  };
  const worker = new Worker<ReviewJobData, ReviewJobResult>(
    QUEUE_NAMES.review,
    (job, token) => processReview(job, reviewDeps, { token }),
    workerOptions(deps.config, deps.connection, STEP_CONCURRENCY),
  );
  worker.on('error', (error) => log.error({ err: error }, 'review worker error'));
  await worker.waitUntilReady();
  log.info({ reviewer: deps.config.reviewer.kind, reviewer_token: Boolean(deps.config.github.reviewerToken) }, 'review role ready');
  return {
    worker,
    stop: () => worker.close(),
  };
}

/** The `merge` role: merges scopes (one at a time per repository) and finishes requests. */
export async function startMergeRole(deps: FlowRoleDeps): Promise<FlowRole> {
  const log = deps.logger.child({ role: 'merge', host: deps.config.hostId });
  const mergeDeps = {
    ...stepDeps(deps, log),
    conflictRounds: deps.config.mergeConflictRounds,
    ciRequired: deps.config.ci.required,
    ciTimeoutMs: deps.config.ci.timeoutMs,
    ciPollMs: deps.config.ci.pollMs,
    onCiWait: deps.onCiWait,
  };
  const requestDeps = { redis: deps.redis, keys: deps.keys, logger: log };
  const worker = new Worker<MergeQueueJobData, MergeQueueJobResult>(
    QUEUE_NAMES.merge,
    // One queue, two kinds of job: a scope's merge step and the request's root, which ends the flow.
    (job, token) =>
      job.data.kind === 'request'
        ? processRequest(job as Job<RequestJobData>, requestDeps)
        : processMerge(job as Job<MergeJobData>, mergeDeps, { token }),
    workerOptions(deps.config, deps.connection, STEP_CONCURRENCY),
  );
  worker.on('error', (error) => log.error({ err: error }, 'merge worker error'));
  worker.on('failed', (job, error) => {
    // Only the root speaks for the request; a failed merge step is read by the root.
    if (job?.data.kind === 'request') publishResultOfFailedJob(job, error, job.data.request, { redis: deps.redis, logger: log });
  });
  await worker.waitUntilReady();
  log.info({ conflict_rounds: deps.config.mergeConflictRounds }, 'merge role ready');
  return {
    worker,
    stop: () => worker.close(),
  };
}

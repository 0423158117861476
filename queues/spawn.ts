import type { Job, JobsOptions, Queue } from 'bullmq';
import type { AgentUsage, SpawnRequest, WorkerResult } from '../src/protocol.ts';
import { childJobOptions } from './common.ts';

/** The request as it rests in Redis: everything but the token, which travels sealed. */
export type StoredRequest = Omit<SpawnRequest, 'github_token'>;

/** Payload of a `spawn` job. Its job id is the request id, so duplicates make one job. */
export interface SpawnJobData {
  request: StoredRequest;
  /** The request's github_token sealed with the fleet's key (src/secrets.ts); null: use the host's token. */
  sealedToken: string | null;
  /** Which path brought the request in, for the dashboard and metrics. */
  source: 'pubsub' | 'api' | 'cli' | 'webhook';
  /** Epoch milliseconds when the bridge or client accepted the request. */
  acceptedAt: number;
  /** A follow-up's pull request, as intake found it: the worker continues its branch (v2 `follow_up`). */
  followUp?: FollowUpTarget;
  /** The OpenTelemetry trace of the request (src/tracing.ts), when the bridge traced it; `trace_id` in v2 results. */
  traceId?: string;
  /**
   * Set when the job is one step of a pull-request flow: it runs on `branch`, reports to its
   * parent job instead of publishing a result, and never fails for a task's own failure.
   */
  flow?: {
    scope: string | null;
    /** task: the scope's work (opens the PR); fix: review feedback; rebase: a conflict; review: an agent reviewer. */
    purpose: 'task' | 'fix' | 'rebase' | 'review';
    branch: string;
    baseBranch: string | null;
    /** For a reviewer: the head it must review (FLEET_HEAD_SHA). */
    headSha?: string;
  };
}

/** The open pull request fleet made that a follow-up request continues. */
export interface FollowUpTarget {
  pullRequest: number;
  branch: string;
  baseBranch: string;
}

/** What a `spawn` job returns; the same object is published as the result (v2 keys only with result_format v2). */
/** `model_used`: the model the worker's agent ran with, after the host's FLEET_MODEL_MAP (v2 results show it). */
export type SpawnJobResult = WorkerResult & { model_used?: string };

export type SpawnQueue = Queue<SpawnJobData, SpawnJobResult>;

export const SPAWN_JOB_NAME = 'spawn';

/** Job options of a spawn job; `attempts` covers transient Docker failures, never a task's own failure. */
export function spawnJobOptions(requestId: string, settings: { attempts: number; keepLogs: number }): JobsOptions {
  return {
    jobId: requestId,
    attempts: settings.attempts,
    backoff: { type: 'exponential', delay: 5_000 },
    keepLogs: settings.keepLogs,
    // Kept a day so a resent request id still finds its job and makes no second one.
    removeOnComplete: { age: 24 * 60 * 60, count: 50_000 },
    removeOnFail: { age: 7 * 24 * 60 * 60, count: 50_000 },
  };
}

/** Hooks on a spawn job's life, for metrics and the host registry; every one optional. */
export interface SpawnObserver {
  containerStarted?(info: { requestId: string; startLatencyMs: number }): void;
  containerStopped?(info: { requestId: string }): void;
  jobFinished?(info: { requestId: string; result: SpawnJobResult; durationMs: number }): void;
  /** What one container run's agent spent, read from its stream (once per run). */
  agentUsage?(usage: AgentUsage): void;
  /** A connection the egress proxy refused (FLEET_EGRESS=proxy). */
  egressBlocked?(attempt: { reason: string }): void;
  /** How a git mirror update before a clone ended (`created`, `updated`, `failed`) and how long it took. */
  gitMirrorUpdated?(info: { outcome: string; ms: number }): void;
}

/** Adds a follow-up worker (fix, conflict, agent reviewer) under a running flow step. */
export async function addSpawnChild(queue: SpawnQueue, parent: Job, id: string, data: SpawnJobData): Promise<void> {
  await queue.add(SPAWN_JOB_NAME, data, childJobOptions(parent, id));
}

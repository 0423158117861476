import type { Job, JobsOptions, Queue } from 'bullmq';
import type { PullRequestRef, ReviewRecord, ScopeOutcome, SpawnRequest, WorkerResult } from '../src/protocol.ts';
import { childJobOptions, KEEP_FLOW_JOBS } from './common.ts';

/**
 * What every step of a pull-request flow knows about its request and scope. A request with
 * `tasks` has one scope per task; a single `mode: "pr"` request with review is one scope (null).
 */
export interface ScopeContext {
  /** The orchestrator's request id: the flow's root job, its cancel flag and its one result. */
  requestId: string;
  scope: string | null;
  repo: string;
  /** `fleet/{request_id}/{scope}`, or `fleet/{request_id}` for a single task. */
  branch: string;
  /** From the request, or null: the repository's default branch, looked up when the PR is opened. */
  baseBranch: string | null;
  sealedToken: string | null;
  /**
   * The scope's title. Its task and AGENTS.md texts are stored once, in the flow's root job, and read
   * with `scopeTexts` when a step needs them: copying them into every step made one 3.5 MB message
   * with 20 tasks into 213 MB of flow data.
   */
  task: { title: string };
  model: string;
  agent: SpawnRequest['agent'];
  timeoutSeconds: number;
  review: boolean;
  merge: boolean;
  fixRounds: number;
  resultFormat: 'legacy' | 'v2';
}
/**
 * Payload of a `review` job. A review resumes several times (after a fix worker, after an agent
 * reviewer): `state` says where it is, so a re-run after waiting on a child picks up there.
 */
export interface ReviewJobData {
  ctx: ScopeContext;
  /** Known when this is a re-review after a conflict fix; otherwise read from the spawn child. */
  start?: { worker: WorkerResult | null; pullRequest: PullRequestRef };
  state: {
    step: 'review' | 'await-fix' | 'await-agent';
    /** Fix rounds used so far. */
    round: number;
    /** The child job (fix worker or agent reviewer) this review waits for. */
    childId?: string;
    worker: WorkerResult | null;
    pullRequest: PullRequestRef | null;
    reviews: ReviewRecord[];
  } | null;
}

export type ReviewJobResult = ScopeOutcome;

export type ReviewQueue = Queue<ReviewJobData, ReviewJobResult>;

export const REVIEW_JOB_NAME = 'review';

/** Review and merge steps talk to GitHub: transient failures (rate limits, 5xx) get retried. */
export const FLOW_STEP_OPTIONS = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 10_000 },
  ignoreDependencyOnFailure: true,
  ...KEEP_FLOW_JOBS,
} as const satisfies JobsOptions;

/** Adds a re-review (after a conflict fix) under a running merge step. */
export async function addReviewChild(queue: ReviewQueue, parent: Job, id: string, data: ReviewJobData): Promise<void> {
  await queue.add(REVIEW_JOB_NAME, data, childJobOptions(parent, id, { attempts: FLOW_STEP_OPTIONS.attempts }));
}

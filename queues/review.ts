import type { PullRequestRef, ReviewRecord, ScopeContext, ScopeOutcome, SpawnOutcome } from './flow.ts';

/**
 * Payload of a `review` job. A review resumes several times (after a fix worker, after an agent
 * reviewer): `state` says where it is, so a re-run after waiting on a child picks up there.
 */
export interface ReviewJobData {
  ctx: ScopeContext;
  /** Known when this is a re-review after a conflict fix; otherwise read from the spawn child. */
  start?: { worker: SpawnOutcome | null; pullRequest: PullRequestRef };
  state: {
    step: 'review' | 'await-fix' | 'await-agent';
    /** Fix rounds used so far. */
    round: number;
    /** The child job (fix worker or agent reviewer) this review waits for. */
    childId?: string;
    worker: SpawnOutcome | null;
    pullRequest: PullRequestRef | null;
    reviews: ReviewRecord[];
  } | null;
}

export type ReviewJobResult = ScopeOutcome;

export const REVIEW_JOB_NAME = 'review';

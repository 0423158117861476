import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { FleetKeys } from '../keys.ts';
import type { ErrorType } from '../protocol.ts';
import { parkUntilChildrenEnd } from './children.ts';

/** BullMQ's own signals: the job moved (children, delay, back to wait); never an outcome. */
const JOB_MOVED = new Set(['WaitingChildrenError', 'DelayedError', 'WaitingError']);

/** Why a step stopped, as its scope's outcome reports it. */
export interface StepFailure {
  type: ErrorType;
  message: string;
}

/**
 * A step error: thrown again while BullMQ can retry it (the error says a retry can help and attempts
 * are left), else it becomes the scope's outcome. Errors cross process boundaries by name, so an error
 * without a fleet errorType counts as a crash.
 */
export function stepErrorOrRetry<R>(job: Job, error: unknown, outcome: (failure: StepFailure) => R): R {
  const e = error as Error & { retryable?: boolean; errorType?: ErrorType };
  if (JOB_MOVED.has(e.name)) throw error;
  if (e.retryable === true && job.attemptsMade + 1 < (job.opts.attempts ?? 1)) throw error;
  return outcome({ type: e.errorType ?? 'crash', message: e.message });
}

/** What a resumable step's body gets: its saved state, and the ways to save it and to wait. */
export interface StepRun<S> {
  readonly state: S;
  save(next: S): Promise<void>;
  /** Saves `next`, then parks the job until its children end; returns at once when they already had. */
  waitForChildren(next: S): Promise<void>;
}

export interface ResumableStep<S, R> {
  requestId: string;
  /** Where a step that runs for the first time starts, or its outcome when there is nothing to do. */
  begin(): Promise<{ state: S } | { done: R }>;
  /** One pass: an outcome ends the step; undefined runs another pass with the state as saved. */
  pass(run: StepRun<S>): Promise<R | undefined>;
  /** The outcome when the request was cancelled, checked before every pass. */
  cancelled(state: S): R;
  /** The outcome when a pass threw and no retry is left (see {@link stepErrorOrRetry}). */
  failed(state: S, failure: StepFailure): R;
  /** Runs before the job parks for its children (the step's GitHub App token is revoked there). */
  beforePark?(): Promise<void>;
}

/**
 * The state machine review and merge share. A step parks while its follow-up children run, and
 * BullMQ then runs it again from the top: the state saved in the job's data says where it was.
 */
export async function runResumableStep<S, R>(
  job: Job<{ state: S | null }>,
  lockToken: string | undefined,
  deps: { redis: Redis; keys: FleetKeys },
  step: ResumableStep<S, R>,
): Promise<R> {
  let state: S;
  if (job.data.state !== null) {
    state = job.data.state;
  } else {
    const begun = await step.begin();
    if ('done' in begun) return begun.done;
    state = begun.state;
  }
  const run: StepRun<S> = {
    get state() {
      return state;
    },
    async save(next) {
      state = next;
      await job.updateData({ ...job.data, state: next });
    },
    async waitForChildren(next) {
      await run.save(next);
      await step.beforePark?.();
      await parkUntilChildrenEnd(job, lockToken);
    },
  };
  try {
    for (;;) {
      if (await deps.redis.exists(deps.keys.cancelled(step.requestId))) return step.cancelled(state);
      const outcome = await step.pass(run);
      if (outcome !== undefined) return outcome;
    }
  } catch (error) {
    return stepErrorOrRetry(job, error, (failure) => step.failed(state, failure));
  }
}

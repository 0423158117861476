import type { Queue } from 'bullmq';
import type { FlowResult, ScopeOutcome } from '../src/protocol.ts';
import type { ScopeContext } from './review.ts';
import type { StoredRequest } from './spawn.ts';

/** A `merge` job: squash-merge one scope's approved PR, one at a time per repository. */
export interface MergeJobData {
  kind: 'merge';
  ctx: ScopeContext;
  state: {
    step: 'merge' | 'await-rebase' | 'await-ci-fix' | 'await-review';
    conflictRounds: number;
    /** Fix rounds this step started for red CI (also counted in the outcome's `fix_rounds_used`). */
    ciRounds?: number;
    childId?: string;
    outcome: ScopeOutcome;
    /** The wait for CI: when it began (epoch ms) and how many times it looked. */
    ci?: { since: number; polls: number };
    /**
     * The head the merge is guarded by when it is not the reviewed one: GitHub's update-branch merged the
     * base into the reviewed head (`from`); `head` is set once that merge commit appeared and was checked.
     */
    updated?: { from: string; head?: string; polls: number };
    /** Checks GitHub's refusals named as required that fleet could not read from branch protection. */
    learnedChecks?: string[];
    /** Refusals of an unknown kind so far (retried later, then an error). */
    refusals?: number;
  } | null;
}

/**
 * The root of a request's flow, also on the `merge` queue: it runs when every scope has finished
 * and publishes the request's one result. It is also the one place the request's texts are kept.
 */
export interface RequestJobData {
  kind: 'request';
  request: StoredRequest;
  scopes: (string | null)[];
  acceptedAt: number;
  /** The OpenTelemetry trace of the request, when traced; `trace_id` in its v2 result. */
  traceId?: string;
}

export type MergeQueueJobData = MergeJobData | RequestJobData;
/** A merge step returns its scope's outcome; the root returns the request's result. */
export type MergeQueueJobResult = ScopeOutcome | FlowResult;

export type MergeQueue = Queue<MergeQueueJobData, MergeQueueJobResult>;

export const MERGE_JOB_NAME = 'merge';
export const REQUEST_JOB_NAME = 'request';

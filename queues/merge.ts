import type { Queue } from 'bullmq';
import type { FlowResult, ScopeOutcome } from '../src/protocol.ts';
import type { ScopeContext } from './review.ts';
import type { StoredRequest } from './spawn.ts';

/** A `merge` job: squash-merge one scope's approved PR, one at a time per repository. */
export interface MergeJobData {
  kind: 'merge';
  ctx: ScopeContext;
  state: {
    step: 'merge' | 'await-rebase' | 'await-review';
    conflictRounds: number;
    childId?: string;
    outcome: ScopeOutcome;
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
}

export type MergeQueueJobData = MergeJobData | RequestJobData;
/** A merge step returns its scope's outcome; the root returns the request's result. */
export type MergeQueueJobResult = ScopeOutcome | FlowResult;

export type MergeQueue = Queue<MergeQueueJobData, MergeQueueJobResult>;

export const MERGE_JOB_NAME = 'merge';
export const REQUEST_JOB_NAME = 'request';

import type { StoredRequest } from './spawn.ts';
import type { ScopeContext, ScopeOutcome } from './flow.ts';

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
 * and publishes the request's one result.
 */
export interface RequestJobData {
  kind: 'request';
  request: StoredRequest;
  scopes: (string | null)[];
  acceptedAt: number;
}

export type MergeQueueJobData = MergeJobData | RequestJobData;
export type MergeQueueJobResult = ScopeOutcome | Record<string, unknown>;

export const MERGE_JOB_NAME = 'merge';
export const REQUEST_JOB_NAME = 'request';

import type { SpawnRequest, SpawnResult } from '../src/protocol.ts';

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

/** A pull request as results report it. */
export interface PullRequestRef {
  number: number;
  url: string;
  head_sha: string;
}

/** What a spawn job returns: the §3 result, plus the PR the processor opened (mode "pr"). */
export type SpawnOutcome = SpawnResult & { pull_request?: PullRequestRef | null };

/** The verdict as results report it. */
export interface ReviewRecord {
  approved: boolean;
  feedback: string;
  /** The head the verdict is about: the only SHA the merge step may merge. */
  reviewed_sha: string;
  /** APPROVE / REQUEST_CHANGES, or COMMENT when GitHub refused a review of one's own PR. */
  review_event: 'APPROVE' | 'REQUEST_CHANGES' | 'COMMENT';
  self_review_fallback: boolean;
  coverage: { reviewed_bytes: number; total_bytes: number; truncated: boolean };
}

/** One scope's outcome; each step returns it, filled in as far as the scope got. */
export interface ScopeOutcome {
  scope: string | null;
  branch: string;
  worker: SpawnOutcome | null;
  pull_request: PullRequestRef | null;
  /** Every review of the PR, in order (a fix round adds one). */
  reviews: ReviewRecord[];
  fix_rounds_used: number;
  merged: boolean;
  merge_sha: string | null;
  conflict_rounds_used: number;
  /** Why the scope stopped short (null when it went as far as the request asked). */
  error_type: string | null;
  error_message: string | null;
}

/** The branch a request's worker pushes in `pr` mode: `fleet/{request_id}`, or `fleet/{request_id}/{scope}` (PROTOCOL §2). */
export function scopeBranch(requestId: string, scope: string | null): string {
  return scope === null ? `fleet/${requestId}` : `fleet/${requestId}/${scope}`;
}

/**
 * Joins the parts of an id fleet derives. Request ids and scopes may not hold '~' (PROTOCOL §2), so a
 * derived id can never equal an id a sender chooses: `a` + `x` and `a.x` would otherwise be one job.
 */
export const STEP_ID_SEPARATOR = '~';
const join = (...parts: (string | number)[]) => parts.join(STEP_ID_SEPARATOR);

/**
 * Job ids of a scope's steps. BullMQ ids may not hold ':'. The spawn step of a single-scope flow is
 * the request id itself (the request owns that id on the spawn queue either way).
 */
export function stepJobId(requestId: string, scope: string | null, step: 'spawn' | 'review' | 'merge', round = 0): string {
  const parts: (string | number)[] = scope === null ? [requestId] : [requestId, scope];
  if (step !== 'spawn') parts.push(step);
  if (round) parts.push(round);
  return join(...parts);
}

/** Follow-up workers a step adds at run time: a fix round, a conflict round, or an agent reviewer. */
export function followUpJobId(stepId: string, kind: 'fix' | 'rebase' | 'agent', n: number): string {
  return join(stepId, `${kind}${n}`);
}

/** A scope's outcome before anything ran: every step fills in what it learns. */
export function emptyOutcome(ctx: Pick<ScopeContext, 'scope' | 'branch'>): ScopeOutcome {
  return {
    scope: ctx.scope,
    branch: ctx.branch,
    worker: null,
    pull_request: null,
    reviews: [],
    fix_rounds_used: 0,
    merged: false,
    merge_sha: null,
    conflict_rounds_used: 0,
    error_type: null,
    error_message: null,
  };
}

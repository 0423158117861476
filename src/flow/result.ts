/** A flow's outcomes: each scope's, filled in step by step, and the request's one result. Pure. */
import type { ScopeContext } from '../../queues/review.ts';
import { sumUsage } from '../agent-stream/usage.ts';
import { isKnownErrorType, type ErrorType, type FlowResult, type ScopeOutcome, type WorkerResult } from '../protocol.ts';

export type { FlowResult };

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

/** A scope that ended at its worker step (no review asked for) is still a scope outcome. */
export function outcomeFromWorker(scope: string | null, branch: string, worker: WorkerResult): ScopeOutcome {
  return {
    scope,
    branch,
    worker,
    pull_request: worker.pull_request ?? null,
    reviews: [],
    fix_rounds_used: 0,
    merged: false,
    merge_sha: null,
    conflict_rounds_used: 0,
    error_type: worker.success ? (worker.pull_request ? null : 'no_changes') : scopeErrorType(worker.error_type),
    error_message: worker.success ? (worker.pull_request ? null : 'the worker made no changes: no pull request') : worker.error_message,
  };
}

/** A worker's own error type, as a scope's: one fleet does not know is a crash of that worker. */
export function scopeErrorType(type: string | null): ErrorType {
  return type !== null && isKnownErrorType(type) ? type : 'crash';
}

const label = (o: ScopeOutcome) => o.scope ?? 'task';

function scopeLine(o: ScopeOutcome): string {
  const pr = o.pull_request ? `PR #${o.pull_request.number}` : 'no PR';
  const verdict = o.reviews.at(-1);
  const parts = [pr];
  if (verdict) parts.push(verdict.approved ? 'approved' : 'changes requested');
  if (o.fix_rounds_used) parts.push(`${o.fix_rounds_used} fix round(s)`);
  if (o.conflict_rounds_used) parts.push(`${o.conflict_rounds_used} conflict round(s)`);
  if (o.merged) parts.push(`merged as ${o.merge_sha?.slice(0, 12)}`);
  if (o.error_type) parts.push(`${o.error_type}: ${o.error_message}`);
  return `${label(o)}: ${parts.join(', ')}`;
}

/**
 * Pure: a request succeeds only when every scope got as far as it asked — merged when `merge`,
 * approved when only `review`, a pull request opened otherwise.
 */
export function aggregateFlowResult(
  requestId: string,
  outcomes: ScopeOutcome[],
  asked: { review: boolean; merge: boolean },
  times: { acceptedAt: number; finishedAt: number },
): FlowResult {
  const reached = (o: ScopeOutcome) =>
    !o.error_type && (asked.merge ? o.merged : asked.review ? o.reviews.at(-1)?.approved === true : o.pull_request !== null);
  const success = outcomes.length > 0 && outcomes.every(reached);
  const failed = outcomes.find((o) => !reached(o));
  const merged = outcomes.filter((o) => o.merged);
  const files = [...new Set(outcomes.flatMap((o) => o.worker?.files_changed ?? []))];
  const summaries = outcomes.map((o) => (o.worker?.summary ? `${label(o)}: ${o.worker.summary}` : null)).filter(Boolean);
  const output = outcomes.map(scopeLine).join('\n');
  // What the request's agents spent: the sum of its scopes' workers (each scope's own is in scopes[].worker).
  const usage = sumUsage(outcomes.map((o) => o.worker?.usage));
  return {
    request_id: requestId,
    success,
    exit_code: success ? 0 : (failed?.worker?.exit_code ?? -1),
    output,
    commit_sha: merged.at(-1)?.merge_sha ?? (outcomes.length === 1 ? (outcomes[0]!.worker?.commit_sha ?? null) : null),
    branch: outcomes.length === 1 ? outcomes[0]!.branch : null,
    files_changed: files,
    summary: summaries.length ? summaries.join('\n') : null,
    error_type: success ? null : (failed?.error_type ?? (asked.review ? 'review_rejected' : 'crash')),
    error_message: success ? null : `${label(failed!)}: ${failed?.error_message ?? 'did not finish'}`,
    logs_tail: success ? null : (failed?.worker?.logs_tail ?? null),
    scopes: outcomes,
    pull_requests: outcomes
      .filter((o) => o.pull_request)
      .map((o) => ({
        scope: o.scope,
        number: o.pull_request!.number,
        url: o.pull_request!.url,
        approved: o.reviews.at(-1)?.approved ?? null,
        merged: o.merged,
      })),
    timings: {
      accepted_at: new Date(times.acceptedAt).toISOString(),
      finished_at: new Date(times.finishedAt).toISOString(),
      duration_ms: times.finishedAt - times.acceptedAt,
    },
    ...(usage ? { usage } : {}),
  };
}

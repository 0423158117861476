/** The names fleet derives for a flow's branches and step jobs. Pure. */

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

/** Follow-up workers a step adds at run time: a fix round (after a review or red CI), a conflict round, or an agent reviewer. */
export function followUpJobId(stepId: string, kind: 'fix' | 'ci-fix' | 'rebase' | 'agent', n: number): string {
  return join(stepId, `${kind}${n}`);
}

/**
 * What a merge waits for: the required checks of a pull request's head, and whether they are green.
 * Pure but for the forge reads.
 */
import { inSpan } from '../tracing.ts';
import type { CommitCheck, Forge, RepoName } from '../forge.ts';
import type { FailingCheck } from '../pr-text.ts';
import type { CheckRecord } from '../protocol.ts';

/** FLEET_CI_REQUIRED: which checks must be green when branch protection names none (or cannot be read). */
export type CiRequired = { kind: 'auto' } | { kind: 'all' } | { kind: 'none' } | { kind: 'names'; names: string[] };

export function parseCiRequired(value: string): CiRequired {
  const v = value.trim();
  if (v === 'auto' || v === 'all' || v === 'none') return { kind: v };
  const names = v
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.length === 0) throw new Error(`FLEET_CI_REQUIRED must be auto, all, none or a comma list of check names, got "${value}"`);
  return { kind: 'names', names };
}

export interface CiVerdict {
  /** The names that must be green. */
  required: string[];
  /** Required checks still queued or running, or not reported yet. */
  pending: string[];
  /** Required checks that ended red. */
  failing: CommitCheck[];
  /** The required checks as reported (for the result). */
  checks: CommitCheck[];
}

/**
 * Reads the head's checks and decides. Branch protection wins when it can be read; otherwise the
 * setting chooses (`auto` and `all`: every check on the head; `none`: none; a list: those names).
 * `all` adds every check on the head to the protected ones.
 */
export async function ciVerdict(
  forge: Forge,
  repo: RepoName,
  base: string,
  head: string,
  setting: CiRequired,
  /** Names GitHub's refusals said are required, on top of the rest. */
  learned: readonly string[] = [],
): Promise<CiVerdict> {
  // One span per look: a merge waiting for CI shows in the request's trace as its looks, until green or red.
  return inSpan('ci look', { 'fleet.repo': repo, 'fleet.head_sha': head }, async (span) => {
    const verdict = await readVerdict(forge, repo, base, head, setting, learned);
    span.setAttributes({ 'fleet.ci.pending': verdict.pending.length, 'fleet.ci.failing': verdict.failing.length });
    return verdict;
  });
}

async function readVerdict(
  forge: Forge,
  repo: RepoName,
  base: string,
  head: string,
  setting: CiRequired,
  learned: readonly string[],
): Promise<CiVerdict> {
  const [protectedNames, onHead] = await Promise.all([forge.getRequiredChecks(repo, base), forge.getCommitChecks(repo, head)]);
  const all = onHead.map((c) => c.name);
  let required: string[];
  if (setting.kind === 'all') required = [...new Set([...(protectedNames ?? []), ...all])];
  else if (protectedNames) required = protectedNames;
  else if (setting.kind === 'auto') required = all;
  else if (setting.kind === 'none') required = [];
  else required = setting.names;
  required = [...new Set([...required, ...learned])];
  const byName = new Map(onHead.map((c) => [c.name, c]));
  const pending = required.filter((n) => (byName.get(n)?.state ?? 'pending') === 'pending');
  const failing = required.map((n) => byName.get(n)).filter((c): c is CommitCheck => c?.state === 'failure');
  const checks = required.map((n) => byName.get(n)).filter((c): c is CommitCheck => c !== undefined);
  return { required, pending, failing, checks };
}

/** The checks as a v2 scope reports them. */
export function checkRecords(checks: CommitCheck[]): CheckRecord[] {
  return checks.map((c) => ({ name: c.name, conclusion: c.conclusion, url: c.url }));
}

/** "lint (failure: https://...), test (timed_out)": the failing checks for a message. */
export function describeChecks(checks: CommitCheck[]): string {
  return checks.map((c) => `${c.name} (${c.conclusion ?? c.state}${c.url ? `: ${c.url}` : ''})`).join(', ');
}

/** The next poll's delay: doubling from `baseMs`, at most `maxMs`. */
export function ciBackoffMs(polls: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(polls, 20));
}

/** What a fix worker needs to know about each failing check: its summary, annotations and job log. */
export async function failingCheckDetails(forge: Forge, repo: RepoName, failing: CommitCheck[]): Promise<FailingCheck[]> {
  return Promise.all(
    failing.map(async (c) => ({
      name: c.name,
      conclusion: c.conclusion,
      url: c.url,
      summary: c.summary,
      annotations: c.checkRunId === undefined ? [] : await forge.getCheckRunAnnotations(repo, c.checkRunId),
      log: c.checkRunId !== undefined && c.actionsJob ? await forge.getActionsJobLog(repo, c.checkRunId) : null,
    })),
  );
}

/** Why GitHub refused a merge, from `mergeable_state` and its message (GitHub words them for humans). */
export function classifyRefusal(mergeableState: string, message: string): 'conflict' | 'checks' | 'review' | 'behind' | 'unknown' {
  if (mergeableState === 'dirty' || /conflict/i.test(message)) return 'conflict';
  if (mergeableState === 'behind' || /not up to date|out of date/i.test(message)) return 'behind';
  if (/approving review|review is required|changes requested|code owner/i.test(message)) return 'review';
  if (/status check|check run|checks? (is|are) (expected|pending|in progress|failing)/i.test(message)) return 'checks';
  // The older, unexplained "Pull Request is not mergeable" with nothing else to go on is a conflict, as before.
  if (mergeableState === 'blocked' || mergeableState === 'unknown' || mergeableState === 'unstable') return 'unknown';
  return /is not mergeable/i.test(message) ? 'conflict' : 'unknown';
}

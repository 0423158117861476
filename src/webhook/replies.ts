/**
 * The comments fleet posts back on an issue or pull request. Pure. None starts with a mention or the trigger
 * word, and fleet ignores comments by its own account anyway, so a reply never triggers anything.
 */
import type { FlowResult, PullRequestRef, SpawnResult } from '../protocol.ts';

const MAX_MESSAGE = 600;

function bound(text: string, max = MAX_MESSAGE): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** To someone without write access to the repository. */
export function refusalReply(login: string, repo: string, permission: string): string {
  return [
    `Thanks for the suggestion, @${login}. fleet only takes instructions from people with write access to ${repo}, and your permission here is \`${permission}\`.`,
    'A maintainer can ask for it instead.',
  ].join(' ');
}

/** A request fleet could not take (a follow-up on a closed pull request, a repository it may not work on). */
export function invalidReply(reason: string): string {
  return `fleet cannot take this request: ${bound(reason)}`;
}

/** A trigger word with nothing after it, on a pull request fleet opened. */
export function emptyInstructionReply(word: string): string {
  return `fleet needs to know what to change: write the instructions after ${word} in one comment.`;
}

/** The pull requests a result names: a single worker's, or each scope's. */
export function pullRequestsOf(result: SpawnResult): { number: number; url: string }[] {
  const single = (result as SpawnResult & { pull_request?: PullRequestRef | null }).pull_request;
  if (single) return [{ number: single.number, url: single.url }];
  const scopes = (result as Partial<FlowResult>).pull_requests;
  return Array.isArray(scopes) ? scopes.map((p) => ({ number: p.number, url: p.url })) : [];
}

/** The outcome of a request, with a link to each pull request it opened or continued. */
export function outcomeReply(result: SpawnResult): string {
  const prs = pullRequestsOf(result);
  const links = prs.map((p) => `#${p.number} (${p.url})`).join(', ');
  const id = `\`${result.request_id}\``;
  if (result.success) {
    return prs.length
      ? `fleet finished request ${id}: pull request ${links}.`
      : `fleet finished request ${id}, but it opened no pull request.`;
  }
  const why = `\`${result.error_type ?? 'failed'}\`${result.error_message ? `: ${bound(result.error_message)}` : ''}`;
  return `fleet could not finish request ${id} (${why}).${prs.length ? ` Pull request: ${links}.` : ''}`;
}

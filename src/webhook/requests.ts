/**
 * The v2 spawn requests a webhook delivery becomes. Pure. A request carries no token: the worker acts with the
 * host's own (FLEET_GITHUB_TOKEN), so nothing secret is built here, stored or logged.
 */
import type { LineComment } from '../forge.ts';
import type { SpawnRequestInput } from '../protocol.ts';
import type { Intent } from './intents.ts';

/** GitHub's delivery ids are GUIDs; anything else is not a delivery from GitHub. */
export const DELIVERY_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;

/**
 * The request id of a delivery: `gh-{delivery}`. A redelivery (same id) makes the same request id, so even a
 * delivery that passed the dedupe key (after it expired) cannot start a second job.
 */
export function requestIdOf(deliveryId: string): string {
  if (!DELIVERY_ID_PATTERN.test(deliveryId)) throw new Error(`X-GitHub-Delivery "${deliveryId.slice(0, 80)}" is not a delivery id`);
  return `gh-${deliveryId}`;
}

const MAX_TITLE = 200;

/** A task title the protocol accepts: one line, no control characters, 1-200 characters. */
export function titleOf(text: string, fallback: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this removes
  const oneLine = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ');
  const line = oneLine.replace(/\s+/g, ' ').trim();
  if (!line) return fallback;
  let cut = line.slice(0, MAX_TITLE);
  // Never end on half a surrogate pair.
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
  return cut;
}

export interface FollowUp {
  pullRequest: number;
}

/** What fleet read from GitHub besides the payload. */
export interface RequestExtras {
  /** A comment on fleet's own open pull request continues it. */
  followUp?: FollowUp;
  /** A review's line comments. */
  reviewComments?: LineComment[];
}

/** Review comments a fix task names at most, and characters of each: a review is not a place for megabytes. */
const MAX_REVIEW_COMMENTS = 50;
const MAX_COMMENT_CHARS = 2000;

/** The request a delivery becomes. */
export function requestOf(intent: Exclude<Intent, { kind: 'ignore' }>, deliveryId: string, extras: RequestExtras = {}): SpawnRequestInput {
  const { followUp } = extras;
  const base = { request_id: requestIdOf(deliveryId), repo: intent.repo, mode: 'pr' as const, result_format: 'v2' as const };
  const reference = `${intent.repo}#${intent.number}`;
  switch (intent.kind) {
    case 'issue':
      return {
        ...base,
        task_title: titleOf(intent.title, `Issue ${reference}`),
        task_content: issueTask(intent.title, intent.body),
      };
    case 'comment': {
      if (followUp) {
        return {
          ...base,
          task_title: titleOf(intent.instruction, `Follow-up on ${reference}`),
          task_content: `${intent.instruction}\n\n(Asked by @${intent.sender} on pull request ${reference}: ${intent.title}.)`,
          follow_up: { pull_request: followUp.pullRequest },
        };
      }
      // On an issue (or a pull request fleet did not open): a new task, with the conversation's subject as context.
      const task = intent.instruction
        ? `${intent.instruction}\n\n## Context: ${intent.onPullRequest ? 'pull request' : 'issue'} ${reference}\n\n${issueTask(intent.title, intent.body)}`
        : issueTask(intent.title, intent.body);
      return { ...base, task_title: titleOf(intent.instruction || intent.title, `Task from ${reference}`), task_content: task };
    }
    case 'review':
      return {
        ...base,
        task_title: titleOf(`Address review of #${intent.number}: ${intent.title}`, `Address review of ${reference}`),
        task_content: reviewTask(intent.number, intent.branch, intent.sender, intent.feedback, extras.reviewComments ?? []),
        follow_up: { pull_request: intent.number },
      };
  }
}

/** An issue as a task: its title and body. */
export function issueTask(title: string, body: string): string {
  return body.trim() ? `${title}\n\n${body}` : title;
}

/** The task of a fix round a human reviewer asked for: the review's summary and its line comments. */
export function reviewTask(number: number, branch: string, reviewer: string, feedback: string, comments: LineComment[]): string {
  const cut = (text: string) => (text.length <= MAX_COMMENT_CHARS ? text : `${text.slice(0, MAX_COMMENT_CHARS)}…`);
  const lines = comments.slice(0, MAX_REVIEW_COMMENTS).map((c) => `- \`${c.path}${c.line ? `:${c.line}` : ''}\`: ${cut(c.body)}`);
  if (comments.length > MAX_REVIEW_COMMENTS) lines.push(`- … and ${comments.length - MAX_REVIEW_COMMENTS} more on the pull request`);
  return [
    `# Address the review of pull request #${number}`,
    `@${reviewer} requested changes on branch \`${branch}\`. Change the code so that the review below is addressed. The branch is checked out with its earlier commits.`,
    `## Review\n\n${feedback.trim() || '(the reviewer wrote no summary)'}`,
    ...(lines.length ? [`## Comments on lines\n\n${lines.join('\n')}`] : []),
  ].join('\n\n');
}

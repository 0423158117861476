/**
 * Pure builders of the text fleet writes to GitHub and to follow-up workers: pull request
 * bodies, the task of a fix worker, the task of a conflict worker. Unit-tested.
 */
import type { EgressReport } from './protocol.ts';

const TASK_EXCERPT = 4000;

function excerpt(text: string, max = TASK_EXCERPT): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n\n… (${text.length - max} more characters)`;
}

export function pullRequestBody(input: {
  requestId: string;
  scope: string | null;
  summary: string | null;
  task: string;
  files: string[];
  /** FLEET_EGRESS=proxy: what the worker was refused, listed so a reviewer sees what the agent tried. */
  egress?: EgressReport;
}): string {
  const lines = [
    input.summary ? `## Summary\n\n${input.summary}` : '## Summary\n\n(the worker gave no summary)',
    `## Task\n\n${excerpt(input.task)}`,
  ];
  if (input.files.length)
    lines.push(
      `## Files changed\n\n${input.files
        .slice(0, 100)
        .map((f) => `- \`${f}\``)
        .join('\n')}${input.files.length > 100 ? `\n- … and ${input.files.length - 100} more` : ''}`,
    );
  const blocked = input.egress?.blocked ?? [];
  if (blocked.length)
    lines.push(
      `## Blocked network access\n\nThe sandbox's egress proxy refused these connections:\n\n${blocked
        .map((b) => `- \`${b.method} ${b.host}:${b.port}\`: ${b.reason}${b.count > 1 ? ` (${b.count} times)` : ''}`)
        .join('\n')}`,
    );
  lines.push(`---\nOpened by fleet for request \`${input.requestId}\`${input.scope ? `, scope \`${input.scope}\`` : ''}.`);
  return lines.join('\n\n');
}

/** The task of a worker that addresses review feedback on the same branch. */
export function fixTask(input: {
  feedback: string;
  comments: { path: string; line?: number; body: string }[];
  originalTask: string;
  round: number;
  branch: string;
}): string {
  const comments = input.comments.map((c) => `- \`${c.path}${c.line ? `:${c.line}` : ''}\`: ${c.body}`).join('\n');
  return [
    `# Address the review of your pull request (round ${input.round})`,
    `A reviewer rejected the changes on branch \`${input.branch}\`. Change the code so that the feedback below is addressed, keeping what the original task asks for. The branch is checked out with your earlier commits.`,
    `## Review feedback\n\n${input.feedback || '(no summary given)'}`,
    ...(comments ? [`## Comments on lines\n\n${comments}`] : []),
    `## The original task\n\n${input.originalTask}`,
  ].join('\n\n');
}

/** The task of a worker that makes a conflicting pull request mergeable again. */
export function conflictTask(input: { branch: string; base: string; originalTask: string }): string {
  return [
    `# Resolve the conflicts of \`${input.branch}\` with \`${input.base}\``,
    `Other changes were merged into \`${input.base}\` after this branch was made, and the pull request no longer merges cleanly. \`${input.base}\` has been merged into the branch in your workspace; resolve every conflict so that both sides' changes work together, and keep the intent of the original task. Leave no conflict markers.`,
    `## The original task\n\n${input.originalTask}`,
  ].join('\n\n');
}

/** A failing check as a fix worker reads it. */
export interface FailingCheck {
  name: string;
  conclusion: string | null;
  url: string | null;
  summary: string | null;
  annotations: { path: string; line: number; level: string; message: string }[];
  /** The Actions job's log, whole; the task keeps its tail. */
  log: string | null;
}

/** Lines and characters of each job log's tail a CI fix task keeps: the error is almost always at the end. */
export const LOG_TAIL_LINES = 80;
export const LOG_TAIL_CHARS = 6000;
const ANNOTATIONS_KEPT = 20;

/** The last lines of a log, at most LOG_TAIL_LINES and LOG_TAIL_CHARS, with GitHub's timestamps dropped. */
export function logTail(log: string): string {
  const lines = log
    .replace(/\r/g, '')
    .split('\n')
    .map((l) => l.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /, ''));
  while (lines.length && lines.at(-1) === '') lines.pop();
  let tail = lines.slice(-LOG_TAIL_LINES).join('\n');
  if (tail.length > LOG_TAIL_CHARS) tail = tail.slice(-LOG_TAIL_CHARS);
  const cut = lines.length > LOG_TAIL_LINES || tail.length === LOG_TAIL_CHARS;
  return cut ? `… (earlier lines cut)\n${tail}` : tail;
}

/** The task of a worker that makes red required checks green on the same branch. */
export function ciFixTask(input: { checks: FailingCheck[]; originalTask: string; round: number; branch: string }): string {
  const sections = input.checks.map((c) => {
    const parts = [`### ${c.name}: ${c.conclusion ?? 'failed'}${c.url ? ` (${c.url})` : ''}`];
    if (c.summary) parts.push(excerpt(c.summary, 1500));
    if (c.annotations.length) {
      const shown = c.annotations.slice(0, ANNOTATIONS_KEPT).map((a) => `- \`${a.path}:${a.line}\` (${a.level}): ${a.message}`);
      if (c.annotations.length > ANNOTATIONS_KEPT) shown.push(`- … and ${c.annotations.length - ANNOTATIONS_KEPT} more`);
      parts.push(`Annotations:\n${shown.join('\n')}`);
    }
    if (c.log) parts.push(`End of the job log:\n\n\`\`\`\n${logTail(c.log).replace(/```/g, "'''")}\n\`\`\``);
    return parts.join('\n\n');
  });
  return [
    `# Make the failing checks of your pull request pass (round ${input.round})`,
    `The required checks below failed on branch \`${input.branch}\`. Find the cause and change the code so that they pass, keeping what the original task asks for. The branch is checked out with your earlier commits.`,
    `## Failing checks\n\n${sections.join('\n\n')}`,
    `## The original task\n\n${input.originalTask}`,
  ].join('\n\n');
}

/**
 * Pure builders of the text fleet writes to GitHub and to follow-up workers: pull request
 * bodies, the task of a fix worker, the task of a conflict worker. Unit-tested.
 */

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

/**
 * `FLEET_REVIEWER=agent`: the review runs as a worker container on the pull request's branch (so it can run
 * the project's tests); the review processor starts it with {@link buildAgentReviewTask} as its task and reads
 * the verdict from its `completed` event's summary with {@link verdictFromAgentSummary}. Both are pure.
 */
import { ReviewError } from '../errors.ts';
import type { ReviewInput, Verdict } from '../forge.ts';
import { parseAnswer } from './prompt.ts';

/** TASK.md for the reviewer worker. */
export function buildAgentReviewTask(input: Omit<ReviewInput, 'diff'>): string {
  const lines = [
    `# Review pull request #${input.number} of ${input.repo}: ${input.title}`,
    '',
    `You are on the pull request's branch at commit ${input.headSha}. Do not commit or push: nothing you change in the workspace is kept.`,
    "Read the change (`git diff` against the base branch), run the project's tests and linters if it has them,",
    'and decide whether the change does what the task asks, is correct, and is safe to merge.',
  ];
  if (input.task) lines.push('', '## The task the change was made for', '', input.task);
  if (input.body) lines.push('', '## Pull request description', '', input.body);
  lines.push(
    '',
    '## Your answer',
    '',
    'End your final answer with your verdict as exactly one JSON object. Only the final answer counts (it is read once every process you started has been stopped; no file is read):',
    '{"approved": boolean, "feedback": string, "comments": [{"path": string, "line": number, "body": string}]}',
    'When you reject, "feedback" must say exactly what to change: another agent gets it as its task.',
  );
  return lines.join('\n');
}

/** The verdict in a reviewer worker's summary; the agent saw the whole branch, so coverage is complete. */
export function verdictFromAgentSummary(summary: string | null | undefined, diff: string): Verdict {
  // The worker already extracted the verdict object from the agent's final message: read it strictly.
  const parsed = parseAnswer(summary ?? '');
  if (!parsed.ok) throw new ReviewError(`reviewer agent's summary holds no verdict (${parsed.error})`, { retryable: true });
  const totalBytes = Buffer.byteLength(diff, 'utf8');
  return { ...parsed.value, coverage: { reviewedBytes: totalBytes, totalBytes, truncated: false } };
}

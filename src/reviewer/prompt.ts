/**
 * Pure pieces of the LLM reviewer: splitting a diff to fit the model, the chat messages, and reading the
 * model's answer. No I/O here, so all of it is unit-tested directly.
 */
import { z } from 'zod';
import type { LineComment, ReviewCoverage, ReviewInput } from '../forge.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** One file's part of a unified diff. */
export interface DiffFile {
  path: string;
  text: string;
}

/** The parts of a diff that will be reviewed, one model call each, and how much of the diff they cover. */
export interface DiffPlan {
  chunks: string[];
  coverage: ReviewCoverage;
  /** Paths left out or cut short. */
  omitted: string[];
}

const bytes = (text: string) => Buffer.byteLength(text, 'utf8');

/** Splits a unified diff at its `diff --git` headers; text before the first header is kept as its own part. */
export function splitDiffByFile(diff: string): DiffFile[] {
  const files: DiffFile[] = [];
  const starts = [...diff.matchAll(/^diff --git a\/(\S+) b\/(\S+)/gm)];
  if (starts.length === 0) return diff.length > 0 ? [{ path: '(diff)', text: diff }] : [];
  if (starts[0]!.index > 0) files.push({ path: '(preamble)', text: diff.slice(0, starts[0]!.index) });
  starts.forEach((match, i) => {
    const end = i + 1 < starts.length ? starts[i + 1]!.index : diff.length;
    files.push({ path: match[2]!, text: diff.slice(match.index, end) });
  });
  return files;
}

const TRIM_NOTE = '\n[... rest of this file\'s diff not shown: too large for one review ...]\n';

/**
 * Packs whole files into chunks of at most `maxChars`, in diff order, and at most `maxChunks` chunks. A file
 * larger than `maxChars` is cut to fit (marked as cut); files that do not fit in the chunk budget are left out.
 * Coverage counts the diff's bytes that the model will see.
 */
export function planChunks(diff: string, maxChars: number, maxChunks: number): DiffPlan {
  if (maxChars < 200) throw new Error(`maxChars must be at least 200, got ${maxChars}`);
  const totalBytes = bytes(diff);
  const chunks: string[] = [];
  const omitted: string[] = [];
  let current = '';
  let reviewedBytes = 0;
  const flush = () => {
    if (current) chunks.push(current);
    current = '';
  };
  for (const file of splitDiffByFile(diff)) {
    let text = file.text;
    let cut = false;
    if (text.length > maxChars) {
      text = text.slice(0, maxChars - TRIM_NOTE.length);
      cut = true;
    }
    if (current.length + text.length + (cut ? TRIM_NOTE.length : 0) > maxChars) flush();
    // After a flush with the chunk budget used up, nothing more fits.
    if (chunks.length >= maxChunks) {
      omitted.push(file.path);
      continue;
    }
    current += cut ? text + TRIM_NOTE : text;
    reviewedBytes += bytes(text);
    if (cut) omitted.push(file.path);
  }
  flush();
  return { chunks, omitted, coverage: { reviewedBytes, totalBytes, truncated: reviewedBytes < totalBytes } };
}

export const SYSTEM_PROMPT = [
  'You review pull requests written by an AI coding agent before they are merged.',
  'Judge whether the diff does what the task asks, is correct, and is safe to merge: look for bugs, missing',
  'error handling, security problems (secrets, injection), broken tests, and changes unrelated to the task.',
  'Approve when the change is correct and complete; minor style points alone are no reason to reject.',
  'Answer with one JSON object and nothing else:',
  '{"approved": boolean, "feedback": string, "comments": [{"path": string, "line": number, "body": string}]}',
  '"feedback" is a short summary; when you reject, it must say exactly what to change, because another agent',
  'will get it as its task. "line" is a line number in the new version of the file and may be omitted.',
].join('\n');

/** The messages for one chunk of the diff. */
export function buildReviewMessages(input: Omit<ReviewInput, 'diff'>, chunk: string, part: { index: number; count: number; omitted: string[] }): ChatMessage[] {
  const lines = [`Repository: ${input.repo}`, `Pull request #${input.number}: ${input.title}`];
  if (input.task) lines.push('', 'Task given to the agent:', input.task);
  if (input.body) lines.push('', 'Pull request description:', input.body);
  if (part.count > 1) lines.push('', `The diff is split in ${part.count} parts; this is part ${part.index + 1}. Judge only what you see, but flag anything that cannot be right whatever the other parts hold.`);
  if (part.omitted.length > 0) lines.push('', `Not shown (too large): ${part.omitted.join(', ')}.`);
  lines.push('', 'Diff:', '```diff', chunk.trimEnd(), '```');
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    { role: 'user', content: lines.join('\n') },
  ];
}

/** The follow-up message after an answer that was not the JSON asked for. */
export function buildRepairMessage(problem: string): ChatMessage {
  return { role: 'user', content: `Your answer could not be used: ${problem}. Answer again with only the JSON object described above.` };
}

const AnswerSchema = z.object({
  approved: z.boolean(),
  feedback: z.string(),
  comments: z
    .array(z.object({ path: z.string().min(1), line: z.number().int().positive().optional(), body: z.string().min(1) }))
    .default([]),
});

export type ModelAnswer = { approved: boolean; feedback: string; comments: LineComment[] };

/** Reads the model's answer: bare JSON or JSON in a fenced block; an error says what was wrong, for the retry. */
export function parseAnswer(text: string): { ok: true; value: ModelAnswer } | { ok: false; error: string } {
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(text);
  const candidate = (fenced ? fenced[1]! : text).trim();
  let json: unknown;
  try {
    json = JSON.parse(candidate);
  } catch {
    return { ok: false, error: 'it is not valid JSON' };
  }
  const parsed = AnswerSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, error: `field "${issue?.path.join('.') || '(root)'}": ${issue?.message ?? 'invalid'}` };
  }
  const comments = parsed.data.comments.map((c) => (c.line === undefined ? { path: c.path, body: c.body } : { path: c.path, line: c.line, body: c.body }));
  return { ok: true, value: { approved: parsed.data.approved, feedback: parsed.data.feedback, comments } };
}

/** One verdict from the verdicts of the parts: approved only if every part is. */
export function mergeAnswers(answers: ModelAnswer[], coverage: ReviewCoverage): { approved: boolean; feedback: string; comments: LineComment[] } {
  const approved = answers.length > 0 && answers.every((a) => a.approved);
  const feedbacks = answers.length === 1 ? [answers[0]!.feedback] : answers.map((a, i) => `Part ${i + 1}: ${a.feedback}`);
  if (coverage.truncated) {
    feedbacks.push(`(Reviewed ${coverage.reviewedBytes} of ${coverage.totalBytes} bytes of the diff; the rest was too large for the model.)`);
  }
  return { approved, feedback: feedbacks.join('\n\n'), comments: answers.flatMap((a) => a.comments) };
}

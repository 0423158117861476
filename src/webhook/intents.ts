/**
 * What a GitHub delivery asks of fleet, read from the parts of its payload fleet uses. Pure: no I/O, so every
 * rule (which label, which word, which review) is unit-testable. The payload parts are parsed with zod; a
 * delivery of a known event whose payload lacks them is refused with the path that is missing.
 */
import { z } from 'zod';

/** The trigger settings (FLEET_TRIGGER_LABEL, FLEET_TRIGGER_WORD). */
export interface TriggerSettings {
  label: string;
  word: string;
}

const user = z.object({ login: z.string().min(1), type: z.string().default('User') });
const repository = z.object({ full_name: z.string().regex(/^[^/\s]+\/[^/\s]+$/) });
const issue = z.object({
  number: z.number().int().positive(),
  title: z.string(),
  body: z.string().nullable().default(null),
  // Present (an object of links) when the "issue" is a pull request's conversation.
  pull_request: z.object({}).passthrough().optional(),
});

const labeledIssue = z.object({
  action: z.literal('labeled'),
  label: z.object({ name: z.string() }),
  issue,
  repository,
  sender: user,
});

const createdComment = z.object({
  action: z.literal('created'),
  comment: z.object({ id: z.number(), body: z.string().nullable().default(null), user }),
  issue,
  repository,
  sender: user,
});

const submittedReview = z.object({
  action: z.literal('submitted'),
  review: z.object({ id: z.number(), state: z.string(), body: z.string().nullable().default(null), user }),
  pull_request: z.object({
    number: z.number().int().positive(),
    title: z.string(),
    state: z.string(),
    head: z.object({ ref: z.string(), repo: z.object({ full_name: z.string() }).nullable() }),
  }),
  repository,
  sender: user,
});

/** What a delivery asks. `sender` is the account whose permission decides whether fleet acts. */
export type Intent =
  | { kind: 'ignore'; reason: string }
  /** An issue labelled with the trigger label: the issue is the task. */
  | { kind: 'issue'; repo: string; number: number; title: string; body: string; sender: string }
  /** A comment starting with the trigger word, on an issue or a pull request. */
  | {
      kind: 'comment';
      repo: string;
      number: number;
      onPullRequest: boolean;
      /** The comment after the trigger word (may be empty). */
      instruction: string;
      title: string;
      body: string;
      sender: string;
    }
  /** "Changes requested" on a pull request from a `fleet/` branch of the same repository. */
  | {
      kind: 'review';
      repo: string;
      number: number;
      /** The review's id: its line comments are read with it. */
      reviewId: number;
      branch: string;
      title: string;
      feedback: string;
      sender: string;
    };

/** Thrown for a delivery of a known event whose payload lacks a part fleet reads. */
export class PayloadError extends Error {
  override name = 'PayloadError';
}

function parse<T>(schema: z.ZodType<T>, payload: unknown, event: string): T {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  const issueText = parsed.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`)
    .join('; ');
  throw new PayloadError(`${event} payload is not what GitHub sends: ${issueText}`);
}

/**
 * The instruction of a comment that starts with the trigger word (leading blank lines and spaces allowed), or
 * undefined when it does not. The word must stand alone: `@fleetwood` is not `@fleet`. Case-insensitive, as
 * GitHub mentions are.
 */
export function instructionOf(text: string, word: string): string | undefined {
  const trimmed = text.trimStart();
  if (trimmed.slice(0, word.length).toLowerCase() !== word.toLowerCase()) return undefined;
  const rest = trimmed.slice(word.length);
  if (rest !== '' && !/^[\s,:]/.test(rest)) return undefined;
  return rest.replace(/^[\s,:]+/, '').trim();
}

/** Reads one delivery. Events and actions fleet does not act on are `ignore`, with why. */
export function intentOf(event: string, payload: unknown, trigger: TriggerSettings): Intent {
  const action = (payload as { action?: unknown } | null)?.action;
  const name = typeof action === 'string' ? `${event}.${action}` : event;
  switch (name) {
    case 'issues.labeled': {
      const p = parse(labeledIssue, payload, name);
      if (p.label.name.toLowerCase() !== trigger.label.toLowerCase()) return { kind: 'ignore', reason: `label "${p.label.name}"` };
      if (p.sender.type === 'Bot') return { kind: 'ignore', reason: 'labelled by a bot' };
      return {
        kind: 'issue',
        repo: p.repository.full_name,
        number: p.issue.number,
        title: p.issue.title,
        body: p.issue.body ?? '',
        sender: p.sender.login,
      };
    }
    case 'issue_comment.created': {
      const p = parse(createdComment, payload, name);
      const instruction = instructionOf(p.comment.body ?? '', trigger.word);
      if (instruction === undefined) return { kind: 'ignore', reason: `comment without ${trigger.word}` };
      if (p.comment.user.type === 'Bot') return { kind: 'ignore', reason: 'comment by a bot' };
      return {
        kind: 'comment',
        repo: p.repository.full_name,
        number: p.issue.number,
        onPullRequest: p.issue.pull_request !== undefined,
        instruction,
        title: p.issue.title,
        body: p.issue.body ?? '',
        sender: p.comment.user.login,
      };
    }
    case 'pull_request_review.submitted': {
      const p = parse(submittedReview, payload, name);
      if (p.review.state.toLowerCase() !== 'changes_requested') return { kind: 'ignore', reason: `review ${p.review.state}` };
      const fromFleet =
        p.pull_request.head.ref.startsWith('fleet/') &&
        p.pull_request.head.repo?.full_name.toLowerCase() === p.repository.full_name.toLowerCase();
      if (!fromFleet) return { kind: 'ignore', reason: 'review of a pull request fleet did not open' };
      if (p.pull_request.state !== 'open') return { kind: 'ignore', reason: `review of a ${p.pull_request.state} pull request` };
      if (p.review.user.type === 'Bot') return { kind: 'ignore', reason: 'review by a bot' };
      return {
        kind: 'review',
        repo: p.repository.full_name,
        number: p.pull_request.number,
        reviewId: p.review.id,
        branch: p.pull_request.head.ref,
        title: p.pull_request.title,
        feedback: p.review.body ?? '',
        sender: p.review.user.login,
      };
    }
    default:
      return { kind: 'ignore', reason: `event ${name}` };
  }
}

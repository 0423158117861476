/**
 * `FLEET_REVIEWER=llm`: a {@link Reviewer} on an OpenAI-compatible chat-completions endpoint. A diff too large
 * for the model is split per file (a large file across calls) into at most `maxChunks` calls; a diff that
 * needs more gets no verdict at all (`review_incomplete`): nothing is approved unread. A malformed answer
 * is asked for again a bounded number of times.
 */
import type { Logger } from 'pino';
import { ReviewError } from '../errors.ts';
import type { ReviewInput, Reviewer, Verdict } from '../forge.ts';
import {
  buildRepairMessage,
  buildReviewMessages,
  mergeAnswers,
  parseAnswer,
  planChunks,
  type ChatMessage,
  type ModelAnswer,
} from './prompt.ts';

export interface LlmReviewerOptions {
  /** Base URL up to and including `/v1` (`FLEET_LLM_BASE_URL`), e.g. `https://api.openai.com/v1`. */
  baseUrl: string;
  /** Bearer key (`FLEET_LLM_API_KEY`); never logged. Empty for endpoints without auth. */
  apiKey: string;
  /** Model name (`FLEET_LLM_MODEL`). */
  model: string;
  logger: Pick<Logger, 'debug' | 'info' | 'warn'>;
  /** Characters of diff per model call. @defaultValue 60000 */
  maxDiffChars?: number;
  /** Model calls per review at most; a diff that needs more gets no verdict (review_incomplete). @defaultValue 8 */
  maxChunks?: number;
  /** Answers per chunk before a malformed answer becomes a ReviewError. @defaultValue 3 */
  maxAttempts?: number;
  /** HTTP retries per call on 429/5xx/network errors. @defaultValue 3 */
  maxHttpRetries?: number;
  /** Longest retry-after honoured, in ms; a longer one fails the review as retryable. @defaultValue 60000 */
  maxRetryAfterMs?: number;
  /** Timeout of one HTTP call. @defaultValue 120000 */
  timeoutMs?: number;
  /** Injected for tests. */
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

const DEFAULTS = { maxDiffChars: 60_000, maxChunks: 8, maxAttempts: 3, maxHttpRetries: 3, maxRetryAfterMs: 60_000, timeoutMs: 120_000 };

interface ChatCompletion {
  choices?: { message?: { content?: string | null } }[];
}

export class LlmReviewer implements Reviewer {
  private readonly opts: LlmReviewerOptions & typeof DEFAULTS;
  private readonly url: string;

  constructor(opts: LlmReviewerOptions) {
    this.opts = { ...DEFAULTS, ...opts };
    if (!/^https?:\/\//.test(opts.baseUrl)) throw new Error(`LLM reviewer baseUrl must be an http(s) URL, got "${opts.baseUrl}"`);
    if (!opts.model) throw new Error('LLM reviewer model is empty');
    for (const key of ['maxDiffChars', 'maxChunks', 'maxAttempts'] as const) {
      if (!Number.isInteger(this.opts[key]) || this.opts[key] < 1)
        throw new Error(`LLM reviewer ${key} must be a positive integer, got ${this.opts[key]}`);
    }
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  }

  async review(input: ReviewInput): Promise<Verdict> {
    const plan = planChunks(input.diff, this.opts.maxDiffChars, this.opts.maxChunks);
    if (plan.chunks.length === 0) {
      return { approved: false, feedback: 'The pull request has no diff to review.', comments: [], coverage: plan.coverage };
    }
    if (plan.coverage.truncated) {
      throw new ReviewError(
        `the diff of ${input.repo}#${input.number} is ${plan.coverage.totalBytes} bytes: ${this.opts.maxChunks} review calls of ${this.opts.maxDiffChars} characters cover ${plan.coverage.reviewedBytes}, and a partly read diff is never approved (raise FLEET_LLM_MAX_CHUNKS or split the task)`,
        { retryable: false, errorType: 'review_incomplete' },
      );
    }
    const answers: ModelAnswer[] = [];
    for (const [index, chunk] of plan.chunks.entries()) {
      const messages = buildReviewMessages(input, chunk, { index, count: plan.chunks.length, omitted: plan.omitted });
      answers.push(await this.answer(messages, `${input.repo}#${input.number} part ${index + 1}/${plan.chunks.length}`));
    }
    const verdict = { ...mergeAnswers(answers, plan.coverage), coverage: plan.coverage };
    this.opts.logger.info(
      { repo: input.repo, number: input.number, approved: verdict.approved, parts: plan.chunks.length, coverage: plan.coverage },
      'LLM review done',
    );
    return verdict;
  }

  /** Asks until the answer parses, at most `maxAttempts` times, showing the model what was wrong. */
  private async answer(messages: ChatMessage[], what: string): Promise<ModelAnswer> {
    const conversation = [...messages];
    let problem = '';
    for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
      const text = await this.complete(conversation);
      const parsed = parseAnswer(text);
      if (parsed.ok) return parsed.value;
      problem = parsed.error;
      this.opts.logger.warn({ review: what, attempt, problem }, 'LLM reviewer answer malformed; asking again');
      conversation.push({ role: 'assistant', content: text }, buildRepairMessage(problem));
    }
    throw new ReviewError(`LLM reviewer gave no usable verdict for ${what} in ${this.opts.maxAttempts} answers (last: ${problem})`, {
      retryable: false,
    });
  }

  /** One chat completion, retried on 429 (after retry-after), 5xx and network errors. */
  private async complete(messages: ChatMessage[]): Promise<string> {
    const doFetch = this.opts.fetch ?? fetch;
    const sleep = this.opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    const body = JSON.stringify({ model: this.opts.model, messages, temperature: 0, response_format: { type: 'json_object' } });
    for (let retry = 0; ; retry++) {
      let response: Response;
      try {
        response = await doFetch(this.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.opts.timeoutMs) });
      } catch (error) {
        if (retry >= this.opts.maxHttpRetries)
          throw new ReviewError(`LLM endpoint unreachable: ${(error as Error).message}`, { retryable: true, cause: error });
        await sleep(1_000 * 2 ** retry);
        continue;
      }
      if (response.ok) {
        const data = (await response.json().catch(() => ({}))) as ChatCompletion;
        return data.choices?.[0]?.message?.content ?? '';
      }
      const detail = (await response.text().catch(() => '')).slice(0, 300);
      const transient = response.status === 429 || response.status >= 500;
      if (!transient) throw new ReviewError(`LLM endpoint answered ${response.status}: ${detail}`, { retryable: false });
      const retryAfterMs = Number(response.headers.get('retry-after')) * 1000 || 1_000 * 2 ** retry;
      if (retry >= this.opts.maxHttpRetries || retryAfterMs > this.opts.maxRetryAfterMs) {
        throw new ReviewError(`LLM endpoint answered ${response.status} ${retry + 1} times: ${detail}`, { retryable: true });
      }
      this.opts.logger.warn({ status: response.status, retryAfterMs }, 'LLM endpoint busy; retrying');
      await sleep(retryAfterMs);
    }
  }
}

export function createLlmReviewer(opts: LlmReviewerOptions): Reviewer {
  return new LlmReviewer(opts);
}

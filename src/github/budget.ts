/**
 * GitHub's primary rate limit, shared over Redis: every response's `x-ratelimit-*` headers are recorded per
 * token and resource, and a request is held back until the reset when the recorded budget is too low.
 *
 * Why a reserve instead of waiting only at 0: up to `maxConcurrent` requests of one token are in flight across
 * all hosts at any time, each already counted by GitHub before its answer arrives. A request sent after an
 * answer showing `remaining = R` reaches GitHub with at least `R - (maxConcurrent - 1)` left, so it is safe
 * while `R >= maxConcurrent`.
 */
import type { Redis } from 'ioredis';
import { fleetKeys } from '../keys.ts';
import type { LimiterLogger } from './limiter.ts';

/** One reading of the budget of a token for one resource (`core`, `search`, `graphql`, ...). */
export interface BudgetReading {
  remaining: number;
  limit: number;
  resetAt: Date;
  resource: string;
}

export interface BudgetBookOptions {
  redis: Redis;
  prefix: string;
  logger: LimiterLogger;
  /** Requests below which the budget counts as spent until its reset. */
  reserve: number;
  /** Extra wait after the reset time (GitHub's clock and ours differ). @defaultValue 1000 */
  resetGraceMs?: number;
  onBudget?: (reading: BudgetReading) => void;
}

// Keeps the lowest `remaining` seen in the current window (answers arrive out of order), and starts over when
// a later window begins. ARGV: reset (epoch s), remaining, limit. Expires a minute after the window.
const RECORD = `
local cur = redis.call('hmget', KEYS[1], 'reset', 'remaining')
local reset = tonumber(ARGV[1])
local remaining = tonumber(ARGV[2])
local curReset = tonumber(cur[1])
local curRemaining = tonumber(cur[2])
if curReset == nil or reset > curReset or (reset == curReset and remaining < curRemaining) then
  redis.call('hset', KEYS[1], 'reset', reset, 'remaining', remaining, 'limit', ARGV[3])
  redis.call('pexpireat', KEYS[1], reset * 1000 + 60000)
end
return 0`;

function header(headers: Record<string, unknown>, name: string): string | undefined {
  const value = headers[name];
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

/** Parses GitHub's rate-limit headers; undefined when the response has none (e.g. GitHub Enterprise without limits). */
export function readBudget(headers: Record<string, unknown>, fallbackResource: string): BudgetReading | undefined {
  const remaining = Number(header(headers, 'x-ratelimit-remaining'));
  const limit = Number(header(headers, 'x-ratelimit-limit'));
  const reset = Number(header(headers, 'x-ratelimit-reset'));
  if (!Number.isFinite(remaining) || !Number.isFinite(limit) || !Number.isFinite(reset)) return undefined;
  return { remaining, limit, resetAt: new Date(reset * 1000), resource: header(headers, 'x-ratelimit-resource') ?? fallbackResource };
}

/** Which rate-limit resource a REST path spends, before the answer names it. */
export function resourceOf(pathname: string): string {
  if (pathname.startsWith('/search/')) return 'search';
  if (pathname.startsWith('/graphql')) return 'graphql';
  return 'core';
}

export class BudgetBook {
  private readonly opts: BudgetBookOptions;
  private readonly graceMs: number;
  private readonly lastLoggedLow = new Map<string, number>();

  constructor(opts: BudgetBookOptions) {
    this.opts = opts;
    this.graceMs = opts.resetGraceMs ?? 1_000;
  }

  private key(tokenId: string, resource: string): string {
    return fleetKeys(this.opts.prefix).githubBudget(tokenId, resource);
  }

  /**
   * Milliseconds to wait before a request may be sent (0: send now). Fails open when Redis cannot answer:
   * GitHub's own 403 and the throttling plugin's reset wait still protect the budget then.
   */
  async waitMs(tokenId: string, resource: string, now = Date.now()): Promise<number> {
    let fields: (string | null)[];
    try {
      fields = await this.opts.redis.hmget(this.key(tokenId, resource), 'reset', 'remaining');
    } catch (error) {
      this.opts.logger.warn({ err: error }, 'GitHub budget unreadable in Redis; sending without the primary-limit check');
      return 0;
    }
    const reset = Number(fields[0]);
    const remaining = Number(fields[1]);
    if (fields[0] === null || fields[1] === null || remaining >= this.opts.reserve) return 0;
    return Math.max(0, reset * 1000 + this.graceMs - now);
  }

  /** Records a response's budget, reports it to `onBudget` and the log, and shares it over Redis. */
  async record(tokenId: string, headers: Record<string, unknown>, fallbackResource: string): Promise<void> {
    const reading = readBudget(headers, fallbackResource);
    if (!reading) return;
    try {
      this.opts.onBudget?.(reading);
    } catch (error) {
      this.opts.logger.warn({ err: error }, 'onBudget callback threw');
    }
    const low = reading.remaining < Math.max(this.opts.reserve, reading.limit * 0.1);
    const fields = {
      remaining: reading.remaining,
      limit: reading.limit,
      resetAt: reading.resetAt.toISOString(),
      resource: reading.resource,
    };
    if (low && this.lastLoggedLow.get(reading.resource) !== reading.resetAt.getTime()) {
      // Once per window: a low budget is worth a warning, not one per request.
      this.lastLoggedLow.set(reading.resource, reading.resetAt.getTime());
      this.opts.logger.warn(fields, 'GitHub rate-limit budget low');
    } else {
      this.opts.logger.debug(fields, 'GitHub rate-limit budget');
    }
    try {
      await this.opts.redis.eval(
        RECORD,
        1,
        this.key(tokenId, reading.resource),
        reading.resetAt.getTime() / 1000,
        reading.remaining,
        reading.limit,
      );
    } catch (error) {
      this.opts.logger.warn({ err: error }, 'GitHub budget not shared in Redis');
    }
  }
}

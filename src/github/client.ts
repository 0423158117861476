/**
 * The metered Octokit: @octokit/rest with plugin-throttling and plugin-retry, all of whose limiters are
 * clustered over Redis per token, plus two hooks of our own.
 *
 * Request path, outermost first:
 *   primary gate  — waits, outside every limiter slot, while the shared budget says the token is spent;
 *   mutation slot — POST/PUT/PATCH/DELETE run one at a time per token, the slot held until one spacing after
 *                    the last send (window/cap after a content-creating one, for the per-minute cap);
 *   plugin-retry  — 5xx and network errors, with backoff;
 *   plugin-throttling — retry-after on secondary limits, waiting for the reset on primary limits, and its
 *                    clustered `global` limiter (at most `maxConcurrent` requests in flight per token);
 *   attempt hook  — re-checks the budget right before each send and records every answer's budget.
 *
 * Why our own mutation slots: the plugin's `write` group only spaces a no-op that runs before the request is
 * queued on the `global` group, so two mutations can be in flight at once and retries bypass the spacing; its
 * `notifications` group spaces content creation 3 s apart (20 a minute), below the 60 a minute GitHub allows.
 * We give the plugin unlimited local groups for those two and enforce both rules around the whole request.
 */
import { createHash } from 'node:crypto';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { throttling } from '@octokit/plugin-throttling';
import { retry } from '@octokit/plugin-retry';
import Bottleneck from 'bottleneck';
import type { Octokit as CoreOctokit, OctokitOptions } from '@octokit/core';
import type { EndpointDefaults } from '@octokit/types';
import type { ClusteredLimiters, LimiterLogger } from './limiter.ts';
import { resourceOf, type BudgetBook } from './budget.ts';

/** GitHub's limits as the client obeys them. Production defaults are GitHub's documented numbers. */
export interface GitHubLimits {
  /** Requests of one token in flight at once, across all hosts. @defaultValue 10 */
  maxConcurrent: number;
  /** Minimum time between two mutating requests of one token (GitHub: 1 s). @defaultValue 1000 */
  mutationSpacingMs: number;
  /** Content-creating requests allowed per window (GitHub: 80 a minute). @defaultValue 80 */
  contentPerWindow: number;
  /** The window of `contentPerWindow`. @defaultValue 60000 */
  contentWindowMs: number;
  /**
   * Added to each spacing: covers uneven latency between two requests' sends and their arrival at GitHub (the
   * Redis hand-off between two holders adds a few ms more on top). 10 ms was not enough on a loaded host: the
   * two-scope flow test failed twice at load 5-9 after 60-70 s, the length of the retry-after a spacing
   * violation gets (and 30 ms still saw one at load 6.6). 50 ms still allows 57 mutations a minute (95 % of
   * the 60 the 1 s rule allows). The 80-a-minute rule counts calls in a window, not pairs of arrivals, so
   * its spacing keeps a fixed 10 ms.
   * @defaultValue 50
   */
  spacingMarginMs: number;
  /** Requests kept unspent in each primary window (see budget.ts). @defaultValue maxConcurrent */
  primaryReserve: number;
  /** Wait after the primary reset time before sending again. @defaultValue 1000 */
  resetGraceMs: number;
  /** Retries after a rate-limit answer (403/429) before giving up with RateLimitedError. @defaultValue 5 */
  maxRateLimitRetries: number;
  /** Retry-after assumed when a secondary-limit answer has none, in seconds (GitHub: "at least a minute"). @defaultValue 60 */
  fallbackRetryAfterS: number;
  /** Longest a mutation may keep its slot (retries included); a crashed holder frees it after this. @defaultValue 300000 */
  mutationSlotTimeoutMs: number;
}

export const DEFAULT_LIMITS: GitHubLimits = {
  maxConcurrent: 10,
  mutationSpacingMs: 1_000,
  contentPerWindow: 80,
  contentWindowMs: 60_000,
  spacingMarginMs: 50,
  primaryReserve: 10,
  resetGraceMs: 1_000,
  maxRateLimitRetries: 5,
  fallbackRetryAfterS: 60,
  mutationSlotTimeoutMs: 300_000,
};

/** Resolves limits and checks them; `primaryReserve` follows `maxConcurrent` unless given. */
export function resolveLimits(partial: Partial<GitHubLimits> = {}): GitHubLimits {
  const limits = { ...DEFAULT_LIMITS, primaryReserve: partial.maxConcurrent ?? DEFAULT_LIMITS.primaryReserve, ...partial };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isFinite(value) || value < 0) throw new Error(`GitHub limit ${key} must be a number >= 0, got ${value}`);
  }
  if (limits.maxConcurrent < 1) throw new Error(`GitHub limit maxConcurrent must be >= 1, got ${limits.maxConcurrent}`);
  if (limits.contentPerWindow < 1) throw new Error(`GitHub limit contentPerWindow must be >= 1, got ${limits.contentPerWindow}`);
  return limits;
}

/** A token's id in Redis keys and logs: a hash prefix, never the token. */
export function tokenId(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 16);
}

/** A GitHub App's credentials: requests authenticate with a JWT it signs (RS256), never with a stored token. */
export interface GitHubAppKey {
  appId: string;
  privateKey: string;
}

export interface MeteredOctokitOptions {
  /** The personal or installation token the client acts with; for an App client, only the name of its limiters. */
  token: string;
  /** Acts as this App (JWT; @octokit/auth-app signs it per request), metered under `token`'s limiters. */
  app?: GitHubAppKey;
  apiUrl: string;
  limits: GitHubLimits;
  limiters: ClusteredLimiters;
  budget: BudgetBook;
  logger: LimiterLogger;
  userAgent?: string;
}

/** Thrown by the attempt hook to leave every limiter slot and wait for the reset outside them. */
class PrimaryWait extends Error {
  override name = 'PrimaryWait';
  // plugin-retry reads `error.request.request` of every error; with no inner `request` it passes this one on.
  readonly request = {};
  constructor(readonly waitMs: number) {
    super(`GitHub primary rate limit spent; waiting ${waitMs} ms for the reset`);
  }
}

interface MeterContext {
  id: string;
  limits: GitHubLimits;
  limiters: ClusteredLimiters;
  budget: BudgetBook;
  logger: LimiterLogger;
  /** When this process last sent a mutation of this token (only one is in flight per token, cluster-wide). */
  lastMutationSentAt: number;
}

type RequestFn = (options: EndpointDefaults) => Promise<{ headers: Record<string, unknown> }>;

function pathOf(options: EndpointDefaults): string {
  return new URL(options.url ?? '/', 'http://github.invalid').pathname;
}

function isMutation(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD';
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function contextOf(options: OctokitOptions): MeterContext | undefined {
  return (options as { fleetMeter?: MeterContext }).fleetMeter;
}

// Registered first, so innermost: runs once per attempt, right before the request is sent.
function attemptHook(octokit: CoreOctokit, options: OctokitOptions): void {
  const ctx = contextOf(options);
  if (!ctx) return;
  octokit.hook.wrap('request', async (request, reqOptions) => {
    const path = pathOf(reqOptions);
    const resource = resourceOf(path);
    const wait = await ctx.budget.waitMs(ctx.id, resource);
    if (wait > 0) throw new PrimaryWait(wait);
    if (isMutation(reqOptions.method)) ctx.lastMutationSentAt = Date.now();
    try {
      const response = await (request as unknown as RequestFn)(reqOptions);
      await ctx.budget.record(ctx.id, response.headers, resource);
      return response as never;
    } catch (error) {
      const headers = (error as { response?: { headers?: Record<string, unknown> } }).response?.headers;
      if (headers) await ctx.budget.record(ctx.id, headers, resource);
      throw error;
    }
  });
}

/** A window count is not thrown off by when single calls arrive: a small margin suffices (see spacingMarginMs). */
const CONTENT_SPACING_MARGIN_MS = 10;

// Registered last, so outermost: once per call.
function callHook(octokit: CoreOctokit, options: OctokitOptions): void {
  const ctx = contextOf(options);
  if (!ctx) return;
  const { limits } = ctx;
  const spacing = limits.mutationSpacingMs + limits.spacingMarginMs;
  const contentSpacing = Math.ceil(limits.contentWindowMs / limits.contentPerWindow) + CONTENT_SPACING_MARGIN_MS;
  const jobOptions = { expiration: limits.mutationSlotTimeoutMs };
  octokit.hook.wrap('request', async (request, reqOptions) => {
    const send = () => (request as unknown as RequestFn)(reqOptions);
    let call = send;
    if (isMutation(reqOptions.method)) {
      // One serial slot per token for every mutation. The slot is held until one gap after the last send:
      // the spacing after any mutation, and at least window/cap after a content-creating one. As every later
      // mutation waits for that slot, consecutive content-creating requests are window/cap apart, so no window
      // holds more than the cap — without a second clustered limiter (one Redis hand-off less per call).
      const write = ctx.limiters.limiter('write', ctx.id, { maxConcurrent: 1, minTime: spacing });
      const gap = throttling.triggersNotification(pathOf(reqOptions)) ? Math.max(spacing, contentSpacing) : spacing;
      call = () => ctx.limiters.runHeld(write, jobOptions, send, () => ctx.lastMutationSentAt + gap - Date.now());
    }
    for (;;) {
      try {
        return (await call()) as never;
      } catch (error) {
        if (!(error instanceof PrimaryWait)) throw error;
        ctx.logger.warn({ waitMs: error.waitMs, token: ctx.id }, 'GitHub primary rate limit spent; waiting for the reset');
        await sleep(error.waitMs);
      }
    }
  });
}

const MeteredOctokit = Octokit.plugin(attemptHook, throttling, retry, callHook);
export type MeteredOctokitClient = InstanceType<typeof MeteredOctokit>;

/**
 * An unlimited stand-in for the plugin's `write` and `notifications` groups (see above). Not a Bottleneck.Group:
 * a group runs a cleanup timer for as long as it exists, which would outlive a dropped client.
 */
const passThroughGroup = {
  key: () => ({ schedule: (_options: unknown, fn: () => Promise<unknown>) => fn() }),
} as unknown as Bottleneck.Group;

const NO_TOKEN_CACHE = { get: () => undefined, set: () => {} };

/** Builds the metered client of one token (or of a GitHub App, see {@link MeteredOctokitOptions.app}). */
export function createMeteredOctokit(opts: MeteredOctokitOptions): MeteredOctokitClient {
  const id = tokenId(opts.token);
  const { limits, limiters, logger } = opts;
  const ctx: MeterContext = { id, limits, limiters, budget: opts.budget, logger, lastMutationSentAt: 0 };
  // The plugin only calls `.key(id)` on its groups; each kind is one clustered limiter per token.
  const clusteredGroup = (kind: string, settings: { maxConcurrent: number; minTime?: number }) =>
    ({ key: () => limiters.limiter(kind, id, settings) }) as unknown as Bottleneck.Group;
  const onLimit = (kind: string) => (retryAfter: number, options: Required<EndpointDefaults>, _octokit: unknown, retryCount: number) => {
    const retrying = retryCount < limits.maxRateLimitRetries;
    logger.warn(
      { kind, retryAfterS: retryAfter, method: options.method, url: options.url, retryCount, retrying, token: id },
      'GitHub rate limit hit',
    );
    return retrying;
  };
  return new MeteredOctokit({
    ...(opts.app
      ? {
          authStrategy: createAppAuth,
          // No cache: every installation token is minted for one job and revoked at its end, so a cached one
          // would be a revoked one, and none should outlive its job in this process's memory.
          auth: { appId: opts.app.appId, privateKey: opts.app.privateKey, cache: NO_TOKEN_CACHE },
        }
      : { auth: opts.token }),
    baseUrl: opts.apiUrl.replace(/\/+$/, ''),
    userAgent: opts.userAgent ?? 'fleet',
    log: {
      debug: () => {},
      info: () => {},
      warn: (message: string) => logger.warn({ token: id }, message),
      error: (message: string) => logger.error({ token: id }, message),
    },
    throttle: {
      Bottleneck,
      id,
      // Jobs of clustered limiters get an expiration, so a crashed process cannot hold a slot for ever.
      clustering: true,
      global: clusteredGroup('global', { maxConcurrent: limits.maxConcurrent }),
      search: clusteredGroup('search', { maxConcurrent: 1, minTime: 2_000 }),
      auth: clusteredGroup('auth', { maxConcurrent: 1 }),
      write: passThroughGroup,
      notifications: passThroughGroup,
      fallbackSecondaryRateRetryAfter: limits.fallbackRetryAfterS,
      onRateLimit: onLimit('primary'),
      onSecondaryRateLimit: onLimit('secondary'),
    } as never,
    retry: {
      // Rate limits belong to the throttling plugin; 405/409/422 are answers, not accidents.
      doNotRetry: [400, 401, 403, 404, 405, 409, 410, 422, 429, 451],
    },
    fleetMeter: ctx,
  });
}

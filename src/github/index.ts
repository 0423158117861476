/**
 * Factories for the GitHub {@link Forge}. One {@link GitHubForges} per process holds the Redis connection
 * and the clustered limiters; it hands out one forge per token (a legacy request brings its own token, a host
 * may hold a reviewer token), all of them metered per token across every fleet process.
 */
import type { RedisOptions } from 'ioredis';
import type { Forge } from '../forge.ts';
import { BudgetBook, type BudgetReading } from './budget.ts';
import { createMeteredOctokit, resolveLimits, tokenId, type GitHubLimits } from './client.ts';
import { GitHubForge } from './forge.ts';
import { ClusteredLimiters, type LimiterLogger } from './limiter.ts';

export type { BudgetReading } from './budget.ts';
export { DEFAULT_LIMITS, resolveLimits, tokenId, type GitHubLimits } from './client.ts';
export { GitHubForge, toForgeError } from './forge.ts';

/** The public API's address. */
export const GITHUB_API_URL = 'https://api.github.com';

export interface GitHubForgesOptions {
  /** REST API base (`FLEET_GITHUB_API_URL`): GitHub Enterprise's `https://host/api/v3` or a test server. @defaultValue https://api.github.com */
  apiUrl?: string;
  /** The fleet's Redis (URL or ioredis options): where the limiters' shared state lives. */
  redis: string | RedisOptions;
  /** Namespace of the limiter keys in Redis. @defaultValue "fleet" */
  prefix?: string;
  logger: LimiterLogger;
  /** Called with every answer's rate-limit budget (e.g. to set a prom-client gauge). Must not throw. */
  onBudget?: (reading: BudgetReading & { token: string }) => void;
  /** GitHub's limits; tests scale them down, production keeps the defaults. */
  limits?: Partial<GitHubLimits>;
  /** Redis TTL of an idle token's limiter state. @defaultValue 600000 */
  idleTtlMs?: number;
  /** How often limiters refresh cluster state. @defaultValue 2000 */
  heartbeatIntervalMs?: number;
  userAgent?: string;
}

/** Per-process owner of the GitHub clients; `close()` belongs in the process's ordered stop. */
export interface GitHubForges {
  /** The forge that acts with `token` (cached per token). */
  forToken(token: string): Forge;
  /** Times a limiter's lost Redis state was re-created. */
  readonly recoveries: number;
  /** Local and cluster-wide job counts of this process's limiters, for diagnostics. */
  limiterStats(): ReturnType<ClusteredLimiters['stats']>;
  close(): Promise<void>;
}

export function createGitHubForges(opts: GitHubForgesOptions): GitHubForges {
  const limits = resolveLimits(opts.limits);
  const prefix = opts.prefix ?? 'fleet';
  const apiUrl = opts.apiUrl ?? GITHUB_API_URL;
  const limiters = new ClusteredLimiters({
    redis: opts.redis,
    prefix,
    logger: opts.logger,
    ...(opts.idleTtlMs === undefined ? {} : { idleTtlMs: opts.idleTtlMs }),
    ...(opts.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: opts.heartbeatIntervalMs }),
  });
  const clients = new Map<string, Forge>();
  const entry = (token: string) => {
    if (!token) throw new Error('GitHub token is empty');
    const id = tokenId(token);
    let found = clients.get(id);
    if (!found) {
      const onBudget = opts.onBudget;
      const budget = new BudgetBook({
        redis: limiters.redis,
        prefix,
        logger: opts.logger,
        reserve: limits.primaryReserve,
        resetGraceMs: limits.resetGraceMs,
        ...(onBudget ? { onBudget: (reading: BudgetReading) => onBudget({ ...reading, token: id }) } : {}),
      });
      const octokit = createMeteredOctokit({ token, apiUrl, limits, limiters, budget, logger: opts.logger, ...(opts.userAgent ? { userAgent: opts.userAgent } : {}) });
      found = new GitHubForge(octokit);
      clients.set(id, found);
    }
    return found;
  };
  return {
    forToken: entry,
    limiterStats: () => limiters.stats(),
    get recoveries() {
      return limiters.recoveries;
    },
    async close() {
      clients.clear();
      await limiters.close();
    },
  };
}

/**
 * Factories for the GitHub {@link Forge}. One {@link GitHubForges} per process holds the Redis connection
 * and the clustered limiters; it hands out one forge per token (a legacy request brings its own token, a host
 * may hold a reviewer token), all of them metered per token across every fleet process.
 */
import type { Redis, RedisOptions } from 'ioredis';
import type { Forge } from '../forge.ts';
import { BudgetBook, type BudgetReading } from './budget.ts';
import { createGitHubApp, type GitHubApp } from './app-auth.ts';
import { createMeteredOctokit, resolveLimits, tokenId, type GitHubAppKey, type GitHubLimits, type MeteredOctokitClient } from './client.ts';
import { GitHubForge } from './forge.ts';
import { ClusteredLimiters, type LimiterLogger } from './limiter.ts';

export type { BudgetReading } from './budget.ts';
export { DEFAULT_LIMITS, resolveLimits, tokenId, type GitHubLimits } from './client.ts';
export { GitHubForge, toForgeError } from './forge.ts';
export { GitHubAppError, JOB_TOKEN_PERMISSIONS, jobUsesApp, type GitHubApp, type InstallationLease } from './app-auth.ts';

/** The public API's address. */
export const GITHUB_API_URL = 'https://api.github.com';

export interface GitHubForgesOptions {
  /** REST API base (`FLEET_GITHUB_API_URL`): GitHub Enterprise's `https://host/api/v3` or a test server. @defaultValue https://api.github.com */
  apiUrl?: string;
  /** The fleet's Redis (URL, ioredis options or a connection of its own): where the limiters' shared state lives. */
  redis: string | RedisOptions | Redis;
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
  /**
   * A token's client is dropped after this long without a request: its limiters poll Redis for as long as
   * they exist, and every legacy request may bring a new token. @defaultValue 600000
   */
  clientIdleMs?: number;
  /** Clock of the idle eviction (tests). @defaultValue Date.now */
  now?: () => number;
  userAgent?: string;
  /** A GitHub App (FLEET_GITHUB_APP_*): {@link GitHubForges.app} mints per-job installation tokens with it. */
  app?: GitHubAppKey & { installationId: number | undefined };
}

/** Per-process owner of the GitHub clients; `close()` belongs in the process's ordered stop. */
export interface GitHubForges {
  /** The forge that acts with `token` (cached per token until it is idle; a dropped forge still works). */
  forToken(token: string): Forge;
  /** The GitHub App, when one is configured: per-job installation tokens, metered like every other call. */
  readonly app: GitHubApp | undefined;
  /** Tokens with a client now. */
  readonly clientCount: number;
  /**
   * Drops the clients of tokens with no request in flight, no limiter slot held and none used for
   * `clientIdleMs`, and disconnects their limiters. Runs on a timer; resolves with how many it dropped.
   */
  evictIdle(): Promise<number>;
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
  const clientIdleMs = opts.clientIdleMs ?? 600_000;
  if (!Number.isFinite(clientIdleMs) || clientIdleMs <= 0)
    throw new Error(`clientIdleMs must be a number of milliseconds > 0, got ${clientIdleMs}`);
  const now = opts.now ?? Date.now;
  /** Per token id: its forge (absent when only a dropped forge was used since) and its use. */
  const clients = new Map<
    string,
    { forge: Forge | undefined; octokit: MeteredOctokitClient | undefined; inFlight: number; lastUsedAt: number }
  >();
  const record = (id: string) => {
    let found = clients.get(id);
    if (!found) {
      found = { forge: undefined, octokit: undefined, inFlight: 0, lastUsedAt: now() };
      clients.set(id, found);
    }
    return found;
  };
  const createClient = (token: string, id: string, app?: GitHubAppKey): MeteredOctokitClient => {
    const onBudget = opts.onBudget;
    const budget = new BudgetBook({
      redis: limiters.redis,
      prefix,
      logger: opts.logger,
      reserve: limits.primaryReserve,
      resetGraceMs: limits.resetGraceMs,
      ...(onBudget ? { onBudget: (reading: BudgetReading) => onBudget({ ...reading, token: id }) } : {}),
    });
    const octokit = createMeteredOctokit({
      token,
      apiUrl,
      limits,
      limiters,
      budget,
      logger: opts.logger,
      ...(opts.userAgent ? { userAgent: opts.userAgent } : {}),
      ...(app ? { app } : {}),
    });
    // Outermost hook: a call counts as in flight from its first wait in a limiter to its answer. A forge kept by
    // a caller after its client was dropped registers its token again here.
    octokit.hook.wrap('request', async (request, options) => {
      const use = record(id);
      use.inFlight++;
      use.lastUsedAt = now();
      try {
        return await request(options);
      } finally {
        use.inFlight--;
        use.lastUsedAt = now();
      }
    });
    return octokit;
  };
  const clientOf = (token: string) => {
    if (!token) throw new Error('GitHub token is empty');
    const id = tokenId(token);
    const use = record(id);
    use.lastUsedAt = now();
    use.octokit ??= createClient(token, id);
    return use;
  };
  const forToken = (token: string): Forge => {
    const use = clientOf(token);
    use.forge ??= new GitHubForge(use.octokit!);
    return use.forge;
  };
  // An installation token ends with its job: revoked through its own metered client, which then goes at once
  // (waiting for the idle sweep would keep a dead token's limiters polling Redis).
  const revokeToken = async (token: string): Promise<void> => {
    const use = clientOf(token);
    await use.octokit!.request('DELETE /installation/token');
    const id = tokenId(token);
    if (clients.get(id) === use && use.inFlight === 0 && !limiters.busy(id)) {
      clients.delete(id);
      await limiters.release(id);
    }
  };
  // The App's JWT calls are metered under the App's own name: GitHub limits them per App.
  const app = opts.app
    ? createGitHubApp({
        appId: opts.app.appId,
        installationId: opts.app.installationId,
        appClient: createClient(`app:${opts.app.appId}`, tokenId(`app:${opts.app.appId}`), opts.app),
        revokeToken,
      })
    : undefined;
  const evictIdle = async (): Promise<number> => {
    const idleSince = now() - clientIdleMs;
    const released: Promise<void>[] = [];
    // Checked and removed in one synchronous pass: a request starting meanwhile finds no half-dropped client.
    for (const [id, use] of clients) {
      if (use.inFlight > 0 || use.lastUsedAt > idleSince || limiters.busy(id)) continue;
      clients.delete(id);
      released.push(limiters.release(id));
      opts.logger.debug({ token: id }, 'GitHub client idle; its limiters are released');
    }
    await Promise.all(released);
    return released.length;
  };
  const sweep = setInterval(
    () => void evictIdle().catch((error: Error) => opts.logger.warn({ err: error }, 'releasing idle GitHub clients failed')),
    Math.min(60_000, Math.max(10, clientIdleMs / 2)),
  );
  sweep.unref();
  return {
    app,
    forToken,
    evictIdle,
    get clientCount() {
      return clients.size;
    },
    limiterStats: () => limiters.stats(),
    get recoveries() {
      return limiters.recoveries;
    },
    async close() {
      clearInterval(sweep);
      clients.clear();
      await limiters.close();
    },
  };
}

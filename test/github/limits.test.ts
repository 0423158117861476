import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startGitHubTestServer, type GitHubTestServer, type GitHubTestServerOptions } from '../servers/github.ts';
import { createGitHubForges, type GitHubForges, type GitHubLimits } from '../../src/github/index.ts';
import { FAST_LIMITS, FAST_SECONDARY, memoryLogger } from './helpers.ts';
import { uid } from '../support/fleet.ts';

const TOKEN = 'ghp_limits_token';
const REPO = 'acme/limits';

let redis: TestRedis;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(serverOpts: GitHubTestServerOptions = {}, limits: Partial<GitHubLimits> = {}) {
  const server = await startGitHubTestServer({ secondary: FAST_SECONDARY, ...serverOpts });
  server.addRepo(REPO);
  const logger = memoryLogger();
  const forges: GitHubForges = createGitHubForges({
    apiUrl: server.url,
    redis: redis.url,
    prefix: uid(),
    logger,
    limits: { ...FAST_LIMITS, ...limits },
  });
  cleanups.push(
    () => server.close(),
    () => forges.close(),
  );
  const forge = forges.forToken(TOKEN);
  const headSha = server.pushBranch(REPO, 'feature');
  return { server, forges, forge, logger, headSha };
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]!);
}

describe('rate limits', () => {
  it.each([429, 403] as const)('waits for retry-after on a secondary limit answered with %i, then succeeds', async (status) => {
    const { server, forge } = await setup();
    server.inject({ kind: 'secondary', status, retryAfterS: 1, match: (method) => method === 'GET' });
    expect(await forge.getDefaultBranch(REPO)).toBe('main');
    const [refused, retried] = server.requests;
    expect(refused!.status).toBe(status);
    expect(retried!.status).toBe(200);
    expect(retried!.at - refused!.at).toBeGreaterThanOrEqual(1_000);
  });

  it('retries a mutation refused by a secondary limit exactly once, after retry-after', async () => {
    const { server, forge } = await setup();
    const pr = await forge.openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
    server.inject({ kind: 'secondary', status: 403, retryAfterS: 1, match: (method) => method === 'POST' });
    await forge.postComment(REPO, pr.number, 'hello');
    const posts = server.requests.filter((r) => r.path.endsWith('/comments'));
    expect(posts.map((r) => r.status)).toEqual([403, 201]);
    expect(posts[1]!.at - posts[0]!.at).toBeGreaterThanOrEqual(1_000);
    expect(server.pullState(REPO, pr.number).comments).toHaveLength(1);
  });

  it('waits for the reset when GitHub answers remaining 0', async () => {
    const { server, forge } = await setup();
    server.inject({ kind: 'primary', resetInS: 1 });
    await forge.getDefaultBranch(REPO);
    const [refused, retried] = server.requests;
    expect(refused!.status).toBe(403);
    expect(retried!.status).toBe(200);
    // The reset is a whole second; the retry comes after it.
    expect(retried!.at).toBeGreaterThanOrEqual(Math.floor(refused!.at / 1000) * 1000 + 1000);
  });

  it('stops before the primary budget runs out and resumes after the reset, without one 403', async () => {
    const { server, forge } = await setup({ primary: { limit: 12, windowMs: 1_000 } }, { maxConcurrent: 3 });
    const results = await Promise.all(Array.from({ length: 30 }, () => forge.getDefaultBranch(REPO)));
    expect(results.every((b) => b === 'main')).toBe(true);
    expect(server.violations.primary).toBe(0);
    expect(server.requests.every((r) => r.status === 200)).toBe(true);
    // 30 requests at 12 a window (minus the reserve of 3) need at least three windows.
    const span = server.requests.at(-1)!.at - server.requests[0]!.at;
    expect(span).toBeGreaterThanOrEqual(1_000);
  });

  it('sends concurrent mutations of one token one at a time, spaced, with none refused', async () => {
    const { server, forge } = await setup({ mutationLatencyMs: 60 });
    const pr = await forge.openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
    await Promise.all(Array.from({ length: 15 }, (_, i) => forge.postComment(REPO, pr.number, `comment ${i}`)));
    expect(server.violations).toEqual({ primary: 0, concurrent: 0, spacing: 0, contentRate: 0 });
    const posts = server.requests.filter((r) => r.mutation);
    expect(posts).toHaveLength(16);
    expect(Math.min(...gaps(posts.map((r) => r.at)))).toBeGreaterThanOrEqual(FAST_SECONDARY.mutationSpacingMs!);
    expect(server.pullState(REPO, pr.number).comments).toHaveLength(15);
  });

  it('keeps content creation under the per-window cap when spacing alone would allow more', async () => {
    // No spacing rule: the 8-per-second content cap is what limits.
    const { server, forge } = await setup(
      { secondary: { mutationSpacingMs: 0, contentLimit: 8, contentWindowMs: 1_000, retryAfterS: 1 } },
      { mutationSpacingMs: 0, contentPerWindow: 8, contentWindowMs: 1_000, spacingMarginMs: 5 },
    );
    const pr = await forge.openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
    await Promise.all(Array.from({ length: 16 }, (_, i) => forge.postComment(REPO, pr.number, `c${i}`)));
    expect(server.violations).toEqual({ primary: 0, concurrent: 0, spacing: 0, contentRate: 0 });
    const posts = server.requests.filter((r) => r.content);
    expect(posts.at(-1)!.at - posts[0]!.at).toBeGreaterThanOrEqual(16 * 125 - 125 - 5);
  });
});

describe('limiter state lost in Redis', () => {
  async function runUntil(_server: GitHubTestServer, forge: ReturnType<GitHubForges['forToken']>, prNumber: number, calls: number) {
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < calls; i++) {
      work.push(i % 5 === 0 ? forge.postComment(REPO, prNumber, `c${i}`) : forge.getPullRequest(REPO, prNumber));
    }
    return Promise.all(work);
  }

  it('recovers from FLUSHALL mid-run (Redis 7 answers ERR SETTINGS_KEY_NOT_FOUND) and completes', async () => {
    const { server, forge, forges, logger } = await setup();
    const pr = await forge.openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
    const run = runUntil(server, forge, pr.number, 60);
    await server.waitForRequests(10, (r) => r.mutation);
    const admin = new Redis(redis.url);
    await admin.flushall();
    admin.disconnect();
    const results = await run;
    expect(results).toHaveLength(60);
    expect(forges.recoveries).toBeGreaterThan(0);
    expect(logger.entries.some((e) => e.msg.includes('re-creating'))).toBe(true);
    expect(server.pullState(REPO, pr.number).comments).toHaveLength(12);
    expect(server.violations).toEqual({ primary: 0, concurrent: 0, spacing: 0, contentRate: 0 });
  }, 30_000);

  it('carries on through a Redis restart that keeps its data (AOF)', async () => {
    const { server, forge } = await setup();
    const pr = await forge.openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
    const run = runUntil(server, forge, pr.number, 60);
    await server.waitForRequests(10, (r) => r.mutation);
    await redis.restart();
    expect(await run).toHaveLength(60);
    expect(server.pullState(REPO, pr.number).comments).toHaveLength(12);
    expect(server.violations).toEqual({ primary: 0, concurrent: 0, spacing: 0, contentRate: 0 });
  }, 30_000);

  it('recovers from a Redis restart that lost its data', async () => {
    const { server, forge, forges } = await setup();
    const pr = await forge.openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
    const run = runUntil(server, forge, pr.number, 60);
    await server.waitForRequests(10, (r) => r.mutation);
    await redis.kill();
    rmSync(join(redis.dir, 'appendonlydir'), { recursive: true, force: true });
    await redis.restart();
    expect(await run).toHaveLength(60);
    expect(forges.recoveries).toBeGreaterThan(0);
    expect(server.pullState(REPO, pr.number).comments).toHaveLength(12);
  }, 30_000);
});

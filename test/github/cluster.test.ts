import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { createGitHubForges } from '../../src/github/index.ts';
import { FAST_LIMITS, FAST_SECONDARY, memoryLogger } from './helpers.ts';
import { uid } from '../support/fleet.ts';

const CALLER = fileURLToPath(new URL('./fixtures/caller.ts', import.meta.url));
const TOKEN = 'ghp_shared_by_two_hosts';
const REPO = 'acme/cluster';

interface CallerOutcome {
  ok: number;
  failed: number;
  errors: string[];
  recoveries: number;
  ms: number;
}

let redis: TestRedis;
let server: GitHubTestServer;
const children: ChildProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  await server?.close();
});

/** Starts one caller process; resolves when it is ready, with a promise of its outcome. */
async function startCaller(config: Record<string, unknown>): Promise<{ child: ChildProcess; outcome: Promise<CallerOutcome> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CALLER, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  const iterator = lines[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.value !== 'ready') throw new Error(`caller did not start: ${String(first.value)}`);
  const outcome = (async () => {
    const next = await iterator.next();
    if (next.done) throw new Error(`caller exited with ${child.exitCode} before reporting`);
    return JSON.parse(next.value) as CallerOutcome;
  })();
  return { child, outcome };
}

async function twoHosts(calls: number, mutationEvery: number) {
  server = await startGitHubTestServer({ secondary: FAST_SECONDARY, primary: { limit: 100, windowMs: 1_000 }, mutationLatencyMs: 5 });
  server.addRepo(REPO);
  server.pushBranch(REPO, 'feature');
  const prefix = uid();
  const base = {
    apiUrl: server.url,
    redisUrl: redis.url,
    prefix,
    token: TOKEN,
    repo: REPO,
    pullNumber: 1,
    calls,
    mutationEvery,
    limits: { ...FAST_LIMITS, maxConcurrent: 4 },
  };
  // The pull request the callers comment on, opened through the server's own state.
  const setup = createGitHubForges({ apiUrl: server.url, redis: redis.url, prefix, logger: memoryLogger(), limits: FAST_LIMITS });
  await setup.forToken(TOKEN).openPullRequest({ repo: REPO, head: 'feature', base: 'main', title: 't', body: '' });
  await setup.close();
  const a = await startCaller({ ...base, label: 'a' });
  const b = await startCaller({ ...base, label: 'b' });
  const before = server.requests.length;
  a.child.stdin!.write('go\n');
  b.child.stdin!.write('go\n');
  return { a, b, before };
}

describe('two fleet processes sharing one token through one Redis', () => {
  it('make 300 calls with no limit violation, and every call completes', async () => {
    const { a, b, before } = await twoHosts(150, 5);
    const [ra, rb] = await Promise.all([a.outcome, b.outcome]);
    expect(ra).toMatchObject({ ok: 150, failed: 0 });
    expect(rb).toMatchObject({ ok: 150, failed: 0 });
    expect(server.requests.length - before).toBe(300);
    expect(server.violations).toEqual({ primary: 0, concurrent: 0, spacing: 0, contentRate: 0 });
    expect(server.pullState(REPO, 1).comments).toHaveLength(60);
    // Both processes were calling at the same time: their mutations interleave.
    const authors = server.pullState(REPO, 1).comments.map((c) => c.body.split(' ')[0]);
    expect(new Set(authors.slice(0, 30)).size).toBe(2);
    // 300 calls at 100 a window (reserve 4) cannot fit in fewer than three windows.
    expect(server.requests.at(-1)!.at - server.requests[before]!.at).toBeGreaterThanOrEqual(2_000);
  }, 60_000);

  it('complete their run when Redis is flushed in the middle of it', async () => {
    const { a, b } = await twoHosts(150, 5);
    await server.waitForRequests(20, (r) => r.mutation);
    const admin = new Redis(redis.url);
    await admin.flushall();
    admin.disconnect();
    const [ra, rb] = await Promise.all([a.outcome, b.outcome]);
    expect(ra.failed + rb.failed).toBe(0);
    expect(ra.recoveries + rb.recoveries).toBeGreaterThan(0);
    expect(server.pullState(REPO, 1).comments).toHaveLength(60);
    expect(server.violations.concurrent + server.violations.contentRate).toBe(0);
    // Losing the shared state may cost one spacing decision (a mutation in flight during the flush) and, with
    // the shared budget gone, at most one request per concurrency slot; never a failed call. (Typically 0.)
    expect(server.violations.spacing).toBeLessThanOrEqual(1);
    expect(server.violations.primary).toBeLessThanOrEqual(4);
  }, 60_000);
});

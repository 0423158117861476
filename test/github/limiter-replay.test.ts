import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startReplyCutProxy } from '../support/reply-cut-proxy.ts';
import { startGitHubTestServer } from '../servers/github.ts';
import { createGitHubForges } from '../../src/github/index.ts';
import { ClusteredLimiters, registerOnceLua } from '../../src/github/limiter.ts';
import { FAST_LIMITS, FAST_SECONDARY, memoryLogger } from './helpers.ts';
import { uid } from '../support/fleet.ts';

// A command whose reply a dropped connection lost is sent again by ioredis on the next connection
// (autoResendUnfulfilledCommands), so every limiter script can run twice for one call.

const bottleneckKeys = (createRequire(import.meta.url)('bottleneck/lib/Scripts.js') as { allKeys(id: string): string[] }).allKeys;
type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

describe('a limiter registration run twice', () => {
  it('answers the replay as the first run did and takes one slot; Bottleneck’s own script refuses it and keeps the slot', async () => {
    const prefix = uid();
    const limiters = new ClusteredLimiters({ redis: redis.url, prefix, logger: memoryLogger() });
    try {
      const limiter = limiters.limiter('write', 'tok', { maxConcurrent: 1, minTime: 1_000 });
      await limiter.ready();
      const id = `${prefix}:gh:write:tok`;
      const keys = bottleneckKeys(id);
      const clientId = (limiter as unknown as { _store: { clientId: string } })._store.clientId;
      const commands = limiters.redis as unknown as Record<string, ScriptCommand>;
      const call = (script: string, now: number, ...args: string[]) =>
        commands[script]!.call(limiters.redis, keys.length, ...keys, now, clientId, ...args);
      const nextRequest = async () => Number(await limiters.redis.hget(`b_${id}_settings`, 'nextRequest'));
      const now = Date.now();

      const firstWait = Math.max((await nextRequest()) - now, 0);
      const first = await call('fleetBottleneckRegisterOnce', now, 'job-a', '1', '');
      const replay = await call('fleetBottleneckRegisterOnce', now, 'job-a', '1', '');
      expect(first).toEqual([1, firstWait]);
      expect(replay).toEqual(first);
      expect(await limiters.redis.hget(`b_${id}_settings`, 'running')).toBe('1');
      // What a replay of the unguarded script answers: `{false}`, no capacity (its own first run holds the slot).
      expect(await call('register', now, 'job-a', '1', '')).toEqual([null]);

      // The second job starts one minTime after the first; its replay says the same wait.
      await call('free', now + 10, 'job-a');
      const second = await call('fleetBottleneckRegisterOnce', now + 10, 'job-b', '1', '');
      expect(second).toEqual([1, firstWait + 1_000 - 10]);
      expect(await call('fleetBottleneckRegisterOnce', now + 10, 'job-b', '1', '')).toEqual(second);
      expect(await limiters.redis.hget(`b_${id}_settings`, 'running')).toBe('1');
    } finally {
      await limiters.close();
    }
  });

  it('a mutation whose registration reply is lost runs once, and the mutations after it do not wait behind a phantom slot', async () => {
    const proxy = await startReplyCutProxy({ host: '127.0.0.1', port: redis.port });
    const server = await startGitHubTestServer({ secondary: FAST_SECONDARY });
    const repo = 'acme/replay';
    server.addRepo(repo);
    server.pushBranch(repo, 'feature');
    const prefix = uid();
    // The default slot timeout (5 minutes) stays: a phantom slot would outlast this test's timeout.
    const forges = createGitHubForges({ apiUrl: server.url, redis: proxy.url, prefix, logger: memoryLogger(), limits: FAST_LIMITS });
    const admin = new Redis(redis.url);
    try {
      const forge = forges.forToken('ghp_replay_token');
      // The first mutation loads the script, so the armed one is sent by its SHA.
      const pr = await forge.openPullRequest({ repo, head: 'feature', base: 'main', title: 't', body: '' });
      const sha = createHash('sha1').update(registerOnceLua()).digest('hex');
      const cut = proxy.cutAfterReplyTo((chunk) => chunk.includes(sha) && chunk.includes(`${prefix}:gh:write:`));

      await Promise.all(Array.from({ length: 4 }, (_, i) => forge.postComment(repo, pr.number, `comment ${i}`)));
      // Resolves only once a registration's reply was lost.
      await cut;

      expect(server.pullState(repo, pr.number).comments).toHaveLength(4);
      expect(server.violations).toEqual({ primary: 0, concurrent: 0, spacing: 0, contentRate: 0 });
      await forges.close();
      const writeId = (await admin.keys(`b_${prefix}:gh:write:*_settings`))[0]!.slice(2, -'_settings'.length);
      expect(await admin.hget(`b_${writeId}_settings`, 'running')).toBe('0');
      expect(await admin.hlen(`b_${writeId}_job_weights`)).toBe(0);
    } finally {
      await forges.close();
      admin.disconnect();
      await server.close();
      await proxy.close();
    }
  }, 20_000);
});

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGitHubForges, type GitHubForges } from '../../src/github/index.ts';
import { fleetKeys } from '../../src/keys.ts';
import { createLogger } from '../../src/logger.ts';
import type { SpawnResult } from '../../src/protocol.ts';
import { publishFinal } from '../../src/results.ts';
import { OutcomeWatcher } from '../../src/webhook/outcomes.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

const BOT_TOKEN = `ghp_${'OutcomeBot'.repeat(4)}`;
const logger = createLogger({ level: 'silent' });

const resultOf = (id: string, pr: number, repo: string): SpawnResult & { pull_request: unknown } => ({
  request_id: id,
  success: true,
  exit_code: 0,
  output: 'done',
  commit_sha: 'abc',
  branch: `fleet/${id}`,
  files_changed: ['a.txt'],
  summary: 'done',
  error_type: null,
  error_message: null,
  logs_tail: null,
  pull_request: { number: pr, url: `https://github.test/${repo}/pull/${pr}`, head_sha: 'abc' },
});

// The outcome comments of webhook requests: kept pending in Redis, posted once, across restarts and hosts.
describe('webhook outcomes (real Redis, Octokit; GitHub test server)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let github: GitHubTestServer;
  let forges: GitHubForges;
  const prefix = uid('fleet');
  const keys = fleetKeys(prefix);
  const subscribers: Redis[] = [];

  const watcher = () => {
    const subscriber = new Redis(redisServer.url);
    subscribers.push(subscriber);
    return new OutcomeWatcher({ redis, subscriber, keys, forge: forges.forToken(BOT_TOKEN), logger });
  };

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    github = await startGitHubTestServer({ users: { [BOT_TOKEN]: 'fleet-bot' }, secondary: { mutationSpacingMs: 0 } });
    forges = createGitHubForges({ apiUrl: github.url, redis: redisServer.url, prefix, logger });
  });
  afterAll(async () => {
    for (const s of subscribers) s.disconnect();
    await forges?.close();
    await github?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  it('a result that came while no webhook host ran is posted at the next start, by one of two hosts', async () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    const number = github.addIssue(repo, { title: 'Add a README' });
    const id = uid('gh');
    await redis.hset(keys.webhookPending, id, JSON.stringify({ repo, number }));
    await publishFinal(redis, resultOf(id, 9, repo), { format: 'v2' });

    const [a, b] = [watcher(), watcher()];
    await Promise.all([a.start(), b.start()]);
    await Promise.all([a.stop(), b.stop()]);
    const comments = github.commentsOn(repo, number);
    expect(comments).toHaveLength(1);
    expect(comments[0]).toMatchObject({ login: 'fleet-bot' });
    expect(comments[0]!.body).toContain(`#9 (https://github.test/${repo}/pull/9)`);
    expect(await redis.hexists(keys.webhookPending, id)).toBe(0);
  });

  it('a watched request is answered when its result is published', async () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    const number = github.addIssue(repo, { title: 'Add a LICENSE' });
    const id = uid('gh');
    const w = watcher();
    await w.start();
    await w.watch(id, { repo, number });
    expect(github.commentsOn(repo, number)).toHaveLength(0);
    const commented = new Promise<{ body: string }>((resolve) =>
      github.on('comment', (c: { repo: string; body: string }) => {
        if (c.repo === repo) resolve(c);
      }),
    );
    await publishFinal(
      redis,
      { ...resultOf(id, 4, repo), success: false, error_type: 'review_rejected', error_message: 'no' },
      { format: 'v2' },
    );
    expect((await commented).body).toMatch(/could not finish request .*review_rejected/);
    await w.stop();
    expect(await redis.hexists(keys.webhookPending, id)).toBe(0);
  });

  it('a comment GitHub refuses leaves the request pending for the next start', async () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    const number = github.addIssue(repo, { title: 'Flaky' });
    const id = uid('gh');
    await redis.hset(keys.webhookPending, id, JSON.stringify({ repo, number }));
    await publishFinal(redis, resultOf(id, 2, repo), { format: 'v2' });
    github.inject({ kind: 'server_error', status: 422, match: (method) => method === 'POST' });
    const first = watcher();
    await first.start();
    await first.stop();
    expect(github.commentsOn(repo, number)).toHaveLength(0);
    expect(await redis.hexists(keys.webhookPending, id)).toBe(1);
    const second = watcher();
    await second.start();
    await second.stop();
    expect(github.commentsOn(repo, number)).toHaveLength(1);
  });
});

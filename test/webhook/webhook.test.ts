import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import type { SpawnJobData } from '../../queues/spawn.ts';
import { fleetKeys } from '../../src/keys.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { completedEvent, FakeRuntime } from '../support/fakes/runtime.ts';
import { startTestFleet, testEnv, uid, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { deliver, payload, signature } from './support.ts';

const BOT_TOKEN = `ghp_${'FleetBotHook'.repeat(3)}`;
const REVIEWER_TOKEN = `ghp_${'FleetRevHook'.repeat(3)}`;
/** A person reviewing by hand. */
const OCTOCAT_TOKEN = `ghp_${'OctocatHook'.repeat(3)}`;
const SECRET = `whsec-${randomBytes(12).toString('hex')}`;

// A fleet with the webhook and spawn roles (a fake container runtime: each worker "pushes" its branch to the
// GitHub test server and completes), receiving deliveries signed as GitHub signs them.
describe('webhook role (real Redis, Octokit, express; GitHub test server; fake container runtime)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let github: GitHubTestServer;
  let fleet: TestFleet;
  let spawnQueue: Queue<SpawnJobData>;
  let url: string;
  let keys: ReturnType<typeof fleetKeys>;

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    github = await startGitHubTestServer({
      users: { [BOT_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer', [OCTOCAT_TOKEN]: 'octocat' },
      secondary: { mutationSpacingMs: 0 },
    });
    const runtime = new FakeRuntime((spec) => {
      const sha = randomBytes(20).toString('hex');
      github.pushBranch(spec.env.REPO!, spec.env.FLEET_BRANCH!, sha);
      return { lines: [completedEvent({ commit_sha: sha, branch: spec.env.FLEET_BRANCH!, summary: 'did it' })] };
    });
    const env = testEnv(redisServer.url, undefined, {
      FLEET_GITHUB_API_URL: github.url,
      FLEET_GITHUB_TOKEN: BOT_TOKEN,
      FLEET_REVIEWER_GITHUB_TOKEN: REVIEWER_TOKEN,
      FLEET_WEBHOOK_SECRET: SECRET,
    });
    fleet = await startTestFleet(env, ['spawn', 'webhook'], { runtime });
    url = `http://127.0.0.1:${fleet.httpPort}/webhooks/github`;
    keys = fleetKeys(env.FLEET_PREFIX!);
    spawnQueue = new Queue(QUEUE_NAMES.spawn, { connection: { url: redisServer.url }, prefix: env.FLEET_PREFIX });
  });
  afterAll(async () => {
    await spawnQueue?.close();
    await fleet?.stop();
    await github?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  const newRepo = () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    return repo;
  };

  /** Resolves with the next comment fleet posts on a thread (or the one already there). */
  const nextComment = (repo: string, number: number) =>
    new Promise<{ login: string; body: string }>((resolve) => {
      const seen = github.commentsOn(repo, number);
      if (seen.length) return resolve(seen[0]!);
      const onComment = (c: { repo: string; number: number; login: string; body: string }) => {
        if (c.repo !== repo || c.number !== number) return;
        github.off('comment', onComment);
        resolve(c);
      };
      github.on('comment', onComment);
    });

  /** A pull request fleet opened earlier, from `fleet/…` of the same repository. */
  const fleetPull = async (repo: string): Promise<{ number: number; branch: string }> => {
    const branch = `fleet/${uid('earlier')}`;
    github.pushBranch(repo, branch);
    const response = await fetch(`${github.url}/repos/${repo}/pulls`, {
      method: 'POST',
      headers: { authorization: `token ${BOT_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Add README', head: branch, base: 'main', body: 'Opened by fleet' }),
    });
    expect(response.status).toBe(201);
    return { number: ((await response.json()) as { number: number }).number, branch };
  };

  it('a labelled issue becomes a v2 pr job with the host token, and its outcome a comment linking the PR', async () => {
    const repo = newRepo();
    github.setRole(repo, 'octocat', 'write');
    const number = github.addIssue(repo, { title: 'Add a README', body: 'Say what widgets are.' });
    const commented = nextComment(repo, number);

    const sent = await deliver(
      url,
      'issues',
      payload('issues.labeled', { repo, sender: 'octocat', number, title: 'Add a README', body: 'Say what widgets are.' }),
      { secret: SECRET },
    );
    const id = `gh-${sent.delivery}`;
    expect(sent).toMatchObject({ status: 202, json: { outcome: 'enqueued', request_id: id } });

    const job = await spawnQueue.getJob(id);
    expect(job?.data).toMatchObject({
      request: {
        request_id: id,
        repo,
        mode: 'pr',
        result_format: 'v2',
        task_title: 'Add a README',
        task_content: 'Add a README\n\nSay what widgets are.',
        agent: 'droid',
      },
      // No token of its own: the worker uses the host's, which never touches Redis.
      sealedToken: null,
      source: 'webhook',
    });
    expect(job!.data.request).not.toHaveProperty('github_token');

    const comment = await commented;
    expect(comment.login).toBe('fleet-bot');
    // The PR the comment links is the one fleet opened from the request's branch, with the host's account.
    const pr = Number(/pull request #(\d+) /.exec(comment.body)?.[1]);
    expect(github.pullState(repo, pr)).toMatchObject({ head: `fleet/${id}`, author: 'fleet-bot', state: 'open' });
    expect(comment.body).toContain(`#${pr} (https://github.test/${repo}/pull/${pr})`);
    expect(comment.body).toContain(id);

    const stored = [JSON.stringify(job!.data), JSON.stringify(await redis.hgetall(keys.webhookPending))].join('\n');
    expect(stored).not.toContain(BOT_TOKEN);
  });

  it('an @fleet comment from a read-only user is refused with a reply and starts nothing; its replay is ignored', async () => {
    const repo = newRepo();
    github.setRole(repo, 'reader', 'triage');
    const number = github.addIssue(repo, { title: 'Found a bug' });
    const comment = payload('issue_comment.created', { repo, sender: 'reader', number, comment: '@fleet please fix this' });

    const sent = await deliver(url, 'issue_comment', comment, { secret: SECRET });
    expect(sent).toMatchObject({ status: 202, json: { outcome: 'refused' } });
    const replies = github.commentsOn(repo, number);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatchObject({ login: 'fleet-bot' });
    expect(replies[0]!.body).toMatch(/@reader/);
    expect(replies[0]!.body).toMatch(/write access/);
    expect(await spawnQueue.getJob(`gh-${sent.delivery}`)).toBeUndefined();

    // GitHub's "Redeliver": the same delivery id again. Nothing is done twice.
    const replay = await deliver(url, 'issue_comment', comment, { secret: SECRET, delivery: sent.delivery });
    expect(replay).toMatchObject({ status: 200, json: { outcome: 'duplicate_delivery' } });
    expect(github.commentsOn(repo, number)).toHaveLength(1);
  });

  it('a replayed labelled issue makes one job and one outcome', async () => {
    const repo = newRepo();
    github.setRole(repo, 'octocat', 'admin');
    const number = github.addIssue(repo, { title: 'Add a LICENSE' });
    const body = payload('issues.labeled', { repo, sender: 'octocat', number, title: 'Add a LICENSE', body: null });
    const commented = nextComment(repo, number);
    const first = await deliver(url, 'issues', body, { secret: SECRET });
    expect(first.json).toMatchObject({ outcome: 'enqueued' });
    const replay = await deliver(url, 'issues', body, { secret: SECRET, delivery: first.delivery });
    expect(replay).toMatchObject({ status: 200, json: { outcome: 'duplicate_delivery' } });
    await commented;
    expect(github.commentsOn(repo, number)).toHaveLength(1);
    const jobs = (await spawnQueue.getJobs(['completed', 'waiting', 'active', 'failed'])).filter((j) => j.data.request.repo === repo);
    expect(jobs.map((j) => j.id)).toEqual([`gh-${first.delivery}`]);
  });

  it('a forged signature gets 401 and starts nothing; the delivery id stays unclaimed', async () => {
    const repo = newRepo();
    github.setRole(repo, 'octocat', 'write');
    const number = github.addIssue(repo, { title: 'Forged' });
    const body = payload('issues.labeled', { repo, sender: 'octocat', number, title: 'Forged' });
    const wrongKey = await deliver(url, 'issues', body, { secret: 'not-the-secret-of-this-hook' });
    expect(wrongKey.status).toBe(401);
    // Signed, then changed: the signature no longer covers the body.
    const text = JSON.stringify(body);
    const tampered = await deliver(url, 'issues', text.replace('Forged', 'Tampered'), {
      secret: SECRET,
      signature: signature(SECRET, text),
    });
    expect(tampered.status).toBe(401);
    const unsigned = await deliver(url, 'issues', body, { secret: SECRET, signature: '' });
    expect(unsigned.status).toBe(401);
    for (const d of [wrongKey, tampered, unsigned]) {
      expect(await spawnQueue.getJob(`gh-${d.delivery}`)).toBeUndefined();
      expect(await redis.exists(keys.webhookDelivery(d.delivery))).toBe(0);
    }
    // The forgeries claimed nothing: the genuine delivery under the same id still goes through.
    const genuine = await deliver(url, 'issues', body, { secret: SECRET, delivery: wrongKey.delivery });
    expect(genuine).toMatchObject({ status: 202, json: { outcome: 'enqueued' } });
  });

  it('an unknown event gets 2xx and is ignored; a label other than the trigger too', async () => {
    const repo = newRepo();
    const star = await deliver(url, 'star', payload('star.created', { repo, sender: 'octocat' }), { secret: SECRET });
    expect(star).toMatchObject({ status: 200, json: { outcome: 'ignored', reason: 'event star.created' } });
    const other = payload('issues.labeled', { repo, sender: 'octocat', number: 1 });
    other.label.name = 'bug';
    const labelled = await deliver(url, 'issues', other, { secret: SECRET });
    expect(labelled).toMatchObject({ status: 200, json: { outcome: 'ignored', reason: 'label "bug"' } });
    const ping = await deliver(url, 'ping', { zen: 'Design for failure.', hook_id: 1 }, { secret: SECRET });
    expect(ping).toMatchObject({ status: 200, json: { outcome: 'pong' } });
  });

  it('an @fleet comment on a fleet pull request from a writer becomes a follow-up on that PR', async () => {
    const repo = newRepo();
    github.setRole(repo, 'maintainer', 'maintain');
    const pull = await fleetPull(repo);
    const commented = nextComment(repo, pull.number);
    const sent = await deliver(
      url,
      'issue_comment',
      payload('issue_comment.created.pull_request', {
        repo,
        sender: 'maintainer',
        number: pull.number,
        comment: '@fleet also update the changelog',
      }),
      { secret: SECRET },
    );
    const id = `gh-${sent.delivery}`;
    expect(sent).toMatchObject({ status: 202, json: { outcome: 'enqueued', request_id: id } });
    const job = await spawnQueue.getJob(id);
    expect(job?.data).toMatchObject({
      request: { mode: 'pr', follow_up: { pull_request: pull.number }, task_title: 'also update the changelog' },
      followUp: { pullRequest: pull.number, branch: pull.branch, baseBranch: 'main' },
    });
    expect(job!.data.request.task_content).toMatch(/^also update the changelog\n/);
    const comment = await commented;
    expect(comment.body).toContain(`#${pull.number} (https://github.test/${repo}/pull/${pull.number})`);
    // No second pull request: the follow-up continued the first (numbers are shared with issues, so look up by number).
    expect(() => github.pullState(repo, pull.number + 1)).toThrow(/no pull request/);
  });

  it('"changes requested" on a fleet pull request becomes a fix round; fleet\'s own reviewer is not obeyed', async () => {
    const repo = newRepo();
    github.setRole(repo, 'octocat', 'write');
    github.setRole(repo, 'fleet-reviewer', 'write');
    const pull = await fleetPull(repo);
    // The review as octocat submits it on GitHub, with a comment on a line of the diff.
    const posted = await fetch(`${github.url}/repos/${repo}/pulls/${pull.number}/reviews`, {
      method: 'POST',
      headers: { authorization: `token ${OCTOCAT_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        event: 'REQUEST_CHANGES',
        body: 'Rename the helper.',
        comments: [{ path: `${pull.branch}.txt`, line: 2, body: 'This line needs a guard for the empty case.' }],
      }),
    });
    expect(posted.status).toBe(200);
    const reviewId = ((await posted.json()) as { id: number }).id;
    const review = (sender: string) => {
      const p = payload('pull_request_review.submitted', { repo, sender, number: pull.number, comment: 'Rename the helper.' });
      p.pull_request.head.ref = pull.branch;
      p.review.id = reviewId;
      return p;
    };
    const fromFleet = await deliver(url, 'pull_request_review', review('fleet-reviewer'), { secret: SECRET });
    expect(fromFleet).toMatchObject({ status: 200, json: { outcome: 'ignored', reason: "fleet's own account" } });

    const sent = await deliver(url, 'pull_request_review', review('octocat'), { secret: SECRET });
    const id = `gh-${sent.delivery}`;
    expect(sent).toMatchObject({ status: 202, json: { outcome: 'enqueued', request_id: id } });
    const job = await spawnQueue.getJob(id);
    expect(job?.data).toMatchObject({ request: { follow_up: { pull_request: pull.number } }, followUp: { branch: pull.branch } });
    expect(job!.data.request.task_content).toContain('@octocat requested changes');
    expect(job!.data.request.task_content).toContain('Rename the helper.');
    expect(job!.data.request.task_content).toContain(`- \`${pull.branch}.txt:2\`: This line needs a guard for the empty case.`);

    const approved = review('octocat');
    approved.review.state = 'approved';
    expect(await deliver(url, 'pull_request_review', approved, { secret: SECRET })).toMatchObject({
      status: 200,
      json: { outcome: 'ignored' },
    });
  });

  it('refuses a body over the size limit with 413', async () => {
    const big = payload('issues.labeled', { repo: 'acme/big', sender: 'octocat', number: 1, body: 'x'.repeat(1024 * 1024 + 1) });
    const sent = await deliver(url, 'issues', big, { secret: SECRET });
    expect(sent.status).toBe(413);
  });
});

describe('webhook role start-up', () => {
  let redisServer: TestRedis;
  beforeAll(async () => {
    redisServer = await startRedis();
  });
  afterAll(async () => {
    await redisServer?.stop();
  });

  it('refuses to start without FLEET_WEBHOOK_SECRET or without a host token, saying which', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ FLEET_GITHUB_TOKEN: BOT_TOKEN }, /webhook role needs FLEET_WEBHOOK_SECRET/],
      [{ FLEET_WEBHOOK_SECRET: SECRET }, /webhook role needs FLEET_GITHUB_TOKEN/],
    ];
    for (const [settings, message] of cases) {
      const env = testEnv(redisServer.url, undefined, settings);
      await expect(startTestFleet(env, ['webhook'])).rejects.toThrow(message);
      rmSync(env.FLEET_DATA_DIR!, { recursive: true, force: true });
    }
  });
});

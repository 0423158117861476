import { afterAll, beforeAll, expect, it } from 'vitest';
import { processMerge, type MergeDeps } from '../../processors/merge.ts';
import type { Job } from 'bullmq';
import { processRequest } from '../../processors/request.ts';
import type { MergeJobData, MergeQueueJobData, RequestJobData } from '../../queues/merge.ts';
import { scopeBranch, stepJobId } from '../../src/flow/ids.ts';
import { emptyOutcome } from '../../src/flow/result.ts';
import { createGitHubForges, type GitHubForges } from '../../src/github/index.ts';
import type { ScopeOutcome } from '../../src/protocol.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { FakeGitHub } from '../support/fakes/forge.ts';
import { uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { Bench, silentLogger, WORKER_TOKEN, workerResult } from '../processors/support.ts';

const WAITING = 30;
const LOOKS = 3;
/** People who open the pull requests, one token each, so the metered token's budget holds only what is measured. */
const OPENERS = Array.from({ length: WAITING }, (_, i) => `ghp_opener${String(i).padStart(2, '0')}${'x'.repeat(30)}`);

// Thirty merges waiting on CI at once share one token's budget: their looks go through the metered
// client against a server that enforces GitHub's limits, and when CI turns green they merge one by one.
let server: TestRedis;
let github: GitHubTestServer;
let forges: GitHubForges;
let bench: Bench;

beforeAll(async () => {
  server = await startRedis();
  github = await startGitHubTestServer({
    users: { [WORKER_TOKEN]: 'fleet-bot', ...Object.fromEntries(OPENERS.map((t, i) => [t, `person${i}`])) },
  });
  bench = new Bench(server.url);
  forges = createGitHubForges({ apiUrl: github.url, redis: server.url, prefix: bench.prefix, logger: silentLogger });
});
afterAll(async () => {
  await forges?.close();
  await bench?.close();
  await github?.close();
  await server?.stop();
});

it(`${WAITING} merges waiting on a pending check spend at most 4 reads a look, violate no limit, then all merge`, async () => {
  const repo = `acme/${uid('ci')}`;
  github.addRepo(repo);
  github.protectBranch(repo, 'main', { contexts: ['ci'] });
  const waiting: { sha: string; check: number; number: number }[] = [];
  for (let i = 0; i < WAITING; i++) {
    const request = await bench.addFlow({ repo, merge: true });
    const id = request.request_id;
    const sha = github.pushBranch(repo, scopeBranch(id, null));
    const opened = await fetch(`${github.url}/repos/${repo}/pulls`, {
      method: 'POST',
      headers: { authorization: `token ${OPENERS[i]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: `scope ${i}`, head: scopeBranch(id, null), base: 'main' }),
    });
    expect(opened.status).toBe(201);
    const number = ((await opened.json()) as { number: number }).number;
    const check = github.addCheckRun(repo, sha, { name: 'ci', status: 'in_progress' });
    const pr = { number, url: `${github.url}/${repo}/pull/${number}`, head_sha: sha };
    const approved: ScopeOutcome = {
      ...emptyOutcome({ scope: null, branch: scopeBranch(id, null) }),
      worker: workerResult(id, { commit_sha: sha, pull_request: pr }),
      pull_request: pr,
      reviews: [
        {
          approved: true,
          feedback: 'ok',
          reviewed_sha: sha,
          review_event: 'APPROVE',
          self_review_fallback: false,
          coverage: { reviewed_bytes: 1, total_bytes: 1, truncated: false },
        },
      ],
    };
    await bench.complete('spawn', workerResult(id), stepJobId(id, null, 'spawn'));
    await bench.complete('review', approved, stepJobId(id, null, 'review'));
    waiting.push({ sha, check, number });
  }
  const deps: MergeDeps = {
    ...bench.stepDeps(new FakeGitHub(), { forges, now: Date.now }),
    conflictRounds: 0,
    lockRetryMs: 50,
    ciRequired: { kind: 'auto' },
    // Long enough that no wait comes due by itself: the test promotes each round.
    ciPollMs: 60_000,
  };
  // Takes whichever merge waits next (BullMQ's order, not the test's) and runs one look of it.
  const lookNext = async (): Promise<{ id: string; settled: Awaited<ReturnType<typeof bench.settle<ScopeOutcome>>> } | undefined> => {
    const { job, token } = await bench.take<MergeQueueJobData, ScopeOutcome>('merge');
    // A request whose scope merged ends too (its root shares the merge queue): finish it and move on.
    if (job.data.kind === 'request') {
      await bench.settle(
        job,
        token,
        processRequest(job as Job<RequestJobData>, { redis: bench.redis, keys: bench.keys, logger: silentLogger }),
      );
      return undefined;
    }
    return { id: job.id!, settled: await bench.settle(job, token, processMerge(job as Job<MergeJobData>, deps, { token })) };
  };
  const promoteAll = async () => {
    for (const job of await bench.queues.merge.getJobs(['delayed'])) await job.promote();
  };

  const before = github.requests.length;
  for (let round = 0; round < LOOKS; round++) {
    for (let i = 0; i < WAITING; i++) expect((await lookNext())?.settled.error?.name).toBe('DelayedError');
    expect(await bench.queues.merge.getDelayedCount()).toBe(WAITING);
    await promoteAll();
  }
  const reads = github.requests.slice(before);
  expect(reads.every((r) => r.method === 'GET')).toBe(true);
  expect(reads.length).toBeLessThanOrEqual(WAITING * LOOKS * 4);

  for (const w of waiting) github.completeCheckRun(repo, w.check, 'success');
  const merged = new Set<string>();
  // Another merge of this repository may hold its lock for a moment: such a job comes back shortly.
  while (merged.size < WAITING) {
    const next = await lookNext();
    if (!next) continue;
    const { id, settled } = next;
    if (settled.error?.name === 'DelayedError') {
      await promoteAll();
      continue;
    }
    expect(settled.error?.message ?? '').toBe('');
    expect(settled.value).toMatchObject({ merged: true, checks: [{ name: 'ci', conclusion: 'success' }] });
    merged.add(id);
  }
  for (const w of waiting) expect(github.pullState(repo, w.number).merged).toBe(true);
  expect(github.totalViolations()).toBe(0);
  console.log(
    `${WAITING} waits × ${LOOKS} looks: ${reads.length} GitHub reads (${(reads.length / (WAITING * LOOKS)).toFixed(1)} a look), 0 violations`,
  );
}, 180_000);

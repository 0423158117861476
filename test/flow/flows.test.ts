import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { channels, LEGACY_RESULT_KEYS } from '../../src/protocol.ts';
import type { FlowResult } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { legacyRequest, publishJson, type ResultListener } from '../support/fleet.ts';
import type { GitHubTestServer } from '../servers/github.ts';
import type { LlmTestServer } from '../servers/llm.ts';
import { type FlowLab, openPullOf, type PushReceiver, startFlowLab } from './support.ts';

const WORKER_TOKEN = `ghp_${'W0rkerTokenForFlows'.repeat(2)}`;
const REVIEWER_TOKEN = `ghp_${'Rev1ewerTokenForFlows'.repeat(2)}`;

describeDocker('pull-request flows: tasks → PRs → review → merge (real Redis, Docker, Octokit; test GitHub and LLM servers)', () => {
  let lab: FlowLab;
  let redis: Redis;
  let github: GitHubTestServer;
  let llm: LlmTestServer;
  let pushes: PushReceiver;
  let results: ResultListener;

  beforeAll(async () => {
    lab = await startFlowLab({ users: { [WORKER_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer' }, reviewerToken: REVIEWER_TOKEN });
    ({ redis, github, llm, pushes, results } = lab);
  });
  afterEach(() => lab.stopFleets());
  afterAll(() => lab?.close());

  const fleet = (overrides?: Record<string, string>) => lab.fleet(overrides);
  const newRepo = () => lab.newRepo();
  const task = (file: string, summary: string) => lab.task(file, summary);

  it('two scopes: two PRs, both reviewed, merged one after the other', async () => {
    await fleet();
    const repo = newRepo();
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      tasks: [
        { scope: 'frontend', task_content: task('web/app.ts', 'frontend done') },
        { scope: 'backend', task_content: task('api/server.ts', 'backend done') },
      ],
      review: true,
      merge: true,
      result_format: 'v2',
    });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 120_000)) as FlowResult;

    expect(result).toMatchObject({ success: true, error_type: null });
    expect(result.scopes.map((s) => [s.scope, s.merged, s.reviews.at(-1)?.approved, s.reviews.at(-1)?.review_event])).toEqual([
      ['frontend', true, true, 'APPROVE'],
      ['backend', true, true, 'APPROVE'],
    ]);
    expect(result.pull_requests).toHaveLength(2);
    expect(result.files_changed?.sort()).toEqual(['api/server.ts', 'web/app.ts']);
    for (const pr of result.pull_requests) {
      const state = github.pullState(repo, pr.number);
      expect(state.merged).toBe(true);
      expect(state.author).toBe('fleet-bot');
      expect(state.reviews.map((r) => [r.login, r.state])).toEqual([['fleet-reviewer', 'APPROVED']]);
    }
    // One merge at a time per repository: the second merge request started after the first answered.
    const merges = github.requests.filter((r) => r.method === 'PUT' && r.path.startsWith(`/repos/${repo}/`) && r.path.endsWith('/merge'));
    expect(merges).toHaveLength(2);
    expect(github.totalViolations()).toBe(0);
  });

  it('a rejection is commented; a fix round pushes, the new head is approved and merged', async () => {
    await fleet();
    const repo = newRepo();
    llm.answer({ kind: 'reject', feedback: 'Handle the empty list case.' }, { kind: 'approve', feedback: 'Fixed, thanks.' });
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      mode: 'pr',
      review: true,
      merge: true,
      fix_rounds: 1,
      result_format: 'v2',
      task_content: task('lib/list.ts', 'list helper'),
    });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 120_000)) as FlowResult;

    expect(result.success).toBe(true);
    const [scope] = result.scopes;
    expect(scope!.fix_rounds_used).toBe(1);
    expect(scope!.reviews.map((r) => [r.approved, r.review_event])).toEqual([
      [false, 'REQUEST_CHANGES'],
      [true, 'APPROVE'],
    ]);
    // The approved head is the fix worker's push, and that is what was merged.
    expect(scope!.reviews[1]!.reviewed_sha).not.toBe(scope!.reviews[0]!.reviewed_sha);
    const pr = github.pullState(repo, scope!.pull_request!.number);
    expect(pr.merged).toBe(true);
    expect(pr.comments.map((c) => c.body).join('\n')).toContain('Handle the empty list case.');
    expect(pushes.pushes.filter((p) => p.repo === repo)).toHaveLength(2);
    // The fix worker got the feedback as its task (the request's LLM saw the diff twice).
    expect(llm.requests.length).toBeGreaterThanOrEqual(2);
  });

  it('a conflict after another merge gets a conflict worker, a new review, then the merge', async () => {
    await fleet();
    const repo = newRepo();
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      tasks: [
        { scope: 'one', task_content: task('shared.txt', 'first') },
        { scope: 'two', task_content: task('shared.txt', 'second') },
      ],
      review: true,
      merge: true,
      result_format: 'v2',
    });
    // Whichever PR merges first, the other one then conflicts with the base, as on GitHub.
    let conflicted: number | undefined;
    const onRequest = (r: { method: string; path: string; status: number }) => {
      if (conflicted !== undefined || r.method !== 'PUT' || !r.path.startsWith(`/repos/${repo}/`) || r.status !== 200) return;
      const merged = Number(/pulls\/(\d+)\/merge/.exec(r.path)![1]);
      const other = ['one', 'two']
        .map((s) => openPullOf(github, repo, `fleet/${request.request_id}/${s}`))
        .find((n) => n !== undefined && n !== merged);
      if (other !== undefined) {
        conflicted = other;
        github.setConflicting(repo, other, true);
      }
    };
    github.on('request', onRequest);
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 180_000)) as FlowResult;
    github.off('request', onRequest);

    expect(conflicted).toBeDefined();
    expect(result.success).toBe(true);
    const late = result.scopes.find((s) => s.pull_request?.number === conflicted)!;
    expect(late.conflict_rounds_used).toBe(1);
    expect(late.reviews).toHaveLength(2);
    expect(late.merged).toBe(true);
    expect(result.scopes.every((s) => s.merged)).toBe(true);
  });

  it('a push after the review blocks the merge: nothing unreviewed is merged', async () => {
    await fleet();
    const repo = newRepo();
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      mode: 'pr',
      review: true,
      merge: true,
      result_format: 'v2',
      task_content: task('x.ts', 'x'),
    });
    let sneaked: string | undefined;
    const onRequest = (r: { method: string; path: string; status: number }) => {
      // Right after the approval is recorded, someone pushes to the branch.
      if (sneaked || r.method !== 'POST' || !r.path.startsWith(`/repos/${repo}/`) || !r.path.endsWith('/reviews') || r.status !== 200)
        return;
      sneaked = github.pushBranch(repo, `fleet/${request.request_id}`);
    };
    github.on('request', onRequest);
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 120_000)) as FlowResult;
    github.off('request', onRequest);

    expect(sneaked).toBeDefined();
    expect(result).toMatchObject({ success: false, error_type: 'head_changed' });
    const pr = github.pullState(repo, result.scopes[0]!.pull_request!.number);
    expect(pr.merged).toBe(false);
    expect(pr.headSha).toBe(sneaked);
  });

  it('without a reviewer token the verdict is a COMMENT review, recorded as such; legacy results keep eleven keys', async () => {
    await fleet({ FLEET_REVIEWER_GITHUB_TOKEN: '' });
    const repo = newRepo();
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      tasks: [{ scope: 'only', task_content: task('a.md', 'a') }],
      review: true,
    });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id, 120_000);
    expect(Object.keys(JSON.parse(results.raw.get(id)![0]!))).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result.success).toBe(true);
    const pr = github.pullState(repo, openPullOf(github, repo, `fleet/${id}/only`)!);
    expect(pr.reviews.map((r) => [r.login, r.state])).toEqual([['fleet-bot', 'COMMENTED']]);
    expect(pr.merged).toBe(false);
  });

  it('mode "pr" without review opens the pull request and reports it', async () => {
    await fleet();
    const repo = newRepo();
    const request = legacyRequest({ repo, github_token: WORKER_TOKEN, mode: 'pr', result_format: 'v2', task_content: task('b.md', 'b') });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 60_000)) as FlowResult & {
      pull_request: { number: number; url: string };
    };
    expect(result.success).toBe(true);
    expect(result.branch).toBe(`fleet/${request.request_id}`);
    expect(result.pull_request.number).toBe(openPullOf(github, repo, `fleet/${request.request_id}`));
    const pr = github.pullState(repo, result.pull_request.number);
    expect(pr.title).toBe('Test task');
    expect(pr.body).toContain('b ');
  });

  it('an agent reviewer (FLEET_REVIEWER=agent) runs as a worker on the branch and its verdict is posted', async () => {
    await fleet({ FLEET_REVIEWER: 'agent' });
    const repo = newRepo();
    const llmCalls = llm.requests.length;
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      mode: 'pr',
      review: true,
      merge: true,
      result_format: 'v2',
      task_content: task('c.md', 'c'),
    });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 120_000)) as FlowResult;
    expect(result.success).toBe(true);
    expect(result.scopes[0]!.reviews[0]).toMatchObject({ approved: true, feedback: 'agent approves', review_event: 'APPROVE' });
    expect(llm.requests.length).toBe(llmCalls);
    expect(github.pullState(repo, result.scopes[0]!.pull_request!.number).merged).toBe(true);
  });
});

import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { channels } from '../../src/protocol.ts';
import type { FlowResult } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { legacyRequest, publishJson, type ResultListener, uid } from '../support/fleet.ts';
import type { GitHubTestServer, LoggedRequest } from '../servers/github.ts';
import { type FlowLab, type PushReceiver, startFlowLab } from './support.ts';

const WORKER_TOKEN = `ghp_${'W0rkerTokenForCiFlows'.repeat(2)}`;
const REVIEWER_TOKEN = `ghp_${'Rev1ewerTokenForCiFlows'.repeat(2)}`;

describeDocker('merges wait for CI (real Redis, Docker, Octokit; test GitHub with branch protection and checks)', () => {
  let lab: FlowLab;
  let redis: Redis;
  let github: GitHubTestServer;
  let pushes: PushReceiver;
  let results: ResultListener;
  const listeners: [string, (...args: unknown[]) => void][] = [];

  beforeAll(async () => {
    lab = await startFlowLab({ users: { [WORKER_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer' }, reviewerToken: REVIEWER_TOKEN });
    ({ redis, github, pushes, results } = lab);
  });
  afterEach(async () => {
    for (const [event, fn] of listeners.splice(0)) github.off(event, fn);
    await lab.stopFleets();
  });
  afterAll(() => lab?.close());

  const fleet = () => lab.fleet();

  function on<E>(event: 'push' | 'request', fn: (e: E) => void): void {
    const listener = fn as (...args: unknown[]) => void;
    github.on(event, listener);
    listeners.push([event, listener]);
  }

  /** A repository whose main branch requires `test`; `onPush` plays CI for every push to a fleet branch. */
  function protectedRepo(protection: Parameters<GitHubTestServer['protectBranch']>[2], onPush: (sha: string, n: number) => void) {
    const repo = `acme/${uid('ci')}`;
    github.addRepo(repo);
    github.protectBranch(repo, 'main', { contexts: ['test'], ...protection });
    let n = 0;
    on('push', (e: { repo: string; branch: string; sha: string }) => {
      if (e.repo === repo && e.branch.startsWith('fleet/')) onPush(e.sha, n++);
    });
    return repo;
  }

  const checkPolls = (repo: string, sha: string) => (r: LoggedRequest) =>
    r.method === 'GET' && r.path === `/repos/${repo}/commits/${sha}/check-runs`;

  async function run(repo: string, fields: Record<string, unknown> = {}): Promise<FlowResult> {
    const request = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      mode: 'pr',
      review: true,
      merge: true,
      result_format: 'v2',
      task_content: lab.task('src/list.ts', 'list'),
      ...fields,
    });
    await publishJson(redis, channels.spawn, request);
    return (await results.next(request.request_id as string, 150_000)) as FlowResult;
  }

  it('a required check still running: the merge waits, then merges once it is green, with no conflict worker', async () => {
    await fleet();
    let head: string | undefined;
    let run1: number | undefined;
    const repo = protectedRepo({}, (sha) => {
      head = sha;
      run1 = github.addCheckRun(repo, sha, { name: 'test', status: 'in_progress' });
    });
    const finished = run(repo);
    // The merge looks at CI three times while the check runs, then it turns green.
    await github.waitForRequests(3, (r) => head !== undefined && checkPolls(repo, head)(r));
    const waitStart = github.requests.findIndex((r) => checkPolls(repo, head!)(r));
    const merges = () => github.requests.filter((r) => r.method === 'PUT' && r.path.startsWith(`/repos/${repo}/pulls/`));
    expect(merges()).toEqual([]);
    github.completeCheckRun(repo, run1!, 'success');
    const result = await finished;

    expect(result).toMatchObject({ success: true, error_type: null });
    const [scope] = result.scopes;
    expect(scope).toMatchObject({ merged: true, conflict_rounds_used: 0, checks: [{ name: 'test', conclusion: 'success' }] });
    expect(scope!.ci_wait_ms).toBeGreaterThan(0);
    expect(merges().map((r) => r.status)).toEqual([200]);
    // The calls the wait cost: per look the PR, the protection, the check runs and the statuses.
    const waiting = github.requests.slice(waitStart).filter((r) => r.path.startsWith(`/repos/${repo}/`) && r.method === 'GET');
    const looks = github.requests.filter(checkPolls(repo, head!)).length;
    expect(looks).toBeGreaterThanOrEqual(4);
    expect(waiting.length).toBeLessThanOrEqual(4 * looks + 1);
    console.log(`CI wait: ${looks} looks, ${waiting.length} GitHub GETs, ${scope!.ci_wait_ms} ms`);
    expect(github.totalViolations()).toBe(0);
  });

  it('red CI: a fix round whose TASK.md holds the failing log, then green and merged', async () => {
    await fleet();
    const log = [
      '##[group]Run npm test',
      ...Array.from({ length: 200 }, (_, i) => `noise ${i}`),
      'FAIL src/list.test.ts',
      'AssertionError: expected [] to have length 1',
    ].join('\n');
    const repo = protectedRepo({}, (sha, n) => {
      if (n === 0) {
        const id = github.addCheckRun(repo, sha, { name: 'test' });
        github.completeCheckRun(repo, id, 'failure', {
          title: '1 failing test',
          summary: 'src/list.test.ts failed',
          annotations: [
            { path: 'src/list.ts', start_line: 3, end_line: 3, annotation_level: 'failure', message: 'expected [] to have length 1' },
          ],
          log,
        });
      } else {
        github.addCheckRun(repo, sha, { name: 'test', status: 'completed', conclusion: 'success' });
      }
    });
    const fixesBefore = pushes.fixTasks.length;
    const result = await run(repo, { fix_rounds: 1 });

    expect(result).toMatchObject({ success: true, error_type: null });
    const [scope] = result.scopes;
    expect(scope).toMatchObject({
      merged: true,
      fix_rounds_used: 1,
      conflict_rounds_used: 0,
      checks: [{ name: 'test', conclusion: 'success' }],
    });
    expect(scope!.reviews).toHaveLength(2);
    const task = pushes.fixTasks.slice(fixesBefore).join('\n');
    expect(task).toContain('AssertionError: expected [] to have length 1');
    expect(task).toContain('`src/list.ts:3` (failure)');
    expect(task).not.toContain('noise 50\n');
    const pr = github.pullState(repo, scope!.pull_request!.number);
    expect(pr.merged).toBe(true);
  });

  it('red CI with no fix round left: ci_failed naming the check and its link, not merged, no conflict worker', async () => {
    await fleet();
    const repo = protectedRepo({}, (sha) => {
      github.addCheckRun(repo, sha, { name: 'test', status: 'completed', conclusion: 'failure' });
    });
    const result = await run(repo);
    expect(result).toMatchObject({ success: false, error_type: 'ci_failed' });
    expect(result.error_message).toMatch(new RegExp(`test \\(failure: https://github.test/${repo}/runs/\\d+\\)`));
    expect(result.scopes[0]).toMatchObject({ merged: false, conflict_rounds_used: 0 });
    expect(github.pullState(repo, result.scopes[0]!.pull_request!.number).merged).toBe(false);
  });

  it('protection wants more approving reviews than fleet gives: review_required with GitHub’s message', async () => {
    await fleet();
    const repo = protectedRepo({ requiredReviews: 2 }, (sha) => {
      github.addCheckRun(repo, sha, { name: 'test', status: 'completed', conclusion: 'success' });
    });
    const result = await run(repo);
    expect(result).toMatchObject({ success: false, error_type: 'review_required' });
    expect(result.error_message).toContain('At least 2 approving reviews are required by reviewers with write access.');
    expect(result.scopes[0]!.conflict_rounds_used).toBe(0);
  });

  it('behind its base: update-branch, CI on the new head, then merged at that head without a new review', async () => {
    await fleet();
    const heads: string[] = [];
    const repo = protectedRepo({ strict: true }, (sha, n) => {
      heads.push(sha);
      // The updated head's CI takes a moment; the first head's is green at once.
      const id = github.addCheckRun(repo, sha, {
        name: 'test',
        status: n === 0 ? 'completed' : 'in_progress',
        conclusion: n === 0 ? 'success' : null,
      });
      if (n > 0) setTimeout(() => github.completeCheckRun(repo, id, 'success'), 1500);
    });
    // Right after the approval, another change lands on main.
    let moved = false;
    on('request', (r: LoggedRequest) => {
      if (moved || r.method !== 'POST' || !r.path.startsWith(`/repos/${repo}/`) || !r.path.endsWith('/reviews') || r.status !== 200) return;
      moved = true;
      github.pushBranch(repo, 'main');
    });
    const result = await run(repo);

    expect(result).toMatchObject({ success: true, error_type: null });
    const [scope] = result.scopes;
    expect(heads).toHaveLength(2);
    expect(scope!.reviews.map((r) => r.reviewed_sha)).toEqual([heads[0]]);
    const pr = github.pullState(repo, scope!.pull_request!.number);
    expect([pr.merged, pr.headSha]).toEqual([true, heads[1]]);
    const calls = github.requests.filter((r) => r.method === 'PUT' && r.path.startsWith(`/repos/${repo}/pulls/`));
    expect(calls.map((r) => [r.path.split('/').at(-1), r.status])).toEqual([
      ['merge', 405],
      ['update-branch', 202],
      ['merge', 200],
    ]);
  });
});

import { afterAll, beforeAll, expect, it } from 'vitest';
import type { GitHubTestServer } from '../servers/github.ts';
import { describeDocker } from '../support/docker.ts';
import { legacyRequest } from '../support/fleet.ts';
import { type FlowLab, openPullOf, type PushReceiver, startFlowLab } from './support.ts';

const WORKER_TOKEN = `ghp_${'W0rkerFollowUp'.repeat(3)}`;
const REVIEWER_TOKEN = `ghp_${'Rev1ewerFollowUp'.repeat(3)}`;
/** A person who opens a pull request by hand, outside fleet. */
const HUMAN_TOKEN = `ghp_${'HumanByHand'.repeat(3)}`;

// A v2 request may send an open pull request fleet made new instructions: the worker continues its
// branch, and review and merge run on the same pull request.
describeDocker('follow-up requests (real Redis, Docker, Octokit; test GitHub and LLM servers)', () => {
  let lab: FlowLab;
  let github: GitHubTestServer;
  let pushes: PushReceiver;

  beforeAll(async () => {
    lab = await startFlowLab({
      users: { [WORKER_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer', [HUMAN_TOKEN]: 'octocat' },
      reviewerToken: REVIEWER_TOKEN,
    });
    ({ github, pushes } = lab);
    await lab.fleet();
  });
  afterAll(() => lab?.close());

  const task = (file: string, summary: string) => lab.task(file, summary);
  const newRepo = () => lab.newRepo();
  const send = (request: Record<string, unknown>) => lab.send(request);

  it('continues pull request #N on its branch: a new commit, reviewed and merged on the same PR', async () => {
    const repo = newRepo();
    const first = legacyRequest({ repo, github_token: WORKER_TOKEN, mode: 'pr', result_format: 'v2', task_content: task('a.md', 'first') });
    const opened = await send(first);
    expect(opened.success).toBe(true);
    const number = opened.pull_request!.number;
    const branch = `fleet/${first.request_id}`;
    const headBefore = github.pullState(repo, number).headSha;

    const followUp = legacyRequest({
      repo,
      github_token: WORKER_TOKEN,
      mode: 'pr',
      review: true,
      merge: true,
      result_format: 'v2',
      follow_up: { pull_request: number },
      task_content: task('b.md', 'second'),
    });
    const result = await send(followUp);
    expect(result).toMatchObject({ success: true, error_type: null, branch });
    expect(result.scopes[0]!.pull_request!.number).toBe(number);
    expect(result.scopes[0]!.merged).toBe(true);
    // The follow-up's worker pushed on the PR's own branch; no second pull request was opened.
    expect(pushes.pushes.filter((p) => p.repo === repo).map((p) => p.branch)).toEqual([branch, branch]);
    expect(github.pullState(repo, number).headSha).not.toBe(headBefore);
    expect(openPullOf(github, repo, `fleet/${followUp.request_id}`)).toBeUndefined();
  });

  it('refuses at intake a pull request fleet did not make, a merged one, and one that does not exist', async () => {
    const repo = newRepo();
    github.pushBranch(repo, 'feature/by-hand');
    const opened = await fetch(`${github.url}/repos/${repo}/pulls`, {
      method: 'POST',
      headers: { authorization: `token ${HUMAN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'by hand', head: 'feature/by-hand', base: 'main' }),
    });
    expect(opened.status).toBe(201);
    const foreign = ((await opened.json()) as { number: number }).number;

    const merged = await send(
      legacyRequest({
        repo,
        github_token: WORKER_TOKEN,
        mode: 'pr',
        review: true,
        merge: true,
        result_format: 'v2',
        task_content: task('c.md', 'merged'),
      }),
    );
    expect(merged.success).toBe(true);
    const mergedNumber = merged.scopes[0]!.pull_request!.number;

    const cases: [number, RegExp][] = [
      [foreign, /was not made by fleet \(its head is .*:feature\/by-hand\)/],
      [mergedNumber, /is merged/],
      [999, /has no pull request #999/],
    ];
    for (const [number, message] of cases) {
      const result = await send(
        legacyRequest({ repo, github_token: WORKER_TOKEN, mode: 'pr', follow_up: { pull_request: number }, task_content: 'x' }),
      );
      expect(result).toMatchObject({ success: false, error_type: 'invalid_request' });
      expect(result.error_message).toMatch(/follow_up/);
      expect(result.error_message).toMatch(message);
      expect(Object.keys(result)).toHaveLength(11);
    }
  });
});

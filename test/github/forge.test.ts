import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { createGitHubForges, toForgeError, type BudgetReading, type GitHubForges } from '../../src/github/index.ts';
import { isErrorNamed } from '../../src/errors.ts';
import type { Forge } from '../../src/forge.ts';
import { FAST_LIMITS, FAST_SECONDARY, memoryLogger } from './helpers.ts';
import { uid } from '../support/fleet.ts';

const AUTHOR = 'ghp_author_token_0123456789';
const REVIEWER = 'ghp_reviewer_token_0123456789';
const REPO = 'acme/widgets';

let redis: TestRedis;
let server: GitHubTestServer;
let forges: GitHubForges;
let author: Forge;
let reviewer: Forge;
let budgets: (BudgetReading & { token: string })[];
let logger: ReturnType<typeof memoryLogger>;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

beforeEach(async () => {
  server = await startGitHubTestServer({ users: { [AUTHOR]: 'fleet-bot', [REVIEWER]: 'fleet-reviewer' }, secondary: FAST_SECONDARY });
  server.addRepo(REPO, { defaultBranch: 'trunk' });
  budgets = [];
  logger = memoryLogger();
  forges = createGitHubForges({
    apiUrl: server.url,
    redis: redis.url,
    prefix: uid(),
    logger,
    limits: FAST_LIMITS,
    onBudget: (b) => budgets.push(b),
  });
  author = forges.forToken(AUTHOR);
  reviewer = forges.forToken(REVIEWER);
});
afterEach(async () => {
  await forges.close();
  await server.close();
});

async function openPr(branch = 'fleet/req-1/frontend') {
  const headSha = server.pushBranch(REPO, branch);
  const pr = await author.openPullRequest({ repo: REPO, head: branch, base: 'trunk', title: 'Add widget', body: 'Task: add a widget' });
  return { pr, headSha };
}

describe('GitHubForge', () => {
  it('reads the default branch and types a missing repository as NotFoundError', async () => {
    expect(await author.getDefaultBranch(REPO)).toBe('trunk');
    const error = await author.getDefaultBranch('acme/nope').catch((e: unknown) => e);
    expect(isErrorNamed(error, 'NotFoundError')).toBe(true);
    expect(error).toMatchObject({ retryable: false });
  });

  it('opens a pull request, and finds it again when asked twice (a retried job)', async () => {
    const { pr, headSha } = await openPr();
    expect(pr).toMatchObject({
      number: 1,
      headSha,
      headRef: 'fleet/req-1/frontend',
      baseRef: 'trunk',
      state: 'open',
      author: 'fleet-bot',
      existing: false,
    });
    expect(pr.url).toBe(`https://github.test/${REPO}/pull/1`);
    const again = await author.openPullRequest({ repo: REPO, head: 'fleet/req-1/frontend', base: 'trunk', title: 'Add widget', body: '' });
    expect(again).toMatchObject({ number: 1, existing: true, headSha });
  });

  it('refuses a pull request from a branch that does not exist with a validation error', async () => {
    const error = await author.openPullRequest({ repo: REPO, head: 'nope', base: 'trunk', title: 't', body: '' }).catch((e: unknown) => e);
    expect(isErrorNamed(error, 'ForgeValidationError')).toBe(true);
  });

  it('gets a pull request and its diff as text', async () => {
    const { pr, headSha } = await openPr();
    const diff = 'diff --git a/x.ts b/x.ts\n--- a/x.ts\n+++ b/x.ts\n@@ -1 +1,2 @@\n a\n+b\n';
    server.setDiff(REPO, pr.number, diff);
    expect(await reviewer.getPullRequest(REPO, pr.number)).toMatchObject({
      headSha,
      mergeable: true,
      merged: false,
      mergeableState: 'clean',
    });
    expect(await reviewer.getPullRequestDiff(REPO, pr.number)).toBe(diff);
  });

  it('posts an approval with another token, and reports GitHub refusing self-approval as a result', async () => {
    const { pr, headSha } = await openPr();
    const approved = await reviewer.postReview({ repo: REPO, number: pr.number, event: 'APPROVE', body: 'Looks right', commitId: headSha });
    expect(approved).toMatchObject({ posted: true, event: 'APPROVE' });
    const own = await author.postReview({ repo: REPO, number: pr.number, event: 'APPROVE', body: 'Looks right', commitId: headSha });
    expect(own).toMatchObject({ posted: false, reason: 'own_pull_request' });
    const ownRequest = await author.postReview({ repo: REPO, number: pr.number, event: 'REQUEST_CHANGES', body: 'No', commitId: headSha });
    expect(ownRequest).toMatchObject({ posted: false, reason: 'own_pull_request' });
    const comment = await author.postReview({
      repo: REPO,
      number: pr.number,
      event: 'COMMENT',
      body: 'Approved by the fleet reviewer',
      commitId: headSha,
    });
    expect(comment.posted).toBe(true);
    const reviews = server.pullState(REPO, pr.number).reviews;
    expect(reviews.map((r) => [r.login, r.state, r.commitId])).toEqual([
      ['fleet-reviewer', 'APPROVED', headSha],
      ['fleet-bot', 'COMMENTED', headSha],
    ]);
  });

  it('anchors line comments on the diff, and folds them into the body when a line is outside it', async () => {
    const { pr, headSha } = await openPr();
    server.setDiff(REPO, pr.number, 'diff --git a/x.ts b/x.ts\n--- a/x.ts\n+++ b/x.ts\n@@ -1 +1,2 @@\n a\n+b\n');
    const ok = await reviewer.postReview({
      repo: REPO,
      number: pr.number,
      event: 'REQUEST_CHANGES',
      body: 'Fix',
      commitId: headSha,
      comments: [
        { path: 'x.ts', line: 2, body: 'rename b' },
        { path: 'x.ts', body: 'file-level note' },
      ],
    });
    expect(ok).toMatchObject({ posted: true, commentsFoldedIntoBody: false });
    const folded = await reviewer.postReview({
      repo: REPO,
      number: pr.number,
      event: 'REQUEST_CHANGES',
      body: 'Fix',
      commitId: headSha,
      comments: [{ path: 'x.ts', line: 99, body: 'off the diff' }],
    });
    expect(folded).toMatchObject({ posted: true, commentsFoldedIntoBody: true });
    const [first, second] = server.pullState(REPO, pr.number).reviews;
    expect(first!.comments).toHaveLength(1);
    expect(first!.body).toContain('file-level note');
    expect(second!.comments).toHaveLength(0);
    expect(second!.body).toContain('`x.ts:99`: off the diff');
  });

  it('posts an issue comment', async () => {
    const { pr } = await openPr();
    const posted = await reviewer.postComment(REPO, pr.number, 'Please handle the empty case');
    expect(posted.url).toContain(`#issuecomment-${posted.id}`);
    expect(server.pullState(REPO, pr.number).comments).toEqual([
      { id: posted.id, login: 'fleet-reviewer', body: 'Please handle the empty case' },
    ]);
  });

  it('merges only at the reviewed head: a push after the review is HeadChangedError, then merge at the new head', async () => {
    const { pr, headSha } = await openPr();
    const moved = server.pushBranch(REPO, pr.headRef);
    const error = await author.mergePullRequest({ repo: REPO, number: pr.number, sha: headSha }).catch((e: unknown) => e);
    expect(isErrorNamed(error, 'HeadChangedError')).toBe(true);
    expect(error).toMatchObject({ retryable: false });
    expect(server.pullState(REPO, pr.number).merged).toBe(false);

    const merged = await author.mergePullRequest({ repo: REPO, number: pr.number, sha: moved, commitTitle: 'Add widget (#1)' });
    expect(merged.alreadyMerged).toBe(false);
    expect(server.pullState(REPO, pr.number)).toMatchObject({ merged: true, state: 'closed', mergeCommitSha: merged.sha });
    const again = await author.mergePullRequest({ repo: REPO, number: pr.number, sha: moved });
    expect(again).toEqual({ sha: merged.sha, alreadyMerged: true });
  });

  it('reports a conflicting pull request as NotMergeableError', async () => {
    const { pr, headSha } = await openPr();
    server.setConflicting(REPO, pr.number);
    expect((await author.getPullRequest(REPO, pr.number)).mergeable).toBe(false);
    const error = await author.mergePullRequest({ repo: REPO, number: pr.number, sha: headSha }).catch((e: unknown) => e);
    expect(isErrorNamed(error, 'NotMergeableError')).toBe(true);
    expect((error as Error).message).toContain('not mergeable');
  });

  it('reads required checks from branch protection: null when unprotected, without checks, or unreadable (403)', async () => {
    expect(await author.getRequiredChecks(REPO, 'trunk')).toBeNull();
    server.protectBranch(REPO, 'trunk', { contexts: [] });
    expect(await author.getRequiredChecks(REPO, 'trunk')).toBeNull();
    server.protectBranch(REPO, 'trunk', { contexts: ['build', 'ci/legacy'] });
    expect(await author.getRequiredChecks(REPO, 'trunk')).toEqual(['build', 'ci/legacy']);
    server.protectBranch(REPO, 'trunk', { contexts: ['build'], readable: false });
    expect(await author.getRequiredChecks(REPO, 'trunk')).toBeNull();
  });

  it('reads check runs and commit statuses of a commit as one list, a check run winning over a status of its name', async () => {
    const { headSha } = await openPr();
    const build = server.addCheckRun(REPO, headSha, { name: 'build', status: 'in_progress' });
    server.addCheckRun(REPO, headSha, { name: 'docs', status: 'completed', conclusion: 'skipped' });
    server.setStatus(REPO, headSha, 'ci/legacy', 'pending');
    server.setStatus(REPO, headSha, 'ci/legacy', 'failure');
    server.setStatus(REPO, headSha, 'build', 'success');
    const byName = async () => new Map((await author.getCommitChecks(REPO, headSha)).map((c) => [c.name, c]));
    let checks = await byName();
    expect([...checks.keys()].sort()).toEqual(['build', 'ci/legacy', 'docs']);
    expect(checks.get('build')).toMatchObject({ state: 'pending', conclusion: null, source: 'check_run', checkRunId: build });
    expect(checks.get('docs')).toMatchObject({ state: 'success', conclusion: 'skipped' });
    expect(checks.get('ci/legacy')).toMatchObject({
      state: 'failure',
      conclusion: 'failure',
      source: 'status',
      url: `https://ci.test/ci/legacy/${headSha}`,
    });
    server.completeCheckRun(REPO, build, 'timed_out', { summary: 'took too long' });
    checks = await byName();
    expect(checks.get('build')).toMatchObject({ state: 'failure', conclusion: 'timed_out', summary: 'took too long' });
  });

  it('refuses a merge by protection with GitHub’s messages and mergeable_state; update-branch makes a merge commit', async () => {
    const { pr, headSha } = await openPr();
    server.protectBranch(REPO, 'trunk', { contexts: ['build'], strict: true, requiredReviews: 1 });
    const refusal = () =>
      author.mergePullRequest({ repo: REPO, number: pr.number, sha: server.pullState(REPO, pr.number).headSha }).catch((e: Error) => e);
    expect((await author.getPullRequest(REPO, pr.number)).mergeableState).toBe('blocked');
    expect(await refusal()).toMatchObject({
      name: 'NotMergeableError',
      message: expect.stringContaining('Required status check "build" is expected.'),
    });
    const run = server.addCheckRun(REPO, headSha, { name: 'build' });
    expect(await refusal()).toMatchObject({ message: expect.stringContaining('Required status check "build" is in progress.') });
    server.completeCheckRun(REPO, run, 'success');
    expect(await refusal()).toMatchObject({
      message: expect.stringContaining('At least 1 approving review is required by reviewers with write access.'),
    });
    await reviewer.postReview({ repo: REPO, number: pr.number, event: 'APPROVE', body: 'ok', commitId: headSha });
    expect((await author.getPullRequest(REPO, pr.number)).mergeableState).toBe('clean');

    // The base moves: strict protection wants the branch up to date first.
    server.pushBranch(REPO, 'trunk');
    expect((await author.getPullRequest(REPO, pr.number)).mergeableState).toBe('behind');
    expect(await refusal()).toMatchObject({ message: expect.stringContaining('Head branch is not up to date with the base branch.') });
    const stale = await author.updatePullRequestBranch(REPO, pr.number, 'f'.repeat(40)).catch((e: Error) => e);
    expect(stale).toMatchObject({ name: 'HeadChangedError' });
    await author.updatePullRequestBranch(REPO, pr.number, headSha);
    const updated = await author.getPullRequest(REPO, pr.number);
    expect(updated.headSha).not.toBe(headSha);
    expect(await author.getCommitParents(REPO, updated.headSha)).toEqual([headSha, server.pullState(REPO, pr.number).baseSeen]);
  });

  it('reports the budget of every answer and never writes the token to Redis', async () => {
    await author.getDefaultBranch(REPO);
    await author.getDefaultBranch(REPO);
    expect(budgets).toHaveLength(2);
    expect(budgets[0]).toMatchObject({ limit: 5000, remaining: 4999, resource: 'core' });
    expect(budgets[1]!.remaining).toBe(4998);
    expect(budgets[0]!.resetAt).toBeInstanceOf(Date);
    expect(budgets[0]!.token).toMatch(/^[0-9a-f]{16}$/);
    const client = new Redis(redis.url);
    const keys = await client.keys('*');
    client.disconnect();
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.some((k) => k.includes(AUTHOR) || k.includes('ghp_'))).toBe(false);
    expect(JSON.stringify(logger.entries)).not.toContain(AUTHOR);
  });
});

describe('toForgeError', () => {
  it('types answers by status, and tells rate limits from refusals on 403', () => {
    const http = (status: number, message: string, headers: Record<string, string> = {}) =>
      Object.assign(new Error(message), { status, response: { headers } });
    expect(toForgeError(http(403, 'Resource not accessible by integration'), 'x').name).toBe('ForgeAuthError');
    expect(toForgeError(http(403, 'You have exceeded a secondary rate limit'), 'x').name).toBe('RateLimitedError');
    expect(toForgeError(http(403, 'You have triggered an abuse detection mechanism', { 'retry-after': '30' }), 'x')).toMatchObject({
      name: 'RateLimitedError',
      retryable: true,
    });
    expect(toForgeError(http(401, 'Bad credentials'), 'x')).toMatchObject({ name: 'ForgeAuthError', retryable: false });
    expect(toForgeError(http(502, 'Bad Gateway'), 'x')).toMatchObject({ name: 'ForgeUnavailableError', retryable: true });
    expect(toForgeError(new Error('connect ECONNREFUSED'), 'x')).toMatchObject({ name: 'ForgeUnavailableError', retryable: true });
  });
});

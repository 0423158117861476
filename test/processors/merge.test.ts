import { beforeEach, describe, expect, it } from 'vitest';
import { processMerge, type MergeDeps } from '../../processors/merge.ts';
import { processReview } from '../../processors/review.ts';
import type { MergeJobData } from '../../queues/merge.ts';
import type { ReviewJobData, ReviewJobResult } from '../../queues/review.ts';
import type { SpawnJobData } from '../../queues/spawn.ts';
import { followUpJobId, scopeBranch, stepJobId } from '../../src/flow/ids.ts';
import { emptyOutcome } from '../../src/flow/result.ts';
import type { ScopeOutcome, SpawnRequest } from '../../src/protocol.ts';
import { FakeGitHub, FakeReviewer, newSha, type FakePull } from '../support/fakes/forge.ts';
import { NotMergeableError } from '../../src/errors.ts';
import { NOW, REVIEWER_TOKEN, useLab, WORKER_TOKEN, workerResult } from './support.ts';

const lab = useLab();
let github: FakeGitHub;

beforeEach(() => {
  github = new FakeGitHub();
});

function mergeDeps(extra: Partial<MergeDeps> = {}): MergeDeps {
  // Most tests are about other things than CI: a repository with no checks, merged at once (ciRequired none).
  return { ...lab.bench.stepDeps(github), conflictRounds: 2, lockRetryMs: 250, ciRequired: { kind: 'none' }, ciPollMs: 200, ...extra };
}

/** The review step's outcome: the PR approved at its head (override what a test needs). */
function reviewed(request: SpawnRequest, pull: FakePull, overrides: Partial<ScopeOutcome> = {}): ScopeOutcome {
  const pr = { number: pull.number, url: `https://github.test/pr/${pull.number}`, head_sha: pull.headSha };
  const bytes = pull.diff.length;
  return {
    ...emptyOutcome({ scope: null, branch: pull.head }),
    worker: workerResult(request.request_id, { commit_sha: pull.headSha, pull_request: pr }),
    pull_request: pr,
    reviews: [
      {
        approved: true,
        feedback: 'ok',
        reviewed_sha: pull.headSha,
        review_event: 'APPROVE',
        self_review_fallback: false,
        coverage: { reviewed_bytes: bytes, total_bytes: bytes, truncated: false },
      },
    ],
    ...overrides,
  };
}

/**
 * A reviewed single-scope request: spawn and review steps completed (the review with `outcome` of the
 * PR, approved unless overridden), so the merge job waits. Returns the request, the PR and the merge job's id.
 */
async function mergeWaiting(
  outcome: (request: SpawnRequest, pull: FakePull) => ScopeOutcome | 'review job fails' = reviewed,
  overrides: Partial<SpawnRequest> = {},
) {
  const request = await lab.bench.addFlow({ merge: true, ...overrides });
  const id = request.request_id;
  const pull = github.addPull(request.repo, { head: scopeBranch(id, null), authorToken: WORKER_TOKEN });
  await lab.bench.complete('spawn', workerResult(id), stepJobId(id, null, 'spawn'));
  const answer = outcome(request, pull);
  if (answer === 'review job fails') await lab.bench.fail('review', 'review exploded', stepJobId(id, null, 'review'));
  else await lab.bench.complete('review', answer, stepJobId(id, null, 'review'));
  return { request, pull, mergeId: stepJobId(id, null, 'merge') };
}

async function runMerge(mergeId: string, deps: MergeDeps) {
  const { job, token } = await lab.bench.take<MergeJobData, ScopeOutcome>('merge', mergeId);
  return lab.bench.settle(job, token, processMerge(job, deps, { token }));
}

describe('processMerge', () => {
  it('merges an approved PR with the reviewed SHA as guard, and releases the repository lock', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const settled = await runMerge(mergeId, mergeDeps());

    expect(settled.value).toMatchObject({ merged: true, merge_sha: pull.mergeCommitSha, conflict_rounds_used: 0, error_type: null });
    expect(pull.merged).toBe(true);
    expect(github.callsOf('mergePullRequest')).toEqual([
      {
        token: WORKER_TOKEN,
        method: 'mergePullRequest',
        args: [{ repo: request.repo, number: pull.number, sha: pull.headSha, commitTitle: `Wishlist (#${pull.number})` }],
      },
    ]);
    expect(await lab.bench.redis.exists(lab.bench.keys.mergeLock(request.repo))).toBe(0);
    expect(await lab.bench.state('merge', mergeId)).toBe('completed');
  });

  it('a scope that was not approved, or stopped earlier, passes through unmerged', async () => {
    const rejected = await mergeWaiting((r, p) =>
      reviewed(r, p, { error_type: 'review_rejected', error_message: 'no', reviews: [{ ...reviewed(r, p).reviews[0]!, approved: false }] }),
    );
    expect((await runMerge(rejected.mergeId, mergeDeps())).value).toMatchObject({
      merged: false,
      error_type: 'review_rejected',
      error_message: 'no',
    });

    const unapproved = await mergeWaiting((r, p) => reviewed(r, p, { reviews: [] }));
    expect((await runMerge(unapproved.mergeId, mergeDeps())).value).toMatchObject({ merged: false, error_type: null, reviews: [] });

    const crashed = await mergeWaiting(() => 'review job fails');
    expect((await runMerge(crashed.mergeId, mergeDeps())).value).toMatchObject({
      merged: false,
      error_type: 'crash',
      error_message: expect.stringMatching(/the review job failed: review exploded/),
    });
    expect(github.callsOf('mergePullRequest')).toEqual([]);
  });

  it('an approval of a truncated diff is never merged: review_incomplete', async () => {
    const { mergeId } = await mergeWaiting((r, p) =>
      reviewed(r, p, { reviews: [{ ...reviewed(r, p).reviews[0]!, coverage: { reviewed_bytes: 10, total_bytes: 500, truncated: true } }] }),
    );
    const settled = await runMerge(mergeId, mergeDeps());
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'review_incomplete',
      error_message: expect.stringMatching(/read 10 of 500 bytes/),
    });
    expect(github.callsOf('mergePullRequest')).toEqual([]);
  });

  it('a push after the review: GitHub refuses the reviewed SHA, head_changed, nothing merged', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const reviewedSha = pull.headSha;
    github.pushBranch(request.repo, pull.head);
    const settled = await runMerge(mergeId, mergeDeps());

    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'head_changed',
      error_message: expect.stringContaining(reviewedSha.slice(0, 12)),
    });
    expect(pull.merged).toBe(false);
    expect(await lab.bench.redis.exists(lab.bench.keys.mergeLock(request.repo))).toBe(0);
  });

  it('a conflict: a rebase worker, then a re-review of its head, then the merge of that head', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const id = request.request_id;
    pull.conflicting = true;
    const firstHead = pull.headSha;
    const deps = mergeDeps();

    // 1. GitHub refuses the merge: a conflict worker is added on the branch, and the merge parks.
    expect((await runMerge(mergeId, deps)).error?.name).toBe('WaitingChildrenError');
    const rebaseId = followUpJobId(stepJobId(id, null, 'spawn'), 'rebase', 1);
    const rebase = (await lab.bench.queues.spawn.getJob(rebaseId))!.data as SpawnJobData;
    expect(rebase.flow).toMatchObject({ purpose: 'rebase', branch: pull.head, baseBranch: 'main' });
    expect(rebase.request.task_content).toMatch(/Resolve the conflicts[\s\S]*Add a wishlist/);
    expect(await lab.bench.redis.exists(lab.bench.keys.mergeLock(request.repo))).toBe(0);

    // 2. The conflict worker pushes a resolution; the merge adds a review of the new head and parks again.
    const resolved = github.pushBranch(request.repo, pull.head, newSha());
    pull.conflicting = false;
    await lab.bench.complete('spawn', workerResult(id, { commit_sha: resolved }), rebaseId);
    expect((await runMerge(mergeId, deps)).error?.name).toBe('WaitingChildrenError');
    const reReviewId = stepJobId(id, null, 'review', 1);
    expect((await lab.bench.queues.review.getJob(reReviewId))!.data.start!.pullRequest.head_sha).toBe(resolved);

    // 3. The re-review runs (the real processor), approving the resolved head.
    const review = await lab.bench.take<ReviewJobData, ReviewJobResult>('review', reReviewId);
    const reviewDeps = {
      ...lab.bench.stepDeps(github),
      reviewer: new FakeReviewer({ approved: true, feedback: 'Resolved well.' }),
      reviewerKind: 'llm' as const,
      reviewerToken: REVIEWER_TOKEN,
    };
    expect(
      (await lab.bench.settle(review.job, review.token, processReview(review.job, reviewDeps, { token: review.token }))).value,
    ).toMatchObject({ error_type: null });

    // 4. The merge resumes with both verdicts and merges the head the second one approved.
    const settled = await runMerge(mergeId, deps);
    expect(settled.value).toMatchObject({ merged: true, conflict_rounds_used: 1, error_type: null });
    expect(settled.value!.reviews.map((r) => r.reviewed_sha)).toEqual([firstHead, resolved]);
    expect(github.callsOf('mergePullRequest').map((c) => (c.args[0] as { sha: string }).sha)).toEqual([firstHead, resolved]);
    expect(pull.merged).toBe(true);
  });

  it('a conflict that outlasts its conflict rounds is merge_conflict', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const id = request.request_id;
    pull.conflicting = true;
    const deps = mergeDeps({ conflictRounds: 1 });
    // Round 1: the conflict worker pushes, the new head is approved, and the PR still conflicts.
    await runMerge(mergeId, deps);
    await lab.bench.complete(
      'spawn',
      workerResult(id, { commit_sha: github.pushBranch(request.repo, pull.head) }),
      followUpJobId(stepJobId(id, null, 'spawn'), 'rebase', 1),
    );
    await runMerge(mergeId, deps);
    await lab.bench.complete(
      'review',
      reviewed(request, pull, { reviews: [reviewed(request, pull).reviews[0]!] }),
      stepJobId(id, null, 'review', 1),
    );

    const settled = await runMerge(mergeId, deps);
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'merge_conflict',
      conflict_rounds_used: 1,
      error_message: expect.stringMatching(/1 conflict round\(s\) did not fix it/),
    });
    expect(settled.value!.reviews).toHaveLength(2);
    expect(github.callsOf('mergePullRequest')).toHaveLength(2);
    // No second conflict worker.
    expect(await lab.bench.queues.spawn.getJob(followUpJobId(stepJobId(id, null, 'spawn'), 'rebase', 2))).toBeUndefined();
  });

  it('a conflict worker that fails is conflict_unresolved', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    pull.conflicting = true;
    await runMerge(mergeId, mergeDeps());
    await lab.bench.fail('spawn', 'could not resolve', followUpJobId(stepJobId(request.request_id, null, 'spawn'), 'rebase', 1));
    const settled = await runMerge(mergeId, mergeDeps());
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'conflict_unresolved',
      conflict_rounds_used: 1,
      error_message: expect.stringMatching(/could not resolve/),
    });
  });

  it('a re-review job that fails ends the scope as a crash that still names its pull request', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const id = request.request_id;
    pull.conflicting = true;
    await runMerge(mergeId, mergeDeps());
    await lab.bench.complete(
      'spawn',
      workerResult(id, { commit_sha: github.pushBranch(request.repo, pull.head) }),
      followUpJobId(stepJobId(id, null, 'spawn'), 'rebase', 1),
    );
    await runMerge(mergeId, mergeDeps());
    await lab.bench.fail('review', 'reviewer host lost', stepJobId(id, null, 'review', 1));

    const settled = await runMerge(mergeId, mergeDeps());
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'crash',
      conflict_rounds_used: 1,
      error_message: expect.stringMatching(/reviewer host lost/),
    });
    // The PR exists and is open: the request's result must still list it.
    expect(settled.value!.pull_request).toMatchObject({ number: pull.number });
  });

  it("another merge holds the repository's lock: the job is delayed without spending an attempt, then merges", async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const lockKey = lab.bench.keys.mergeLock(request.repo);
    await lab.bench.redis.set(lockKey, 'other-holder');
    const delayed = await runMerge(mergeId, mergeDeps());

    expect(delayed.error?.name).toBe('DelayedError');
    const job = (await lab.bench.queues.merge.getJob(mergeId))!;
    expect([await job.getState(), job.attemptsMade]).toEqual(['delayed', 0]);
    expect(await lab.bench.redis.get(lockKey)).toBe('other-holder');
    expect(github.callsOf('mergePullRequest')).toEqual([]);

    await lab.bench.redis.del(lockKey);
    await job.promote();
    expect((await runMerge(mergeId, mergeDeps())).value).toMatchObject({ merged: true });
    expect(pull.merged).toBe(true);
  });

  it('cancelled: the scope ends as cancelled, nothing is merged', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    await lab.bench.redis.set(lab.bench.keys.cancelled(request.request_id), '1');
    const settled = await runMerge(mergeId, mergeDeps());
    expect(settled.value).toMatchObject({ merged: false, error_type: 'cancelled' });
    expect(pull.merged).toBe(false);
  });
});

describe('processMerge waits for CI', () => {
  /** Runs the merge once more after a delay, as BullMQ does when the delay ends. */
  async function again(mergeId: string, deps: MergeDeps) {
    const job = (await lab.bench.queues.merge.getJob(mergeId))!;
    expect(await job.getState()).toBe('delayed');
    await job.promote();
    return runMerge(mergeId, deps);
  }

  it('a required check still running: the job is delayed, holding no lock, then merges once it is green', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    github.protection.set(request.repo, ['ci']);
    github.setCheck(pull.headSha, 'ci', 'pending');
    let now = NOW;
    const waits: [string, number][] = [];
    const deps = mergeDeps({ ciRequired: { kind: 'auto' }, now: () => now, onCiWait: (outcome, ms) => waits.push([outcome, ms]) });

    const waiting = await runMerge(mergeId, deps);
    expect(waiting.error?.name).toBe('DelayedError');
    const job = (await lab.bench.queues.merge.getJob(mergeId))!;
    expect([await job.getState(), job.attemptsMade]).toEqual(['delayed', 0]);
    expect((job.data as MergeJobData).state).toMatchObject({ step: 'merge', ci: { since: NOW, polls: 1 } });
    expect(await lab.bench.redis.exists(lab.bench.keys.mergeLock(request.repo))).toBe(0);
    expect(await lab.bench.queues.spawn.getJobCounts()).toMatchObject({ waiting: 0, 'waiting-children': 0 });

    // Still pending on the second look: delayed again, for longer.
    now += 5_000;
    expect((await again(mergeId, deps)).error?.name).toBe('DelayedError');
    expect(((await lab.bench.queues.merge.getJob(mergeId))!.data as MergeJobData).state).toMatchObject({ ci: { since: NOW, polls: 2 } });

    github.setCheck(pull.headSha, 'ci', 'success');
    now += 7_000;
    const settled = await again(mergeId, deps);
    expect(settled.value).toMatchObject({
      merged: true,
      error_type: null,
      conflict_rounds_used: 0,
      ci_wait_ms: 12_000,
      checks: [{ name: 'ci', conclusion: 'success', url: 'https://github.test/checks/ci' }],
    });
    expect(github.callsOf('mergePullRequest')).toHaveLength(1);
    expect(github.callsOf('getCommitChecks')).toHaveLength(3);
    expect(waits).toEqual([['green', 12_000]]);
    expect(pull.merged).toBe(true);
  });

  it('a red required check is never merged nor a conflict: ci_failed names it with its link', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    github.protection.set(request.repo, ['lint', 'test']);
    github.setCheck(pull.headSha, 'lint', 'success');
    github.setCheck(pull.headSha, 'test', 'failure', { url: 'https://github.test/acme/runs/7' });
    const settled = await runMerge(mergeId, mergeDeps({ ciRequired: { kind: 'auto' } }));
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'ci_failed',
      error_message: expect.stringContaining('test (failure: https://github.test/acme/runs/7)'),
      conflict_rounds_used: 0,
    });
    expect(settled.value!.checks!.map((c) => [c.name, c.conclusion])).toEqual([
      ['lint', 'success'],
      ['test', 'failure'],
    ]);
    expect(github.callsOf('mergePullRequest')).toEqual([]);
    expect(await lab.bench.queues.spawn.getJobCounts()).toMatchObject({ waiting: 0, 'waiting-children': 0 });
  });

  it('pending past FLEET_CI_TIMEOUT: ci_timeout naming what is still pending', async () => {
    const { pull, mergeId } = await mergeWaiting();
    github.setCheck(pull.headSha, 'build', 'pending');
    let now = NOW;
    const waits: [string, number][] = [];
    const deps = mergeDeps({ ciRequired: { kind: 'auto' }, ciTimeoutMs: 60_000, now: () => now, onCiWait: (o, ms) => waits.push([o, ms]) });
    expect((await runMerge(mergeId, deps)).error?.name).toBe('DelayedError');
    now += 60_000;
    const settled = await again(mergeId, deps);
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'ci_timeout',
      error_message: expect.stringMatching(/build/),
      ci_wait_ms: 60_000,
    });
    expect(github.callsOf('mergePullRequest')).toEqual([]);
    expect(waits).toEqual([['timeout', 60_000]]);
  });

  it('without protection, auto requires every check on the head; a list requires only the named ones', async () => {
    const auto = await mergeWaiting();
    github.setCheck(auto.pull.headSha, 'ci', 'success');
    github.setCheck(auto.pull.headSha, 'slow-lint', 'pending');
    expect((await runMerge(auto.mergeId, mergeDeps({ ciRequired: { kind: 'auto' } }))).error?.name).toBe('DelayedError');

    const named = await mergeWaiting();
    github.setCheck(named.pull.headSha, 'ci', 'success');
    github.setCheck(named.pull.headSha, 'optional', 'failure');
    const settled = await runMerge(named.mergeId, mergeDeps({ ciRequired: { kind: 'names', names: ['ci'] } }));
    expect(settled.value).toMatchObject({ merged: true, checks: [{ name: 'ci', conclusion: 'success' }] });
  });

  it('auto with no check at all on the head looks once more (CI may not have started), then merges', async () => {
    const { pull, mergeId } = await mergeWaiting();
    const deps = mergeDeps({ ciRequired: { kind: 'auto' } });
    expect((await runMerge(mergeId, deps)).error?.name).toBe('DelayedError');
    expect((await again(mergeId, deps)).value).toMatchObject({ merged: true, checks: [] });
    expect(pull.merged).toBe(true);
  });

  it('protection the token cannot read: GitHub refuses on a check, and the merge waits instead of a conflict worker', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    github.protection.set(request.repo, ['ci']);
    github.setCheck(pull.headSha, 'ci', 'pending');
    const hidden = mergeDeps({ ciRequired: { kind: 'none' } });
    // The fake answers null for a repository with no protection entry: hide the protection it enforces.
    const realRead = github.forges.forToken;
    github.forges.forToken = (token) => ({ ...realRead(token), getRequiredChecks: async () => null });
    expect((await runMerge(mergeId, hidden)).error?.name).toBe('DelayedError');
    expect(github.callsOf('mergePullRequest')).toHaveLength(1);
    expect(await lab.bench.queues.spawn.getJobCounts()).toMatchObject({ waiting: 0, 'waiting-children': 0 });
    // The check GitHub named is required from now on, though the protection stays unreadable: still pending, still waiting.
    github.forges.forToken = (token) => ({ ...realRead(token), getRequiredChecks: async () => null });
    expect(((await lab.bench.queues.merge.getJob(mergeId))!.data as MergeJobData).state).toMatchObject({ learnedChecks: ['ci'] });
    expect((await again(mergeId, hidden)).error?.name).toBe('DelayedError');
    expect(github.callsOf('mergePullRequest')).toHaveLength(1);
    github.setCheck(pull.headSha, 'ci', 'success');
    expect((await again(mergeId, hidden)).value).toMatchObject({ merged: true, conflict_rounds_used: 0, checks: [{ name: 'ci' }] });
    github.forges.forToken = realRead;
  });

  it('a required review: review_required with GitHub’s message, no conflict worker', async () => {
    const { pull, mergeId } = await mergeWaiting();
    pull.reviewRequired = true;
    const settled = await runMerge(mergeId, mergeDeps());
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'review_required',
      error_message: expect.stringContaining('At least 1 approving review is required by reviewers with write access.'),
    });
    expect(await lab.bench.queues.spawn.getJobCounts()).toMatchObject({ waiting: 0, 'waiting-children': 0 });
  });

  it('behind its base: update-branch, CI on the new head, then the merge guarded by that head', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const reviewedSha = pull.headSha;
    pull.behind = true;
    github.protection.set(request.repo, ['ci']);
    github.setCheck(reviewedSha, 'ci', 'success');
    const deps = mergeDeps();

    expect((await runMerge(mergeId, deps)).error?.name).toBe('DelayedError');
    expect(github.callsOf('updatePullRequestBranch').map((c) => c.args)).toEqual([[request.repo, pull.number, reviewedSha]]);
    const updatedHead = pull.headSha;
    expect(updatedHead).not.toBe(reviewedSha);

    // The new head's CI runs: the merge waits for it (the reviewed head's green does not count).
    github.setCheck(updatedHead, 'ci', 'pending');
    expect((await again(mergeId, deps)).error?.name).toBe('DelayedError');
    expect(((await lab.bench.queues.merge.getJob(mergeId))!.data as MergeJobData).state).toMatchObject({
      updated: { from: reviewedSha, head: updatedHead },
    });
    github.setCheck(updatedHead, 'ci', 'success');
    const settled = await again(mergeId, deps);
    expect(settled.value).toMatchObject({ merged: true, error_type: null, reviews: [{ reviewed_sha: reviewedSha }] });
    expect(github.callsOf('mergePullRequest').map((c) => (c.args[0] as { sha: string }).sha)).toEqual([reviewedSha, updatedHead]);
  });

  it('behind, and a push other than GitHub’s update lands on the branch: head_changed, nothing merged', async () => {
    const { request, pull, mergeId } = await mergeWaiting();
    const reviewedSha = pull.headSha;
    pull.behind = true;
    const deps = mergeDeps();
    expect((await runMerge(mergeId, deps)).error?.name).toBe('DelayedError');
    github.pushBranch(request.repo, pull.head);
    const settled = await again(mergeId, deps);
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'head_changed',
      error_message: expect.stringContaining(reviewedSha.slice(0, 12)),
    });
    expect(pull.merged).toBe(false);
  });

  it('a refusal GitHub does not explain is retried later, then github_error with its message', async () => {
    const { mergeId } = await mergeWaiting();
    const deps = mergeDeps();
    const refuse = () => github.failNext('mergePullRequest', new NotMergeableError('Merge commits are not allowed on this repository.'));
    refuse();
    expect((await runMerge(mergeId, deps)).error?.name).toBe('DelayedError');
    for (let i = 0; i < 3; i++) {
      refuse();
      const next = await again(mergeId, deps);
      if (i < 2) expect(next.error?.name).toBe('DelayedError');
      else
        expect(next.value).toMatchObject({
          merged: false,
          error_type: 'github_error',
          error_message: expect.stringMatching(/4 times.*not allowed/),
        });
    }
    expect(github.callsOf('mergePullRequest')).toHaveLength(4);
  });

  it('red CI with a fix round left: a fix worker whose task holds the failing log, a re-review, green, merged', async () => {
    const { request, pull, mergeId } = await mergeWaiting(reviewed, { fix_rounds: 1 });
    const id = request.request_id;
    const firstHead = pull.headSha;
    github.protection.set(request.repo, ['test', 'lint']);
    github.setCheck(firstHead, 'lint', 'success');
    github.setCheck(firstHead, 'test', 'failure', {
      checkRunId: 77,
      actionsJob: true,
      summary: '1 test failed',
      url: 'https://github.test/runs/77',
    });
    const log = [
      ...Array.from({ length: 300 }, (_, i) => `2030-01-02T03:04:05.0000000Z setup line ${i}`),
      'FAIL wishlist.test.ts > adds an item',
      'expected 2, got 1',
    ].join('\n');
    github.checkDetails.set(77, {
      annotations: [{ path: 'src/wishlist.ts', line: 12, level: 'failure', message: 'expected 2, got 1', title: null }],
      log,
    });
    const deps = mergeDeps({ ciRequired: { kind: 'auto' } });

    // 1. Red: a fix worker on the branch, and the merge parks.
    expect((await runMerge(mergeId, deps)).error?.name).toBe('WaitingChildrenError');
    const fixId = followUpJobId(stepJobId(id, null, 'spawn'), 'ci-fix', 1);
    const fix = (await lab.bench.queues.spawn.getJob(fixId))!.data as SpawnJobData;
    expect(fix.flow).toMatchObject({ purpose: 'fix', branch: pull.head });
    const task = fix.request.task_content;
    expect(task).toContain('### test: failure (https://github.test/runs/77)');
    expect(task).toContain('1 test failed');
    expect(task).toContain('`src/wishlist.ts:12` (failure): expected 2, got 1');
    expect(task).toMatch(/FAIL wishlist.test.ts > adds an item\nexpected 2, got 1/);
    expect(task).not.toContain('setup line 100\n');
    expect(task).not.toContain('2030-01-02T03');
    expect(task).toContain('Add a wishlist');
    expect(task).not.toMatch(/### lint/);
    expect(github.callsOf('mergePullRequest')).toEqual([]);

    // 2. The fix worker pushes; the merge adds a review of the new head (with no fix round left to it).
    const fixed = github.pushBranch(request.repo, pull.head, newSha());
    await lab.bench.complete('spawn', workerResult(id, { commit_sha: fixed }), fixId);
    expect((await runMerge(mergeId, deps)).error?.name).toBe('WaitingChildrenError');
    const reReview = (await lab.bench.queues.review.getJob(stepJobId(id, null, 'review', 1)))!.data;
    expect([reReview.start!.pullRequest.head_sha, reReview.ctx.fixRounds]).toEqual([fixed, 0]);
    await lab.bench.complete('review', reviewed(request, pull), stepJobId(id, null, 'review', 1));

    // 3. The new head's CI is green: merged, one fix round used.
    github.setCheck(fixed, 'lint', 'success');
    github.setCheck(fixed, 'test', 'success');
    const settled = await runMerge(mergeId, deps);
    expect(settled.value).toMatchObject({ merged: true, error_type: null, fix_rounds_used: 1, conflict_rounds_used: 0 });
    expect(settled.value!.reviews.map((r) => r.reviewed_sha)).toEqual([firstHead, fixed]);
    expect(github.callsOf('mergePullRequest').map((c) => (c.args[0] as { sha: string }).sha)).toEqual([fixed]);
  });

  it('a CI fix worker that fails is fix_failed', async () => {
    const { request, pull, mergeId } = await mergeWaiting(reviewed, { fix_rounds: 2 });
    github.setCheck(pull.headSha, 'ci', 'failure');
    await runMerge(mergeId, mergeDeps({ ciRequired: { kind: 'auto' } }));
    await lab.bench.fail('spawn', 'agent gave up', followUpJobId(stepJobId(request.request_id, null, 'spawn'), 'ci-fix', 1));
    const settled = await runMerge(mergeId, mergeDeps({ ciRequired: { kind: 'auto' } }));
    expect(settled.value).toMatchObject({
      merged: false,
      error_type: 'fix_failed',
      fix_rounds_used: 1,
      error_message: expect.stringMatching(/agent gave up/),
    });
  });
});

import { beforeEach, describe, expect, it } from 'vitest';
import { processReview, type ReviewDeps } from '../../processors/review.ts';
import type { ReviewJobData, ReviewJobResult } from '../../queues/review.ts';
import type { SpawnJobData } from '../../queues/spawn.ts';
import { ForgeUnavailableError } from '../../src/errors.ts';
import { followUpJobId, scopeBranch, stepJobId } from '../../src/flow/ids.ts';
import type { SpawnRequest } from '../../src/protocol.ts';
import { FakeGitHub, FakeReviewer, newSha, type FakePull } from '../support/fakes/forge.ts';
import { REVIEWER_TOKEN, useLab, WORKER_TOKEN, workerResult } from './support.ts';

const lab = useLab();
let github: FakeGitHub;

beforeEach(() => {
  github = new FakeGitHub();
});

function reviewDeps(extra: Partial<ReviewDeps> = {}): ReviewDeps {
  return {
    ...lab.bench.stepDeps(github),
    reviewer: new FakeReviewer({ approved: true }),
    reviewerKind: 'llm',
    reviewerToken: REVIEWER_TOKEN,
    ...extra,
  };
}

/**
 * A single-scope request whose worker opened a PR: the flow is added, its spawn step completed with
 * that PR, and the review job waits. Returns the request, the PR and the review job's id.
 */
async function reviewWaiting(overrides: Partial<SpawnRequest> = {}) {
  const request = await lab.bench.addFlow(overrides);
  const id = request.request_id;
  const pull = github.addPull(request.repo, { head: scopeBranch(id, null), authorToken: WORKER_TOKEN });
  const pr = { number: pull.number, url: `https://github.test/pr/${pull.number}`, head_sha: pull.headSha };
  await lab.bench.complete('spawn', workerResult(id, { commit_sha: pull.headSha, pull_request: pr }), stepJobId(id, null, 'spawn'));
  return { request, pull, reviewId: stepJobId(id, null, 'review') };
}

/** Takes the review job and runs the processor on it, settling it as BullMQ would. */
async function runReview(reviewId: string, deps: ReviewDeps) {
  const { job, token } = await lab.bench.take<ReviewJobData, ReviewJobResult>('review', reviewId);
  return lab.bench.settle(job, token, processReview(job, deps, { token }));
}

/** Plays a follow-up worker: the branch moves (its push) and the child completes with that commit. */
async function childPushes(request: SpawnRequest, pull: FakePull, childId: string): Promise<string> {
  const sha = github.pushBranch(request.repo, pull.head, newSha());
  await lab.bench.complete('spawn', workerResult(request.request_id, { commit_sha: sha }), childId);
  return sha;
}

describe('processReview', () => {
  it('approve: posted as APPROVE by the reviewer account, pinned to the head; the scope is approved', async () => {
    const { request, pull, reviewId } = await reviewWaiting();
    const reviewer = new FakeReviewer({ approved: true, feedback: 'Looks right.' });
    const settled = await runReview(reviewId, reviewDeps({ reviewer }));

    expect(settled.value).toMatchObject({ error_type: null, fix_rounds_used: 0, pull_request: { number: pull.number } });
    expect(settled.value!.reviews).toEqual([
      {
        approved: true,
        feedback: 'Looks right.',
        reviewed_sha: pull.headSha,
        review_event: 'APPROVE',
        self_review_fallback: false,
        coverage: { reviewed_bytes: pull.diff.length, total_bytes: pull.diff.length, truncated: false },
      },
    ]);
    // The reviewer got the diff and the task as the request gave it (read from the flow's root).
    expect(reviewer.inputs).toEqual([
      expect.objectContaining({ repo: request.repo, number: pull.number, task: 'Add a wishlist', headSha: pull.headSha, diff: pull.diff }),
    ]);
    expect(github.callsOf('postReview')).toEqual([
      {
        token: REVIEWER_TOKEN,
        method: 'postReview',
        args: [expect.objectContaining({ event: 'APPROVE', commitId: pull.headSha, body: 'Looks right.' })],
      },
    ]);
    expect(github.callsOf('postComment')).toEqual([]);
    expect(await lab.bench.state('review', reviewId)).toBe('completed');
  });

  it('reject with no fix rounds left: review_rejected with the feedback, commented on the PR, no fix worker', async () => {
    const { pull, reviewId } = await reviewWaiting({ fix_rounds: 0 });
    const settled = await runReview(
      reviewId,
      reviewDeps({ reviewer: new FakeReviewer({ approved: false, feedback: 'Handle the empty list.' }) }),
    );

    expect(settled.value).toMatchObject({ error_type: 'review_rejected', error_message: 'Handle the empty list.', fix_rounds_used: 0 });
    expect(settled.value!.reviews.map((r) => r.review_event)).toEqual(['REQUEST_CHANGES']);
    expect(github.callsOf('postComment')).toEqual([
      {
        token: WORKER_TOKEN,
        method: 'postComment',
        args: ['acme/widgets', pull.number, expect.stringContaining('Handle the empty list.')],
      },
    ]);
    expect(await lab.bench.queues.spawn.getJobCounts('waiting', 'active')).toEqual({ waiting: 0, active: 0 });
  });

  it('reject → a fix worker on the branch → the review parks → the new head is reviewed and approved', async () => {
    const { request, pull, reviewId } = await reviewWaiting({ fix_rounds: 2 });
    const reviewer = new FakeReviewer({ approved: false, feedback: 'Handle the empty list.' }, { approved: true, feedback: 'Fixed.' });
    const deps = reviewDeps({ reviewer });
    const firstHead = pull.headSha;

    const parked = await runReview(reviewId, deps);
    expect(parked.error?.name).toBe('WaitingChildrenError');
    expect(await lab.bench.state('review', reviewId)).toBe('waiting-children');
    const fixId = followUpJobId(stepJobId(request.request_id, null, 'spawn'), 'fix', 1);
    const fix = (await lab.bench.queues.spawn.getJob(fixId))!;
    expect((fix.data as SpawnJobData).flow).toMatchObject({ purpose: 'fix', branch: pull.head, scope: null });
    expect((fix.data as SpawnJobData).request.task_content).toContain('Handle the empty list.');
    expect((await lab.bench.queues.review.getJob(reviewId))!.data.state).toMatchObject({ step: 'await-fix', round: 1, childId: fixId });

    const fixedHead = await childPushes(request, pull, fixId);
    expect(await lab.bench.state('review', reviewId)).toBe('waiting');
    const settled = await runReview(reviewId, deps);

    expect(settled.value).toMatchObject({ error_type: null, fix_rounds_used: 1 });
    expect(settled.value!.reviews.map((r) => [r.approved, r.reviewed_sha, r.review_event])).toEqual([
      [false, firstHead, 'REQUEST_CHANGES'],
      [true, fixedHead, 'APPROVE'],
    ]);
    expect(reviewer.inputs.map((i) => i.headSha)).toEqual([firstHead, fixedHead]);
  });

  it('a fix worker that fails ends the scope with fix_failed', async () => {
    const { request, reviewId } = await reviewWaiting({ fix_rounds: 1 });
    const deps = reviewDeps({ reviewer: new FakeReviewer({ approved: false, feedback: 'No.' }) });
    expect((await runReview(reviewId, deps)).error?.name).toBe('WaitingChildrenError');
    await lab.bench.fail('spawn', 'the container died', followUpJobId(stepJobId(request.request_id, null, 'spawn'), 'fix', 1));

    const settled = await runReview(reviewId, deps);
    expect(settled.value).toMatchObject({ error_type: 'fix_failed', fix_rounds_used: 1 });
    expect(settled.value!.error_message).toMatch(/fix worker of round 1 failed: the container died/);
  });

  it('an agent reviewer runs as a child worker at the head; its verdict is posted', async () => {
    const { request, pull, reviewId } = await reviewWaiting();
    const deps = reviewDeps({ reviewer: undefined, reviewerKind: 'agent' });
    expect((await runReview(reviewId, deps)).error?.name).toBe('WaitingChildrenError');
    const agentId = followUpJobId(reviewId, 'agent', 1);
    const agent = (await lab.bench.queues.spawn.getJob(agentId))!.data as SpawnJobData;
    expect(agent.flow).toMatchObject({ purpose: 'review', headSha: pull.headSha, baseBranch: 'main' });

    const verdict = JSON.stringify({ approved: true, feedback: 'Tests pass.', comments: [] });
    await lab.bench.complete('spawn', workerResult(request.request_id, { commit_sha: null, summary: verdict }), agentId);
    const settled = await runReview(reviewId, deps);
    expect(settled.value).toMatchObject({ error_type: null });
    expect(settled.value!.reviews).toEqual([
      expect.objectContaining({ approved: true, feedback: 'Tests pass.', reviewed_sha: pull.headSha, review_event: 'APPROVE' }),
    ]);
    expect(github.callsOf('postReview')).toHaveLength(1);
  });

  it('an agent reviewer that fails, or answers without a verdict, is review_error', async () => {
    const failing = await reviewWaiting();
    const deps = reviewDeps({ reviewer: undefined, reviewerKind: 'agent' });
    await runReview(failing.reviewId, deps);
    await lab.bench.fail('spawn', 'agent crashed', followUpJobId(failing.reviewId, 'agent', 1));
    const failed = await runReview(failing.reviewId, deps);
    expect(failed.value).toMatchObject({
      error_type: 'review_error',
      error_message: expect.stringMatching(/the agent reviewer failed: agent crashed/),
    });

    const mute = await reviewWaiting();
    await runReview(mute.reviewId, deps);
    await lab.bench.complete(
      'spawn',
      workerResult(mute.request.request_id, { summary: 'I looked at it. Seems fine?' }),
      followUpJobId(mute.reviewId, 'agent', 1),
    );
    const noVerdict = await runReview(mute.reviewId, deps);
    expect(noVerdict.value).toMatchObject({ error_type: 'review_error', error_message: expect.stringMatching(/holds no verdict/) });
    expect(github.callsOf('postReview')).toEqual([]);
  });

  it('cancelled: the scope ends as cancelled and nothing is reviewed', async () => {
    const { request, reviewId } = await reviewWaiting();
    await lab.bench.redis.set(lab.bench.keys.cancelled(request.request_id), '1');
    const reviewer = new FakeReviewer({ approved: true });
    const settled = await runReview(reviewId, reviewDeps({ reviewer }));
    expect(settled.value).toMatchObject({ error_type: 'cancelled', reviews: [] });
    expect(reviewer.inputs).toEqual([]);
    expect(github.callsOf('postReview')).toEqual([]);
  });

  it('without a reviewer token GitHub refuses approving our own PR: the verdict goes on record as a COMMENT', async () => {
    const { reviewId } = await reviewWaiting();
    const settled = await runReview(
      reviewId,
      reviewDeps({ reviewerToken: undefined, reviewer: new FakeReviewer({ approved: true, feedback: 'Good.' }) }),
    );

    expect(settled.value!.reviews).toEqual([
      expect.objectContaining({ approved: true, review_event: 'COMMENT', self_review_fallback: true }),
    ]);
    expect(github.callsOf('postReview').map((c) => [c.token, (c.args[0] as { event: string }).event])).toEqual([
      [WORKER_TOKEN, 'APPROVE'],
      [WORKER_TOKEN, 'COMMENT'],
    ]);
    expect((github.callsOf('postReview')[1]!.args[0] as { body: string }).body).toMatch(/^\*\*Verdict: approved\*\*/);
  });

  it('a retryable GitHub error is thrown for BullMQ to retry while attempts remain; on the last one it is the outcome', async () => {
    const { reviewId } = await reviewWaiting();
    const reviewer = new FakeReviewer({ approved: true });
    const attempts = (await lab.bench.queues.review.getJob(reviewId))!.opts.attempts!;
    expect(attempts).toBeGreaterThan(1);
    for (let i = 0; i < attempts; i++) github.failNext('getPullRequestDiff', new ForgeUnavailableError('GitHub answered 502', 502));

    for (let attempt = 1; attempt < attempts; attempt++) {
      const thrown = await runReview(reviewId, reviewDeps({ reviewer }));
      expect(thrown.error).toMatchObject({ name: 'ForgeUnavailableError', retryable: true });
      const job = (await lab.bench.queues.review.getJob(reviewId))!;
      expect([await job.getState(), job.attemptsMade]).toEqual(['delayed', attempt]);
      await job.promote();
    }
    const last = await runReview(reviewId, reviewDeps({ reviewer }));
    expect(last.value).toMatchObject({ error_type: 'github_error', error_message: 'GitHub answered 502' });
    expect(reviewer.inputs).toEqual([]);
    expect(github.callsOf('getPullRequestDiff')).toHaveLength(attempts);
  });

  it('a worker step that did not succeed or opened no PR passes its outcome on without a review', async () => {
    const failed = await lab.bench.addFlow();
    await lab.bench.complete(
      'spawn',
      workerResult(failed.request_id, { success: false, exit_code: 1, error_type: 'push_failed', error_message: 'rejected' }),
    );
    const a = await runReview(stepJobId(failed.request_id, null, 'review'), reviewDeps());
    expect(a.value).toMatchObject({ error_type: 'push_failed', error_message: 'rejected', worker: { success: false } });

    const empty = await lab.bench.addFlow();
    await lab.bench.complete('spawn', workerResult(empty.request_id, { commit_sha: null, files_changed: [] }));
    const b = await runReview(stepJobId(empty.request_id, null, 'review'), reviewDeps());
    expect(b.value).toMatchObject({ error_type: 'no_changes' });

    const crashed = await lab.bench.addFlow();
    await lab.bench.fail('spawn', 'job stalled more than allowable limit');
    const c = await runReview(stepJobId(crashed.request_id, null, 'review'), reviewDeps());
    expect(c.value).toMatchObject({ error_type: 'crash', error_message: expect.stringMatching(/stalled more than allowable limit/) });
    expect(github.callsOf('postReview')).toEqual([]);
  });
});

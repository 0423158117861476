import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { QUEUE_NAMES } from '../queues/common.ts';
import type { ReviewJobData, ReviewJobResult } from '../queues/review.ts';
import { addSpawnChild } from '../queues/spawn.ts';
import { childEnd } from '../src/flow/children.ts';
import { followUpJobId, stepJobId } from '../src/flow/ids.ts';
import { runResumableStep, type ResumableStep, type StepFailure, type StepRun } from '../src/flow/resumable.ts';
import { emptyOutcome, scopeErrorType } from '../src/flow/result.ts';
import { stepGitHub } from '../src/flow/step-github.ts';
import { flowStepFailed, scopeTexts, spawnChildData, type FlowStepDeps, type ScopeTexts } from '../src/flow/steps.ts';
import type { Forge, Reviewer, Verdict } from '../src/forge.ts';
import type { ReviewError } from '../src/errors.ts';
import { fixTask } from '../src/pr-text.ts';
import type { PullRequestRef, ReviewRecord, ScopeOutcome, WorkerResult } from '../src/protocol.ts';
import { buildAgentReviewTask, verdictFromAgentSummary } from '../src/reviewer/agent.ts';

/** Everything the review processor touches. */
export interface ReviewDeps extends FlowStepDeps {
  /** The LLM reviewer; absent when reviews run as agent containers. */
  reviewer: Reviewer | undefined;
  reviewerKind: 'llm' | 'agent';
  /** Posts reviews as a second account, so APPROVE is not refused as a self-review. */
  reviewerToken: string | undefined;
}

type State = NonNullable<ReviewJobData['state']>;

/**
 * Reviews one scope's pull request and posts the verdict. Rejected with fix rounds left: the
 * feedback goes to a fix worker on the same branch (a child job), and the new head is reviewed
 * again. Returns the scope's outcome; the merge step merges only the head a verdict approved.
 */
export async function processReview(
  job: Job<ReviewJobData, ReviewJobResult>,
  deps: ReviewDeps,
  lock: { token: string | undefined },
): Promise<ReviewJobResult> {
  const c = job.data.ctx;
  const log = deps.logger.child({ request_id: c.requestId, scope: c.scope, job: job.id });
  const outcome = (s: State, error?: StepFailure): ScopeOutcome => ({
    ...emptyOutcome(c),
    worker: s.worker,
    pull_request: s.pullRequest,
    reviews: s.reviews,
    fix_rounds_used: s.round,
    error_type: error?.type ?? null,
    error_message: error?.message ?? null,
  });
  let forge: Forge | undefined;
  let texts: ScopeTexts | undefined;
  // With the GitHub App: a token of this run alone, revoked before the job parks or its outcome goes out.
  const github = stepGitHub(c, deps, 'review');

  const step: ResumableStep<State, ScopeOutcome> = {
    requestId: c.requestId,
    begin: () => firstReview(job, deps),
    cancelled: (s) => outcome(s, { type: 'cancelled', message: 'the request was cancelled during review' }),
    failed: (s, failure) => outcome(s, failure),
    beforePark: () => github.release(),
    async pass(run) {
      // Each pass: the token of a pass that did not have to park was revoked with its park.
      forge = await github.forge();
      texts ??= await scopeTexts(c, deps);
      const s = run.state;
      const pr = s.pullRequest!;

      if (s.step === 'review') {
        const current = await forge.getPullRequest(c.repo, pr.number);
        const head: PullRequestRef = { ...pr, head_sha: current.headSha };
        if (deps.reviewerKind === 'agent') {
          const childId = followUpJobId(stepJobId(c.requestId, c.scope, 'review'), 'agent', s.reviews.length + 1);
          const task = buildAgentReviewTask({
            repo: c.repo,
            number: pr.number,
            title: current.title,
            task: texts.task,
            headSha: current.headSha,
          });
          await addSpawnChild(
            deps.spawnQueue,
            job,
            childId,
            spawnChildData(deps.now(), c, 'review', task, texts.agentsContent, { baseBranch: current.baseRef, headSha: current.headSha }),
          );
          await run.waitForChildren({ ...s, step: 'await-agent', childId, pullRequest: head });
          return undefined;
        }
        const diff = await forge.getPullRequestDiff(c.repo, pr.number);
        const verdict = await deps.reviewer!.review({
          repo: c.repo,
          number: pr.number,
          title: current.title,
          task: texts.task,
          headSha: current.headSha,
          diff,
        });
        return conclude(run, await settleVerdict(job, deps, forge, texts, { ...s, pullRequest: head }, verdict, log));
      }

      const end = await childEnd<WorkerResult>(job, deps.keys.bullJob(QUEUE_NAMES.spawn, s.childId!));
      if (!end) throw new Error(`review ${job.id} resumed without the end of its child ${s.childId}`);
      const failure = flowStepFailed(end);

      if (s.step === 'await-agent') {
        if (failure) return outcome(s, { type: 'review_error', message: `the agent reviewer failed: ${failure}` });
        const diff = await forge.getPullRequestDiff(c.repo, pr.number);
        let verdict: Verdict;
        try {
          verdict = verdictFromAgentSummary((end as { value: WorkerResult }).value.summary, diff);
        } catch (error) {
          // Running the agent again costs a container run; a verdict it could not give is final.
          return outcome(s, { type: 'review_error', message: (error as ReviewError).message });
        }
        return conclude(run, await settleVerdict(job, deps, forge, texts, { ...s, step: 'review', childId: undefined }, verdict, log));
      }

      // await-fix: the fix worker pushed (or failed); review the new head.
      if (failure) return outcome(s, { type: 'fix_failed', message: `the fix worker of round ${s.round} failed: ${failure}` });
      await run.save({ ...s, step: 'review', childId: undefined });
      return undefined;
    },
  };
  try {
    return await runResumableStep(job, lock.token, deps, step);
  } finally {
    await github.release();
  }

  // After a verdict the scope is approved, rejected for good, or parked until its fix worker ends.
  async function conclude(run: StepRun<State>, settled: Awaited<ReturnType<typeof settleVerdict>>): Promise<ScopeOutcome | undefined> {
    if (settled.next === 'waiting') {
      await run.waitForChildren(settled.state);
      return undefined;
    }
    await run.save(settled.state);
    if (settled.next === 'done') return outcome(settled.state);
    return outcome(settled.state, { type: 'review_rejected', message: settled.state.reviews.at(-1)!.feedback });
  }
}

/** Where the first review starts: the worker's outcome and the PR it opened, from the spawn child. */
async function firstReview(job: Job<ReviewJobData, ReviewJobResult>, deps: ReviewDeps): Promise<{ state: State } | { done: ScopeOutcome }> {
  const c = job.data.ctx;
  if (job.data.start)
    return { state: { step: 'review', round: 0, worker: job.data.start.worker, pullRequest: job.data.start.pullRequest, reviews: [] } };
  const end = await childEnd<WorkerResult>(job, deps.keys.bullJob(QUEUE_NAMES.spawn, stepJobId(c.requestId, c.scope, 'spawn')));
  const base = emptyOutcome(c);
  if (!end?.ok)
    return { done: { ...base, error_type: 'crash', error_message: `the worker job failed: ${end && !end.ok ? end.reason : 'no result'}` } };
  const worker = end.value;
  if (!worker.success)
    return { done: { ...base, worker, error_type: scopeErrorType(worker.error_type), error_message: worker.error_message } };
  if (!worker.pull_request) {
    return {
      done: {
        ...base,
        worker,
        error_type: 'no_changes',
        error_message: 'the worker made no changes, so there is no pull request to review',
      },
    };
  }
  return { state: { step: 'review', round: 0, worker, pullRequest: worker.pull_request, reviews: [] } };
}

/**
 * Posts a verdict as a PR review pinned to the reviewed head. Approved → 'done'. Rejected → the
 * feedback as a comment, then a fix worker ('waiting') while rounds are left, else 'rejected'.
 * Returns the state to save; the fix worker, when there is one, is already a child of the job.
 */
async function settleVerdict(
  job: Job<ReviewJobData, ReviewJobResult>,
  deps: ReviewDeps,
  forge: Forge,
  texts: ScopeTexts,
  s: State,
  verdict: Verdict,
  log: Logger,
): Promise<{ next: 'done' | 'rejected' | 'waiting'; state: State }> {
  const c = job.data.ctx;
  const pr = s.pullRequest!;
  const poster = deps.reviewerToken ? deps.forges.forToken(deps.reviewerToken) : forge;
  const event = verdict.approved ? 'APPROVE' : 'REQUEST_CHANGES';
  const coverage = verdict.coverage.truncated
    ? `\n\n_Reviewed ${verdict.coverage.reviewedBytes} of ${verdict.coverage.totalBytes} bytes of the diff; the rest did not fit the model._`
    : '';
  const body = `${verdict.feedback || (verdict.approved ? 'Looks good.' : 'Changes requested.')}${coverage}`;
  let posted = await poster.postReview({ repo: c.repo, number: pr.number, event, body, commitId: pr.head_sha, comments: verdict.comments });
  let selfFallback = false;
  if (!posted.posted) {
    // GitHub refuses APPROVE/REQUEST_CHANGES on one's own PR; without a reviewer token the verdict still goes on record.
    log.warn('GitHub refused a review of our own pull request: posting the verdict as a COMMENT review (set FLEET_REVIEWER_GITHUB_TOKEN)');
    posted = await poster.postReview({
      repo: c.repo,
      number: pr.number,
      event: 'COMMENT',
      body: `**Verdict: ${verdict.approved ? 'approved' : 'changes requested'}**\n\n${body}`,
      commitId: pr.head_sha,
      comments: verdict.comments,
    });
    selfFallback = true;
  }
  const record: ReviewRecord = {
    approved: verdict.approved,
    feedback: verdict.feedback,
    reviewed_sha: pr.head_sha,
    review_event: selfFallback ? 'COMMENT' : event,
    self_review_fallback: selfFallback,
    coverage: {
      reviewed_bytes: verdict.coverage.reviewedBytes,
      total_bytes: verdict.coverage.totalBytes,
      truncated: verdict.coverage.truncated,
    },
  };
  const reviews = [...s.reviews, record];
  log.info({ approved: verdict.approved, pr: pr.number, sha: pr.head_sha, event: record.review_event }, 'review posted');
  if (verdict.approved) return { next: 'done', state: { ...s, reviews } };
  await forge.postComment(c.repo, pr.number, `Review feedback (round ${s.round + 1}):\n\n${verdict.feedback}`);
  if (s.round >= c.fixRounds) return { next: 'rejected', state: { ...s, reviews } };
  const round = s.round + 1;
  const task = fixTask({ feedback: verdict.feedback, comments: verdict.comments, originalTask: texts.task, round, branch: c.branch });
  await addSpawnChild(
    deps.spawnQueue,
    job,
    followUpJobId(stepJobId(c.requestId, c.scope, 'spawn'), 'fix', round),
    spawnChildData(deps.now(), c, 'fix', task, texts.agentsContent),
  );
  return {
    next: 'waiting',
    state: { ...s, step: 'await-fix', round, childId: followUpJobId(stepJobId(c.requestId, c.scope, 'spawn'), 'fix', round), reviews },
  };
}

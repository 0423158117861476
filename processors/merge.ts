import { randomBytes } from 'node:crypto';
import { DelayedError, type Job } from 'bullmq';
import { QUEUE_NAMES } from '../queues/common.ts';
import type { MergeJobData } from '../queues/merge.ts';
import { addReviewChild } from '../queues/review.ts';
import { addSpawnChild } from '../queues/spawn.ts';
import { isErrorNamed } from '../src/errors.ts';
import {
  checkRecords,
  ciBackoffMs,
  ciVerdict,
  classifyRefusal,
  describeChecks,
  failingCheckDetails,
  type CiRequired,
} from '../src/flow/ci.ts';
import { inSpan } from '../src/tracing.ts';
import { childEnd } from '../src/flow/children.ts';
import { followUpJobId, stepJobId } from '../src/flow/ids.ts';
import { runResumableStep, type ResumableStep } from '../src/flow/resumable.ts';
import { emptyOutcome } from '../src/flow/result.ts';
import { stepGitHub } from '../src/flow/step-github.ts';
import { flowStepFailed, scopeTexts, spawnChildData, type FlowStepDeps } from '../src/flow/steps.ts';
import { ciFixTask, conflictTask } from '../src/pr-text.ts';
import type { ErrorType, ScopeOutcome, WorkerResult } from '../src/protocol.ts';

export interface MergeDeps extends FlowStepDeps {
  conflictRounds: number;
  /** How long a merge waits before asking again for a repository another merge holds. */
  lockRetryMs?: number;
  /** FLEET_CI_REQUIRED: which checks must be green when branch protection names none. @defaultValue auto */
  ciRequired?: CiRequired;
  /** FLEET_CI_TIMEOUT: how long a merge waits for pending checks. @defaultValue 60 min */
  ciTimeoutMs?: number;
  /** First gap between two looks at CI; doubles up to 2 min. @defaultValue 10 s */
  ciPollMs?: number;
  /** Metrics hook: how a wait for CI ended (`green`, `failed`, `timeout`) and how long it took. */
  onCiWait?: (outcome: 'green' | 'failed' | 'timeout', waitedMs: number) => void;
}

type State = NonNullable<MergeJobData['state']>;

const LOCK_TTL_MS = 120_000;
/** The longest gap between two looks at a pull request's CI. */
const CI_POLL_MAX_MS = 120_000;
/** Looks for the new head after update-branch before giving up. */
const UPDATE_POLLS = 10;
/** Refusals GitHub does not explain (not a conflict, checks, review or behind) retried before an error. */
const REFUSAL_RETRIES = 3;

function ciTimeoutMs(deps: MergeDeps): number {
  return deps.ciTimeoutMs ?? 60 * 60_000;
}

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Merges one scope's approved pull request. One merge per repository at a time (a Redis lock
 * across every merge host), squash with the reviewed head SHA as guard: a commit pushed after
 * the review makes GitHub refuse, and it is never merged unreviewed. A conflict (another scope
 * merged first) gets a follow-up worker that merges the base in and resolves it, then a new
 * review, then another try.
 *
 * Before merging it waits for the head's required checks (a delayed job: no lock, no slot); red
 * checks get a fix round (counted against fix_rounds) and a new review, or end as ci_failed. A head
 * behind its base is updated by GitHub (update-branch) and merged without a new review: the merge
 * commit's parents are checked to be the reviewed head and one other, so no content of the agent's
 * is unreviewed.
 */
export async function processMerge(job: Job<MergeJobData>, deps: MergeDeps, lock: { token: string | undefined }): Promise<ScopeOutcome> {
  const c = job.data.ctx;
  const log = deps.logger.child({ request_id: c.requestId, scope: c.scope, job: job.id });
  // With the GitHub App: a token of this run alone, revoked before the job parks or its outcome goes out.
  const github = stepGitHub(c, deps, 'merge');
  const fail = (s: State, type: ErrorType, message: string): ScopeOutcome => ({
    ...s.outcome,
    conflict_rounds_used: s.conflictRounds,
    error_type: type,
    error_message: message,
  });

  /**
   * Saves the state and parks the job as delayed: it holds no lock and no slot while it waits. Callers
   * `return await` it: inside try/finally a bare `return delay()` leaves its rejection unhandled while the
   * finally block (the lock release) awaits, and Node reports an unhandled rejection.
   */
  const delay = async (next: State, ms: number, what: string): Promise<never> => {
    await job.updateData({ ...job.data, state: next });
    await github.release();
    await job.moveToDelayed(deps.now() + ms, lock.token);
    throw new DelayedError(`waiting ${ms} ms for ${what}`);
  };

  const step: ResumableStep<State, ScopeOutcome> = {
    requestId: c.requestId,
    begin: async () => ({
      state: { step: 'merge', conflictRounds: 0, outcome: await reviewOutcome(job, deps, stepJobId(c.requestId, c.scope, 'review')) },
    }),
    cancelled: (s) => fail(s, 'cancelled', 'the request was cancelled before the merge'),
    failed: (s, failure) => fail(s, failure.type, failure.message),
    beforePark: () => github.release(),
    async pass(run) {
      const s = run.state;
      const o = s.outcome;

      if (s.step === 'merge') {
        const review = o.reviews.at(-1);
        if (o.error_type || !o.pull_request || !review?.approved) return { ...o, conflict_rounds_used: s.conflictRounds };
        // An approval of part of a diff is no approval: whatever produced it, it is never merged.
        if (review.coverage.truncated) {
          return fail(
            s,
            'review_incomplete',
            `the review read ${review.coverage.reviewed_bytes} of ${review.coverage.total_bytes} bytes of the diff; fleet merges only fully reviewed changes`,
          );
        }
        const forge = await github.forge();
        const number = o.pull_request.number;
        const headChanged = (sha: string) =>
          fail(
            s,
            'head_changed',
            `the branch moved after the review (reviewed ${sha.slice(0, 12)}); fleet merges only reviewed commits, so it was not merged`,
          );
        const pr = await forge.getPullRequest(c.repo, number);
        if (pr.merged) return { ...o, merged: true, merge_sha: pr.mergeCommitSha, conflict_rounds_used: s.conflictRounds };

        // The head the merge is guarded by: the reviewed one, or GitHub's merge of the base into it (update-branch).
        let guard = s.updated?.head ?? review.reviewed_sha;
        if (s.updated && !s.updated.head) {
          if (pr.headSha === s.updated.from) {
            // GitHub answers update-branch with 202 and moves the head a moment later.
            if (s.updated.polls >= UPDATE_POLLS)
              return fail(s, 'github_error', `GitHub did not update the branch of #${number} after update-branch`);
            return await delay(
              { ...s, updated: { ...s.updated, polls: s.updated.polls + 1 } },
              deps.ciPollMs ?? 1000,
              'the updated branch',
            );
          }
          // Not re-reviewed: the new head is accepted only as a merge commit of the reviewed head and the base
          // head, which is what update-branch makes. Anything else on the branch is a push after the review.
          const parents = await forge.getCommitParents(c.repo, pr.headSha);
          if (parents.length !== 2 || parents[0] !== s.updated.from) return headChanged(s.updated.from);
          guard = pr.headSha;
          log.info({ pr: number, from: s.updated.from, head: guard }, 'branch updated with its base');
          await run.save({ ...s, updated: { ...s.updated, head: guard } });
          return undefined;
        }
        if (pr.headSha !== guard) return headChanged(review.reviewed_sha);

        // CI first: a required check still running is waited for, a red one is never merged.
        const ci = await ciVerdict(forge, c.repo, pr.baseRef, guard, deps.ciRequired ?? { kind: 'auto' }, s.learnedChecks);
        const since = s.ci?.since ?? deps.now();
        const withChecks = (x: ScopeOutcome): ScopeOutcome => ({
          ...x,
          checks: checkRecords(ci.checks),
          ...(s.ci ? { ci_wait_ms: deps.now() - since } : {}),
        });
        const waited = deps.now() - since;
        if (ci.failing.length > 0) {
          deps.onCiWait?.('failed', waited);
          // Red CI is feedback: a fix round while the request's fix_rounds last, then a review of the new head.
          if (o.fix_rounds_used >= c.fixRounds) {
            return withChecks(
              fail(
                s,
                'ci_failed',
                `required check(s) failed on ${guard.slice(0, 12)} and no fix round is left: ${describeChecks(ci.failing)}; fleet never merges red CI`,
              ),
            );
          }
          const ciRound = (s.ciRounds ?? 0) + 1;
          const fixRound = o.fix_rounds_used + 1;
          const childId = followUpJobId(stepJobId(c.requestId, c.scope, 'spawn'), 'ci-fix', ciRound);
          log.warn({ pr: number, failing: ci.failing.map((f) => f.name), round: fixRound }, 'required checks failed: a worker fixes them');
          const [texts, failing] = await Promise.all([scopeTexts(c, deps), failingCheckDetails(forge, c.repo, ci.failing)]);
          const task = ciFixTask({ checks: failing, originalTask: texts.task, round: fixRound, branch: c.branch });
          await addSpawnChild(deps.spawnQueue, job, childId, spawnChildData(deps.now(), c, 'fix', task, texts.agentsContent));
          await run.waitForChildren({
            ...s,
            step: 'await-ci-fix',
            ciRounds: ciRound,
            childId,
            outcome: withChecks({ ...o, fix_rounds_used: fixRound }),
            ci: undefined,
            updated: undefined,
            refusals: undefined,
          });
          return undefined;
        }
        // No check at all yet: CI may not have registered its runs on a fresh push; look once more before merging.
        const noChecksYet = ci.required.length === 0 && !s.ci && (deps.ciRequired ?? { kind: 'auto' }).kind !== 'none';
        if (ci.pending.length > 0 || noChecksYet) {
          if (waited >= ciTimeoutMs(deps)) {
            deps.onCiWait?.('timeout', waited);
            return withChecks(
              fail(s, 'ci_timeout', `required check(s) still pending after ${Math.round(waited / 60_000)} min: ${ci.pending.join(', ')}`),
            );
          }
          const polls = s.ci?.polls ?? 0;
          log.info({ pr: number, pending: ci.pending, polls }, 'waiting for CI before the merge');
          return await delay({ ...s, ci: { since, polls: polls + 1 } }, ciBackoffMs(polls, deps.ciPollMs ?? 10_000, CI_POLL_MAX_MS), 'CI');
        }

        const holder = randomBytes(8).toString('hex');
        const lockKey = deps.keys.mergeLock(c.repo);
        if ((await deps.redis.set(lockKey, holder, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
          // Another scope of this repository is merging: come back shortly, without spending an attempt.
          await github.release();
          await job.moveToDelayed(deps.now() + (deps.lockRetryMs ?? 1000), lock.token);
          throw new DelayedError(`waiting for the merge lock of ${c.repo}`);
        }
        let next: State;
        try {
          const merged = await inSpan('pull request merge', { 'fleet.request_id': c.requestId, 'fleet.pr': number }, () =>
            forge.mergePullRequest({ repo: c.repo, number, sha: guard, commitTitle: `${c.task.title} (#${number})` }),
          );
          log.info({ pr: number, sha: merged.sha }, 'pull request merged');
          deps.onCiWait?.('green', waited);
          return withChecks({ ...o, merged: true, merge_sha: merged.sha, conflict_rounds_used: s.conflictRounds });
        } catch (error) {
          if (isErrorNamed(error, 'HeadChangedError')) return headChanged(review.reviewed_sha);
          if (!isErrorNamed(error, 'NotMergeableError')) throw error;
          const message = (error as Error).message;
          const now = await forge.getPullRequest(c.repo, number);
          const refusal = classifyRefusal(now.mergeableState, message);
          log.warn({ pr: number, mergeable_state: now.mergeableState, refusal, message }, 'GitHub refused the merge');
          if (refusal === 'review') return withChecks(fail(s, 'review_required', `GitHub requires a review before the merge: ${message}`));
          if (refusal === 'checks') {
            if (waited >= ciTimeoutMs(deps))
              return withChecks(fail(s, 'ci_timeout', `GitHub still refuses the merge on its checks: ${message}`));
            // Protection we could not read names a check: required from now on, so its pending, red and timeout are seen.
            const named = /status check "([^"]+)"/i.exec(message)?.[1];
            const learnedChecks = named ? [...new Set([...(s.learnedChecks ?? []), named])] : s.learnedChecks;
            const polls = (s.ci?.polls ?? 0) + 1;
            return await delay(
              { ...s, learnedChecks, ci: { since, polls } },
              ciBackoffMs(polls - 1, deps.ciPollMs ?? 10_000, CI_POLL_MAX_MS),
              'the checks GitHub requires',
            );
          }
          if (refusal === 'behind') {
            await forge.updatePullRequestBranch(c.repo, number, guard);
            log.info({ pr: number, head: guard }, 'pull request is behind its base: branch updated by GitHub');
            return await delay(
              { ...s, updated: { from: guard, polls: 0 }, ci: { since, polls: 0 } },
              deps.ciPollMs ?? 1000,
              'the updated branch',
            );
          }
          if (refusal === 'unknown') {
            const refusals = (s.refusals ?? 0) + 1;
            if (refusals > REFUSAL_RETRIES) {
              return withChecks(
                fail(s, 'github_error', `GitHub refused the merge ${refusals} times (mergeable_state ${now.mergeableState}): ${message}`),
              );
            }
            return await delay({ ...s, refusals }, ciBackoffMs(refusals, deps.ciPollMs ?? 10_000, CI_POLL_MAX_MS), 'a refused merge');
          }
          if (s.conflictRounds >= deps.conflictRounds) {
            return fail(
              s,
              'merge_conflict',
              `the pull request does not merge cleanly and ${deps.conflictRounds} conflict round(s) did not fix it: ${message}`,
            );
          }
          const base = now.baseRef;
          const round = s.conflictRounds + 1;
          const childId = followUpJobId(stepJobId(c.requestId, c.scope, 'spawn'), 'rebase', round);
          log.warn({ pr: number, round }, 'pull request conflicts with its base: a worker resolves it');
          const texts = await scopeTexts(c, deps);
          const task = conflictTask({ branch: c.branch, base, originalTask: texts.task });
          await addSpawnChild(
            deps.spawnQueue,
            job,
            childId,
            spawnChildData(deps.now(), c, 'rebase', task, texts.agentsContent, { baseBranch: base }),
          );
          next = { ...s, step: 'await-rebase', conflictRounds: round, childId, ci: undefined, updated: undefined, refusals: undefined };
        } finally {
          await deps.redis.eval(RELEASE, 1, lockKey, holder);
        }
        await run.waitForChildren(next);
        return undefined;
      }

      if (s.step === 'await-rebase' || s.step === 'await-ci-fix') {
        const end = await childEnd<WorkerResult>(job, deps.keys.bullJob(QUEUE_NAMES.spawn, s.childId!));
        if (!end) throw new Error(`merge ${job.id} resumed without the end of ${s.childId}`);
        const failure = flowStepFailed(end);
        if (failure && s.step === 'await-rebase') return fail(s, 'conflict_unresolved', `the conflict worker failed: ${failure}`);
        if (failure) return fail(s, 'fix_failed', `the worker fixing the failing checks (round ${o.fix_rounds_used}) failed: ${failure}`);
        const worker = (end as { value: WorkerResult }).value;
        // Every re-review of this step has its own id: conflict and CI rounds count together.
        const childId = stepJobId(c.requestId, c.scope, 'review', s.conflictRounds + (s.ciRounds ?? 0));
        const pullRequest = { ...o.pull_request!, head_sha: worker.commit_sha ?? o.pull_request!.head_sha };
        // The re-review may reject and fix too, but only with the fix rounds this scope has left.
        const ctx = { ...c, fixRounds: Math.max(0, c.fixRounds - o.fix_rounds_used) };
        await addReviewChild(deps.reviewQueue, job, childId, { ctx, start: { worker: o.worker, pullRequest }, state: null });
        await run.waitForChildren({ ...s, step: 'await-review', childId });
        return undefined;
      }

      // await-review: the new head after a conflict fix has its own verdict now.
      const outcome = await reviewOutcome(job, deps, s.childId!);
      await run.save({
        ...s,
        step: 'merge',
        childId: undefined,
        // A re-review job that failed has no PR in its outcome; the PR is still there and the result names it.
        outcome: {
          ...outcome,
          worker: o.worker,
          pull_request: outcome.pull_request ?? o.pull_request,
          reviews: [...o.reviews, ...outcome.reviews],
          fix_rounds_used: o.fix_rounds_used + outcome.fix_rounds_used,
        },
      });
      return undefined;
    },
  };
  try {
    return await runResumableStep(job, lock.token, deps, step);
  } finally {
    await github.release();
  }
}

async function reviewOutcome(job: Job<MergeJobData>, deps: MergeDeps, reviewId: string): Promise<ScopeOutcome> {
  const end = await childEnd<ScopeOutcome>(job, deps.keys.bullJob(QUEUE_NAMES.review, reviewId));
  if (end?.ok) return end.value;
  return {
    ...emptyOutcome(job.data.ctx),
    error_type: 'crash',
    error_message: `the review job failed: ${end ? (end as { reason: string }).reason : 'no result'}`,
  };
}

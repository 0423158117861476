import { randomBytes } from 'node:crypto';
import { DelayedError, type Job } from 'bullmq';
import { QUEUE_NAMES } from '../queues/common.ts';
import type { MergeJobData } from '../queues/merge.ts';
import { addReviewChild } from '../queues/review.ts';
import { addSpawnChild } from '../queues/spawn.ts';
import { isErrorNamed } from '../src/errors.ts';
import { childEnd } from '../src/flow/children.ts';
import { followUpJobId, stepJobId } from '../src/flow/ids.ts';
import { runResumableStep } from '../src/flow/resumable.ts';
import { emptyOutcome } from '../src/flow/result.ts';
import { flowStepFailed, scopeTexts, scopeToken, spawnChildData, type FlowStepDeps } from '../src/flow/steps.ts';
import { conflictTask } from '../src/pr-text.ts';
import type { ErrorType, ScopeOutcome, WorkerResult } from '../src/protocol.ts';

export interface MergeDeps extends FlowStepDeps {
  conflictRounds: number;
  /** How long a merge waits before asking again for a repository another merge holds. */
  lockRetryMs?: number;
}

type State = NonNullable<MergeJobData['state']>;

const LOCK_TTL_MS = 120_000;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Merges one scope's approved pull request. One merge per repository at a time (a Redis lock
 * across every merge host), squash with the reviewed head SHA as guard: a commit pushed after
 * the review makes GitHub refuse, and it is never merged unreviewed. A conflict (another scope
 * merged first) gets a follow-up worker that merges the base in and resolves it, then a new
 * review, then another try.
 */
export async function processMerge(job: Job<MergeJobData>, deps: MergeDeps, lock: { token: string | undefined }): Promise<ScopeOutcome> {
  const c = job.data.ctx;
  const log = deps.logger.child({ request_id: c.requestId, scope: c.scope, job: job.id });
  const fail = (s: State, type: ErrorType, message: string): ScopeOutcome => ({
    ...s.outcome,
    conflict_rounds_used: s.conflictRounds,
    error_type: type,
    error_message: message,
  });

  return runResumableStep<State, ScopeOutcome>(job, lock.token, deps, {
    requestId: c.requestId,
    begin: async () => ({
      state: { step: 'merge', conflictRounds: 0, outcome: await reviewOutcome(job, deps, stepJobId(c.requestId, c.scope, 'review')) },
    }),
    cancelled: (s) => fail(s, 'cancelled', 'the request was cancelled before the merge'),
    failed: (s, failure) => fail(s, failure.type, failure.message),
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
        const forge = deps.forges.forToken(scopeToken(c, deps));
        const holder = randomBytes(8).toString('hex');
        const lockKey = deps.keys.mergeLock(c.repo);
        if ((await deps.redis.set(lockKey, holder, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
          // Another scope of this repository is merging: come back shortly, without spending an attempt.
          await job.moveToDelayed(deps.now() + (deps.lockRetryMs ?? 1000), lock.token);
          throw new DelayedError(`waiting for the merge lock of ${c.repo}`);
        }
        let next: State;
        try {
          const merged = await forge.mergePullRequest({
            repo: c.repo,
            number: o.pull_request.number,
            sha: review.reviewed_sha,
            commitTitle: `${c.task.title} (#${o.pull_request.number})`,
          });
          log.info({ pr: o.pull_request.number, sha: merged.sha }, 'pull request merged');
          return { ...o, merged: true, merge_sha: merged.sha, conflict_rounds_used: s.conflictRounds };
        } catch (error) {
          if (isErrorNamed(error, 'HeadChangedError')) {
            return fail(
              s,
              'head_changed',
              `the branch moved after the review (reviewed ${review.reviewed_sha.slice(0, 12)}); fleet merges only reviewed commits, so it was not merged`,
            );
          }
          if (!isErrorNamed(error, 'NotMergeableError')) throw error;
          if (s.conflictRounds >= deps.conflictRounds) {
            return fail(
              s,
              'merge_conflict',
              `the pull request does not merge cleanly and ${deps.conflictRounds} conflict round(s) did not fix it: ${(error as Error).message}`,
            );
          }
          const base = (await forge.getPullRequest(c.repo, o.pull_request.number)).baseRef;
          const round = s.conflictRounds + 1;
          const childId = followUpJobId(stepJobId(c.requestId, c.scope, 'spawn'), 'rebase', round);
          log.warn({ pr: o.pull_request.number, round }, 'pull request conflicts with its base: a worker resolves it');
          const texts = await scopeTexts(c, deps);
          const task = conflictTask({ branch: c.branch, base, originalTask: texts.task });
          await addSpawnChild(
            deps.spawnQueue,
            job,
            childId,
            spawnChildData(deps.now(), c, 'rebase', task, texts.agentsContent, { baseBranch: base }),
          );
          next = { ...s, step: 'await-rebase', conflictRounds: round, childId };
        } finally {
          await deps.redis.eval(RELEASE, 1, lockKey, holder);
        }
        await run.waitForChildren(next);
        return undefined;
      }

      if (s.step === 'await-rebase') {
        const end = await childEnd<WorkerResult>(job, deps.keys.bullJob(QUEUE_NAMES.spawn, s.childId!));
        if (!end) throw new Error(`merge ${job.id} resumed without the end of ${s.childId}`);
        const failure = flowStepFailed(end);
        if (failure) return fail(s, 'conflict_unresolved', `the conflict worker failed: ${failure}`);
        const worker = (end as { value: WorkerResult }).value;
        const childId = stepJobId(c.requestId, c.scope, 'review', s.conflictRounds);
        const pullRequest = { ...o.pull_request!, head_sha: worker.commit_sha ?? o.pull_request!.head_sha };
        await addReviewChild(deps.reviewQueue, job, childId, { ctx: c, start: { worker: o.worker, pullRequest }, state: null });
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
  });
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

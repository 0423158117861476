import { randomBytes } from 'node:crypto';
import { DelayedError, type Job, type Queue } from 'bullmq';
import { emptyOutcome, followUpJobId, stepJobId, type ScopeOutcome, type SpawnOutcome } from '../queues/flow.ts';
import type { MergeJobData } from '../queues/merge.ts';
import { QUEUE_NAMES as Q, SPAWN_JOB_NAME } from '../queues/spawn.ts';
import { REVIEW_JOB_NAME, type ReviewJobData, type ReviewJobResult } from '../queues/review.ts';
import { addChild, childEnd, parkUntilChildrenEnd } from '../src/flow-children.ts';
import { flowStepFailed, scopeTexts, scopeToken, spawnChildData, type FlowStepDeps } from '../src/flow-steps.ts';
import { isForgeErrorNamed } from '../src/forge.ts';
import { conflictTask } from '../src/pr-text.ts';
import { flowErrorOrRetry } from './review.ts';

export interface MergeDeps extends FlowStepDeps {
  reviewQueue: Queue<ReviewJobData, ReviewJobResult>;
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
  let state: State = job.data.state ?? { step: 'merge', conflictRounds: 0, outcome: await reviewOutcome(job, deps, stepJobId(c.requestId, c.scope, 'review')) };
  const save = async (next: State) => {
    state = next;
    await job.updateData({ ...job.data, state: next });
  };
  const fail = (type: string, message: string): ScopeOutcome => ({ ...state.outcome, conflict_rounds_used: state.conflictRounds, error_type: type, error_message: message });

  try {
    for (;;) {
      if (await deps.redis.exists(deps.keys.cancelled(c.requestId))) return fail('cancelled', 'the request was cancelled before the merge');
      const o = state.outcome;

      if (state.step === 'merge') {
        const review = o.reviews.at(-1);
        if (o.error_type || !o.pull_request || !review?.approved) return { ...o, conflict_rounds_used: state.conflictRounds };
        // An approval of part of a diff is no approval: whatever produced it, it is never merged.
        if (review.coverage.truncated) {
          return fail('review_incomplete', `the review read ${review.coverage.reviewed_bytes} of ${review.coverage.total_bytes} bytes of the diff; fleet merges only fully reviewed changes`);
        }
        const forge = deps.forges.forToken(scopeToken(c, deps));
        const holder = randomBytes(8).toString('hex');
        const lockKey = `${deps.prefix}:merge-lock:${c.repo.toLowerCase()}`;
        if ((await deps.redis.set(lockKey, holder, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
          // Another scope of this repository is merging: come back shortly, without spending an attempt.
          await job.moveToDelayed(Date.now() + (deps.lockRetryMs ?? 1000), lock.token);
          throw new DelayedError(`waiting for the merge lock of ${c.repo}`);
        }
        try {
          const merged = await forge.mergePullRequest({
            repo: c.repo,
            number: o.pull_request.number,
            sha: review.reviewed_sha,
            commitTitle: `${c.task.title} (#${o.pull_request.number})`,
          });
          log.info({ pr: o.pull_request.number, sha: merged.sha }, 'pull request merged');
          return { ...o, merged: true, merge_sha: merged.sha, conflict_rounds_used: state.conflictRounds };
        } catch (error) {
          if (isForgeErrorNamed(error, 'HeadChangedError')) {
            return fail('head_changed', `the branch moved after the review (reviewed ${review.reviewed_sha.slice(0, 12)}); fleet merges only reviewed commits, so it was not merged`);
          }
          if (!isForgeErrorNamed(error, 'NotMergeableError')) throw error;
          if (state.conflictRounds >= deps.conflictRounds) {
            return fail('merge_conflict', `the pull request does not merge cleanly and ${deps.conflictRounds} conflict round(s) did not fix it: ${(error as Error).message}`);
          }
          const base = (await forge.getPullRequest(c.repo, o.pull_request.number)).baseRef;
          const round = state.conflictRounds + 1;
          const childId = followUpJobId(stepJobId(c.requestId, c.scope, 'spawn'), 'rebase', round);
          log.warn({ pr: o.pull_request.number, round }, 'pull request conflicts with its base: a worker resolves it');
          const texts = await scopeTexts(c, deps);
          const task = conflictTask({ branch: c.branch, base, originalTask: texts.task });
          await addChild(job, { queue: deps.spawnQueue, name: SPAWN_JOB_NAME, id: childId, data: spawnChildData(c, 'rebase', task, texts.agentsContent, { baseBranch: base }) });
          await save({ ...state, step: 'await-rebase', conflictRounds: round, childId });
        } finally {
          await deps.redis.eval(RELEASE, 1, lockKey, holder);
        }
        await parkUntilChildrenEnd(job, lock.token);
        continue;
      }

      if (state.step === 'await-rebase') {
        const end = await childEnd<SpawnOutcome>(job, deps.prefix, Q.spawn, state.childId!);
        if (!end) throw new Error(`merge ${job.id} resumed without the end of ${state.childId}`);
        const failure = flowStepFailed(end);
        if (failure) return fail('conflict_unresolved', `the conflict worker failed: ${failure}`);
        const worker = (end as { value: SpawnOutcome }).value;
        const childId = stepJobId(c.requestId, c.scope, 'review', state.conflictRounds);
        const pullRequest = { ...o.pull_request!, head_sha: worker.commit_sha ?? o.pull_request!.head_sha };
        await addChild<ReviewJobData>(job, {
          queue: deps.reviewQueue as unknown as Queue,
          name: REVIEW_JOB_NAME,
          id: childId,
          attempts: 5,
          data: { ctx: c, start: { worker: o.worker, pullRequest }, state: null },
        });
        await save({ ...state, step: 'await-review', childId });
        await parkUntilChildrenEnd(job, lock.token);
        continue;
      }

      // await-review: the new head after a conflict fix has its own verdict now.
      const outcome = await reviewOutcome(job, deps, state.childId!);
      await save({
        ...state,
        step: 'merge',
        childId: undefined,
        outcome: { ...outcome, worker: o.worker, reviews: [...o.reviews, ...outcome.reviews], fix_rounds_used: o.fix_rounds_used + outcome.fix_rounds_used },
      });
    }
  } catch (error) {
    return flowErrorOrRetry(job, error, (e) => fail(e.type, e.message));
  }
}

async function reviewOutcome(job: Job, deps: MergeDeps, reviewId: string): Promise<ScopeOutcome> {
  const end = await childEnd<ScopeOutcome>(job, deps.prefix, Q.review, reviewId);
  if (end?.ok) return end.value;
  return {
    ...emptyOutcome((job.data as MergeJobData).ctx),
    error_type: 'crash',
    error_message: `the review job failed: ${end ? (end as { reason: string }).reason : 'no result'}`,
  };
}

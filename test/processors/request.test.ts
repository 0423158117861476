import { describe, expect, it } from 'vitest';
import { processRequest, type RequestDeps } from '../../processors/request.ts';
import type { RequestJobData } from '../../queues/merge.ts';
import { scopeBranch, stepJobId } from '../../src/flow/ids.ts';
import { emptyOutcome } from '../../src/flow/result.ts';
import { LEGACY_RESULT_KEYS, type FlowResult, type ScopeOutcome, type SpawnRequest } from '../../src/protocol.ts';
import { readResult } from '../../src/results.ts';
import { NOW, silentLogger, useLab, workerResult } from './support.ts';

const lab = useLab();

const TASKS = [
  { scope: 'web', task_content: 'Wishlist page' },
  { scope: 'api', task_content: 'Wishlist API' },
];

function requestDeps(): RequestDeps {
  return { redis: lab.bench.redis, keys: lab.bench.keys, logger: silentLogger, now: () => NOW };
}

/** A scope that got as far as `fields` say; merged with a PR by default. */
function outcome(request: SpawnRequest, scope: string, fields: Partial<ScopeOutcome> = {}): ScopeOutcome {
  const pr = { number: scope.length, url: `https://github.test/pr/${scope}`, head_sha: `${scope}-head` };
  return {
    ...emptyOutcome({ scope, branch: scopeBranch(request.request_id, scope) }),
    worker: workerResult(request.request_id, { files_changed: [`${scope}.ts`], summary: `${scope} done`, pull_request: pr }),
    pull_request: pr,
    reviews: [
      {
        approved: true,
        feedback: 'ok',
        reviewed_sha: pr.head_sha,
        review_event: 'APPROVE',
        self_review_fallback: false,
        coverage: { reviewed_bytes: 1, total_bytes: 1, truncated: false },
      },
    ],
    merged: true,
    merge_sha: `${scope}-merge`,
    ...fields,
  };
}

/** Plays a scope's steps of a review+merge flow to their end: its spawn, review and merge jobs complete with `end`. */
async function endScope(request: SpawnRequest, scope: string, end: ScopeOutcome | 'merge job fails'): Promise<void> {
  const id = request.request_id;
  await lab.bench.complete('spawn', workerResult(id), stepJobId(id, scope, 'spawn'));
  await lab.bench.complete('review', end === 'merge job fails' ? outcome(request, scope) : end, stepJobId(id, scope, 'review'));
  if (end === 'merge job fails') await lab.bench.fail('merge', 'merge step gave up', stepJobId(id, scope, 'merge'));
  else await lab.bench.complete('merge', end, stepJobId(id, scope, 'merge'));
}

async function runRequest(request: SpawnRequest) {
  const { job, token } = await lab.bench.take<RequestJobData, FlowResult>('merge', request.request_id);
  return lab.bench.settle(job, token, processRequest(job, requestDeps()));
}

/** What the orchestrator heard: exactly one result and exactly one terminal event, in that order of sending. */
async function heard(id: string) {
  await lab.recorder.fence();
  const results = lab.recorder.results(id);
  const terminal = lab.recorder.events(id).filter((e) => e.event_type === 'completed' || e.event_type === 'failed');
  expect(results).toHaveLength(1);
  expect(terminal).toHaveLength(1);
  return { result: results[0]! as unknown as FlowResult, event: terminal[0]! };
}

describe('processRequest', () => {
  it('every scope merged: one successful result with every PR, timings from the flow, one completed event', async () => {
    const request = await lab.bench.addFlow({ mode: undefined, tasks: TASKS, merge: true });
    await endScope(request, 'web', outcome(request, 'web'));
    await endScope(request, 'api', outcome(request, 'api'));
    const settled = await runRequest(request);

    expect(settled.value).toMatchObject({ success: true, error_type: null, files_changed: ['web.ts', 'api.ts'] });
    const { result, event } = await heard(request.request_id);
    expect(result).toMatchObject({ success: true, commit_sha: expect.stringMatching(/-merge$/), branch: null });
    expect(result.pull_requests.map((p) => [p.scope, p.merged])).toEqual([
      ['web', true],
      ['api', true],
    ]);
    expect(result.timings).toEqual({
      accepted_at: new Date(NOW - 60_000).toISOString(),
      finished_at: new Date(NOW).toISOString(),
      duration_ms: 60_000,
    });
    expect(event).toMatchObject({ event_type: 'completed', worker_type: 'claude_code', timestamp: new Date(NOW).toISOString() });
    expect(await readResult(lab.bench.redis, request.request_id)).toEqual(result);
  });

  it("a failed scope fails the request with its error, named by scope; a failed merge job is that scope's crash", async () => {
    const request = await lab.bench.addFlow({ mode: undefined, tasks: TASKS, merge: true });
    await endScope(
      request,
      'web',
      outcome(request, 'web', {
        merged: false,
        merge_sha: null,
        conflict_rounds_used: 2,
        error_type: 'merge_conflict',
        error_message: 'still conflicts',
      }),
    );
    await endScope(request, 'api', 'merge job fails');
    await runRequest(request);

    const { result, event } = await heard(request.request_id);
    expect(result).toMatchObject({ success: false, error_type: 'merge_conflict', error_message: 'web: still conflicts' });
    expect(result.scopes.map((s) => [s.scope, s.error_type])).toEqual([
      ['web', 'merge_conflict'],
      ['api', 'crash'],
    ]);
    expect(result.scopes[1]!.error_message).toMatch(/merge step gave up/);
    expect(event).toMatchObject({ event_type: 'failed', error_type: 'merge_conflict' });
  });

  it('a cancelled request: scopes that had not finished are cancelled, a merged one stays merged', async () => {
    const request = await lab.bench.addFlow({ mode: undefined, tasks: TASKS, merge: true });
    await endScope(request, 'web', outcome(request, 'web'));
    await endScope(request, 'api', outcome(request, 'api', { merged: false, merge_sha: null }));
    await lab.bench.redis.set(lab.bench.keys.cancelled(request.request_id), '1');
    await runRequest(request);

    const { result } = await heard(request.request_id);
    expect(result).toMatchObject({ success: false, error_type: 'cancelled', error_message: 'api: the request was cancelled' });
    expect(result.scopes.map((s) => [s.scope, s.merged, s.error_type])).toEqual([
      ['web', true, null],
      ['api', false, 'cancelled'],
    ]);
  });

  it('without review a scope ends at its worker: an opened PR succeeds, no PR is no_changes', async () => {
    const request = await lab.bench.addFlow({ mode: undefined, tasks: TASKS, review: undefined });
    const id = request.request_id;
    await lab.bench.complete(
      'spawn',
      workerResult(id, { pull_request: { number: 7, url: 'u', head_sha: 'h' } }),
      stepJobId(id, 'web', 'spawn'),
    );
    await lab.bench.complete('spawn', workerResult(id, { commit_sha: null, files_changed: [] }), stepJobId(id, 'api', 'spawn'));
    await runRequest(request);

    const { result } = await heard(id);
    expect(result.scopes.map((s) => [s.scope, s.pull_request?.number ?? null, s.error_type])).toEqual([
      ['web', 7, null],
      ['api', null, 'no_changes'],
    ]);
    expect(result).toMatchObject({ success: false, error_type: 'no_changes' });
  });

  it('a root that runs again (a retried job) publishes nothing more: one result, one terminal event; legacy keeps eleven keys', async () => {
    const request = await lab.bench.addFlow({ result_format: 'legacy', merge: true });
    const id = request.request_id;
    await lab.bench.complete('spawn', workerResult(id), id);
    const merged = { ...outcome(request, 'x'), scope: null, branch: scopeBranch(id, null) };
    await lab.bench.complete('review', merged, stepJobId(id, null, 'review'));
    await lab.bench.complete('merge', merged, stepJobId(id, null, 'merge'));

    const { job, token } = await lab.bench.take<RequestJobData, FlowResult>('merge', id);
    const first = await processRequest(job, requestDeps());
    const again = await processRequest(job, requestDeps());
    await job.moveToCompleted(again, token, false);

    expect(again.success).toBe(first.success);
    const { result } = await heard(id);
    expect(Object.keys(result)).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result).toMatchObject({ success: true, branch: `fleet/${id}` });
  });
});

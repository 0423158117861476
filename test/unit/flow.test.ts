import { describe, expect, it } from 'vitest';
import type { ScopeContext } from '../../queues/review.ts';
import { followUpJobId, stepJobId } from '../../src/flow/ids.ts';
import { containerName } from '../../src/container-spec.ts';
import { buildRequestFlow, needsFlow } from '../../src/flow/build.ts';
import { aggregateFlowResult, emptyOutcome } from '../../src/flow/result.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { conflictTask, fixTask, pullRequestBody } from '../../src/pr-text.ts';
import { LEGACY_RESULT_KEYS, REQUEST_ID_PATTERN, type ScopeOutcome } from '../../src/protocol.ts';
import { legacyRequest } from '../support/fleet.ts';

const ctx = { scope: 'web', branch: 'fleet/r/web' } as ScopeContext;
const review = (approved: boolean) => ({
  approved,
  feedback: approved ? 'ok' : 'no',
  reviewed_sha: 'abc',
  review_event: approved ? ('APPROVE' as const) : ('REQUEST_CHANGES' as const),
  self_review_fallback: false,
  coverage: { reviewed_bytes: 10, total_bytes: 10, truncated: false },
});
const merged = (scope: string, sha: string): ScopeOutcome => ({
  ...emptyOutcome({ ...ctx, scope }),
  pull_request: { number: 1, url: 'u', head_sha: 'h' },
  reviews: [review(true)],
  merged: true,
  merge_sha: sha,
});

describe('buildRequestFlow', () => {
  it('chains merge → review → spawn per scope under one root that runs last', () => {
    const request = validateSpawnRequest(
      legacyRequest({
        request_id: 'r',
        tasks: [
          { scope: 'web', task_content: 'a' },
          { scope: 'api', task_content: 'b' },
        ],
        review: true,
        merge: true,
      }),
    );
    const flow = buildRequestFlow(request, 'sealed', { attempts: 3, keepLogs: 10, acceptedAt: 1, source: 'pubsub' });
    expect(flow).toMatchObject({ name: 'request', queueName: 'merge', opts: { jobId: 'r' } });
    expect(flow.children!.map((c) => c.opts?.jobId)).toEqual(['r~web~merge', 'r~api~merge']);
    const review = flow.children![0]!.children![0]!;
    const spawn = review.children![0]!;
    expect([review.queueName, review.opts?.jobId, spawn.queueName, spawn.opts?.jobId]).toEqual([
      'review',
      'r~web~review',
      'spawn',
      'r~web',
    ]);
    expect(spawn.data.flow).toEqual({ scope: 'web', purpose: 'task', branch: 'fleet/r/web', baseBranch: null });
    expect(spawn.data.request.task_content).toBe('a');
    // The token is sealed in the steps and absent everywhere in clear.
    expect(JSON.stringify(flow)).not.toContain('ghp_');
  });

  it('only flows requests with tasks or review', () => {
    expect(needsFlow({ tasks: undefined, review: undefined })).toBe(false);
    expect(needsFlow({ tasks: undefined, review: true })).toBe(true);
    expect(needsFlow({ tasks: [], review: undefined })).toBe(true);
    expect(stepJobId('r', null, 'review', 2)).toBe('r~review~2');
  });
});

describe('flow storage', () => {
  // One message with 20 tasks once became 213 MB of flow data: every step copied AGENTS.md and the task.
  it('keeps the texts in the root and the workers only, not in review and merge steps', () => {
    const agents = 'a'.repeat(200 * 1024);
    const tasks = Array.from({ length: 20 }, (_, i) => ({ scope: `s${i}`, task_content: 't'.repeat(100 * 1024) }));
    const request = validateSpawnRequest(
      legacyRequest({ request_id: 'big', agents_content: agents, mode: 'pr', review: true, merge: true, tasks }),
    );
    const flow = buildRequestFlow(request, 'sealed', { attempts: 3, keepLogs: 10, acceptedAt: 1, source: 'pubsub' });
    const size = (data: unknown) => Buffer.byteLength(JSON.stringify(data));
    let total = size(flow.data);
    for (const merge of flow.children!) {
      const review = merge.children![0]!;
      const spawn = review.children![0]!;
      expect(size(merge.data)).toBeLessThan(4096);
      expect(size(review.data)).toBeLessThan(4096);
      expect(spawn.data.request.agents_content).toBe(agents);
      total += size(merge.data) + size(review.data) + size(spawn.data);
    }
    const workerTexts = 20 * (agents.length + 100 * 1024);
    expect(total).toBeLessThan(size(flow.data) + workerTexts + 200 * 1024);
  });
});

describe('derived job ids', () => {
  // A sender who could pick a step's id would become that step: its job is attached as the child, and
  // its summary read as the verdict or its PR number used (security review, finding 2).
  it('never equal a request id a sender may choose', () => {
    const derived = [
      stepJobId('a', 'x', 'spawn'),
      stepJobId('V', null, 'review'),
      stepJobId('V', 's1', 'merge'),
      stepJobId('V', null, 'review', 1),
      followUpJobId(stepJobId('V', null, 'review'), 'agent', 1),
      followUpJobId(stepJobId('V', 'web', 'spawn'), 'fix', 2),
      followUpJobId(stepJobId('V', null, 'spawn'), 'rebase', 1),
    ];
    for (const id of derived) expect(REQUEST_ID_PATTERN.test(id), id).toBe(false);
    expect(stepJobId('a', 'x', 'spawn')).not.toBe(stepJobId('a.x', null, 'spawn'));
    expect(followUpJobId(stepJobId('V', null, 'review'), 'agent', 1)).not.toBe(stepJobId('V.review.agent1', null, 'spawn'));
  });

  it("make container names Docker takes, never another request's", () => {
    const names = ['a~b', 'a_tb', 'a_b', 'a__b', 'V~s1~fix1', 'V_ts1_tfix1'].map((id) => containerName('{fleet}', id, 1));
    for (const name of names) expect(name).toMatch(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/);
    expect(new Set(names).size).toBe(names.length);
  });

  it('refuses the separator in request ids and scopes', () => {
    expect(() => validateSpawnRequest(legacyRequest({ request_id: 'V~review~agent1' }))).toThrow(/request_id/);
    expect(() => validateSpawnRequest(legacyRequest({ tasks: [{ scope: 'a~b', task_content: 'x' }] }))).toThrow(/tasks\.0\.scope/);
  });
});

describe('aggregateFlowResult', () => {
  const times = { acceptedAt: 0, finishedAt: 1000 };

  it('succeeds only when every scope merged, and keeps the eleven legacy keys first', () => {
    const result = aggregateFlowResult('r', [merged('web', 'm1'), merged('api', 'm2')], { review: true, merge: true }, times);
    expect(Object.keys(result).slice(0, 11)).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result).toMatchObject({ success: true, commit_sha: 'm2', error_type: null });
    expect(result.timings.duration_ms).toBe(1000);
  });

  it('names the scope that fell short', () => {
    const rejected: ScopeOutcome = {
      ...merged('api', 'x'),
      merged: false,
      merge_sha: null,
      reviews: [review(false)],
      error_type: 'review_rejected',
      error_message: 'no',
    };
    const result = aggregateFlowResult('r', [merged('web', 'm1'), rejected], { review: true, merge: true }, times);
    expect(result).toMatchObject({ success: false, error_type: 'review_rejected', error_message: 'api: no' });
    expect(result.output).toContain('api: PR #1, changes requested');
  });

  it('counts approval as success when merge was not asked for', () => {
    const approved = { ...merged('web', 'x'), merged: false, merge_sha: null };
    expect(aggregateFlowResult('r', [approved], { review: true, merge: false }, times).success).toBe(true);
  });
});

describe('texts for GitHub and follow-up workers', () => {
  it('puts summary, task and files in the PR body', () => {
    const body = pullRequestBody({ requestId: 'r', scope: 'web', summary: 'Did it', task: 'Do it', files: ['a.ts'] });
    expect(body).toContain('Did it');
    expect(body).toContain('Do it');
    expect(body).toContain('`a.ts`');
    expect(body).toContain('scope `web`');
  });

  it('gives a fix worker the feedback, the line comments and the original task', () => {
    const task = fixTask({
      feedback: 'Handle nulls',
      comments: [{ path: 'a.ts', line: 3, body: 'here' }],
      originalTask: 'ORIGINAL',
      round: 1,
      branch: 'b',
    });
    expect(task).toMatch(/Handle nulls[\s\S]*`a\.ts:3`: here[\s\S]*ORIGINAL/);
  });

  it('tells a conflict worker the branch and the base', () => {
    expect(conflictTask({ branch: 'fleet/r/web', base: 'main', originalTask: 'T' })).toMatch(/`fleet\/r\/web` with `main`/);
  });
});

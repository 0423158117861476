import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jobLabel, parseJobKey } from '../../src/cli/ops/logs.ts';
import { buildLegacyRequest, SpawnUsageError } from '../../src/cli/ops/spawn.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { LEGACY_RESULT_KEYS } from '../../src/protocol.ts';
import { runFleet } from '../ops/support.ts';

const dir = mkdtempSync(join(tmpdir(), 'fleet-spawn-v2-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('fleet spawn builds the request from its options', () => {
  it('with legacy options only, exactly the eight legacy keys', () => {
    const request = buildLegacyRequest({ repo: 'acme/widgets', taskFile: file('t.md', 'do it'), id: 'r1', wait: false, v2: {} }, {});
    expect(Object.keys(request)).toEqual([
      'request_id',
      'repo',
      'task_content',
      'task_title',
      'model',
      'agents_content',
      'timeout_seconds',
    ]);
    expect(LEGACY_RESULT_KEYS).toHaveLength(11);
  });

  it('maps every v2 option to its v2 key, and the bridge accepts the request', () => {
    const tasks = [
      { scope: 'web', task_content: 'web task', task_title: 'Web' },
      { scope: 'api', task_content: 'api task', agents_content: 'be brief' },
    ];
    const request = buildLegacyRequest(
      {
        repo: 'acme/widgets',
        id: 'r2',
        wait: false,
        v2: {
          agent: 'claude',
          pr: true,
          baseBranch: 'develop',
          review: true,
          merge: true,
          fixRounds: 2,
          tasksFile: file('tasks.json', JSON.stringify(tasks)),
          format: 'v2',
          maxTurns: 40,
          maxCostUsd: 1.5,
        },
      },
      { GITHUB_TOKEN: 'ghp_x' },
    );
    expect(request).toMatchObject({
      request_id: 'r2',
      github_token: 'ghp_x',
      agent: 'claude',
      mode: 'pr',
      base_branch: 'develop',
      review: true,
      merge: true,
      fix_rounds: 2,
      tasks,
      result_format: 'v2',
      max_turns: 40,
      max_cost_usd: 1.5,
      // Without --task-file, the request's own task names its scopes.
      task_content: 'Tasks in 2 scopes: web, api',
    });
    expect(validateSpawnRequest(request).tasks).toHaveLength(2);
  });

  it('--follow-up N becomes follow_up {pull_request: N}', () => {
    const request = buildLegacyRequest(
      { repo: 'acme/widgets', taskFile: file('f.md', 'more'), id: 'r3', wait: false, v2: { pr: true, followUp: 12 } },
      {},
    );
    expect(request.follow_up).toEqual({ pull_request: 12 });
  });

  it('a bad tasks file or a rule of the schema is a usage error naming what is wrong', () => {
    const build = (v2: Record<string, unknown>) => () =>
      buildLegacyRequest({ repo: 'acme/widgets', taskFile: file('b.md', 'x'), id: 'r4', wait: false, v2 }, {});
    expect(build({ tasksFile: file('bad.json', '{not json') })).toThrow(/--tasks: .*bad\.json is not JSON/);
    expect(build({ tasksFile: file('obj.json', '{"scope":"a"}') })).toThrow(/--tasks: .* must hold a JSON list/);
    expect(build({ tasksFile: file('dup.json', '[{"scope":"a","task_content":"x"},{"scope":"a","task_content":"y"}]') })).toThrow(
      /tasks\.1\.scope.*appears twice/,
    );
    expect(build({ merge: true })).toThrow(/"merge" needs "review": true/);
    expect(build({ agent: 'gpt' })).toThrow(SpawnUsageError);
  });
});

describe('fleet logs names the jobs of a request', () => {
  it('reads BullMQ job keys of fleet queues, and tags lines with the step', () => {
    expect(parseJobKey('{fleet}', '{fleet}:spawn:r1~web~fix1')).toEqual({ queue: 'spawn', id: 'r1~web~fix1' });
    expect(parseJobKey('fleet', 'fleet:review:r1~web~review')).toEqual({ queue: 'review', id: 'r1~web~review' });
    expect(parseJobKey('fleet', 'other:spawn:r1')).toBeNull();
    expect(jobLabel('r1', { queue: 'spawn', id: 'r1' })).toBe('[spawn]');
    expect(jobLabel('r1', { queue: 'spawn', id: 'r1~web~fix1' })).toBe('[spawn web~fix1]');
  });
});

describe('--help of the v2 commands', () => {
  it('documents every option and the exit codes', async () => {
    const [spawn, logs, result] = await Promise.all([
      runFleet(['spawn', '--help']),
      runFleet(['logs', '--help']),
      runFleet(['result', '--help']),
    ]);
    for (const option of [
      '--agent',
      '--pr',
      '--base',
      '--review',
      '--merge',
      '--fix-rounds',
      '--tasks',
      '--follow-up',
      '--format',
      'Exit status',
    ])
      expect(spawn.stdout).toContain(option);
    expect(logs.stdout).toMatch(/-f, --follow[\s\S]*Exit status: 0 [\s\S]*1 with -f the request failed[\s\S]*4 no job/);
    expect(result.stdout).toMatch(/Exit status: 0 [\s\S]*3 no result yet[\s\S]*4 no result and no job/);
    expect([spawn.code, logs.code, result.code]).toEqual([0, 0, 0]);
  });
});

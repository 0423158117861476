import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { classifyRefusal, parseCiRequired } from '../../src/flow/ci.ts';
import { ciFixTask, LOG_TAIL_CHARS, LOG_TAIL_LINES, logTail } from '../../src/pr-text.ts';

describe('logTail', () => {
  it('keeps the last lines without GitHub timestamps, and marks the cut', () => {
    const log = Array.from({ length: 500 }, (_, i) => `2026-11-30T01:02:03.4567890Z line ${i}`).join('\r\n');
    const tail = logTail(`${log}\n\n`);
    const lines = tail.split('\n');
    expect(lines[0]).toBe('… (earlier lines cut)');
    expect(lines.slice(1)).toHaveLength(LOG_TAIL_LINES);
    expect(lines.at(-1)).toBe('line 499');
    expect(tail).not.toMatch(/2026-11-30T/);
  });

  it('cuts very long lines to the character bound, and leaves a short log whole', () => {
    expect(logTail('x'.repeat(50_000)).length).toBeLessThanOrEqual(LOG_TAIL_CHARS + 30);
    expect(logTail('one\ntwo')).toBe('one\ntwo');
  });
});

describe('ciFixTask', () => {
  it('names each failing check with its link, summary, annotations (at most 20) and log tail, then the task', () => {
    const task = ciFixTask({
      round: 2,
      branch: 'fleet/r1',
      originalTask: 'Add a list.',
      checks: [
        {
          name: 'test',
          conclusion: 'failure',
          url: 'https://github.test/runs/1',
          summary: '2 failed',
          annotations: Array.from({ length: 25 }, (_, i) => ({ path: 'a.ts', line: i + 1, level: 'failure', message: `bad ${i}` })),
          log: 'setup\n```\nFAIL a.test.ts',
        },
      ],
    });
    expect(task).toContain('(round 2)');
    expect(task).toContain('### test: failure (https://github.test/runs/1)');
    expect(task).toContain('`a.ts:20` (failure): bad 19');
    expect(task).not.toContain('bad 20');
    expect(task).toContain('- … and 5 more');
    // A fence inside the log cannot end the block early (the test worker runs the task's first sh block).
    expect(task).toContain("setup\n'''\nFAIL a.test.ts");
    expect(task.endsWith('## The original task\n\nAdd a list.')).toBe(true);
  });
});

describe('parseCiRequired', () => {
  it('reads auto, all, none and comma lists, and refuses an empty list', () => {
    expect(parseCiRequired('auto')).toEqual({ kind: 'auto' });
    expect(parseCiRequired(' none ')).toEqual({ kind: 'none' });
    expect(parseCiRequired('build, test ,')).toEqual({ kind: 'names', names: ['build', 'test'] });
    expect(() => parseCiRequired(' , ')).toThrow(/FLEET_CI_REQUIRED must be auto, all, none or a comma list/);
  });
});

describe('the CI settings', () => {
  it('default to auto, 60 minutes and 10 s; an empty FLEET_CI_REQUIRED is auto; bad values are named', () => {
    expect(loadConfig({}).ci).toEqual({ required: { kind: 'auto' }, timeoutMs: 3_600_000, pollMs: 10_000 });
    expect(loadConfig({ FLEET_CI_REQUIRED: '', FLEET_CI_TIMEOUT: '5' }).ci).toMatchObject({
      required: { kind: 'auto' },
      timeoutMs: 300_000,
    });
    expect(loadConfig({ FLEET_CI_REQUIRED: 'lint,test' }).ci.required).toEqual({ kind: 'names', names: ['lint', 'test'] });
    expect(() => loadConfig({ FLEET_CI_TIMEOUT: '0' })).toThrow(/FLEET_CI_TIMEOUT/);
    expect(() => loadConfig({ FLEET_CI_REQUIRED: ',' })).toThrow(/FLEET_CI_REQUIRED/);
  });
});

describe('classifyRefusal', () => {
  it("tells GitHub's 405s apart by mergeable_state and message", () => {
    expect(classifyRefusal('dirty', 'Pull Request is not mergeable')).toBe('conflict');
    expect(classifyRefusal('blocked', 'Required status check "build" is expected.')).toBe('checks');
    expect(classifyRefusal('blocked', 'Required status check "build" is in progress.')).toBe('checks');
    expect(classifyRefusal('blocked', 'At least 1 approving review is required by reviewers with write access.')).toBe('review');
    expect(classifyRefusal('behind', 'Head branch is not up to date with the base branch.')).toBe('behind');
    // GitHub still computing: not a conflict worker, a later try.
    expect(classifyRefusal('unknown', 'Pull Request is not mergeable')).toBe('unknown');
    expect(classifyRefusal('clean', 'Merge commits are not allowed on this repository.')).toBe('unknown');
    expect(classifyRefusal('clean', 'Pull Request is not mergeable')).toBe('conflict');
  });
});

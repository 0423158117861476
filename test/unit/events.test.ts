import { describe, expect, it } from 'vitest';
import { parseContainerLine } from '../../src/events.ts';
import { resultFromOutcome } from '../../src/results.ts';
import { LEGACY_RESULT_KEYS } from '../../src/protocol.ts';

describe('parseContainerLine', () => {
  it('reads a valid event and fills optional fields', () => {
    const parsed = parseContainerLine('::fleet-event:: {"event_type":"progress","message":"cloning"}');
    expect(parsed).toEqual({ kind: 'event', event: { event_type: 'progress', message: 'cloning', stage: null, progress_pct: null } });
  });

  it.each([
    ['not JSON', '::fleet-event:: {nope', /not JSON/],
    ['unknown type', '::fleet-event:: {"event_type":"exploded"}', /does not match/],
    ['missing field', '::fleet-event:: {"event_type":"failed","error_type":"x"}', /error_message/],
    ['bad percentage', '::fleet-event:: {"event_type":"progress","message":"m","progress_pct":400}', /progress_pct/],
  ])('keeps a malformed event (%s) as a log line with the reason', (_n, line, problem) => {
    const parsed = parseContainerLine(line);
    expect(parsed.kind).toBe('log');
    expect(parsed.kind === 'log' && parsed.problem).toMatch(problem);
  });

  it('treats other lines as log output', () => {
    expect(parseContainerLine('hello')).toEqual({ kind: 'log', line: 'hello' });
  });
});

describe('resultFromOutcome', () => {
  const base: Parameters<typeof resultFromOutcome>[1] = { exitCode: 0, stoppedBy: null, completed: null, failed: null, tail: ['a', 'b'] };
  const ctx = { timeoutSeconds: 60, branch: null };

  it('builds a success from the completed event with exactly the legacy keys', () => {
    const result = resultFromOutcome(
      'r',
      { ...base, completed: { event_type: 'completed', commit_sha: 'c1', branch: 'main', files_changed: ['f'], summary: 'ok' } },
      ctx,
    );
    expect(Object.keys(result)).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result).toMatchObject({
      success: true,
      exit_code: 0,
      commit_sha: 'c1',
      branch: 'main',
      files_changed: ['f'],
      summary: 'ok',
      output: 'ok',
    });
  });

  it('reports a non-zero exit without a failed event as a crash with the code', () => {
    const result = resultFromOutcome('r', { ...base, exitCode: 3 }, ctx);
    expect(result).toMatchObject({ success: false, exit_code: 3, error_type: 'crash', logs_tail: 'a\nb' });
    expect(result.output).toContain('code 3');
  });

  it('takes the failure the container reported', () => {
    const result = resultFromOutcome(
      'r',
      {
        ...base,
        exitCode: 2,
        failed: { event_type: 'failed', error_type: 'task_failed', error_message: 'agent exited 2', logs_tail: null },
      },
      ctx,
    );
    expect(result).toMatchObject({ error_type: 'task_failed', error_message: 'agent exited 2', exit_code: 2 });
  });

  it('reports a timeout with exit code -1', () => {
    expect(resultFromOutcome('r', { ...base, exitCode: null, stoppedBy: 'timeout' }, ctx)).toMatchObject({
      error_type: 'timeout',
      exit_code: -1,
    });
  });
});

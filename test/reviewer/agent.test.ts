import { describe, expect, it } from 'vitest';
import { buildAgentReviewTask, verdictFromAgentSummary } from '../../src/reviewer/agent.ts';
import { ReviewError } from '../../src/errors.ts';

describe('agent reviewer helpers', () => {
  it('builds a task that pins the commit, includes the task, and asks for the JSON verdict', () => {
    const task = buildAgentReviewTask({ repo: 'acme/w', number: 4, title: 'Add cache', task: 'Cache the user lookups', headSha: 'f00d' });
    expect(task).toContain('pull request #4 of acme/w');
    expect(task).toContain('f00d');
    expect(task).toContain('Cache the user lookups');
    expect(task).toContain('"approved": boolean');
  });

  it('reads the verdict the worker extracted, strictly, with full coverage', () => {
    const diff = 'diff --git a/x b/x\n+é\n';
    const bare = verdictFromAgentSummary('{"approved": true, "feedback": "tests pass"}', diff);
    expect(bare).toEqual({
      approved: true,
      feedback: 'tests pass',
      comments: [],
      coverage: { reviewedBytes: Buffer.byteLength(diff), totalBytes: Buffer.byteLength(diff), truncated: false },
    });
    const rejected = verdictFromAgentSummary(
      '{"approved": false, "feedback": "test_x fails", "comments": [{"path": "x", "line": 1, "body": "wrong"}]}',
      diff,
    );
    expect(rejected).toMatchObject({ approved: false, feedback: 'test_x fails', comments: [{ path: 'x', line: 1, body: 'wrong' }] });
    // Text around an object is not a verdict: the braces in it may be anyone's.
    expect(() => verdictFromAgentSummary('Done. {"approved": true, "feedback": "ok"} Bye.', diff)).toThrow(ReviewError);
  });

  it('throws a retryable ReviewError when the summary holds no verdict', () => {
    expect(() => verdictFromAgentSummary('I looked at it and it seems fine', '')).toThrow(ReviewError);
    expect(() => verdictFromAgentSummary(null, '')).toThrow(
      expect.objectContaining({ name: 'ReviewError', retryable: true, errorType: 'review_error' }),
    );
  });
});

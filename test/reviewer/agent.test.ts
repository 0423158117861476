import { describe, expect, it } from 'vitest';
import { buildAgentReviewTask, verdictFromAgentSummary } from '../../src/reviewer/agent.ts';
import { ReviewError } from '../../src/forge.ts';

describe('agent reviewer helpers', () => {
  it('builds a task that pins the commit, includes the task, and asks for the JSON verdict', () => {
    const task = buildAgentReviewTask({ repo: 'acme/w', number: 4, title: 'Add cache', task: 'Cache the user lookups', headSha: 'f00d' });
    expect(task).toContain('pull request #4 of acme/w');
    expect(task).toContain('f00d');
    expect(task).toContain('Cache the user lookups');
    expect(task).toContain('"approved": boolean');
  });

  it('reads a verdict from a summary, with or without text around it, with full coverage', () => {
    const diff = 'diff --git a/x b/x\n+é\n';
    const bare = verdictFromAgentSummary('{"approved": true, "feedback": "tests pass"}', diff);
    expect(bare).toEqual({ approved: true, feedback: 'tests pass', comments: [], coverage: { reviewedBytes: Buffer.byteLength(diff), totalBytes: Buffer.byteLength(diff), truncated: false } });
    const wrapped = verdictFromAgentSummary('Done. {"approved": false, "feedback": "test_x fails", "comments": [{"path": "x", "line": 1, "body": "wrong"}]} Bye.', diff);
    expect(wrapped).toMatchObject({ approved: false, feedback: 'test_x fails', comments: [{ path: 'x', line: 1, body: 'wrong' }] });
  });

  it('throws a retryable ReviewError when the summary holds no verdict', () => {
    expect(() => verdictFromAgentSummary('I looked at it and it seems fine', '')).toThrow(ReviewError);
    expect(() => verdictFromAgentSummary(null, '')).toThrow(expect.objectContaining({ name: 'ReviewError', retryable: true, errorType: 'review_error' }));
  });
});

import { describe, expect, it } from 'vitest';
import { buildRepairMessage, buildReviewMessages, mergeAnswers, parseAnswer, planChunks, splitDiffByFile, SYSTEM_PROMPT } from '../../src/reviewer/prompt.ts';

export function fileDiff(path: string, addedLines: number): string {
  const body = Array.from({ length: addedLines }, (_, i) => `+line ${i} of ${path}`).join('\n');
  return `diff --git a/${path} b/${path}\n--- a/${path}\n+++ b/${path}\n@@ -0,0 +1,${addedLines} @@\n${body}\n`;
}

describe('splitDiffByFile', () => {
  it('splits at each file header and keeps every byte', () => {
    const diff = fileDiff('a.ts', 2) + fileDiff('dir/b.ts', 3);
    const files = splitDiffByFile(diff);
    expect(files.map((f) => f.path)).toEqual(['a.ts', 'dir/b.ts']);
    expect(files.map((f) => f.text).join('')).toBe(diff);
  });

  it('treats text without headers as one part, and nothing as none', () => {
    expect(splitDiffByFile('just text')).toEqual([{ path: '(diff)', text: 'just text' }]);
    expect(splitDiffByFile('')).toEqual([]);
  });
});

describe('planChunks', () => {
  it('keeps a diff that fits in one chunk, fully covered', () => {
    const diff = fileDiff('a.ts', 3) + fileDiff('b.ts', 3);
    const plan = planChunks(diff, 10_000, 4);
    expect(plan.chunks).toEqual([diff]);
    expect(plan.coverage).toEqual({ reviewedBytes: Buffer.byteLength(diff), totalBytes: Buffer.byteLength(diff), truncated: false });
  });

  it('packs whole files into chunks under the limit', () => {
    const files = ['a.ts', 'b.ts', 'c.ts'].map((p) => fileDiff(p, 20));
    const plan = planChunks(files.join(''), files[0]!.length * 2 + 10, 4);
    expect(plan.chunks).toEqual([files[0]! + files[1]!, files[2]!]);
    expect(plan.coverage.truncated).toBe(false);
  });

  it('cuts a file larger than a chunk and reports the coverage', () => {
    const big = fileDiff('big.ts', 500);
    const plan = planChunks(big, 1_000, 4);
    expect(plan.chunks).toHaveLength(1);
    expect(plan.chunks[0]!.length).toBeLessThanOrEqual(1_000);
    expect(plan.chunks[0]).toContain('not shown');
    expect(plan.omitted).toEqual(['big.ts']);
    expect(plan.coverage.truncated).toBe(true);
    expect(plan.coverage.reviewedBytes).toBeLessThan(1_000);
    expect(plan.coverage.totalBytes).toBe(Buffer.byteLength(big));
  });

  it('leaves out files beyond the chunk budget', () => {
    const files = ['a.ts', 'b.ts', 'c.ts'].map((p) => fileDiff(p, 30));
    const plan = planChunks(files.join(''), files[0]!.length + 5, 2);
    expect(plan.chunks).toEqual([files[0], files[1]]);
    expect(plan.omitted).toEqual(['c.ts']);
    expect(plan.coverage).toMatchObject({ reviewedBytes: Buffer.byteLength(files[0]! + files[1]!), truncated: true });
  });

  it('counts bytes, not characters', () => {
    const diff = fileDiff('ü.ts', 2).replace('line 0', 'zeile ä');
    expect(planChunks(diff, 10_000, 1).coverage.totalBytes).toBe(Buffer.byteLength(diff, 'utf8'));
  });
});

describe('buildReviewMessages', () => {
  it('gives the model the task, the description and the diff, and the JSON contract', () => {
    const [system, user] = buildReviewMessages({ repo: 'acme/w', number: 7, title: 'Add login', body: 'Adds a form', task: 'Build a login page', headSha: 'abc' }, fileDiff('a.ts', 1), { index: 0, count: 1, omitted: [] });
    expect(system).toEqual({ role: 'system', content: SYSTEM_PROMPT });
    expect(SYSTEM_PROMPT).toContain('"approved": boolean');
    expect(user!.content).toContain('Pull request #7: Add login');
    expect(user!.content).toContain('Build a login page');
    expect(user!.content).toContain('Adds a form');
    expect(user!.content).toContain('+line 0 of a.ts');
    expect(user!.content).not.toContain('part 1');
  });

  it('says which part of a split diff this is and what was left out', () => {
    const [, user] = buildReviewMessages({ repo: 'acme/w', number: 7, title: 't', headSha: 'abc' }, 'x', { index: 1, count: 3, omitted: ['huge.json'] });
    expect(user!.content).toContain('split in 3 parts; this is part 2');
    expect(user!.content).toContain('huge.json');
  });

  it('asks again with the problem named', () => {
    expect(buildRepairMessage('it is not valid JSON').content).toContain('it is not valid JSON');
  });
});

describe('parseAnswer', () => {
  it('reads bare JSON and JSON in a fenced block', () => {
    expect(parseAnswer('{"approved": true, "feedback": "ok", "comments": []}')).toEqual({ ok: true, value: { approved: true, feedback: 'ok', comments: [] } });
    const fenced = parseAnswer('Here:\n```json\n{"approved": false, "feedback": "fix x", "comments": [{"path": "a.ts", "line": 3, "body": "why"}]}\n```');
    expect(fenced).toEqual({ ok: true, value: { approved: false, feedback: 'fix x', comments: [{ path: 'a.ts', line: 3, body: 'why' }] } });
  });

  it('defaults missing comments and drops a missing line', () => {
    expect(parseAnswer('{"approved": true, "feedback": ""}')).toMatchObject({ ok: true, value: { comments: [] } });
    expect(parseAnswer('{"approved": true, "feedback": "", "comments": [{"path": "a", "body": "b"}]}')).toEqual({ ok: true, value: { approved: true, feedback: '', comments: [{ path: 'a', body: 'b' }] } });
  });

  it('names what is wrong with a malformed answer', () => {
    expect(parseAnswer('I approve!')).toEqual({ ok: false, error: 'it is not valid JSON' });
    const wrongType = parseAnswer('{"approved": "yes", "feedback": "ok"}');
    expect(wrongType.ok).toBe(false);
    expect(!wrongType.ok && wrongType.error).toContain('approved');
  });
});

describe('mergeAnswers', () => {
  const full = { reviewedBytes: 10, totalBytes: 10, truncated: false };

  it('approves only when every part is approved, and keeps every comment', () => {
    const merged = mergeAnswers(
      [
        { approved: true, feedback: 'fine', comments: [{ path: 'a', body: 'nit' }] },
        { approved: false, feedback: 'bug in b', comments: [{ path: 'b', line: 2, body: 'off by one' }] },
      ],
      full,
    );
    expect(merged.approved).toBe(false);
    expect(merged.feedback).toContain('Part 2: bug in b');
    expect(merged.comments).toHaveLength(2);
  });

  it('says how much was reviewed when the diff was cut', () => {
    const merged = mergeAnswers([{ approved: true, feedback: 'ok', comments: [] }], { reviewedBytes: 5, totalBytes: 10, truncated: true });
    expect(merged.feedback).toContain('Reviewed 5 of 10 bytes');
  });
});

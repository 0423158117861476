import { describe, expect, it } from 'vitest';
import { instructionOf, intentOf, PayloadError } from '../../src/webhook/intents.ts';
import { outcomeReply, refusalReply } from '../../src/webhook/replies.ts';
import { requestIdOf, requestOf, titleOf } from '../../src/webhook/requests.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { payload } from './support.ts';

const trigger = { label: 'fleet', word: '@fleet' };
const at = { repo: 'acme/widgets', sender: 'octocat', number: 7 };

describe('reading deliveries (pure)', () => {
  it('takes the trigger word only as a word of its own at the start', () => {
    expect(instructionOf('@fleet add tests', '@fleet')).toBe('add tests');
    expect(instructionOf('\n  @Fleet: add tests\nand docs', '@fleet')).toBe('add tests\nand docs');
    expect(instructionOf('@fleet', '@fleet')).toBe('');
    expect(instructionOf('@fleetwood add tests', '@fleet')).toBeUndefined();
    expect(instructionOf('please @fleet add tests', '@fleet')).toBeUndefined();
  });

  it('an issue with the trigger label (any case) is a task; other labels and bots are ignored', () => {
    const p = payload('issues.labeled', { ...at, title: 'Add a README', body: 'Say what it is.' });
    p.label.name = 'Fleet';
    expect(intentOf('issues', p, trigger)).toEqual({
      kind: 'issue',
      repo: 'acme/widgets',
      number: 7,
      title: 'Add a README',
      body: 'Say what it is.',
      sender: 'octocat',
    });
    p.sender.type = 'Bot';
    expect(intentOf('issues', p, trigger)).toMatchObject({ kind: 'ignore', reason: 'labelled by a bot' });
  });

  it('tells a comment on a pull request from one on an issue', () => {
    expect(intentOf('issue_comment', payload('issue_comment.created.pull_request', at), trigger)).toMatchObject({
      kind: 'comment',
      onPullRequest: true,
      instruction: 'also update the changelog',
    });
    expect(intentOf('issue_comment', payload('issue_comment.created', at), trigger)).toMatchObject({
      kind: 'comment',
      onPullRequest: false,
    });
  });

  it('acts on "changes requested" on fleet branches of the same repository only', () => {
    const review = payload('pull_request_review.submitted', at);
    expect(intentOf('pull_request_review', review, trigger)).toMatchObject({ kind: 'review', branch: 'fleet/demo-1' });
    review.pull_request.head.repo.full_name = 'fork/widgets';
    expect(intentOf('pull_request_review', review, trigger)).toMatchObject({ kind: 'ignore' });
    const human = payload('pull_request_review.submitted', at);
    human.pull_request.head.ref = 'feature/by-hand';
    expect(intentOf('pull_request_review', human, trigger)).toMatchObject({ kind: 'ignore' });
  });

  it('refuses a known event whose payload lacks what fleet reads, naming the path', () => {
    const broken = payload('issues.labeled', at);
    delete broken.issue.number;
    expect(() => intentOf('issues', broken, trigger)).toThrow(PayloadError);
    expect(() => intentOf('issues', broken, trigger)).toThrow(/issue\.number/);
  });

  it('builds requests the intake accepts, without a token', () => {
    const intent = intentOf('issues', payload('issues.labeled', { ...at, title: 'Multi\nline\ttitle\u0007', body: null }), trigger);
    if (intent.kind === 'ignore') throw new Error('not a task');
    const request = validateSpawnRequest(requestOf(intent, '72d3162e-cc78-11e3-81ab-4c9367dc0958', undefined));
    expect(request).toMatchObject({
      request_id: 'gh-72d3162e-cc78-11e3-81ab-4c9367dc0958',
      mode: 'pr',
      result_format: 'v2',
      task_title: 'Multi line title',
    });
    expect(request.github_token).toBeUndefined();
    expect(titleOf('x'.repeat(500), 'f')).toHaveLength(200);
    expect(titleOf('  \n ', 'fallback')).toBe('fallback');
    expect(() => requestIdOf('../../etc')).toThrow(/not a delivery id/);
  });

  it('replies link each pull request, and never start with a mention', () => {
    const result = {
      request_id: 'gh-1',
      success: true,
      exit_code: 0,
      output: '',
      commit_sha: 'abc',
      branch: 'fleet/gh-1',
      files_changed: [],
      summary: null,
      error_type: null,
      error_message: null,
      logs_tail: null,
      pull_request: { number: 3, url: 'https://github.com/acme/widgets/pull/3', head_sha: 'abc' },
    };
    expect(outcomeReply(result)).toBe('fleet finished request `gh-1`: pull request #3 (https://github.com/acme/widgets/pull/3).');
    expect(outcomeReply({ ...result, success: false, error_type: 'review_rejected', error_message: 'no' })).toMatch(
      /could not finish .*review_rejected.*Pull request: #3/,
    );
    expect(refusalReply('reader', 'acme/widgets', 'read')).not.toMatch(/^@/);
  });
});

import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/errors.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { legacyRequest } from '../support/fleet.ts';

describe('validateSpawnRequest', () => {
  it('accepts the legacy request with its eight keys and applies defaults', () => {
    const request = validateSpawnRequest(legacyRequest({ task_title: null, model: null, timeout_seconds: null }));
    expect(request.task_title).toBe('AI generated changes');
    expect(request.model).toBe('claude-sonnet-4-5-20250929');
    expect(request.timeout_seconds).toBe(600);
    expect(request.agents_content).toBeNull();
  });

  it('accepts a task of exactly 1 MiB and refuses one byte more', () => {
    const mib = 1024 * 1024;
    expect(() => validateSpawnRequest(legacyRequest({ task_content: 'x'.repeat(mib) }))).not.toThrow();
    expect(() => validateSpawnRequest(legacyRequest({ task_content: 'x'.repeat(mib + 1) }))).toThrow(/task_content.*1 MiB/);
  });

  // Each bad request must be refused with a message naming the field that is wrong.
  const corpus: [string, unknown, RegExp][] = [
    ['not an object', [1, 2], /JSON object/],
    ['null', null, /JSON object/],
    ['missing request_id', (() => { const r = legacyRequest(); delete r.request_id; return r; })(), /"request_id" is required/],
    ['request_id with a colon', legacyRequest({ request_id: 'a:b' }), /request_id/],
    ['request_id too long', legacyRequest({ request_id: 'a'.repeat(129) }), /request_id.*128/],
    ['request_id a number', legacyRequest({ request_id: 42 }), /request_id/],
    ['repo without owner', legacyRequest({ repo: 'widgets' }), /repo/],
    ['repo as a URL', legacyRequest({ repo: 'https://github.com/acme/widgets' }), /repo/],
    ['repo with path traversal', legacyRequest({ repo: 'acme/..' }), /repo/],
    ['repo with a newline', legacyRequest({ repo: 'acme/w\nx' }), /repo/],
    ['empty task', legacyRequest({ task_content: '   ' }), /task_content.*empty/],
    ['task not a string', legacyRequest({ task_content: { a: 1 } }), /task_content/],
    ['timeout zero', legacyRequest({ timeout_seconds: 0 }), /timeout_seconds/],
    ['timeout too long', legacyRequest({ timeout_seconds: 86401 }), /timeout_seconds/],
    ['timeout fractional', legacyRequest({ timeout_seconds: 1.5 }), /timeout_seconds/],
    ['timeout as a string', legacyRequest({ timeout_seconds: '600' }), /timeout_seconds/],
    ['agents_content a number', legacyRequest({ agents_content: 7 }), /agents_content/],
    ['github_token empty', legacyRequest({ github_token: '' }), /github_token/],
    ['unknown key', legacyRequest({ callback_url: 'http://x' }), /unknown field "callback_url"/],
    ['unknown agent', legacyRequest({ agent: 'gpt' }), /agent/],
    ['merge without review', legacyRequest({ mode: 'pr', merge: true }), /merge.*review/],
    ['review without pr mode', legacyRequest({ review: true }), /review.*mode/],
    ['duplicate scopes', legacyRequest({ tasks: [{ scope: 'a', task_content: 'x' }, { scope: 'a', task_content: 'y' }] }), /scope.*twice/],
    ['scope with a slash', legacyRequest({ tasks: [{ scope: 'a/b', task_content: 'x' }] }), /tasks\.0\.scope/],
    ['deeply nested value', legacyRequest({ model: JSON.parse('['.repeat(5000) + ']'.repeat(5000)) }), /model/],
  ];

  it.each(corpus)('refuses %s', (_name, input, message) => {
    let error: unknown;
    try {
      validateSpawnRequest(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect((error as Error).message).toMatch(message);
    expect((error as InvalidRequestError).retryable).toBe(false);
  });
});

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/errors.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { branchNameProblem } from '../../src/protocol.ts';
import { legacyRequest } from '../support/fleet.ts';
import { BRANCH_NAME_SAMPLES } from '../support/branch-names.ts';

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
    [
      'missing request_id',
      (() => {
        const r = legacyRequest();
        delete r.request_id;
        return r;
      })(),
      /"request_id" is required/,
    ],
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
    [
      'duplicate scopes',
      legacyRequest({
        tasks: [
          { scope: 'a', task_content: 'x' },
          { scope: 'a', task_content: 'y' },
        ],
      }),
      /scope.*twice/,
    ],
    ['scope with a slash', legacyRequest({ tasks: [{ scope: 'a/b', task_content: 'x' }] }), /tasks\.0\.scope/],
    // Names that would make a branch git refuses (fleet/{request_id}/{scope}, base_branch).
    ['request_id ".."', legacyRequest({ request_id: '..' }), /request_id.*"\."/],
    ['request_id ending in .lock', legacyRequest({ request_id: 'a.lock' }), /request_id.*\.lock/],
    ['request_id starting with "."', legacyRequest({ request_id: '.hidden' }), /request_id.*start/],
    ['request_id ending with "."', legacyRequest({ request_id: 'a.' }), /request_id.*end/],
    ['scope ".."', legacyRequest({ tasks: [{ scope: '..', task_content: 'x' }] }), /tasks\.0\.scope/],
    ['scope ending in .lock', legacyRequest({ tasks: [{ scope: 'web.lock', task_content: 'x' }] }), /tasks\.0\.scope.*\.lock/],
    ['base_branch with ".."', legacyRequest({ mode: 'pr', base_branch: 'main..x' }), /base_branch.*"\.\."/],
    ['base_branch starting with "-"', legacyRequest({ mode: 'pr', base_branch: '-main' }), /base_branch.*"-"/],
    ['base_branch with "//"', legacyRequest({ mode: 'pr', base_branch: 'a//b' }), /base_branch/],
    ['base_branch ending with "/"', legacyRequest({ mode: 'pr', base_branch: 'a/' }), /base_branch/],
    ['base_branch with a .lock part', legacyRequest({ mode: 'pr', base_branch: 'release.lock/x' }), /base_branch.*\.lock/],
    ['base_branch part starting with "."', legacyRequest({ mode: 'pr', base_branch: 'a/.b' }), /base_branch/],
    // A title becomes a commit subject: a newline would forge trailers, NUL breaks the container env.
    ['task_title with a newline', legacyRequest({ task_title: 'fix\n\nSigned-off-by: ceo' }), /task_title.*one line/],
    ['task_title with NUL', legacyRequest({ task_title: 'a\u0000b' }), /task_title/],
    ['task_title with an escape', legacyRequest({ task_title: 'a\u001b[2Jb' }), /task_title/],
    ['task_title empty', legacyRequest({ task_title: '' }), /task_title.*empty/],
    ['task_title blank', legacyRequest({ task_title: '   ' }), /task_title.*blank/],
    [
      'a scoped task_title with a newline',
      legacyRequest({ tasks: [{ scope: 'a', task_content: 'x', task_title: 'a\nb' }] }),
      /tasks\.0\.task_title/,
    ],
    // model reaches `--model "$MODEL"`: never an option.
    ['model starting with "-"', legacyRequest({ model: '--dangerously-skip-permissions' }), /model.*letter or digit/],
    ['model "--x"', legacyRequest({ model: '--x' }), /model/],
    ['model with a space', legacyRequest({ model: 'gpt 4' }), /model/],
    ['model with a shell character', legacyRequest({ model: 'm;id' }), /model/],
    ['owner starting with "-"', legacyRequest({ repo: '-acme/widgets' }), /repo.*owner/],
    // Issue 12: names that could only start a container that fails (an option to git, a name GitHub refuses).
    ['repo "-rf/x"', legacyRequest({ repo: '-rf/x' }), /repo.*owner may not start/],
    ['owner of 40 characters', legacyRequest({ repo: `${'a'.repeat(40)}/x` }), /repo/],
    ['owner with a dot', legacyRequest({ repo: 'ac.me/widgets' }), /repo/],
    ['owner with an underscore', legacyRequest({ repo: 'ac_me/widgets' }), /repo/],
    ['repo name "."', legacyRequest({ repo: 'acme/.' }), /repo.*"\."/],
    ['repo name with a space', legacyRequest({ repo: 'acme/wid gets' }), /repo/],
    ['repo with a second slash', legacyRequest({ repo: 'acme/widgets/x' }), /repo/],
    ['base_branch "-f"', legacyRequest({ mode: 'pr', base_branch: '-f' }), /base_branch.*start with "-"/],
    ['base_branch with "@{"', legacyRequest({ mode: 'pr', base_branch: 'main@{1}' }), /base_branch.*"@\{"/],
    ['base_branch "HEAD"', legacyRequest({ mode: 'pr', base_branch: 'HEAD' }), /base_branch.*"HEAD"/],
    ['base_branch ending in .lock', legacyRequest({ mode: 'pr', base_branch: 'main.lock' }), /base_branch.*\.lock/],
    ['base_branch ending with "."', legacyRequest({ mode: 'pr', base_branch: 'main.' }), /base_branch.*end with "\."/],
    ['base_branch with a space', legacyRequest({ mode: 'pr', base_branch: 'my branch' }), /base_branch.*spaces/],
    ['base_branch with a tab', legacyRequest({ mode: 'pr', base_branch: 'a\tb' }), /base_branch.*control/],
    ['base_branch with DEL', legacyRequest({ mode: 'pr', base_branch: 'a\u007fb' }), /base_branch.*control/],
    ['base_branch with "~"', legacyRequest({ mode: 'pr', base_branch: 'main~1' }), /base_branch.*"~"/],
    ['base_branch with "^"', legacyRequest({ mode: 'pr', base_branch: 'main^' }), /base_branch.*"\^"/],
    ['base_branch with ":"', legacyRequest({ mode: 'pr', base_branch: 'a:b' }), /base_branch.*":"/],
    ['base_branch with "?"', legacyRequest({ mode: 'pr', base_branch: 'a?' }), /base_branch.*"\?"/],
    ['base_branch with "*"', legacyRequest({ mode: 'pr', base_branch: 'a*' }), /base_branch.*"\*"/],
    ['base_branch with "["', legacyRequest({ mode: 'pr', base_branch: 'a[b' }), /base_branch.*"\["/],
    ['base_branch with a backslash', legacyRequest({ mode: 'pr', base_branch: 'a\\b' }), /base_branch.*"\\"/],
    ['base_branch empty', legacyRequest({ mode: 'pr', base_branch: '' }), /base_branch.*empty/],
    [
      'base_branch with a character git takes but fleet does not',
      legacyRequest({ mode: 'pr', base_branch: 'feat+x' }),
      /base_branch.*\[A-Za-z0-9/,
    ],
    ['owner ending with "-"', legacyRequest({ repo: 'acme-/widgets' }), /repo.*owner/],
    ['owner with "--"', legacyRequest({ repo: 'ac--me/widgets' }), /repo.*owner/],
    // What one message may make fleet store (Redis runs with noeviction: full means stopped).
    ['agents_content over 256 KiB', legacyRequest({ agents_content: 'a'.repeat(256 * 1024 + 1) }), /agents_content.*256 KiB/],
    [
      'a scoped agents_content over 256 KiB',
      legacyRequest({ tasks: [{ scope: 'a', task_content: 'x', agents_content: 'a'.repeat(256 * 1024 + 1) }] }),
      /tasks\.0\.agents_content/,
    ],
    [
      '21 tasks',
      legacyRequest({ tasks: Array.from({ length: 21 }, (_, i) => ({ scope: `s${i}`, task_content: 'x' })) }),
      /tasks.*at most 20/,
    ],
    [
      'texts over 4 MiB together',
      legacyRequest({ tasks: Array.from({ length: 5 }, (_, i) => ({ scope: `s${i}`, task_content: 'x'.repeat(900 * 1024) })) }),
      /tasks.*4 MiB/,
    ],
    ['follow_up without pr mode', legacyRequest({ follow_up: { pull_request: 4 } }), /follow_up.*"mode": "pr"/],
    [
      'follow_up with tasks',
      legacyRequest({ mode: 'pr', follow_up: { pull_request: 4 }, tasks: [{ scope: 'a', task_content: 'x' }] }),
      /follow_up.*tasks/,
    ],
    ['follow_up not a number', legacyRequest({ mode: 'pr', follow_up: { pull_request: '4' } }), /follow_up\.pull_request/],
    ['follow_up with another key', legacyRequest({ mode: 'pr', follow_up: { pull_request: 4, branch: 'main' } }), /follow_up/],
    ['deeply nested value', legacyRequest({ model: JSON.parse('['.repeat(5000) + ']'.repeat(5000)) }), /model/],
  ];

  it('accepts the names and values git and the agents take', () => {
    const ok = validateSpawnRequest(
      legacyRequest({
        request_id: 'req-1.2_3',
        repo: 'a-b/.github',
        model: 'openai/gpt-4.1:latest',
        mode: 'pr',
        base_branch: 'release/v1.2',
        task_title: 'Fix: the «parser»',
      }),
    );
    expect(ok.model).toBe('openai/gpt-4.1:latest');
    expect(() => validateSpawnRequest(legacyRequest({ agents_content: 'a'.repeat(256 * 1024) }))).not.toThrow();
  });

  // A 3 MB message of unknown keys once made a 3 MB reason, kept in a list, a log line and a result.
  it('keeps the reason short whatever the message holds', () => {
    const junk = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`key_${i}_${'x'.repeat(40)}`, 1]));
    let message = '';
    try {
      validateSpawnRequest(legacyRequest(junk));
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/unknown fields "key_0_x+", .* and 49995 more/);
    expect(message.length).toBeLessThanOrEqual(1000);
  });

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

// The rules are git's: the same names, judged by `git check-ref-format --branch` itself, must agree.
describe('branchNameProblem', () => {
  it.each(BRANCH_NAME_SAMPLES)('agrees with git on %j', (name) => {
    const git = spawnSync('git', ['check-ref-format', '--branch', name], { encoding: 'utf8' });
    expect(git.error).toBeUndefined();
    expect(branchNameProblem(name) === null).toBe(git.status === 0);
  });
});

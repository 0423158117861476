import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningFleet } from '../../src/fleet.ts';
import { describeDocker, testImage } from '../support/docker.ts';
import { completedLine, eventLine, startTestFleet, testEnv, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { runFleet } from './support.ts';

const ESC = '\u001b';
/** Any C0 but newline and tab, DEL, or C1: nothing of it may reach the operator's terminal. */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

/**
 * A worker that tries to drive the operator's terminal through `fleet spawn --wait`: a window title, a screen
 * clear, an 8-bit CSI and a carriage return in its events, its failure message and its output (logs tail).
 */
const HOSTILE_TASK = [
  eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: `${ESC}]0;pwned-title\u0007started fine` }),
  eventLine({ event_type: 'progress', stage: `${ESC}[2Jedit`, message: `half\rway \u009b31mred\u009b0m`, progress_pct: 50 }),
  `printf 'log \\033]52;c;ZXZpbA==\\007line \\033[31mred\\033[0m\\n'`,
  eventLine({ event_type: 'failed', error_type: 'task_failed', error_message: `broke${ESC}[1A${ESC}[2K here\u0007`, logs_tail: null }),
  'exit 3',
].join('\n');

const HOSTILE_TOKEN = 'ghp_0123456789abcdefghij0123456789abcdefgh';

describeDocker('fleet spawn --wait through a real worker', () => {
  let redis: TestRedis;
  let fleet: RunningFleet;
  let env: Record<string, string>;
  let dir: string;

  beforeAll(async () => {
    redis = await startRedis();
    env = testEnv(redis.url, testImage());
    fleet = await startTestFleet(env, ['bridge', 'spawn']);
    dir = mkdtempSync(join(tmpdir(), 'fleet-cli-wait-'));
  });
  afterAll(async () => {
    await fleet?.stop();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[], extraEnv: Record<string, string> = {}, options: { viaScript?: boolean } = {}) =>
    runFleet(args, { HOME: '/tmp', REDIS_URL: redis.url, FLEET_PREFIX: env.FLEET_PREFIX!, ...extraEnv }, options);

  const writeTask = (name: string, lines: string[]) => {
    const file = join(dir, name);
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  };

  it('prints the success result and exits 0; on a terminal it shows the events while waiting', async () => {
    const task = writeTask('ok.md', [
      eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'cli wait' }),
      eventLine({ event_type: 'progress', stage: 'edit', message: 'half way', progress_pct: 50 }),
      completedLine('all done', 'cafe1234'),
    ]);
    // `script` gives the command a terminal, as an operator's shell would.
    const tty = await run(
      ['spawn', '--repo', 'acme/widgets', '--task-file', task, '--id', 'cli-tty-1', '--wait'],
      { GITHUB_TOKEN: 'ghp_0123456789abcdefghij0123456789abcdefgh' },
      { viaScript: true },
    );
    expect(tty.code).toBe(0);
    expect(tty.stdout).toContain('cli-tty-1 published; waiting for its result');
    expect(tty.stdout).toMatch(/\d\d:\d\d:\d\d started on acme\/widgets: cli wait/);
    expect(tty.stdout).toMatch(/\d\d:\d\d:\d\d {2}50% \[edit\] half way/);
    expect(tty.stdout).toMatch(/completed cafe1234 on main/);
    expect(tty.stdout).toContain('"request_id":"cli-tty-1","success":true');
  });

  it('prints only the result JSON when not on a terminal, and exits 1 for a failed request', async () => {
    const task = writeTask('fail.md', ['echo going to fail', 'exit 4']);
    // The token from FLEET_GITHUB_TOKEN this time (GITHUB_TOKEN unset).
    const piped = await run(['spawn', '--repo', 'acme/widgets', '--task-file', task, '--id', 'cli-pipe-1', '--wait'], {
      FLEET_GITHUB_TOKEN: 'ghp_0123456789abcdefghij0123456789abcdefgh',
    });
    expect(piped.code).toBe(1);
    const result = JSON.parse(piped.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ request_id: 'cli-pipe-1', success: false, error_type: 'crash', exit_code: 4 });
    expect(piped.stderr).toBe('');
  });

  it('without any token the request carries none, and a host without FLEET_GITHUB_TOKEN says so', async () => {
    const task = writeTask('none.md', ['echo never runs']);
    const run1 = await run(['spawn', '--repo', 'acme/widgets', '--task-file', task, '--id', 'cli-notoken-1', '--wait']);
    expect(run1.code).toBe(1);
    expect(JSON.parse(run1.stdout)).toMatchObject({
      error_type: 'spawn_error',
      error_message: expect.stringContaining('FLEET_GITHUB_TOKEN'),
    });
  });

  it('on a terminal: the events and the result JSON arrive with their text, stripped of controls', async () => {
    const task = writeTask('hostile.md', [HOSTILE_TASK]);
    const id = uid('cli-hostile');
    const tty = await run(
      ['spawn', '--repo', 'acme/widgets', '--task-file', task, '--id', id, '--wait'],
      { GITHUB_TOKEN: HOSTILE_TOKEN },
      { viaScript: true },
    );
    expect(tty.code).toBe(1);
    // The terminal ends its lines with \r\n; any other control character came through from the worker.
    const screen = tty.stdout.replaceAll('\r\n', '\n');
    expect(screen).not.toMatch(CONTROL);
    expect(screen).toMatch(/started on acme\/widgets: started fine/);
    expect(screen).toMatch(/ 50% \[edit\] halfway red/);
    expect(screen).toMatch(/failed: task_failed: broke here/);

    const result = JSON.parse(screen.split('\n').find((line) => line.startsWith('{'))!) as Record<string, string>;
    expect(result).toMatchObject({ request_id: id, success: false, error_type: 'task_failed', error_message: 'broke here' });
    expect(result.logs_tail).toContain('log line red');
    expect(result.logs_tail).not.toMatch(CONTROL);

    // Asked again, the stored result is printed (stdout, not a terminal here) the same way.
    const again = await run(['spawn', '--repo', 'acme/widgets', '--task-file', task, '--id', id], { GITHUB_TOKEN: HOSTILE_TOKEN });
    expect(again.code).toBe(1);
    expect(again.stdout).not.toMatch(CONTROL);
    expect(JSON.parse(again.stdout)).toMatchObject({ request_id: id, error_message: 'broke here' });
  });
});

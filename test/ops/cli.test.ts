import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_VERSION } from '../../src/host-registry.ts';
import { fleetKeys } from '../../src/keys.ts';
import { freePort, startRedis, type TestRedis } from '../support/redis.ts';
import { startTestFleet, uid, type TestFleet } from '../support/fleet.ts';
import { FLEET_BIN, idleRuntime, opsEnv, runFleet } from './support.ts';

let redis: TestRedis;
let dir: string;

beforeAll(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'fleet-cli-test-'));
  writeFileSync(join(dir, 'task.md'), 'echo hello from the task\n');
});
afterAll(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleet --help', () => {
  it('lists every command and exits 0; no command at all is a usage error', async () => {
    const [help, none, unknown] = await Promise.all([runFleet(['--help']), runFleet([]), runFleet(['frobnicate'])]);
    expect(help.code).toBe(0);
    for (const command of ['start', 'spawn', 'cancel', 'status', 'drain', 'undrain', 'reap'])
      expect(help.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    expect(none.code).toBe(2);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  it('documents each command', async () => {
    const expectations: Record<string, string[]> = {
      spawn: [
        '--repo',
        '--task-file',
        '--agents-file',
        '--title',
        '--model',
        '--timeout',
        '--id',
        '--wait',
        '--wait-timeout',
        'GITHUB_TOKEN',
        'FLEET_GITHUB_TOKEN',
        'worker:result:ID',
        'worker:events:ID',
        'Exit status',
        'REDIS_URL',
      ],
      cancel: ['REQUEST_ID', 'cancelled', 'REDIS_URL'],
      status: ['--json', '--prune-stale', 'STALE', 'cap', 'REDIS_URL'],
      drain: ['HOST', 'fleet undrain', 'restarts', 'FLEET_DRAIN_TIMEOUT'],
      undrain: ['HOST'],
      reap: ['FLEET_HOST_ID', 'orphaned', 'Docker'],
      start: ['--roles', 'board', 'FLEET_BOARD_USER'],
    };
    const runs = await Promise.all(Object.keys(expectations).map((command) => runFleet([command, '--help'])));
    for (const [i, [command, words]] of Object.entries(expectations).entries()) {
      const run = runs[i]!;
      expect(run.code, command).toBe(0);
      expect(run.stdout).toMatch(new RegExp(`^Usage: fleet ${command}`));
      for (const word of words) expect(run.stdout, `${command} --help mentions ${word}`).toContain(word);
    }
  });
});

describe('failures exit non-zero', () => {
  it('says where it looked when Redis is not there', async () => {
    const port = await freePort();
    const commands = [
      ['status'],
      ['cancel', 'abc'],
      ['drain', 'h1'],
      ['undrain', 'h1'],
      ['spawn', '--repo', 'o/r', '--task-file', join(dir, 'task.md')],
    ];
    const runs = await Promise.all(commands.map((args) => runFleet(args, { REDIS_URL: `redis://127.0.0.1:${port}` })));
    runs.forEach((run, i) => {
      expect(run.code, commands[i]!.join(' ')).toBe(1);
      expect(run.stderr).toContain(`cannot reach Redis at redis://127.0.0.1:${port}`);
    });
    const embedded = await runFleet(['status'], { FLEET_REDIS_PORT: String(port) });
    expect(embedded.code).toBe(1);
    expect(embedded.stderr).toContain('REDIS_URL is unset');
  });

  it('refuses bad arguments and invalid requests with exit 2', async () => {
    const env = { REDIS_URL: redis.url };
    const task = join(dir, 'task.md');
    const cases: [string[], string][] = [
      [['spawn', '--task-file', task], '--repo OWNER/NAME is required'],
      [['spawn', '--repo', 'o/r'], '--task-file FILE is required'],
      [['spawn', '--repo', 'o/r', '--task-file', task, '--bogus'], "Unknown option '--bogus'"],
      [['spawn', '--repo', 'o/r', '--task-file', task, '--timeout', 'soon'], '--timeout: "soon"'],
      [['spawn', '--repo', 'o/r', '--task-file', task, '--wait-timeout', '5'], '--wait-timeout needs --wait'],
      [['spawn', '--repo', 'not a repo', '--task-file', task], 'field "repo"'],
      [['spawn', '--repo', 'o/r', '--task-file', join(dir, 'nope.md')], 'ENOENT'],
      [['spawn', '--repo', 'o/r', '--task-file', task, '--id', 'has:colon'], 'field "request_id"'],
      [['cancel'], 'expected exactly one request id'],
      [['drain', 'not/a/host'], 'is not a valid host id'],
    ];
    const runs = await Promise.all(cases.map(([args]) => runFleet(args, env)));
    runs.forEach((run, i) => {
      expect(run.code, cases[i]![0].join(' ')).toBe(2);
      expect(run.stderr).toContain(cases[i]![1]);
    });
  });

  it('reports a request lost when no bridge listens', async () => {
    const run = await runFleet(['spawn', '--repo', 'o/r', '--task-file', join(dir, 'task.md')], {
      REDIS_URL: redis.url,
      FLEET_PREFIX: uid(),
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('nobody is subscribed to worker:spawn');
  });
});

describe('with a running fleet', () => {
  let t: TestFleet | undefined;
  let env: Record<string, string>;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it('spawn --wait prints the result of a request that cancel stops while it waits', async () => {
    t = await startTestFleet(opsEnv(redis.url), ['bridge']);
    env = { REDIS_URL: redis.url, FLEET_PREFIX: t.config.prefix, GITHUB_TOKEN: 'ghp_thisisnotarealtokenbutlooksreal0123' };
    const events = new QueueEvents('spawn', { connection: { url: redis.url }, prefix: t.config.prefix });
    await events.waitUntilReady();
    const queued = new Promise<string>((ok) => events.on('waiting', ({ jobId }) => ok(jobId)));
    try {
      const child = spawn(
        process.execPath,
        [FLEET_BIN, 'spawn', '--repo', 'o/r', '--task-file', join(dir, 'task.md'), '--id', 'cli-wait-1', '--wait', '--title', 'T'],
        {
          env: { PATH: process.env.PATH!, ...env },
        },
      );
      let stdout = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      const exited = new Promise<number>((ok) => child.on('exit', (code) => ok(code ?? -1)));
      expect(await queued).toBe('cli-wait-1');

      const queue = new Queue('spawn', { connection: { url: redis.url }, prefix: t.config.prefix });
      const job = await queue.getJob('cli-wait-1');
      expect(job!.data.request).toMatchObject({
        repo: 'o/r',
        task_title: 'T',
        task_content: 'echo hello from the task\n',
        timeout_seconds: 600,
      });
      expect(job!.data.sealedToken).toBeTruthy();
      expect(JSON.stringify(job!.data)).not.toContain('ghp_');
      await queue.close();

      const cancel = await runFleet(['cancel', 'cli-wait-1'], env);
      expect(cancel.code).toBe(0);
      expect(cancel.stdout).toContain('cli-wait-1 was waiting; removed');

      expect(await exited).toBe(1);
      const result = JSON.parse(stdout) as Record<string, unknown>;
      expect(Object.keys(result)).toHaveLength(11);
      expect(result).toMatchObject({ request_id: 'cli-wait-1', success: false, error_type: 'cancelled' });

      // The same id again: not run twice, the stored result is printed.
      const again = await runFleet(['spawn', '--repo', 'o/r', '--task-file', join(dir, 'task.md'), '--id', 'cli-wait-1'], env);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('already has a result');
    } finally {
      await events.close();
    }
  });

  it('spawn without --wait prints the id; --wait-timeout gives up with exit 3', async () => {
    t = await startTestFleet(opsEnv(redis.url), ['bridge']);
    env = { REDIS_URL: redis.url, FLEET_PREFIX: t.config.prefix };
    const run = await runFleet(['spawn', '--repo', 'o/r', '--task-file', join(dir, 'task.md')], env);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toMatch(/^cli-[a-z0-9]+-[0-9a-f]{8}$/);
    const waited = await runFleet(['spawn', '--repo', 'o/r', '--task-file', join(dir, 'task.md'), '--wait', '--wait-timeout', '1'], env);
    expect(waited.code).toBe(3);
    expect(waited.stderr).toContain('no result for');
  });

  it('status --json shows queue counts and the registered host; a clean stop removes it', async () => {
    const prefix = uid();
    t = await startTestFleet(opsEnv(redis.url, { FLEET_PREFIX: prefix, FLEET_HOST_CONCURRENCY: '3' }), ['spawn'], {
      runtime: idleRuntime(),
    });
    env = { REDIS_URL: redis.url, FLEET_PREFIX: prefix };
    const run = await runFleet(['status', '--json'], env);
    expect(run.code).toBe(0);
    const status = JSON.parse(run.stdout);
    expect(Object.keys(status.queues).sort()).toEqual(['merge', 'review', 'spawn']);
    expect(status.queues.spawn).toMatchObject({ waiting: 0, active: 0, completed: 0, failed: 0, paused: false });
    expect(status.hosts).toHaveLength(1);
    expect(FLEET_VERSION).toMatch(/^\d+\.\d+\.\d+/); // read from package.json, not the 'unknown' fallback
    expect(status.hosts[0]).toMatchObject({
      host: `host-${prefix}`,
      cap: 3,
      running: 0,
      drained: false,
      stale: false,
      version: FLEET_VERSION,
      pid: process.pid,
    });
    expect(Date.parse(status.hosts[0].last_seen)).toBeGreaterThan(Date.now() - 60_000);

    const text = await runFleet(['status'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`host-${prefix}\\s+0\\s+3\\s+\\d+s ago\\s+ok`));

    await t.stop();
    t = undefined;
    const after = JSON.parse((await runFleet(['status', '--json'], env)).stdout);
    expect(after.hosts).toEqual([]);
  });

  it('status marks a host that stopped heartbeating as stale, and --prune-stale forgets it', async () => {
    const prefix = uid();
    const keys = fleetKeys(prefix);
    const client = new Redis(redis.url);
    try {
      const old = new Date(Date.now() - 10 * 60_000).toISOString();
      await client.hset(
        keys.hosts,
        'gone-host',
        JSON.stringify({
          host: 'gone-host',
          cap: 2,
          running: 1,
          drained: false,
          version: '0.1.0',
          pid: 1,
          started_at: old,
          last_seen: old,
          heartbeat_ms: 5000,
        }),
      );
      env = { REDIS_URL: redis.url, FLEET_PREFIX: prefix };
      const text = await runFleet(['status'], env);
      expect(text.stdout).toMatch(/gone-host\s+1\s+2\s+10m ago\s+STALE/);
      const pruned = await runFleet(['status', '--json', '--prune-stale'], env);
      expect(pruned.stderr).toContain('forgot stale host: gone-host');
      expect(JSON.parse(pruned.stdout).hosts).toEqual([]);
    } finally {
      await client.quit();
    }
  });

  it('drain stops a host taking jobs, across a restart, until undrain', async () => {
    const prefix = uid();
    const host = `host-${prefix}`;
    const keys = fleetKeys(prefix);
    const start = () => startTestFleet(opsEnv(redis.url, { FLEET_PREFIX: prefix }), ['spawn'], { runtime: idleRuntime() });
    t = await start();
    env = { REDIS_URL: redis.url, FLEET_PREFIX: prefix };

    const drain = await runFleet(['drain', host], env);
    expect(drain.code).toBe(0);
    expect(drain.stdout).toContain(`${host} drained`);
    await expect.poll(() => t!.spawn!.drained()).toBe(true);
    await expect.poll(() => t!.spawn!.worker.isPaused()).toBe(true);

    await t.stop();
    t = await start();
    expect(t.spawn!.drained()).toBe(true);
    expect(t.spawn!.worker.isRunning()).toBe(false);
    const status = JSON.parse((await runFleet(['status', '--json'], env)).stdout);
    expect(status.drained).toEqual([host]);

    const undrain = await runFleet(['undrain', host], env);
    expect(undrain.code).toBe(0);
    await expect.poll(() => t!.spawn!.drained()).toBe(false);
    await expect.poll(() => t!.spawn!.worker.isRunning()).toBe(true);
    const client = new Redis(redis.url);
    expect(await client.hexists(keys.drained, host)).toBe(0);
    await client.quit();

    // A host not running now starts drained.
    const absent = await runFleet(['drain', 'not-running-host'], env);
    expect(absent.stdout).toContain('not-running-host is not running now; it will start drained');
  });

  it('publishes nothing but the control message for drain', async () => {
    const prefix = uid();
    const keys = fleetKeys(prefix);
    const sub = new Redis(redis.url);
    try {
      // Every channel: this file's Redis has no fleet running now, so whatever arrives is the CLI's.
      const messages: [string, unknown][] = [];
      sub.on('pmessage', (_pattern, channel, message: string) => messages.push([channel, JSON.parse(message)]));
      await sub.psubscribe('*');
      const drain = await runFleet(['drain', 'h9'], { REDIS_URL: redis.url, FLEET_PREFIX: prefix });
      expect(drain.code).toBe(0);
      // Redis answers in order: once this PING is answered, everything the CLI published has arrived.
      await sub.ping();
      expect(messages).toEqual([[keys.control, { type: 'drain', host: 'h9' }]]);
    } finally {
      sub.disconnect();
    }
  });
});

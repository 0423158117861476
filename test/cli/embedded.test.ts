import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/redis.ts';

const BIN = resolve(import.meta.dirname, '../../bin/fleet.js');

function startCli(env: Record<string, string>) {
  const child = spawn(process.execPath, [BIN, 'start', '--roles', 'bridge'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const started = new Promise<void>((ok, fail) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(l);
      if (l.includes('"fleet started"')) ok();
    });
    createInterface({ input: child.stderr }).on('line', (l) => lines.push(l));
    void exited.then(() => fail(new Error(lines.join('\n'))));
  });
  started.catch(() => {});
  return { child, lines, exited, started };
}

describe('fleet start, embedded default (no REDIS_URL)', () => {
  it('runs its own redis-server with AOF under the data dir and stops it on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fleet-embedded-'));
    const port = await freePort();
    const cli = startCli({
      PATH: process.env.PATH!,
      FLEET_DATA_DIR: dataDir,
      FLEET_REDIS_PORT: String(port),
      FLEET_BOARD_PORT: '0',
      HOME: tmpdir(),
    });
    await cli.started;
    const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    redis.on('error', () => {});
    await redis.connect();
    expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await redis.config('GET', 'dir')).toEqual(['dir', join(dataDir, 'redis')]);
    expect(await redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    // The bridge of the embedded fleet is listening.
    expect(await redis.publish('worker:spawn', 'not json')).toBe(1);
    redis.disconnect();

    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    const after = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    after.on('error', () => {});
    await expect(after.connect()).rejects.toThrow();
  });

  it('says how to install redis-server or set REDIS_URL when there is none', async () => {
    const cli = startCli({
      PATH: '/nonexistent',
      FLEET_DATA_DIR: mkdtempSync(join(tmpdir(), 'fleet-embedded-')),
      FLEET_REDIS_PORT: String(await freePort()),
      FLEET_BOARD_PORT: '0',
    });
    expect(await cli.exited).toBe(1);
    expect(cli.lines.join('\n')).toMatch(/apt-get install redis-server.*REDIS_URL/);
  });

  it('stops start-up on a bad setting, naming it', async () => {
    const cli = startCli({ PATH: process.env.PATH!, FLEET_HOST_CONCURRENCY: 'many', FLEET_BOARD_PORT: '0' });
    expect(await cli.exited).toBe(2);
    expect(cli.lines.join('\n')).toContain('FLEET_HOST_CONCURRENCY');
  });
});

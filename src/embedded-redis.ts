import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { PUBSUB_BUFFER_SETTING } from './bridge-redis-limits.ts';

/**
 * Settings fleet gives the redis-server it runs: AOF so accepted jobs survive a restart,
 * noeviction so a full Redis refuses writes instead of dropping queue keys, and a pubsub output
 * buffer that holds the promised burst (README "Bursts") instead of closing the bridge's connection.
 */
export const FLEET_REDIS_ARGS = [
  '--appendonly',
  'yes',
  '--appendfsync',
  'everysec',
  '--save',
  '',
  '--maxmemory-policy',
  'noeviction',
  '--client-output-buffer-limit',
  PUBSUB_BUFFER_SETTING,
] as const;

export interface EmbeddedRedis {
  url: string;
  /** False when another fleet process on this data dir already ran it: we use it but leave it running. */
  owned: boolean;
  stop(): Promise<void>;
}

async function probe(port: number): Promise<{ dir: string } | null> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    const [, dir] = (await client.config('GET', 'dir')) as [string, string];
    return { dir };
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}

/**
 * The embedded default: with no REDIS_URL, fleet runs its own redis-server with AOF under the
 * data dir, loopback only. A second fleet process on the same data dir shares that server.
 */
export async function startEmbeddedRedis(options: { dataDir: string; port: number; logger: Logger }): Promise<EmbeddedRedis> {
  const dir = join(options.dataDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const url = `redis://127.0.0.1:${options.port}`;

  const existing = await probe(options.port);
  if (existing) {
    if (existing.dir === dir) {
      options.logger.info({ url, dir }, 'using the embedded redis-server another fleet process started on this data dir');
      return { url, owned: false, stop: async () => {} };
    }
    throw new Error(
      `port ${options.port} is taken by a Redis that is not this data dir's (${existing.dir}): set FLEET_REDIS_PORT to a free port, or REDIS_URL to use that server`,
    );
  }
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error) {
    throw new Error(
      'REDIS_URL is not set and redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL=redis://host:6379',
    );
  }
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(options.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      ...FLEET_REDIS_ARGS,
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  const keep = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean).slice(-20));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  const deadline = Date.now() + 15_000;
  while (!(await probe(options.port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the embedded redis-server did not start (port ${options.port}, dir ${dir}): ${output.slice(-5).join(' | ')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  options.logger.info({ url, dir, pid: child.pid }, 'embedded redis-server started (AOF on)');
  return {
    url,
    owned: true,
    async stop() {
      if (child.exitCode !== null) return;
      // SIGTERM makes redis-server flush the AOF before it exits.
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
  };
}

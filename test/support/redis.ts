import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** A redis-server child owned by one test file: never a server someone else started. */
export interface TestRedis {
  port: number;
  url: string;
  dir: string;
  /** Stops the server (SIGTERM, AOF kept) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops the server; `restart()` brings it back. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
      return;
    } catch (error) {
      lastError = error;
      await new Promise((r) => setTimeout(r, 25));
    } finally {
      client.disconnect();
    }
  }
  throw new Error(`redis-server on port ${port} did not answer PING: ${String(lastError)}`);
}

/** Every test redis-server's settings: loopback only, AOF on and no RDB snapshots, no eviction (as fleet requires). */
export const TEST_SERVER_ARGS = [
  '--bind',
  '127.0.0.1',
  '--appendonly',
  'yes',
  '--save',
  '',
  '--maxmemory-policy',
  'noeviction',
  '--loglevel',
  'warning',
] as const;

/** `args` are added to the server's command line (e.g. fleet's own settings, FLEET_REDIS_ARGS). */
export async function startRedis(options: { args?: readonly string[] } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-test-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;

  const launch = async () => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--dir', dir, '--daemonize', 'no', ...TEST_SERVER_ARGS, ...(options.args ?? [])],
      { stdio: 'ignore' },
    );
    await waitForPing(port, child);
  };
  const kill = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGTERM');
    });
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill,
    async restart() {
      await kill();
      await launch();
    },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

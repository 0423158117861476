import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { connectRedis, type RedisTarget } from '../../src/redis-connection.ts';
import { loadConfig, type FleetConfig, type Role } from '../../src/config.ts';
import type { ContainerRuntime } from '../../src/container-runtime.ts';
import { startFleet, type RunningFleet } from '../../src/fleet.ts';
import { createLogger } from '../../src/logger.ts';
import { channels, type FleetEvent, type SpawnResult } from '../../src/protocol.ts';

export const TEST_SECRET_KEY = 'test-secret-key-of-at-least-32-characters!';
/** Shaped like a real token so the redactor's shape rules would catch it too. */
export const TEST_TOKEN = `ghp_${'T0kenForTests'.repeat(3)}`;
const ROOT = resolve(import.meta.dirname, '../..');

export const uid = (label = 't') => `${label}-${randomBytes(4).toString('hex')}`;

/**
 * Settings for a fleet under test: its own prefix, host id and data dir (startTestFleet's stop removes it),
 * the given worker image (none: the fleet's default), no network.
 */
export function testEnv(redisUrl: string, image?: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    FLEET_PREFIX: uid('fleet'),
    FLEET_HOST_ID: uid('host'),
    FLEET_DATA_DIR: mkdtempSync(join(tmpdir(), 'fleet-data-')),
    ...(image === undefined ? {} : { FLEET_WORKER_IMAGE: image }),
    FLEET_RUNTIME: 'runc',
    FLEET_DOCKER_NETWORK: 'none',
    // The test image has no egress forwarder; test/egress/ runs the proxy mode with the real image.
    FLEET_EGRESS: 'open',
    FLEET_WORKER_MEMORY: '256m',
    FLEET_HOST_CONCURRENCY: '2',
    // Off unless a test turns it on (test/spawn/warm-pool.test.ts): other tests count containers and jobs.
    FLEET_WARM_POOL: '0',
    FLEET_BOARD_PORT: '0',
    FLEET_SECRET_KEY: TEST_SECRET_KEY,
    FLEET_LOG_LEVEL: process.env.FLEET_TEST_LOG_LEVEL ?? 'silent',
    FLEET_LOCK_DURATION: '2',
    FLEET_STALLED_INTERVAL: '1',
    FLEET_DRAIN_TIMEOUT: '30',
    // Test fleets clone from loopback servers or not at all; test/spawn/git-mirror.test.ts turns it on.
    FLEET_GIT_CACHE: 'off',
    ...overrides,
  };
}

export type TestFleet = RunningFleet & { config: FleetConfig };

/** A fleet in this process; its stop() also removes env.FLEET_DATA_DIR. */
export async function startTestFleet(
  env: Record<string, string>,
  roles: Role[],
  options: { runtime?: ContainerRuntime } = {},
): Promise<TestFleet> {
  const config = loadConfig(env);
  const fleet = await startFleet({ config, roles, logger: createLogger({ level: config.logLevel }), runtime: options.runtime });
  const stopFleet = fleet.stop.bind(fleet);
  return Object.assign(fleet, {
    config,
    async stop() {
      await stopFleet();
      if (env.FLEET_DATA_DIR) rmSync(env.FLEET_DATA_DIR, { recursive: true, force: true });
    },
  });
}

/** A fleet in a child process, for kill -9 and multi-host tests. `ready` resolves on its "fleet started" log line. */
export interface FleetProcess {
  child: ChildProcess;
  ready: Promise<void>;
  exited: Promise<number | null>;
  lines: string[];
}

export function spawnFleetProcess(env: Record<string, string>, roles: Role[]): FleetProcess {
  const child = spawn(process.execPath, [join(ROOT, 'bin/fleet.js'), 'start', '--roles', roles.join(',')], {
    env: { ...process.env, ...env, FLEET_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      if (line.includes('"fleet started"')) resolve();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => lines.push(line));
    void exited.then((code) => reject(new Error(`fleet process exited (${code}) before it was ready:\n${lines.slice(-10).join('\n')}`)));
  });
  ready.catch(() => {});
  return { child, ready, exited, lines };
}

/** A legacy request: all eight keys, as the orchestrator sends them. */
export function legacyRequest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    request_id: uid('req'),
    repo: 'acme/widgets',
    github_token: TEST_TOKEN,
    task_content: 'echo nothing to do',
    task_title: 'Test task',
    model: 'claude-sonnet-4-5-20250929',
    agents_content: null,
    timeout_seconds: 60,
    ...overrides,
  };
}

/** A worker script line that prints a protocol event. */
export function eventLine(event: Record<string, unknown>): string {
  return `echo '::fleet-event:: ${JSON.stringify(event).replace(/'/g, `'\\''`)}'`;
}

export const completedLine = (summary = 'done', sha: string | null = 'abc123') =>
  eventLine({ event_type: 'completed', commit_sha: sha, branch: 'main', files_changed: ['a.txt'], summary });

/**
 * Subscribes to result channels before anything is published (pub/sub keeps nothing for late
 * subscribers), then hands out each result as it arrives.
 */
export class ResultListener {
  private readonly client: Redis;
  private readonly results = new Map<string, SpawnResult[]>();
  private readonly waiters = new Map<string, (r: SpawnResult) => void>();
  readonly raw = new Map<string, string[]>();

  private constructor(client: Redis) {
    this.client = client;
    this.client.on('pmessage', (_pattern, channel: string, message: string) => {
      const id = channel.slice('worker:result:'.length);
      const parsed = JSON.parse(message) as SpawnResult;
      this.raw.set(id, [...(this.raw.get(id) ?? []), message]);
      this.results.set(id, [...(this.results.get(id) ?? []), parsed]);
      this.waiters.get(id)?.(parsed);
    });
  }

  /**
   * A URL, or a topology (Sentinel, Cluster): then the connection follows it, and a subscriber reconnects to a
   * promoted primary. Pub/sub may miss a result published while it reconnects: such tests also read
   * `fleet:result:{id}`, which decides.
   */
  static async start(redis: string | RedisTarget): Promise<ResultListener> {
    const client =
      typeof redis === 'string' ? new Redis(redis, { maxRetriesPerRequest: null }) : connectRedis(redis, 'subscriber', 'test:results');
    if (typeof redis !== 'string') client.on('error', () => {});
    const listener = new ResultListener(client);
    await listener.client.psubscribe(channels.result('*'));
    return listener;
  }

  /** Every result published for the id so far (a request must get exactly one). */
  all(id: string): SpawnResult[] {
    return this.results.get(id) ?? [];
  }

  next(id: string, timeoutMs = 60_000): Promise<SpawnResult> {
    const existing = this.results.get(id)?.[0];
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no result for ${id} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.set(id, (r) => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(r);
      });
    });
  }

  async close() {
    this.client.disconnect();
  }
}

/**
 * Every event on `worker:events:all`, and the results, on one connection. Redis delivers one
 * connection's messages in publish order and fleet publishes a request's terminal event before its
 * result, so once `untilResult(id)` resolves every event of the request has arrived.
 */
export class EventRecorder {
  private readonly events: FleetEvent[] = [];
  private readonly finished = new Set<string>();
  private readonly waiters = new Map<string, (() => void)[]>();

  private constructor(private readonly client: Redis) {
    client.on('message', (_c, m: string) => this.events.push(JSON.parse(m) as FleetEvent));
    client.on('pmessage', (_p, channel: string) => {
      const id = channel.slice(channels.result('').length);
      this.finished.add(id);
      for (const wake of this.waiters.get(id) ?? []) wake();
      this.waiters.delete(id);
    });
  }

  static async start(url: string): Promise<EventRecorder> {
    const recorder = new EventRecorder(new Redis(url));
    await recorder.client.subscribe(channels.allEvents);
    await recorder.client.psubscribe(channels.result('*'));
    return recorder;
  }

  /** The request's events received so far. */
  of(id: string): FleetEvent[] {
    return this.events.filter((e) => e.request_id === id);
  }

  /** The request's events, once its result has arrived on this connection. */
  async untilResult(id: string): Promise<FleetEvent[]> {
    if (!this.finished.has(id)) await new Promise<void>((resolve) => this.waiters.set(id, [...(this.waiters.get(id) ?? []), resolve]));
    return this.of(id);
  }

  close(): void {
    this.client.disconnect();
  }
}

export async function publishJson(redis: Redis, channel: string, body: unknown): Promise<void> {
  await redis.publish(channel, typeof body === 'string' ? body : JSON.stringify(body));
}

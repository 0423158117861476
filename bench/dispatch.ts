import { Queue, Worker } from 'bullmq';
import { loadConfig } from '../src/config.ts';
import type { ContainerRuntime, ContainerSpec, WorkerContainer } from '../src/container-runtime.ts';
import { startFleet } from '../src/fleet.ts';
import { createLogger } from '../src/logger.ts';
import { channels } from '../src/protocol.ts';
import { connectRedis, redisTargetFromEnv } from '../src/redis-connection.ts';
import { idleRuntime } from '../test/ops/support.ts';
import { startRedis } from '../test/support/redis.ts';

/**
 * Dispatch latency: from PUBLISH on worker:spawn to the container-create call, through the real
 * bridge, queue and spawn processor on a real Redis. Docker itself is out of the measurement:
 * the runtime records the create call and hands back a container that exits at once.
 * Beside it, in the same run and on the same Redis, raw BullMQ: Queue.add to processor start.
 */
const now = () => Number(process.hrtime.bigint()) / 1e6;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface LatencyRow {
  path: string;
  scenario: string;
  n: number;
  p50_ms: string;
  p99_ms: string;
  max_ms: string;
  lost: number;
  duplicated: number;
}

function row(path: string, scenario: string, expected: string[], created: Map<string, number[]>, sent: Map<string, number>): LatencyRow {
  const latencies: number[] = [];
  let lost = 0;
  let duplicated = 0;
  for (const id of expected) {
    const times = created.get(id) ?? [];
    if (times.length === 0) lost++;
    if (times.length > 1) duplicated += times.length - 1;
    if (times[0] !== undefined) latencies.push(times[0] - sent.get(id)!);
  }
  latencies.sort((a, b) => a - b);
  return {
    path,
    scenario,
    n: expected.length,
    p50_ms: percentile(latencies, 50).toFixed(2),
    p99_ms: percentile(latencies, 99).toFixed(2),
    max_ms: latencies.at(-1)!.toFixed(2),
    lost,
    duplicated,
  };
}

/** A runtime that only records when fleet asked for a container; everything else answers as an idle host. */
function recordingRuntime(created: Map<string, number[]>, onCreate: (id: string) => void): ContainerRuntime {
  return {
    ...idleRuntime(),
    async create(spec: ContainerSpec): Promise<WorkerContainer> {
      const id = spec.env.FLEET_REQUEST_ID!;
      created.set(id, [...(created.get(id) ?? []), now()]);
      onCreate(id);
      return {
        id: `bench-${id}`,
        start: async () => {},
        async *lines() {
          yield {
            text: '::fleet-event:: {"event_type":"completed","commit_sha":null,"branch":"main","files_changed":[],"summary":"bench"}',
            droppedBytes: 0,
          };
        },
        wait: async () => 0,
        exitState: async () => ({ oomKilled: false }),
        kill: async () => {},
        remove: async () => {},
      };
    },
  };
}

function waiter() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** `redisEnv`: REDIS_URL, or the Sentinel or Cluster settings (bench/redis-topologies.ts). */
export async function fleetPath(
  redisEnv: Record<string, string>,
  scenario: 'idle' | 'burst',
  count: number,
  cap: number,
): Promise<LatencyRow> {
  const created = new Map<string, number[]>();
  const sent = new Map<string, number>();
  let pending = waiter();
  let remaining = count;
  const runtime = recordingRuntime(created, () => {
    pending.resolve();
    if (--remaining === 0) all.resolve();
  });
  const all = waiter();
  const config = loadConfig({
    ...redisEnv,
    // A hash tag, so the same prefix also fits a Cluster.
    FLEET_PREFIX: `{bench-${scenario}-${Date.now()}}`,
    FLEET_HOST_CONCURRENCY: String(cap),
    FLEET_BOARD_PORT: '0',
    FLEET_SECRET_KEY: 'bench-secret-key-with-at-least-32-characters',
    FLEET_LOG_LEVEL: 'silent',
    FLEET_WORKER_IMAGE: 'bench',
    // The git mirror's fetch is clone work, not dispatch (bench/git-mirror.ts measures it).
    FLEET_GIT_CACHE: 'off',
    FLEET_WARM_POOL: '0',
  });
  const fleet = await startFleet({ config, roles: ['bridge', 'spawn'], logger: createLogger({ level: 'silent' }), runtime });
  // Where the time goes: publish → the job is active on the spawn worker, then active → create.
  const activeAt = new Map<string, number>();
  fleet.spawn!.worker.on('active', (job) => activeAt.set(job.id!, now()));
  const target = redisTargetFromEnv(redisEnv)!;
  const publisher = connectRedis(target, 'command', 'bench:publisher');
  // "Idle" means the previous request is entirely done before the next one: its result is out and
  // its job is complete (the worker is free), as the raw BullMQ path below waits for 'completed'.
  // Results go out before teardown (issue 11 item 2), so the result alone does not say the cap-1
  // worker is free: a request sent then would wait on the cap, which is not dispatch.
  const listener = connectRedis(target, 'subscriber', 'bench:listener');
  let resultOut = waiter();
  let jobDone = waiter();
  let finished = { promise: Promise.resolve() };
  const nextFinished = () => {
    resultOut = waiter();
    jobDone = waiter();
    finished = { promise: Promise.all([resultOut.promise, jobDone.promise]).then(() => {}) };
  };
  listener.on('pmessage', () => resultOut.resolve());
  fleet.spawn!.worker.on('completed', () => jobDone.resolve());
  await listener.psubscribe(channels.result('*'));
  const ids = Array.from({ length: count }, (_, i) => `bench-${scenario}-${i}-${Date.now()}`);
  const message = (id: string) =>
    JSON.stringify({
      request_id: id,
      repo: 'bench/repo',
      github_token: 'ghp_benchbenchbenchbenchbenchbenchbench',
      task_content: 'bench',
      task_title: 'bench',
      model: 'm',
      agents_content: null,
      timeout_seconds: 60,
    });
  // Warm-up: connections, scripts and JIT, outside the measurement.
  for (let i = 0; i < 20; i++) {
    pending = waiter();
    nextFinished();
    remaining++;
    await publisher.publish(channels.spawn, message(`warm-${scenario}-${i}-${Date.now()}`));
    await Promise.all([pending.promise, finished.promise]);
  }
  if (scenario === 'idle') {
    for (const id of ids) {
      pending = waiter();
      nextFinished();
      const body = message(id);
      sent.set(id, now());
      await publisher.publish(channels.spawn, body);
      await Promise.all([pending.promise, finished.promise]);
    }
  } else {
    const bodies = ids.map(message);
    for (const id of ids) sent.set(id, now());
    await Promise.all(bodies.map((b) => publisher.publish(channels.spawn, b)));
    await all.promise;
  }
  // Let the last jobs finish, then count the queue: every request exactly one job.
  await fleet.bridge!.idle();
  publisher.disconnect();
  listener.disconnect();
  await fleet.stop();
  if (process.env.BENCH_DISPATCH_SPLIT) {
    const split = (from: (id: string) => number | undefined, to: (id: string) => number | undefined) =>
      ids
        .map((id) => to(id)! - from(id)!)
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
    const toActive = split(
      (id) => sent.get(id),
      (id) => activeAt.get(id),
    );
    const toCreate = split(
      (id) => activeAt.get(id),
      (id) => created.get(id)?.[0],
    );
    console.log(
      `${scenario}: publish → active p50 ${percentile(toActive, 50).toFixed(2)} p99 ${percentile(toActive, 99).toFixed(2)}; ` +
        `active → create p50 ${percentile(toCreate, 50).toFixed(2)} p99 ${percentile(toCreate, 99).toFixed(2)}`,
    );
  }
  return row(
    'fleet: publish → container create',
    scenario === 'idle' ? `idle, ${count} sequential` : `burst, ${count} at once, cap ${cap}`,
    ids,
    created,
    sent,
  );
}

async function rawBullmq(url: string, scenario: 'idle' | 'burst', count: number, cap: number): Promise<LatencyRow> {
  const prefix = `bench-raw-${scenario}-${Date.now()}`;
  const created = new Map<string, number[]>();
  const sent = new Map<string, number>();
  let pending = waiter();
  const all = waiter();
  let remaining = count;
  const queue = new Queue('spawn', { connection: { url }, prefix });
  const worker = new Worker(
    'spawn',
    async (job) => {
      created.set(job.id!, [...(created.get(job.id!) ?? []), now()]);
      pending.resolve();
      if (--remaining === 0) all.resolve();
    },
    { connection: { url, maxRetriesPerRequest: null }, prefix, concurrency: cap },
  );
  await worker.waitUntilReady();
  let finished = waiter();
  worker.on('completed', () => finished.resolve());
  for (let i = 0; i < 20; i++) {
    pending = waiter();
    finished = waiter();
    remaining++;
    await queue.add('spawn', { i }, { jobId: `warm-${i}` });
    await Promise.all([pending.promise, finished.promise]);
  }
  const ids = Array.from({ length: count }, (_, i) => `raw-${scenario}-${i}`);
  if (scenario === 'idle') {
    for (const id of ids) {
      pending = waiter();
      finished = waiter();
      sent.set(id, now());
      await queue.add('spawn', { id }, { jobId: id });
      await Promise.all([pending.promise, finished.promise]);
    }
  } else {
    for (const id of ids) sent.set(id, now());
    await Promise.all(ids.map((id) => queue.add('spawn', { id }, { jobId: id })));
    await all.promise;
  }
  await worker.close();
  await queue.close();
  return row(
    'raw BullMQ: add → process',
    scenario === 'idle' ? `idle, ${count} sequential` : `burst, ${count} at once, cap ${cap}`,
    ids,
    created,
    sent,
  );
}

export async function benchDispatch(options: { idle?: number; burst?: number; cap?: number } = {}): Promise<LatencyRow[]> {
  const server = await startRedis();
  try {
    const idle = options.idle ?? 200;
    const burst = options.burst ?? 500;
    const cap = options.cap ?? 8;
    return [
      await rawBullmq(server.url, 'idle', idle, 1),
      await fleetPath({ REDIS_URL: server.url }, 'idle', idle, 1),
      await rawBullmq(server.url, 'burst', burst, cap),
      await fleetPath({ REDIS_URL: server.url }, 'burst', burst, cap),
    ];
  } finally {
    await server.stop();
  }
}

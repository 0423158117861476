import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { channels } from '../../src/protocol.ts';
import { dockerAvailable } from '../support/docker.ts';
import {
  completedLine,
  eventLine,
  legacyRequest,
  publishJson,
  ResultListener,
  startTestFleet,
  testEnv,
  type TestFleet,
} from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { PrivateDockerd } from './private-dockerd.ts';

const usable = dockerAvailable && PrivateDockerd.usable();
if (!usable && process.env.FLEET_REQUIRE_DOCKER === '1') {
  throw new Error('FLEET_REQUIRE_DOCKER=1 but the fault suite cannot run its own dockerd (it needs root and dockerd on PATH)');
}
const describeFaults = usable ? describe : describe.skip;

/** Waits for a condition the outside world changes without telling us (a daemon, a disk): polled, with a bound. */
async function until(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const readyz = (fleet: TestFleet) =>
  fetch(`http://127.0.0.1:${fleet.httpPort}/readyz`)
    .then((r) => r.status)
    .catch(() => 0);

/**
 * The most containers of one label that ran at once on a daemon since a time: replayed afterwards from the
 * daemon's own start/die events (it keeps recent ones), so nothing is missed while a live follower reconnects.
 */
function maxConcurrent(dockerd: PrivateDockerd, label: string, sinceMs: number): number {
  const lines = dockerd
    .cli([
      'events',
      '--since',
      String(Math.floor(sinceMs / 1000)),
      '--until',
      String(Math.ceil(Date.now() / 1000) + 1),
      '--format',
      '{{.Status}}',
      '--filter',
      `label=${label}`,
      '--filter',
      'type=container',
      '--filter',
      'event=start',
      '--filter',
      'event=die',
    ])
    .split('\n')
    .filter(Boolean);
  let running = 0;
  let max = 0;
  for (const status of lines) {
    if (status === 'start') max = Math.max(max, ++running);
    if (status === 'die') running--;
  }
  return max;
}

describeFaults('faults: a Docker daemon of our own, restarted, stopped and filled (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let dockerd: PrivateDockerd;
  const fleets: TestFleet[] = [];

  const env = (overrides: Record<string, string> = {}) =>
    testEnv(server.url, dockerd.image, {
      FLEET_DOCKER_HOST: dockerd.host,
      FLEET_HOST_CONCURRENCY: '1',
      // One attempt: a host fault that spent it would fail the request for good, so success proves it did not.
      FLEET_SPAWN_ATTEMPTS: '1',
      FLEET_LOCK_DURATION: '10',
      FLEET_STALLED_INTERVAL: '5',
      ...overrides,
    });
  /** The spawn job's state and attempt counters, read once. */
  const spawnJob = async (prefix: string, id: string) => {
    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix });
    try {
      const job = (await queue.getJob(id))!;
      return { state: await job.getState(), attemptsMade: job.attemptsMade, attemptsStarted: job.attemptsStarted };
    } finally {
      await queue.close();
    }
  };

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    results = await ResultListener.start(server.url);
    dockerd = await PrivateDockerd.start();
  }, 120_000);
  afterEach(async () => {
    await dockerd.up();
    for (const f of fleets.splice(0)) await f.stop();
  });
  afterAll(async () => {
    await dockerd?.destroy();
    await results?.close();
    redis?.disconnect();
    await server?.stop();
  });

  it("daemon restarted mid-run (SIGTERM): the worker it kills at its stop timeout (exit 137) is not the task's failure; runs again, one result", async () => {
    const e = env();
    const fleet = await startTestFleet(e, ['bridge', 'spawn']);
    fleets.push(fleet);
    const request = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', message: 'working', stage: null, progress_pct: null })}\nsleep 40\n${completedLine('after the restart')}`,
    });
    const id = request.request_id as string;
    // The worker's own progress event: its container is running (the bridge's events come earlier).
    const sub = redis.duplicate();
    await sub.subscribe(channels.events(id));
    const started = new Promise<void>((resolve) =>
      sub.on('message', (_channel, message: string) => {
        if ((JSON.parse(message) as { event_type: string }).event_type !== 'progress') return;
        sub.disconnect();
        resolve();
      }),
    );
    await publishJson(redis, channels.spawn, request);
    await started;

    // dockerd lets the worker run for its StopTimeout (20 s) before it kills it.
    const t0 = Date.now();
    await dockerd.restart('SIGTERM');
    const result = await results.next(id, 90_000);
    const recoveryMs = Date.now() - t0;
    console.info(`[faults] daemon restart (SIGTERM) → result: ${recoveryMs} ms`);

    expect(result).toMatchObject({ success: true, summary: 'after the restart' });
    const job = await spawnJob(e.FLEET_PREFIX!, id);
    expect(job.attemptsStarted).toBeGreaterThanOrEqual(2);
    // Completing counts the attempt that succeeded; the one the restart broke was not counted (with one attempt
    // allowed, counting it would have failed the request).
    expect(job.attemptsMade).toBe(1);
    expect(job.state).toBe('completed');
    expect(results.all(id)).toHaveLength(1);
    expect(dockerd.containersWithLabel(`fleet.request_id=${id}`)).toEqual([]);
    expect(await readyz(fleet)).toBe(200);
  });

  it('daemon stopped with jobs waiting: the host leaves rotation (/readyz 503), resumes by itself, one result each, cap held', async () => {
    const e = env();
    const fleet = await startTestFleet(e, ['bridge', 'spawn']);
    fleets.push(fleet);
    await dockerd.down();
    const requests = Array.from({ length: 3 }, (_, i) => legacyRequest({ task_content: `sleep 0.5\n${completedLine(`job ${i}`)}` }));
    for (const r of requests) await publishJson(redis, channels.spawn, r);

    await until('the host to leave rotation', async () => (await readyz(fleet)) === 503 && fleet.spawn!.drained());
    // The outage itself: several probe periods with the jobs waiting and no attempt spent.
    await new Promise((r) => setTimeout(r, 10_000));
    for (const r of requests) {
      const job = await spawnJob(e.FLEET_PREFIX!, r.request_id as string);
      expect(job.state).toBe('waiting');
      expect(job.attemptsMade).toBe(0);
    }
    expect(results.all(requests[0]!.request_id as string)).toEqual([]);

    const t0 = Date.now();
    await dockerd.up();
    const all = await Promise.all(requests.map((r) => results.next(r.request_id as string, 90_000)));
    console.info(`[faults] daemon back → ${requests.length} results: ${Date.now() - t0} ms`);

    expect(all.map((r) => r.success)).toEqual([true, true, true]);
    for (const r of requests) expect(results.all(r.request_id as string)).toHaveLength(1);
    // The cap (1) held while the waiting jobs rushed back in.
    expect(maxConcurrent(dockerd, `fleet.host=${e.FLEET_HOST_ID}`, t0)).toBe(1);
    expect(fleet.spawn!.drained()).toBe(false);
    expect(await readyz(fleet)).toBe(200);
    expect(dockerd.containersWithLabel(`fleet.host=${e.FLEET_HOST_ID}`)).toEqual([]);
  });

  it('disk full: the host takes itself out of rotation, the job runs on another host, and this one resumes when space is back', async () => {
    const shared = { FLEET_PREFIX: `fleet-disk-${Date.now()}` };
    const full = env(shared);
    const fullHost = await startTestFleet(full, ['bridge', 'spawn']);
    fleets.push(fullHost);
    const filler = dockerd.fillDisk();
    try {
      const request = legacyRequest({ task_content: completedLine('on the other host') });
      const id = request.request_id as string;
      await publishJson(redis, channels.spawn, request);
      await until('the full host to leave rotation', async () => (await readyz(fullHost)) === 503);
      const job = await spawnJob(shared.FLEET_PREFIX, id);
      expect(job.state).toBe('waiting');
      expect(job.attemptsMade).toBe(0);

      // Another host, on the system's Docker (the same test image is there).
      const other = testEnv(server.url, dockerd.image, { ...shared, FLEET_HOST_CONCURRENCY: '1' });
      const otherHost = await startTestFleet(other, ['spawn']);
      fleets.push(otherHost);
      expect(await results.next(id, 60_000)).toMatchObject({ success: true, summary: 'on the other host' });
      expect(results.all(id)).toHaveLength(1);
      expect(dockerd.containersWithLabel(`fleet.request_id=${id}`)).toEqual([]);
    } finally {
      dockerd.freeDisk(filler);
    }
    await until('the full host to resume', async () => (await readyz(fullHost)) === 200 && !fullHost.spawn!.drained());
  });
});

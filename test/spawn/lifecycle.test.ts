import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { channels, type FleetEvent } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker, removeContainersWithLabel, testImage } from '../support/docker.ts';
import {
  completedLine,
  eventLine,
  legacyRequest,
  publishJson,
  ResultListener,
  spawnFleetProcess,
  startTestFleet,
  testEnv,
  type FleetProcess,
} from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/** Waits for the first event of a request that matches. Subscribed before the request is sent. */
async function eventWaiter(url: string) {
  const client = new Redis(url);
  const seen: FleetEvent[] = [];
  const waiters: { match: (e: FleetEvent) => boolean; resolve: (e: FleetEvent) => void }[] = [];
  client.on('message', (_channel, message: string) => {
    const event = JSON.parse(message) as FleetEvent;
    seen.push(event);
    for (const w of waiters.filter((w) => w.match(event))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(event);
    }
  });
  await client.subscribe(channels.allEvents);
  return {
    seen,
    next(match: (e: FleetEvent) => boolean): Promise<FleetEvent> {
      const found = seen.find(match);
      return found ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ match, resolve }));
    },
    close: () => client.disconnect(),
  };
}

/**
 * Follows Docker's own start/die events for one host label and keeps the highest number of
 * containers running at once: the exact figure, not a sample.
 */
function concurrencyMeter(label: string) {
  const child = spawn('docker', [
    'events',
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
  ]);
  let running = 0;
  let max = 0;
  let starts = 0;
  createInterface({ input: child.stdout }).on('line', (status) => {
    if (status === 'start') {
      starts++;
      max = Math.max(max, ++running);
    }
    if (status === 'die') running--;
  });
  return { max: () => max, starts: () => starts, stop: () => child.kill() };
}

describeDocker('spawn lifecycle: caps, cancel, crash, drain (real Redis, real Docker)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let image: string;
  const processes: FleetProcess[] = [];
  const fleets: { stop(): Promise<void> }[] = [];
  const hostLabels: string[] = [];
  const dataDirs: string[] = [];

  const env = (overrides: Record<string, string> = {}) => {
    const e = testEnv(server.url, image, overrides);
    hostLabels.push(`fleet.host=${e.FLEET_HOST_ID}`);
    dataDirs.push(e.FLEET_DATA_DIR!);
    return e;
  };

  beforeAll(async () => {
    image = testImage();
    server = await startRedis();
    redis = new Redis(server.url);
    results = await ResultListener.start(server.url);
  });
  afterEach(async () => {
    for (const p of processes.splice(0)) {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }
    for (const f of fleets.splice(0)) await f.stop();
    for (const label of hostLabels.splice(0)) removeContainersWithLabel(label);
    for (const dir of dataDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await results.close();
    redis.disconnect();
    await server.stop();
  });

  it('holds the per-host cap and the global cap with two spawn processes', async () => {
    // Locks long enough that a loaded CI machine never lets a live job stall (a stall would rightly
    // start a second container and blur the count); kill -9 below tests the short-lock path.
    const shared = {
      FLEET_PREFIX: `fleet-caps-${Date.now()}`,
      FLEET_HOST_CONCURRENCY: '2',
      FLEET_LOCK_DURATION: '15',
      FLEET_STALLED_INTERVAL: '5',
    };
    const a = env({ ...shared, FLEET_GLOBAL_CONCURRENCY: '3' });
    const b = env({ ...shared });
    const meterA = concurrencyMeter(`fleet.host=${a.FLEET_HOST_ID}`);
    const meterB = concurrencyMeter(`fleet.host=${b.FLEET_HOST_ID}`);
    const meterAll = concurrencyMeter(`fleet.prefix=${shared.FLEET_PREFIX}`);
    const bridge = await startTestFleet(env({ ...shared }), ['bridge']);
    fleets.push(bridge);
    processes.push(spawnFleetProcess(a, ['spawn']), spawnFleetProcess(b, ['spawn']));
    await Promise.all(processes.map((p) => p.ready));

    const requests = Array.from({ length: 10 }, () => legacyRequest({ task_content: `sleep 1\n${completedLine()}` }));
    for (const r of requests) await publishJson(redis, channels.spawn, r);
    const all = await Promise.all(requests.map((r) => results.next(r.request_id as string)));
    for (const m of [meterA, meterB, meterAll]) m.stop();

    expect(all.every((r) => r.success)).toBe(true);
    expect(meterA.starts() + meterB.starts()).toBe(10);
    expect(meterA.max()).toBeLessThanOrEqual(2);
    expect(meterB.max()).toBeLessThanOrEqual(2);
    expect(meterAll.max()).toBeLessThanOrEqual(3);
    // Both hosts took work, and the fleet did run several at once.
    expect(meterA.starts()).toBeGreaterThan(0);
    expect(meterB.starts()).toBeGreaterThan(0);
    expect(meterAll.max()).toBeGreaterThanOrEqual(2);
  });

  it('cancels a running request by killing its container on the host that runs it', async () => {
    const shared = { FLEET_PREFIX: `fleet-cancel-${Date.now()}` };
    const events = await eventWaiter(server.url);
    fleets.push(await startTestFleet(env(shared), ['bridge']));
    const host = spawnFleetProcess(env(shared), ['spawn']);
    processes.push(host);
    await host.ready;
    const request = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', stage: 'run', message: 'running', progress_pct: 10 })}\nsleep 60`,
    });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    await events.next((e) => e.request_id === id && e.event_type === 'progress');
    await publishJson(redis, channels.cancel, { request_id: id });
    const result = await results.next(id);
    events.close();
    expect(result).toMatchObject({ success: false, error_type: 'cancelled', exit_code: -1 });
    await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 15_000, interval: 100 }).toEqual([]);
  });

  it('cancels a waiting request while another runs, and only that one', async () => {
    const e = env({ FLEET_HOST_CONCURRENCY: '1' });
    const events = await eventWaiter(server.url);
    const fleet = await startTestFleet(e, ['bridge', 'spawn']);
    fleets.push(fleet);
    const first = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', message: 'holding the slot', stage: null, progress_pct: null })}\nsleep 3\n${completedLine()}`,
    });
    const second = legacyRequest({ task_content: completedLine() });
    await publishJson(redis, channels.spawn, first);
    await events.next((ev) => ev.request_id === first.request_id && ev.event_type === 'progress');
    await publishJson(redis, channels.spawn, second);
    await fleet.bridge!.waitForHandled(2);
    await publishJson(redis, channels.cancel, { request_id: second.request_id });
    const cancelled = await results.next(second.request_id as string);
    expect(cancelled).toMatchObject({ error_type: 'cancelled' });
    expect(cancelled.error_message).toMatch(/before a worker took it/);
    expect((await results.next(first.request_id as string)).success).toBe(true);
    events.close();
  });

  it('retries the job of a host killed with -9 on another host, with one result', async () => {
    const shared = { FLEET_PREFIX: `fleet-kill-${Date.now()}`, FLEET_HOST_CONCURRENCY: '1' };
    const events = await eventWaiter(server.url);
    fleets.push(await startTestFleet(env(shared), ['bridge']));
    const doomedEnv = env(shared);
    const doomed = spawnFleetProcess(doomedEnv, ['spawn']);
    processes.push(doomed);
    await doomed.ready;
    const request = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', message: 'working', stage: null, progress_pct: null })}\nsleep 4\n${completedLine('finished elsewhere')}`,
    });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    await events.next((e) => e.request_id === id && e.event_type === 'progress');

    doomed.child.kill('SIGKILL');
    await doomed.exited;
    const survivor = spawnFleetProcess(env(shared), ['spawn']);
    processes.push(survivor);
    const result = await results.next(id);
    expect(result).toMatchObject({ success: true, summary: 'finished elsewhere' });

    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: shared.FLEET_PREFIX });
    const job = (await queue.getJob(id))!;
    expect(job.attemptsStarted).toBeGreaterThanOrEqual(2);
    await queue.close();
    expect(results.all(id)).toHaveLength(1);

    // The dead host's container is still running (Docker outlived the process). When that host
    // comes back it reaps it: the job's lock no longer carries that container's token.
    expect(containersWithLabel(`fleet.host=${doomedEnv.FLEET_HOST_ID}`)).toHaveLength(1);
    const reborn = spawnFleetProcess(doomedEnv, ['spawn']);
    processes.push(reborn);
    await reborn.ready;
    expect(containersWithLabel(`fleet.host=${doomedEnv.FLEET_HOST_ID}`)).toEqual([]);
    events.close();
  });

  it('drains on stop: a job that outlives the drain timeout goes back to the queue and finishes on another host', async () => {
    const shared = { FLEET_PREFIX: `fleet-drain-${Date.now()}` };
    const events = await eventWaiter(server.url);
    const draining = await startTestFleet(env({ ...shared, FLEET_DRAIN_TIMEOUT: '1' }), ['bridge', 'spawn']);
    const quick = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', message: 'go', stage: null, progress_pct: null })}\nsleep 0.5\n${completedLine('quick')}`,
    });
    const slow = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', message: 'go', stage: null, progress_pct: null })}\nsleep 4\n${completedLine('slow')}`,
    });
    await publishJson(redis, channels.spawn, quick);
    await publishJson(redis, channels.spawn, slow);
    await Promise.all([quick, slow].map((r) => events.next((e) => e.request_id === r.request_id && e.event_type === 'progress')));

    await draining.stop();
    // The quick job finished inside the drain timeout; the slow one was stopped and re-queued.
    expect((await results.next(quick.request_id as string, 1)).summary).toBe('quick');
    expect(results.all(slow.request_id as string)).toEqual([]);
    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: shared.FLEET_PREFIX });
    const job = (await queue.getJob(slow.request_id as string))!;
    expect(await job.getState()).toBe('waiting');
    expect(job.attemptsMade).toBe(0);
    await queue.close();

    fleets.push(await startTestFleet(env(shared), ['spawn']));
    expect(await results.next(slow.request_id as string)).toMatchObject({ success: true, summary: 'slow' });
    events.close();
  });

  it('turns a missing image and an unknown runtime into spawn_error results that say what to do', async () => {
    const missing = env({ FLEET_WORKER_IMAGE: 'fleet-no-such-image:never', FLEET_SPAWN_ATTEMPTS: '1' });
    const f1 = await startTestFleet(missing, ['bridge', 'spawn']);
    fleets.push(f1);
    const r1 = legacyRequest();
    await publishJson(redis, channels.spawn, r1);
    const noImage = await results.next(r1.request_id as string);
    expect(noImage).toMatchObject({ success: false, error_type: 'spawn_error', exit_code: -1 });
    expect(noImage.error_message).toMatch(/fleet-no-such-image:never.*build\.sh|FLEET_WORKER_IMAGE/);
    await f1.stop();
    fleets.pop();

    const runtime = env({ FLEET_RUNTIME: 'sysbox-runc', FLEET_SPAWN_ATTEMPTS: '1' });
    fleets.push(await startTestFleet(runtime, ['bridge', 'spawn']));
    const r2 = legacyRequest();
    await publishJson(redis, channels.spawn, r2);
    const noRuntime = await results.next(r2.request_id as string);
    expect(noRuntime).toMatchObject({ success: false, error_type: 'spawn_error' });
    expect(noRuntime.error_message).toMatch(/sysbox-runc.*FLEET_RUNTIME=runc/);
  });

  it('finishes a job whose lock outlives many lock periods (renewal keeps it)', async () => {
    const queueEvents = new QueueEvents(QUEUE_NAMES.spawn, { connection: { url: server.url } });
    const e = env({ FLEET_LOCK_DURATION: '1', FLEET_STALLED_INTERVAL: '0.5' });
    fleets.push(await startTestFleet(e, ['bridge', 'spawn']));
    const request = legacyRequest({ task_content: `sleep 6\n${completedLine('long one')}` });
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string);
    expect(result).toMatchObject({ success: true, summary: 'long one' });
    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: e.FLEET_PREFIX });
    const job = (await queue.getJob(request.request_id as string))!;
    // Six one-second lock periods passed; the job never stalled, so it ran once.
    expect(job.attemptsStarted).toBe(1);
    expect(job.stalledCounter ?? 0).toBe(0);
    await queue.close();
    await queueEvents.close();
  });
});

import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { channels } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker, removeContainersWithLabel, testImage } from '../support/docker.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/**
 * The memory limit, for real: busybox sh holds 64 MB in a variable under a 16 MiB limit, and the
 * kernel's OOM killer ends it (the host has no swap to hide in; --memory-swap follows --memory).
 */
const ALLOCATE_64MB = ['x=$(head -c 64000000 /dev/zero | tr "\\0" a)', 'printf "survived %s\\n" "$(printf %s "$x" | wc -c)"'].join('\n');

describeDocker('fault: the memory limit (real Redis, real Docker)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let image: string;
  const fleets: TestFleet[] = [];
  const labels: string[] = [];

  beforeAll(async () => {
    image = testImage();
    server = await startRedis();
    redis = new Redis(server.url);
    results = await ResultListener.start(server.url);
  });
  afterEach(async () => {
    for (const f of fleets.splice(0)) await f.stop();
    for (const label of labels.splice(0)) removeContainersWithLabel(label);
  });
  afterAll(async () => {
    await results.close();
    redis.disconnect();
    await server?.stop();
  });

  it('a worker past FLEET_WORKER_MEMORY ends as oom_killed, naming the limit and the setting, once and not retried', async () => {
    const env = testEnv(server.url, image, { FLEET_WORKER_MEMORY: '16m', FLEET_SPAWN_ATTEMPTS: '3' });
    labels.push(`fleet.host=${env.FLEET_HOST_ID}`);
    const fleet = await startTestFleet(env, ['bridge', 'spawn']);
    fleets.push(fleet);
    const request = legacyRequest({ task_content: ALLOCATE_64MB });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);

    const result = await results.next(id);
    expect(result).toMatchObject({ success: false, error_type: 'oom_killed', exit_code: 137 });
    expect(result.error_message).toMatch(/16 MiB/);
    expect(result.error_message).toMatch(/FLEET_WORKER_MEMORY/);
    expect(result.output).not.toMatch(/survived/);

    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: env.FLEET_PREFIX });
    // The result is published before BullMQ moves the job to failed; wait for that move.
    await expect.poll(async () => (await queue.getJob(id))?.getState(), { timeout: 15_000, interval: 50 }).toBe('failed');
    expect((await queue.getJob(id))!.attemptsStarted).toBe(1);
    await queue.close();
    expect(results.all(id)).toHaveLength(1);
    await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 15_000, interval: 100 }).toEqual([]);
    // The outcome label of the job-duration histogram counts it.
    const metrics = await fetch(`http://127.0.0.1:${fleet.httpPort}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/fleet_job_duration_seconds_count\{outcome="oom_killed"\} 1/);
  });

  it('the same task under a limit it fits in succeeds (the failure above is the limit, not the script)', async () => {
    const env = testEnv(server.url, image, { FLEET_WORKER_MEMORY: '512m' });
    labels.push(`fleet.host=${env.FLEET_HOST_ID}`);
    fleets.push(await startTestFleet(env, ['bridge', 'spawn']));
    const request = legacyRequest({ task_content: `${ALLOCATE_64MB}\nexit 0` });
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string);
    expect(result).toMatchObject({ success: true, exit_code: 0 });
    expect(result.logs_tail).toMatch(/survived +64000000/);
  });
});

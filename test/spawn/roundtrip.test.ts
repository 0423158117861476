import { createHash } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { channels, LEGACY_RESULT_KEYS } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker, testImage } from '../support/docker.ts';
import {
  completedLine,
  eventLine,
  EventRecorder,
  legacyRequest,
  publishJson,
  ResultListener,
  startTestFleet,
  testEnv,
  TEST_TOKEN,
} from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/** Every value stored in Redis, whatever its type, as text: where a leaked secret would be. */
async function dumpRedis(redis: Redis): Promise<string> {
  const parts: string[] = [];
  for (const key of await redis.keys('*')) {
    const type = await redis.type(key);
    if (type === 'string') parts.push((await redis.get(key)) ?? '');
    if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
    if (type === 'list') parts.push(...(await redis.lrange(key, '0', '-1')));
    if (type === 'set') parts.push(...(await redis.smembers(key)));
    if (type === 'zset') parts.push(...(await redis.zrange(key, '0', '-1')));
    if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    parts.push(key);
  }
  return parts.join('\n');
}

describeDocker('spawn path round trip (real Redis, real Docker)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let fleet: Awaited<ReturnType<typeof startTestFleet>>;
  let events: EventRecorder;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    results = await ResultListener.start(server.url);
    events = await EventRecorder.start(server.url);
    fleet = await startTestFleet(testEnv(server.url, testImage()), ['bridge', 'spawn']);
  });

  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    events?.close();
    redis?.disconnect();
    await server?.stop();
  });

  it('answers a legacy request with exactly the eleven keys, events in order, and leaves no container', async () => {
    const request = legacyRequest({
      task_content: [
        eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'test' }),
        eventLine({ event_type: 'progress', stage: 'run', message: 'working', progress_pct: 50 }),
        'echo "plain output line"',
        completedLine('all done', 'deadbeef'),
      ].join('\n'),
    });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id);

    expect(Object.keys(JSON.parse(results.raw.get(id)![0]!))).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result).toMatchObject({
      request_id: id,
      success: true,
      exit_code: 0,
      output: 'all done',
      commit_sha: 'deadbeef',
      branch: 'main',
      files_changed: ['a.txt'],
      summary: 'all done',
      error_type: null,
      error_message: null,
    });
    expect(result.logs_tail).toContain('plain output line');
    expect(await redis.get(channels.resultKey(id))).toBe(results.raw.get(id)![0]);
    expect(await redis.ttl(channels.resultKey(id))).toBeGreaterThan(23 * 3600);

    const mine = await events.untilResult(id);
    expect(mine.map((e) => e.event_type)).toEqual(['started', 'progress', 'completed']);
    for (const event of mine) {
      expect(event.worker_type).toBe('droid');
      expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp);
    }
    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: fleet.config.prefix });
    const queueEvents = new QueueEvents(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: fleet.config.prefix });
    const job = (await queue.getJob(id))!;
    // The result goes out just before BullMQ records the job done.
    await job.waitUntilFinished(queueEvents);
    await queueEvents.close();
    expect(await job.getState()).toBe('completed');
    // The worker reported 50 %; the finished request is at 100 %.
    expect(job.progress).toBe(100);
    const { logs } = await queue.getJobLogs(id);
    expect(logs.join('\n')).toContain('plain output line');
    await queue.close();
    await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 15_000, interval: 100 }).toEqual([]);
  });

  it('copies a 1 MiB task into the container whole', async () => {
    const script = 'sha256sum /fleet/input/TASK.md | cut -c1-64 2>/dev/null || sha256sum /fleet/input/TASK.md\nexit 0\n';
    const task = script + '#'.repeat(1024 * 1024 - Buffer.byteLength(script));
    expect(Buffer.byteLength(task)).toBe(1024 * 1024);
    const request = legacyRequest({ task_content: task });
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string);
    expect(result.success).toBe(true);
    expect(result.logs_tail).toContain(createHash('sha256').update(task).digest('hex'));
  });

  it('reports the failure a worker sends, with its exit code and log tail', async () => {
    const request = legacyRequest({
      task_content: [
        'for i in $(seq 1 300); do echo "line $i"; done',
        eventLine({
          event_type: 'failed',
          error_type: 'task_failed',
          error_message: 'agent exited with code 7',
          logs_tail: 'tail from worker',
        }),
        'exit 7',
      ].join('\n'),
    });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id);
    expect(result).toMatchObject({
      success: false,
      exit_code: 7,
      error_type: 'task_failed',
      error_message: 'agent exited with code 7',
      logs_tail: 'tail from worker',
    });
    expect((await events.untilResult(id)).filter((e) => e.event_type === 'failed')).toHaveLength(1);
  });

  it('calls a non-zero exit without a failed event a crash, keeping the last 200 lines', async () => {
    const request = legacyRequest({ task_content: 'for i in $(seq 1 500); do echo "line $i"; done\nexit 3' });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id);
    expect(result).toMatchObject({ success: false, exit_code: 3, error_type: 'crash' });
    const tail = result.logs_tail!.split('\n');
    expect(tail).toHaveLength(200);
    expect(tail.at(-1)).toBe('line 500');
    // The host fills in the terminal event the worker never sent.
    expect((await events.untilResult(id)).map((e) => e.event_type)).toEqual(['failed']);
  });

  it('keeps the token out of every Redis key, job log and result, even when the worker prints it', async () => {
    const request = legacyRequest({ task_content: 'echo "token is $GITHUB_TOKEN"\necho "env: $(env | grep GITHUB)"' });
    const id = request.request_id as string;
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id);
    expect(result.success).toBe(true);
    expect(result.logs_tail).toContain('token is [REDACTED]');
    const everything = await dumpRedis(redis);
    expect(everything).toContain(id);
    expect(everything).not.toContain(TEST_TOKEN);
    expect(JSON.stringify(await events.untilResult(id))).not.toContain(TEST_TOKEN);
  });

  it('kills a worker that runs past timeout_seconds', async () => {
    const request = legacyRequest({ timeout_seconds: 1, task_content: 'echo started\nsleep 60' });
    const id = request.request_id as string;
    const sent = Date.now();
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id);
    expect(result).toMatchObject({ success: false, exit_code: -1, error_type: 'timeout' });
    expect(result.error_message).toContain('timeout_seconds=1');
    expect(Date.now() - sent).toBeLessThan(30_000);
    await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 15_000, interval: 100 }).toEqual([]);
  });

  it('works with a Redis Cluster hash-tag prefix: every fleet key shares the tag', async () => {
    const prefix = `{fleet${Date.now()}}`;
    const tagged = await startTestFleet(testEnv(server.url, testImage(), { FLEET_PREFIX: prefix }), ['bridge', 'spawn']);
    try {
      const request = legacyRequest({ task_content: completedLine('tagged') });
      await publishJson(redis, channels.spawn, request);
      expect(await results.next(request.request_id as string)).toMatchObject({ success: true, summary: 'tagged' });
      const keys = await redis.keys(`*${prefix}*`);
      expect(keys.length).toBeGreaterThan(0);
      // Cluster slots follow the text inside the first {...}: all of them must start with the tag.
      expect(keys.filter((k) => !k.startsWith(prefix) && !k.startsWith(`b_${prefix}`))).toEqual([]);
    } finally {
      await tagged.stop();
    }
  });
});

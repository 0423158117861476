import { FlowProducer, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../../queues/spawn.ts';
import { startBridge, type Bridge } from '../../src/bridge.ts';
import { fleetKeys } from '../../src/keys.ts';
import { createLogger } from '../../src/logger.ts';
import { channels, LEGACY_RESULT_KEYS } from '../../src/protocol.ts';
import { failureResult, publishFinal, readResult } from '../../src/results.ts';
import { createSecretBox } from '../../src/secrets.ts';
import { legacyRequest, ResultListener, TEST_SECRET_KEY, TEST_TOKEN, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

describe('bridge', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let prefix: string;
  let queue: Queue<SpawnJobData, SpawnJobResult>;
  let flows: FlowProducer;
  const running: { bridge: Bridge }[] = [];
  const secrets = createSecretBox(TEST_SECRET_KEY);

  async function bridges(count: number) {
    for (let i = 0; i < count; i++) {
      const bridge = await startBridge({
        subscriber: { url: server.url },
        redis,
        queue,
        flows,
        secrets,
        keys: fleetKeys(prefix),
        logger: createLogger({ level: 'silent' }),
        attempts: 3,
        keepLogs: 100,
      });
      running.push({ bridge });
    }
  }
  let sent = 0;
  /** Waits until every bridge has handled every message sent so far. */
  const idle = () => Promise.all(running.map((r) => r.bridge.waitForHandled(sent)));

  /** PUBLISH returns how many subscribers got the message: every bridge must have. */
  async function send(body: unknown, channel: string = channels.spawn) {
    const receivers = await redis.publish(channel, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    expect(receivers).toBe(running.length);
    sent++;
  }

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    results = await ResultListener.start(server.url);
  });
  afterEach(async () => {
    sent = 0;
    for (const { bridge } of running.splice(0)) await bridge.stop();
    await queue?.close();
    await flows?.close();
  });
  afterAll(async () => {
    await results.close();
    redis.disconnect();
    await server.stop();
  });

  function freshQueue() {
    prefix = uid('fleet');
    queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix });
    flows = new FlowProducer({ connection: { url: server.url }, prefix });
  }

  it('makes exactly one job per request id from three bridges and resends', async () => {
    freshQueue();
    await bridges(3);
    const requests = Array.from({ length: 20 }, () => legacyRequest());
    for (const request of requests) {
      await send(request);
      await send(request); // a resend: still one job
    }
    await idle();
    const jobs = await queue.getJobs(['waiting']);
    expect(jobs.map((j) => j.id).sort()).toEqual(requests.map((r) => r.request_id as string).sort());
    expect(await queue.count()).toBe(20);
  });

  it('seals the token in job data', async () => {
    freshQueue();
    await bridges(1);
    const request = legacyRequest();
    await send(request);
    await idle();
    const job = (await queue.getJob(request.request_id as string))!;
    expect(JSON.stringify(job.data)).not.toContain(TEST_TOKEN);
    expect(job.data.request).not.toHaveProperty('github_token');
    expect(secrets.open(job.data.sealedToken!)).toBe(TEST_TOKEN);
  });

  it('answers invalid requests with invalid_request naming the field, and keeps working', async () => {
    freshQueue();
    await bridges(1);
    const bad = [legacyRequest({ timeout_seconds: 'soon' }), legacyRequest({ repo: 'not a repo' }), legacyRequest({ extra: 1 })];
    for (const request of bad) await send(request);
    const fields = ['timeout_seconds', 'repo', 'extra'];
    for (const [i, request] of bad.entries()) {
      const id = request.request_id as string;
      const result = await results.next(id, 10_000);
      expect(Object.keys(JSON.parse(results.raw.get(id)![0]!))).toEqual([...LEGACY_RESULT_KEYS]);
      expect(result).toMatchObject({ success: false, exit_code: -1, error_type: 'invalid_request' });
      expect(result.error_message).toContain(fields[i]);
    }
    expect(await queue.count()).toBe(0);

    const good = legacyRequest();
    await send(good);
    await idle();
    expect(await queue.getJob(good.request_id as string)).toBeDefined();
  });

  // Issue 12: names that could only start a container that fails are refused here, before any job exists.
  it('refuses an owner or a branch git or GitHub would refuse: invalid_request, no job', async () => {
    freshQueue();
    await bridges(1);
    const bad = [
      [legacyRequest({ repo: '-rf/x' }), /repo.*owner may not start/],
      [legacyRequest({ mode: 'pr', base_branch: '-f' }), /base_branch.*start with "-"/],
      [legacyRequest({ mode: 'pr', base_branch: 'main@{1}' }), /base_branch.*"@\{"/],
      [legacyRequest({ repo: `${'a'.repeat(40)}/x` }), /repo/],
    ] as const;
    for (const [request] of bad) await send(request);
    for (const [request, reason] of bad) {
      const result = await results.next(request.request_id as string, 10_000);
      expect(result).toMatchObject({ success: false, error_type: 'invalid_request' });
      expect(result.error_message).toMatch(reason);
    }
    expect(await queue.count()).toBe(0);
  });

  it('survives any payload and keeps a bounded, redacted list of what it rejected', async () => {
    freshQueue();
    await bridges(1);
    const idInHugeMessage = uid('huge');
    const payloads: (string | Buffer)[] = [
      'not json at all',
      '',
      '{"unterminated": ',
      Buffer.from([0xff, 0xfe, 0x00, 0x81, 0xc3]),
      JSON.stringify('a string'),
      'null',
      '['.repeat(100_000) + ']'.repeat(100_000),
      `{"a":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`,
      JSON.stringify({ request_id: idInHugeMessage, repo: 'acme/w', github_token: TEST_TOKEN, task_content: 'x'.repeat(5 * 1024 * 1024) }),
      JSON.stringify({ github_token: TEST_TOKEN, note: 'no id here' }),
    ];
    for (const payload of payloads) await send(payload);
    await idle();

    const huge = await results.next(idInHugeMessage, 10_000);
    expect(huge.error_type).toBe('invalid_request');
    expect(huge.error_message).toMatch(/bytes/);

    const rejected = await redis.lrange(fleetKeys(prefix).rejected, '0', '-1');
    expect(rejected).toHaveLength(payloads.length);
    expect(rejected.join('\n')).not.toContain(TEST_TOKEN);
    expect(rejected.map((r) => JSON.parse(r).reason as string).join('\n')).toMatch(/not valid UTF-8/);

    const good = legacyRequest();
    await send(good);
    await idle();
    expect(await queue.getJob(good.request_id as string)).toBeDefined();
  });

  it('cancels a waiting request: job removed, result cancelled', async () => {
    freshQueue();
    await bridges(1);
    const request = legacyRequest();
    const id = request.request_id as string;
    await send(request);
    await idle();
    expect(await queue.getJob(id)).toBeDefined();
    await send({ request_id: id }, channels.cancel);
    const result = await results.next(id, 10_000);
    expect(result).toMatchObject({ success: false, error_type: 'cancelled', exit_code: -1 });
    expect(await queue.getJob(id)).toBeUndefined();
    expect(await redis.exists(fleetKeys(prefix).cancelled(id))).toBe(1);
  });

  it('never starts a request whose cancel arrived first', async () => {
    freshQueue();
    await bridges(1);
    const request = legacyRequest();
    const id = request.request_id as string;
    await send({ request_id: id }, channels.cancel);
    await idle();
    await send(request);
    await idle();
    expect(await results.next(id, 10_000)).toMatchObject({ error_type: 'cancelled' });
    expect(await queue.getJob(id)).toBeUndefined();
  });

  it('makes no job for a resend of a request already answered whose job is gone, and no second result', async () => {
    freshQueue();
    await bridges(1);
    const request = legacyRequest();
    const id = request.request_id as string;
    // Its job was removed after it finished (FLEET_KEEP_LOGS); the result is kept 24 h.
    await publishFinal(redis, failureResult(id, 'task_failed', 'the earlier run'), { format: 'legacy' });
    await results.next(id, 10_000);
    await send(request);
    await idle();
    expect(await queue.getJob(id)).toBeUndefined();
    expect(results.all(id)).toHaveLength(1);
    expect(await readResult(redis, id)).toMatchObject({ error_message: 'the earlier run' });
  });

  it('makes no plain job for a valid request whose id a queued flow has, and no result of its own', async () => {
    freshQueue();
    await bridges(1);
    const flowRequest = legacyRequest({ tasks: [{ scope: 'web', task_content: 'a' }], review: true });
    const id = flowRequest.request_id as string;
    await send(flowRequest);
    await idle();
    const { tasks: _tasks, review: _review, ...plain } = flowRequest;
    await send(plain);
    await idle();
    expect(await queue.getJob(id)).toBeUndefined();
    expect((await queue.getJobs(['waiting'])).map((j) => j.id)).toEqual([`${id}~web`]);
    expect(results.all(id)).toEqual([]);
  });

  it('makes one flow per request id from three bridges, with one job per scope', async () => {
    freshQueue();
    await bridges(3);
    const request = legacyRequest({
      tasks: [
        { scope: 'web', task_content: 'a' },
        { scope: 'api', task_content: 'b' },
      ],
      review: true,
      merge: true,
    });
    await send(request);
    await send(request);
    await idle();
    const merge = new Queue(QUEUE_NAMES.merge, { connection: { url: server.url }, prefix });
    const roots = (await merge.getJobs(['waiting-children'])).filter((j) => j.name === 'request');
    expect(roots.map((j) => j.id)).toEqual([request.request_id]);
    expect((await queue.getJobs(['waiting'])).map((j) => j.id).sort()).toEqual([`${request.request_id}~api`, `${request.request_id}~web`]);
    await merge.close();
  });

  it('gives an invalid duplicate of a queued flow no result of its own', async () => {
    freshQueue();
    await bridges(1);
    const request = legacyRequest({ tasks: [{ scope: 'web', task_content: 'a' }], review: true });
    await send(request);
    await idle();
    await send({ ...request, timeout_seconds: 'never' });
    await idle();
    expect(results.all(request.request_id as string)).toEqual([]);
    expect(await redis.exists(channels.resultKey(request.request_id as string))).toBe(0);
  });
});

import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FleetClient } from '../../src/client.ts';
import { InvalidRequestError } from '../../src/errors.ts';
import { describeDocker, testImage } from '../support/docker.ts';
import { completedLine, legacyRequest, startTestFleet, testEnv, TEST_SECRET_KEY, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

describeDocker('FleetClient: the durable path (BullMQ API, no pub/sub intake)', () => {
  let server: TestRedis;
  let image: string;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    server = await startRedis();
    image = testImage();
  });
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
    await server?.stop();
  });

  it('keeps a request enqueued while no host runs, then returns its one result', async () => {
    const prefix = uid('fleet');
    const client = new FleetClient({ redisUrl: server.url, prefix, secretKey: TEST_SECRET_KEY });
    closers.push(() => client.close());
    const request = legacyRequest({ task_content: completedLine('durable') });
    const pending = client.submit(request as never, { timeoutMs: 60_000 });
    // No spawn host yet: the request waits in Redis, not in a pub/sub message that nobody hears.
    const fleet = await startTestFleet(testEnv(server.url, image, { FLEET_PREFIX: prefix }), ['spawn']);
    closers.push(() => fleet.stop());
    expect(await pending).toMatchObject({ success: true, summary: 'durable' });
    // A late reader gets the stored result, and a resend makes no second job.
    expect(await client.waitForResult(request.request_id as string)).toMatchObject({ summary: 'durable' });
    expect((await client.enqueue(request as never)).outcome).toBe('already_final');
  });

  it('refuses an invalid request before it reaches a queue', async () => {
    const client = new FleetClient({ redisUrl: server.url, prefix: uid('fleet'), secretKey: TEST_SECRET_KEY });
    closers.push(() => client.close());
    await expect(client.enqueue(legacyRequest({ repo: 'nope' }) as never)).rejects.toThrow(InvalidRequestError);
    const redis = new Redis(server.url);
    expect(await redis.keys('*nope*')).toEqual([]);
    redis.disconnect();
  });

  it('fails a job sealed with another key, saying the keys differ', async () => {
    const prefix = uid('fleet');
    const client = new FleetClient({ redisUrl: server.url, prefix, secretKey: 'another-key-that-is-at-least-32-chars-long' });
    closers.push(() => client.close());
    const fleet = await startTestFleet(testEnv(server.url, image, { FLEET_PREFIX: prefix }), ['spawn']);
    closers.push(() => fleet.stop());
    const result = await client.submit(legacyRequest() as never, { timeoutMs: 60_000 });
    expect(result).toMatchObject({ success: false, error_type: 'secret_mismatch' });
    expect(result.error_message).toMatch(/keys differ/);
  });
});

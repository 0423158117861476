import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fleetKeys } from '../../src/keys.ts';
import { createLogger } from '../../src/logger.ts';
import type { Delivery, DeliveryOutcome } from '../../src/webhook/handler.ts';
import { createWebhookRouter } from '../../src/webhook/router.ts';
import { uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { deliver, payload, signature } from './support.ts';

const SECRET = 'router-test-secret-0123456789';

// The route alone, on a real express server and Redis, with a handler that records what reaches it.
describe('webhook route: signature, dedupe, sizes, formats', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let server: Server;
  let url: string;
  const lines: string[] = [];
  const handled: Delivery[] = [];
  let failNext: Error | undefined;
  const keys = fleetKeys(uid('fleet'));

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    const logger = createLogger({
      format: 'json',
      destination: new Writable({
        write(chunk, _enc, done) {
          lines.push(...String(chunk).split('\n').filter(Boolean));
          done();
        },
      }),
    });
    const handle = async (delivery: Delivery): Promise<DeliveryOutcome> => {
      if (failNext) {
        const error = failNext;
        failNext = undefined;
        throw error;
      }
      handled.push(delivery);
      return { outcome: 'ignored', reason: 'recorded' };
    };
    const app = express();
    app.use('/webhooks', createWebhookRouter({ secret: SECRET, redis, keys, handle, logger, maxBytes: 64 * 1024 }));
    server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/github`;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    redis?.disconnect();
    await redisServer?.stop();
  });
  beforeEach(() => {
    lines.length = 0;
    handled.length = 0;
  });

  const star = () => payload('star.created', { repo: 'acme/widgets', sender: 'octocat' });

  it('a bad signature gets 401 and one warning naming the delivery; the handler never sees it', async () => {
    const sent = await deliver(url, 'star', star(), { secret: 'some-other-secret' });
    expect(sent.status).toBe(401);
    expect(sent.json.error).toMatch(/X-Hub-Signature-256/);
    expect(handled).toHaveLength(0);
    const warning = lines.map((l) => JSON.parse(l)).find((l) => /bad X-Hub-Signature-256/.test(l.msg));
    expect(warning).toMatchObject({ level: 40, delivery: sent.delivery, event: 'star', signature: 'mismatch' });
    // The secret itself is never logged.
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('a signed delivery reaches the handler with its event, id and parsed payload, once', async () => {
    const body = star();
    const sent = await deliver(url, 'star', body, { secret: SECRET });
    expect(sent).toMatchObject({ status: 200, json: { outcome: 'ignored', reason: 'recorded' } });
    expect(handled).toEqual([{ id: sent.delivery, event: 'star', payload: body }]);
    const again = await deliver(url, 'star', body, { secret: SECRET, delivery: sent.delivery });
    expect(again.json).toEqual({ outcome: 'duplicate_delivery' });
    expect(handled).toHaveLength(1);
    expect(await redis.ttl(keys.webhookDelivery(sent.delivery))).toBeGreaterThan(3 * 24 * 60 * 60);
  });

  it('reads the form-encoded content type GitHub also offers', async () => {
    const json = JSON.stringify(star());
    const form = new URLSearchParams({ payload: json }).toString();
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-github-event': 'star',
        'x-github-delivery': crypto.randomUUID(),
        'x-hub-signature-256': signature(SECRET, form),
      },
      body: form,
    });
    expect(response.status).toBe(200);
    expect(handled[0]?.payload).toEqual(JSON.parse(json));
  });

  it('answers 413 past the size limit, 400 without a delivery id or with a body that is not JSON', async () => {
    const big = await deliver(url, 'star', { padding: 'x'.repeat(70 * 1024) }, { secret: SECRET });
    expect(big.status).toBe(413);
    expect(lines.some((l) => /body too large/.test(l))).toBe(true);
    const noId = await deliver(url, 'star', star(), { secret: SECRET, delivery: 'not a guid!' });
    expect(noId.status).toBe(400);
    const notJson = await deliver(url, 'star', 'this is not json', { secret: SECRET });
    expect(notJson).toMatchObject({ status: 400, json: { error: 'the payload is not JSON' } });
    // Refused, so not remembered: a fixed redelivery of it is handled.
    expect(await redis.exists(keys.webhookDelivery(notJson.delivery))).toBe(0);
    expect(handled).toHaveLength(0);
  });

  it('a failing handler answers 500 and releases the delivery id so a redelivery is handled', async () => {
    failNext = new Error('GitHub is down');
    const body = star();
    const failed = await deliver(url, 'star', body, { secret: SECRET });
    expect(failed.status).toBe(500);
    expect(lines.some((l) => /webhook delivery failed/.test(l) && /GitHub is down/.test(l))).toBe(true);
    const redelivered = await deliver(url, 'star', body, { secret: SECRET, delivery: failed.delivery });
    expect(redelivered.status).toBe(200);
    expect(handled).toHaveLength(1);
  });
});

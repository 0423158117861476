import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { FlowProducer, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../../queues/spawn.ts';
import { startBridge, type Bridge } from '../../src/bridge.ts';
import { FLEET_REDIS_ARGS } from '../../src/embedded-redis.ts';
import { fleetKeys } from '../../src/keys.ts';
import { createLogger } from '../../src/logger.ts';
import { channels } from '../../src/protocol.ts';
import { createSecretBox } from '../../src/secrets.ts';
import { runFleet } from '../ops/support.ts';
import { ResultListener, TEST_SECRET_KEY, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/**
 * Bursts published at once on loopback by a separate process, into the bridge alone (no
 * containers): every request must become exactly one queued job. The sizes are README "Bursts".
 */
const run = promisify(execFile);
const PUBLISHER = join(import.meta.dirname, '../support/publish-burst.mjs');
const MIB = 1024 * 1024;

async function publishBurst(url: string, count: number, bytes: number, idPrefix: string): Promise<number> {
  const { stdout } = await run(process.execPath, [PUBLISHER, url, String(count), String(bytes), idPrefix], {
    timeout: 60_000,
    maxBuffer: 1 << 20,
  });
  return (JSON.parse(stdout) as { receivers: number }).receivers;
}

function bridgeHarness(getServer: () => TestRedis) {
  let queue: Queue<SpawnJobData, SpawnJobResult> | undefined;
  let flows: FlowProducer | undefined;
  let redis: Redis | undefined;
  let bridge: Bridge | undefined;
  const logLines: string[] = [];
  return {
    logLines,
    async start(options: { inbox?: { maxMessages?: number; maxBytes?: number; concurrency?: number }; hostId?: string } = {}) {
      const url = getServer().url;
      const prefix = uid('fleet');
      queue = new Queue(QUEUE_NAMES.spawn, { connection: { url }, prefix });
      flows = new FlowProducer({ connection: { url }, prefix });
      redis = new Redis(url, { maxRetriesPerRequest: null, enableAutoPipelining: true });
      const destination = new Writable({
        write: (chunk, _enc, done) => {
          logLines.push(String(chunk));
          done();
        },
      });
      bridge = await startBridge({
        subscriber: { url },
        redis,
        queue,
        flows,
        secrets: createSecretBox(TEST_SECRET_KEY),
        keys: fleetKeys(prefix),
        logger: createLogger({ level: 'warn', destination }),
        attempts: 3,
        keepLogs: 10,
        intake: false,
        inbox: options.inbox,
        hostId: options.hostId,
      });
      return { bridge, queue, prefix, redis };
    },
    async stop() {
      await bridge?.stop();
      await queue?.obliterate({ force: true }).catch(() => {});
      await queue?.close();
      await flows?.close();
      redis?.disconnect();
      bridge = undefined;
      logLines.length = 0;
    },
  };
}

describe('bursts with the Redis settings fleet applies', () => {
  let server: TestRedis;
  const harness = bridgeHarness(() => server);
  beforeAll(async () => {
    server = await startRedis({ args: FLEET_REDIS_ARGS });
  });
  afterEach(() => harness.stop());
  afterAll(() => server?.stop());

  for (const [count, bytes] of [
    [200, MIB],
    [50_000, 2048],
  ] as const) {
    it(`queues ${count} × ${bytes / 1024} KiB requests published at once, each exactly once`, { timeout: 90_000 }, async () => {
      const { bridge, queue, prefix } = await harness.start();
      expect(await publishBurst(server.url, count, bytes, prefix)).toBe(count);
      await bridge.waitForHandled(count);
      await bridge.idle();
      expect(await queue.count()).toBe(count);
      // Ids only: fetching 200 MiB of job data back would measure the test, not the bridge.
      const ids = new Set(await queue.getRanges(['waiting'], 0, -1));
      expect(ids.size).toBe(count);
      expect(ids.has(`${prefix}-0`) && ids.has(`${prefix}-${count - 1}`)).toBe(true);
      expect(bridge.stats()).toMatchObject({ subscribed: true, disconnects: 0, inbox: { dropped: 0 } });
    });
  }

  it('drops past its in-process bound loudly: each dropped request is logged by id and answered "overloaded"', {
    timeout: 60_000,
  }, async () => {
    // One message in flight at a time, and room for one: the reader thread outruns the handling.
    const { bridge, queue, prefix } = await harness.start({ inbox: { maxMessages: 1, concurrency: 1 } });
    const listener = await ResultListener.start(server.url);
    try {
      const count = 40;
      await publishBurst(server.url, count, 256 * 1024, prefix);
      await bridge.waitForHandled(count);
      await bridge.idle();
      const dropped = bridge.stats().inbox.dropped;
      expect(dropped).toBeGreaterThan(0);
      const queued = await queue.count();
      expect(queued + dropped).toBe(count);
      for (let i = 0; i < count; i++) {
        const id = `${prefix}-${i}`;
        if (await queue.getJob(id)) continue;
        expect((await listener.next(id, 10_000)).error_type).toBe('overloaded');
        expect(harness.logLines.some((line) => line.includes(id) && line.includes('DROPPED'))).toBe(true);
      }
    } finally {
      await listener.close();
    }
  });
});

describe('bursts with stock Redis settings (client-output-buffer-limit pubsub 32mb 8mb 60)', () => {
  let server: TestRedis;
  const harness = bridgeHarness(() => server);
  beforeAll(async () => {
    server = await startRedis({ args: ['--client-output-buffer-limit', 'pubsub 32mb 8mb 60'] });
  });
  afterEach(() => harness.stop());
  afterAll(() => server?.stop());

  for (const [count, bytes] of [
    [16, MIB],
    [10_000, 2048],
  ] as const) {
    it(`loses nothing at the documented stock size, ${count} × ${bytes / 1024} KiB`, { timeout: 60_000 }, async () => {
      const { bridge, queue, prefix } = await harness.start();
      await publishBurst(server.url, count, bytes, prefix);
      await bridge.waitForHandled(count);
      await bridge.idle();
      expect(await queue.count()).toBe(count);
      expect(bridge.stats().disconnects).toBe(0);
    });
  }

  it('a burst past the limit is logged, counted, and shown by fleet status', { timeout: 60_000 }, async () => {
    const hostId = uid('host');
    const { bridge, prefix } = await harness.start({ hostId });
    await publishBurst(server.url, 120, MIB, prefix);
    // Redis closed the subscriber: it comes back by itself, and says so.
    await expect.poll(() => bridge.stats().resubscribes, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
    expect(bridge.stats()).toMatchObject({ subscribed: true });
    expect(bridge.stats().disconnects).toBeGreaterThanOrEqual(1);
    expect(harness.logLines.some((line) => line.includes('bridge subscriber disconnected') && line.includes('LOST'))).toBe(true);
    expect(harness.logLines.some((line) => line.includes('bridge resubscribed'))).toBe(true);
    // The start-up check had said so too, with the setting to use.
    expect(
      harness.logLines.some((line) => line.includes('REDIS WILL DROP BURSTS') && line.includes('CONFIG SET client-output-buffer-limit')),
    ).toBe(true);

    const status = await runFleet(['status'], { REDIS_URL: server.url, FLEET_PREFIX: prefix });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`WARNING: bridge ${hostId}:\\d+ lost pub/sub messages: [1-9]\\d* disconnect`));
    const json = JSON.parse((await runFleet(['status', '--json'], { REDIS_URL: server.url, FLEET_PREFIX: prefix })).stdout);
    expect(json.bridges[0]).toMatchObject({ host: hostId, subscribed: true });
    expect(json.bridges[0].resubscribes).toBeGreaterThanOrEqual(1);

    // Subscribed again, it hears what comes next.
    const publisher = new Redis(server.url);
    try {
      expect(
        await publisher.publish(channels.spawn, JSON.stringify({ request_id: `${prefix}-after`, repo: 'acme/w', task_content: 'x' })),
      ).toBe(1);
    } finally {
      publisher.disconnect();
    }
  });
});

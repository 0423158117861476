import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { channels } from '../../src/protocol.ts';
import { bullTelemetry, currentTraceparent, startTracing } from '../../src/tracing.ts';
import { FakeRuntime } from '../support/fakes/runtime.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

// Its own file: tracing, once started, is global to the process.
let redisServer: TestRedis;
let redis: Redis;
let results: ResultListener;
let fleet: TestFleet;
const runtime = new FakeRuntime();

beforeAll(async () => {
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  results = await ResultListener.start(redisServer.url);
  fleet = await startTestFleet(testEnv(redisServer.url), ['bridge', 'spawn'], { runtime });
});
afterAll(async () => {
  await fleet?.stop();
  await results?.close();
  redis?.disconnect();
  await redisServer?.stop();
});

it('without OTEL_EXPORTER_OTLP_ENDPOINT: no SDK, no BullMQ telemetry, no trace id anywhere', async () => {
  expect(await startTracing(fleet.config)).toBeNull();
  expect(bullTelemetry()).toEqual({});
  expect(currentTraceparent()).toBeUndefined();

  const request = legacyRequest({ result_format: 'v2' });
  const id = request.request_id as string;
  await publishJson(redis, channels.spawn, request);
  const result = await results.next(id);
  expect(result.success).toBe(true);
  expect(result).not.toHaveProperty('trace_id');
  expect(runtime.createCalls[0]!.env).not.toHaveProperty('TRACEPARENT');
  const job = await redis.hgetall(`${fleet.config.prefix}:spawn:${id}`);
  expect(JSON.parse(job.data!)).not.toHaveProperty('traceId');
  // BullMQ stores a job's trace context in its options only when it has a telemetry option.
  expect(JSON.parse(job.opts!)).not.toHaveProperty('tm');
  expect(JSON.parse(job.opts!)).not.toHaveProperty('telemetry');
});

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FlowProducer, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../../queues/spawn.ts';
import { startBridge, type Bridge } from '../../src/bridge.ts';
import { fleetKeys, INTAKE_GROUP } from '../../src/keys.ts';
import { createLogger } from '../../src/logger.ts';
import { LEGACY_RESULT_KEYS, type SpawnResult } from '../../src/protocol.ts';
import { createSecretBox } from '../../src/secrets.ts';
import { describeDocker, testImage } from '../support/docker.ts';
import { completedLine, eventLine, legacyRequest, startTestFleet, TEST_SECRET_KEY, TEST_TOKEN, testEnv, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

const run = promisify(execFile);
// Debian's python3 carries python3-redis and python3-cryptography; a pyenv python3 earlier on PATH may not.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const SCRIPT = join(import.meta.dirname, 'durable_orchestrator.py');

async function python(args: string[]): Promise<string[]> {
  const { stdout } = await run(PYTHON, [SCRIPT, ...args], { timeout: 120_000 });
  return stdout.trim().split('\n');
}

describe('the durable intake from Python (python3-redis, python3-cryptography)', () => {
  let server: TestRedis;
  let redis: Redis;
  let prefix: string;
  let queue: Queue<SpawnJobData, SpawnJobResult>;
  let flows: FlowProducer;
  let bridge: Bridge | undefined;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    prefix = uid('fleet');
    queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix });
    flows = new FlowProducer({ connection: { url: server.url }, prefix });
  });
  afterAll(async () => {
    await bridge?.stop();
    await queue?.close();
    await flows?.close();
    redis?.disconnect();
    await server?.stop();
  });

  async function startTheBridge() {
    bridge = await startBridge({
      subscriber: { url: server.url },
      redis,
      queue,
      flows,
      secrets: createSecretBox(TEST_SECRET_KEY),
      keys: fleetKeys(prefix),
      logger: createLogger({ level: 'silent' }),
      attempts: 3,
      keepLogs: 100,
    });
  }

  it('seals a token that fleet opens, and that a fleet with another key refuses by name', async () => {
    const [sealed] = await python(['--secret-key', TEST_SECRET_KEY, '--seal', TEST_TOKEN]);
    expect(sealed).toMatch(/^v1:[0-9a-f]{12}:/);
    expect(sealed).not.toContain(TEST_TOKEN);
    expect(createSecretBox(TEST_SECRET_KEY).open(sealed!)).toBe(TEST_TOKEN);
    expect(() => createSecretBox('another-key-of-at-least-32-characters!!').open(sealed!)).toThrow(/keys differ|sealed with key/);
  });

  it('keeps requests added while no bridge runs, queues each once with the token sealed, and deletes the entries', async () => {
    const requests = [legacyRequest(), legacyRequest()];
    // No bridge yet: pub/sub would lose these; the stream keeps them.
    await python([
      '--port',
      String(server.port),
      '--prefix',
      prefix,
      '--secret-key',
      TEST_SECRET_KEY,
      '--no-wait',
      '--requests',
      JSON.stringify([...requests, requests[0]]),
    ]);
    expect(await redis.xlen(fleetKeys(prefix).intake)).toBe(3);
    const stored = JSON.stringify(await redis.xrange(fleetKeys(prefix).intake, '-', '+'));
    expect(stored).not.toContain(TEST_TOKEN);

    await startTheBridge();
    await expect.poll(() => bridge!.intakeHandled(), { timeout: 20_000 }).toBe(3);
    const jobs = await queue.getJobs(['waiting']);
    expect(jobs.map((j) => j.id).sort()).toEqual(requests.map((r) => r.request_id as string).sort());
    for (const job of jobs) {
      expect(JSON.stringify(job.data)).not.toContain(TEST_TOKEN);
      expect(job.data.source).toBe('api');
      expect(createSecretBox(TEST_SECRET_KEY).open(job.data.sealedToken!)).toBe(TEST_TOKEN);
    }
    expect(await redis.xlen(fleetKeys(prefix).intake)).toBe(0);
    const pending = (await redis.xpending(fleetKeys(prefix).intake, INTAKE_GROUP)) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
  });

  it('answers an invalid request, and a plaintext token in the stream, with the eleven-key result', async () => {
    const invalid = legacyRequest({ timeout_seconds: -1 });
    const lines = await python([
      '--port',
      String(server.port),
      '--prefix',
      prefix,
      '--secret-key',
      TEST_SECRET_KEY,
      '--requests',
      JSON.stringify([invalid]),
    ]);
    const result = JSON.parse(lines[0]!) as SpawnResult;
    expect(Object.keys(result)).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result).toMatchObject({ request_id: invalid.request_id, success: false, error_type: 'invalid_request' });
    expect(result.error_message).toContain('timeout_seconds');

    const id = uid('plain');
    await redis.xadd(fleetKeys(prefix).intake, '*', 'request', JSON.stringify(legacyRequest({ request_id: id })));
    await expect.poll(() => redis.get(`fleet:result:${id}`), { timeout: 20_000 }).not.toBeNull();
    expect(JSON.parse((await redis.get(`fleet:result:${id}`))!)).toMatchObject({
      error_type: 'invalid_request',
      error_message: expect.stringContaining('sealed_token'),
    });
    expect(await queue.getJob(id)).toBeUndefined();
  });
});

describeDocker('the durable intake from Python, end to end', () => {
  let server: TestRedis;
  let fleet: Awaited<ReturnType<typeof startTestFleet>>;
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startRedis();
    env = testEnv(server.url, testImage());
    fleet = await startTestFleet(env, ['bridge', 'spawn']);
  });
  afterAll(async () => {
    await fleet?.stop();
    await server?.stop();
  });

  it('enqueues through the stream and gets the eleven-key result its SpawnResult accepts', async () => {
    const ok = legacyRequest({
      task_content: [
        eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'durable' }),
        completedLine('from the stream', 'beef02'),
      ].join('\n'),
    });
    const lines = await python([
      '--port',
      String(server.port),
      '--prefix',
      env.FLEET_PREFIX!,
      '--secret-key',
      TEST_SECRET_KEY,
      '--requests',
      JSON.stringify([ok]),
    ]);
    const result = JSON.parse(lines[0]!) as SpawnResult;
    expect(Object.keys(result)).toEqual([...LEGACY_RESULT_KEYS]);
    expect(result).toMatchObject({
      request_id: ok.request_id,
      success: true,
      exit_code: 0,
      commit_sha: 'beef02',
      summary: 'from the stream',
    });
  });
});

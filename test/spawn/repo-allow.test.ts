import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetClient } from '../../src/client.ts';
import { loadConfig } from '../../src/config.ts';
import { channels } from '../../src/protocol.ts';
import { repoAllowed } from '../../src/repo-allow.ts';
import { idleRuntime } from '../ops/support.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, TEST_SECRET_KEY, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

describe('FLEET_REPO_ALLOW patterns', () => {
  it('matches owner/name globs case-insensitively, and everything when unset', () => {
    const allow = ['acme/*', 'tools/cli', 'ops/deploy-*'];
    expect(repoAllowed('acme/widgets', allow)).toBe(true);
    expect(repoAllowed('ACME/Widgets', allow)).toBe(true);
    expect(repoAllowed('tools/cli', allow)).toBe(true);
    expect(repoAllowed('ops/deploy-eu', allow)).toBe(true);
    expect(repoAllowed('tools/clix', allow)).toBe(false);
    expect(repoAllowed('acmex/widgets', allow)).toBe(false);
    expect(repoAllowed('ops/deployer', allow)).toBe(false);
    // '.' is literal: 'a.b' does not allow 'axb'.
    expect(repoAllowed('o/axb', ['o/a.b'])).toBe(false);
    expect(repoAllowed('evil/x', undefined)).toBe(true);
  });

  it('refuses a setting it cannot read, naming it', () => {
    expect(() => loadConfig({ FLEET_REPO_ALLOW: 'acme/*, https://github.com/x' })).toThrow(/FLEET_REPO_ALLOW.*https/);
    expect(loadConfig({ FLEET_REPO_ALLOW: 'acme/*, tools/cli' }).repoAllow).toEqual(['acme/*', 'tools/cli']);
    expect(loadConfig({}).repoAllow).toBeUndefined();
  });
});

// A host that holds its own token used it for any repository a sender named (security review, finding 10).
describe('a fleet with FLEET_REPO_ALLOW (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let fleet: TestFleet;
  const created: string[] = [];

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    results = await ResultListener.start(server.url);
    // Docker answers and the image is there, but a container create is recorded, never run.
    const runtime = {
      ...idleRuntime(),
      create: async (spec: { name: string }) => {
        created.push(spec.name);
        throw new Error('no containers here');
      },
    };
    fleet = await startTestFleet(
      testEnv(server.url, 'unused:image', { FLEET_REPO_ALLOW: 'acme/*', FLEET_GITHUB_TOKEN: 'host-token-xyz' }),
      ['bridge', 'spawn'],
      { runtime: runtime as never },
    );
  });
  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    redis?.disconnect();
    await server?.stop();
  });

  it('answers a request for another repository with invalid_request at intake, and queues none', async () => {
    const request = legacyRequest({ repo: 'evil/exfiltrate' });
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string, 10_000);
    expect(result).toMatchObject({ success: false, error_type: 'invalid_request' });
    expect(result.error_message).toContain('FLEET_REPO_ALLOW');
    const queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: fleet.config.prefix });
    expect(await queue.getJob(request.request_id as string)).toBeUndefined();
    await queue.close();
  });

  it('refuses it on the worker host too, when it came in another way, before any container', async () => {
    // FleetClient enqueues straight onto the queue: only the spawn host's own check stands between it and the token.
    const client = new FleetClient({ redisUrl: server.url, prefix: fleet.config.prefix, secretKey: TEST_SECRET_KEY });
    try {
      const request = legacyRequest({ repo: 'evil/other' });
      delete request.github_token;
      await client.enqueue(request as never);
      const result = await results.next(request.request_id as string, 20_000);
      expect(result).toMatchObject({ success: false, error_type: 'invalid_request' });
      expect(result.error_message).toContain('FLEET_REPO_ALLOW');
      expect(created).toEqual([]);
    } finally {
      await client.close();
    }
  });
});

import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { channels } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startAnthropicTestServer, type AnthropicTestServer } from '../servers/anthropic.ts';
import { buildWorkerImage } from '../worker-image/harness.ts';
import { startGitServer, type GitServer } from './support.ts';

// droid runs either Factory's models (FACTORY_API_KEY) or a custom model the host configures. A host with
// neither must not start droid at all: the worker fails before its clone, naming what is missing, and no
// model endpoint hears from it. (This file has its own Redis: a second fleet's bridge on the Redis of
// agents.test.ts would take that file's requests too.)

const REPO = 'acme/unconfigured';

describeDocker('droid on a host with neither FACTORY_API_KEY nor a custom model', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let git: GitServer;
  let anthropic: AnthropicTestServer;
  let fleet: TestFleet;

  beforeAll(async () => {
    const image = await buildWorkerImage();
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    git = await startGitServer([REPO]);
    // The only model endpoint on the host (claude's): droid must not fall back to it or to anything else.
    anthropic = await startAnthropicTestServer({ apiKey: 'sk-ant-claude-only-0123456789', model: 'claude-sonnet-4-5-20250929' });
    fleet = await startTestFleet(
      testEnv(redisServer.url, image, {
        FLEET_DOCKER_NETWORK: 'host',
        FLEET_GIT_BASE_URL: git.url,
        FLEET_DIND: 'off',
        FLEET_WORKER_MEMORY: '1g',
        ANTHROPIC_API_KEY: 'sk-ant-claude-only-0123456789',
        FLEET_ANTHROPIC_BASE_URL: anthropic.url,
      }),
      ['bridge', 'spawn'],
    );
  }, 30 * 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await anthropic?.close();
    await git?.stop();
  });

  it('fails fast as task_failed naming FACTORY_API_KEY and the custom-model settings, before any clone or model call', async () => {
    const before = await git.git(REPO, 'rev-parse', 'main');
    const request = legacyRequest({ agent: 'droid', repo: REPO, timeout_seconds: 120, task_content: 'Write hello.txt.' });
    const started = Date.now();
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string, 120_000);
    const ms = Date.now() - started;
    console.log(`droid without FACTORY_API_KEY or a custom model: failed in ${ms} ms`);
    expect(result).toMatchObject({ success: false, error_type: 'task_failed', exit_code: 12, commit_sha: null });
    expect(result.error_message).toContain('FACTORY_API_KEY');
    expect(result.error_message).toContain('FLEET_DROID_MODEL_PROVIDER');
    // Nothing ran: no clone, no agent, no model call, and the repository is as it was.
    expect(result.logs_tail).not.toContain('on branch');
    expect(result.logs_tail).not.toContain('agent start');
    expect(anthropic.requests).toEqual([]);
    expect(await git.git(REPO, 'rev-parse', 'main')).toBe(before);
  }, 180_000);
});

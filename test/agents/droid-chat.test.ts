import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { channels } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { reply, text, tool } from '../servers/model-server.ts';
import { type ChatCompletionsTestServer, startChatCompletionsTestServer } from '../servers/openai-chat.ts';
import { buildWorkerImage } from '../worker-image/harness.ts';
import { startGitServer, type GitServer } from './support.ts';

// droid with a generic chat-completions custom model (the shape of most gateways and local servers),
// through its own fleet and Redis: the host maps the orchestrator's model to the gateway's name for droid.

const REPO = 'acme/chat-widgets';
const REQUESTED = 'claude-sonnet-4-5-20250929';
const GATEWAY_MODEL = 'gateway/coder-large';
const KEY = 'sk-chat-droid-0123456789';

describeDocker('droid with a chat-completions custom model', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let git: GitServer;
  let chat: ChatCompletionsTestServer;
  let fleet: TestFleet;

  beforeAll(async () => {
    const image = await buildWorkerImage();
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    git = await startGitServer([REPO]);
    chat = await startChatCompletionsTestServer({ apiKey: KEY, model: GATEWAY_MODEL });
    fleet = await startTestFleet(
      testEnv(redisServer.url, image, {
        FLEET_DOCKER_NETWORK: 'host',
        FLEET_GIT_BASE_URL: git.url,
        FLEET_DIND: 'off',
        FLEET_WORKER_MEMORY: '1g',
        FLEET_DROID_MODEL_PROVIDER: 'generic-chat-completion-api',
        FLEET_DROID_MODEL_BASE_URL: `${chat.url}/v1`,
        FLEET_DROID_MODEL_API_KEY: KEY,
        FLEET_MODEL_MAP: JSON.stringify({ droid: { [REQUESTED]: GATEWAY_MODEL } }),
      }),
      ['bridge', 'spawn'],
    );
  }, 30 * 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await chat?.close();
    await git?.stop();
  });

  it("does the task with droid's own Create and Execute tools, on the mapped model, and pushes it", async () => {
    const request = legacyRequest({ agent: 'droid', repo: REPO, model: REQUESTED, timeout_seconds: 240, result_format: 'v2' });
    const id = request.request_id as string;
    request.task_content = `Write hello.txt with a greeting, then check git status. (request ${id})`;
    chat.answerFor(
      id,
      reply(
        text('Creating the file.'),
        tool('Create', { file_path: '/workspace/hello.txt', content: `hello over chat completions ${id}\n` }),
      ),
      reply(tool('Execute', { command: 'git status --short', riskLevel: 'low', riskLevelReason: 'reads the status only' })),
      reply(text('Wrote hello.txt.')),
    );
    const started = Date.now();
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(id, 280_000)) as Awaited<ReturnType<typeof results.next>> & { model_used?: string };
    console.log(`droid over chat completions: ${Date.now() - started} ms`);
    expect(result).toMatchObject({ success: true, error_type: null, files_changed: ['hello.txt'], model_used: GATEWAY_MODEL });
    expect(await git.git(REPO, 'rev-parse', 'main')).toBe(result.commit_sha);
    expect(await git.git(REPO, 'show', `${result.commit_sha}:hello.txt`)).toBe(`hello over chat completions ${id}`);
    expect(
      chat
        .toolResultsFor(id)
        .map((r) => r.output)
        .join('\n'),
    ).toContain('?? hello.txt');
    expect(chat.mainRequests(id).every((r) => r.body?.model === GATEWAY_MODEL)).toBe(true);
    expect(chat.violations).toEqual([]);
  }, 300_000);
});

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channels, LEGACY_RESULT_KEYS, type SpawnResult } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker } from '../support/docker.ts';
import { legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, TEST_TOKEN, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startAnthropicTestServer, type AnthropicTestServer } from '../servers/anthropic.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { reply, text, tool, type ModelTestServer, type Turn } from '../servers/model-server.ts';
import { startResponsesTestServer, type ResponsesTestServer } from '../servers/openai-responses.ts';
import { buildWorkerImage } from '../worker-image/harness.ts';
import { openPullOf, startPushReceiver } from '../flow/support.ts';
import { startGitServer, type GitServer } from './support.ts';

// Each real agent CLI of the worker image (Claude Code, Codex, droid) does a task through an in-process
// fleet (bridge + spawn roles, real Redis, the real image, network host) against a test model server
// that speaks its vendor's wire protocol: the model's tool calls make the CLI's own tools write a file and
// run `git status`, and the worker commits and pushes what the tools wrote to a loopback git daemon.
// Requests run side by side: each task holds its request id, which routes the servers' scripts.

// One repository per agent: requests run side by side, and two pushes to one main would race.
const REPOS = { claude: 'acme/claude-widgets', codex: 'acme/codex-widgets', droid: 'acme/droid-widgets' } as const;
type RealAgent = keyof typeof REPOS;
const REQUESTED = 'claude-sonnet-4-5-20250929';
const CLAUDE_MODEL = 'claude-sonnet-4-6';
const CODEX_MODEL = 'gpt-5-codex';
const KEYS = { claude: 'sk-ant-claude-test-0123456789', codex: 'sk-codex-test-0123456789', droid: 'sk-ant-droid-test-0123456789' };
const MODEL_MAP = { claude: { [REQUESTED]: CLAUDE_MODEL }, codex: { [REQUESTED]: CODEX_MODEL } };

describeDocker('real agent CLIs through the fleet, against vendor test model servers', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let git: GitServer;
  let github: GitHubTestServer;
  let pushes: Awaited<ReturnType<typeof startPushReceiver>>;
  let anthropic: AnthropicTestServer;
  let droidModel: AnthropicTestServer;
  let responses: ResponsesTestServer;
  let fleet: TestFleet;
  let image: string;

  beforeAll(async () => {
    image = await buildWorkerImage();
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    github = await startGitHubTestServer({ users: { [TEST_TOKEN]: 'fleet-bot' } });
    for (const repo of Object.values(REPOS)) github.addRepo(repo);
    pushes = await startPushReceiver(github);
    git = await startGitServer(Object.values(REPOS), { onPushUrl: pushes.url });
    anthropic = await startAnthropicTestServer({ apiKey: KEYS.claude, model: CLAUDE_MODEL });
    droidModel = await startAnthropicTestServer({ apiKey: KEYS.droid, model: REQUESTED });
    responses = await startResponsesTestServer({ apiKey: KEYS.codex, model: CODEX_MODEL });
    fleet = await startTestFleet(
      testEnv(redisServer.url, image, {
        FLEET_DOCKER_NETWORK: 'host',
        FLEET_GIT_BASE_URL: git.url,
        FLEET_GITHUB_API_URL: github.url,
        FLEET_DIND: 'off',
        FLEET_WORKER_MEMORY: '1g',
        FLEET_HOST_CONCURRENCY: '4',
        ANTHROPIC_API_KEY: KEYS.claude,
        OPENAI_API_KEY: KEYS.codex,
        FLEET_ANTHROPIC_BASE_URL: anthropic.url,
        FLEET_OPENAI_BASE_URL: `${responses.url}/v1`,
        FLEET_DROID_MODEL_PROVIDER: 'anthropic',
        FLEET_DROID_MODEL_BASE_URL: droidModel.url,
        FLEET_DROID_MODEL_API_KEY: KEYS.droid,
        FLEET_MODEL_MAP: JSON.stringify(MODEL_MAP),
        // A failing model call fails the run at once: the failure tests need not wait out each CLI's backoff.
        FLEET_AGENT_MAX_RETRIES: '0',
      }),
      ['bridge', 'spawn'],
    );
  }, 30 * 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    for (const server of [anthropic, droidModel, responses, github]) await server?.close();
    await pushes?.close();
    await git?.stop();
  });

  /** Publishes a request whose task holds its id (the servers' script marker) and waits for its result. */
  async function submit(server: ModelTestServer, agent: RealAgent, turns: Turn[], overrides: Record<string, unknown> = {}) {
    const request = legacyRequest({ agent, repo: REPOS[agent], timeout_seconds: 240, task_title: `Greeting by ${agent}`, ...overrides });
    const id = request.request_id as string;
    request.task_content = `Write hello.txt with a greeting, then check git status. (request ${id})`;
    server.answerFor(id, ...turns);
    const started = Date.now();
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(id, 280_000);
    return { id, result, ms: Date.now() - started, raw: JSON.parse(results.raw.get(id)![0]!) as Record<string, unknown> };
  }

  /** The commit the worker pushed holds exactly what the agent's own tool wrote. */
  async function expectPushed(agent: RealAgent, result: SpawnResult, branch: string, content: string) {
    expect(result).toMatchObject({ success: true, error_type: null, files_changed: ['hello.txt'] });
    expect(await git.git(REPOS[agent], 'rev-parse', branch)).toBe(result.commit_sha);
    expect(await git.git(REPOS[agent], 'show', `${result.commit_sha}:hello.txt`)).toBe(content);
  }

  const claudeTurns = (id: string): Turn[] => [
    reply(text('I will write the file.'), tool('Write', { file_path: '/workspace/hello.txt', content: `hello from claude ${id}\n` })),
    reply(tool('Bash', { command: 'git status --short', description: 'Show the working tree status' })),
    reply(text('Wrote hello.txt with a greeting.')),
  ];

  it.concurrent("claude: a legacy request is done by Claude Code's own Write and Bash tools, and pushed", async ({ expect }) => {
    const id = `claude-${Date.now()}`;
    const { id: requestId, result, raw, ms } = await submit(anthropic, 'claude', claudeTurns(id));
    console.log(`claude legacy request: ${ms} ms`);
    expect(Object.keys(raw)).toEqual([...LEGACY_RESULT_KEYS]);
    await expectPushed('claude', result, 'main', `hello from claude ${id}`);
    // The Bash tool really ran git status in the workspace: its output went back to the model.
    expect(
      anthropic
        .toolResultsFor(requestId)
        .map((r) => r.output)
        .join('\n'),
    ).toContain('?? hello.txt');
    expect(anthropic.mainRequests(requestId)).toHaveLength(3);
    // The JSON stream reached the host line by line and was read: the log holds its transcript, up to the end.
    expect(result.logs_tail).toMatch(/^\[tool result\] ok/m);
    expect(result.logs_tail).toMatch(/^\[done\] success, \d+ turn/m);
    expect(anthropic.violations).toEqual([]);
    await expect.poll(() => containersWithLabel(`fleet.request_id=${requestId}`), { timeout: 15_000, interval: 100 }).toEqual([]);
  }, 300_000);

  it.concurrent("codex: a legacy request is done by Codex's exec_command tool, with the mapped model, and pushed", async () => {
    const id = `codex-${Date.now()}`;
    const {
      id: requestId,
      result,
      ms,
    } = await submit(responses, 'codex', [
      reply(tool('exec_command', { cmd: `printf 'hello from codex ${id}\\n' > hello.txt && git status --short` })),
      reply(text('Wrote hello.txt with a greeting.')),
    ]);
    console.log(`codex legacy request: ${ms} ms`);
    await expectPushed('codex', result, 'main', `hello from codex ${id}`);
    expect(
      responses
        .toolResultsFor(requestId)
        .map((r) => r.output)
        .join('\n'),
    ).toContain('?? hello.txt');
    expect(responses.mainRequests(requestId).map((r) => r.body?.model)).toEqual([CODEX_MODEL, CODEX_MODEL]);
    expect(result.logs_tail).toMatch(/^\[done\] turn completed: \d+ input/m);
    expect(responses.violations).toEqual([]);
  }, 300_000);

  it.concurrent("droid: a legacy request is done by droid's Create and Execute tools through the host's custom model, without a Factory key", async () => {
    const id = `droid-${Date.now()}`;
    const {
      id: requestId,
      result,
      ms,
    } = await submit(droidModel, 'droid', [
      reply(text('Creating the file.'), tool('Create', { file_path: '/workspace/hello.txt', content: `hello from droid ${id}\n` })),
      reply(tool('Execute', { command: 'git status --short', riskLevel: 'low', riskLevelReason: 'reads the status only' })),
      reply(text('Wrote hello.txt with a greeting.')),
    ]);
    console.log(`droid legacy request: ${ms} ms`);
    await expectPushed('droid', result, 'main', `hello from droid ${id}`);
    expect(
      droidModel
        .toolResultsFor(requestId)
        .map((r) => r.output)
        .join('\n'),
    ).toContain('?? hello.txt');
    expect(result.logs_tail).toMatch(/^\[done\] \d+ turn/m);
    expect(droidModel.violations).toEqual([]);
    // Nothing of droid's went to another agent's endpoint, nor theirs to droid's.
    expect(anthropic.requests.some((r) => r.marker === requestId)).toBe(false);
  }, 300_000);

  it.concurrent('claude, mode "pr": the agent\'s commit is pushed to fleet/{id} and a pull request opened; the v2 result names the model used', async () => {
    const id = `claude-pr-${Date.now()}`;
    const { id: requestId, result } = await submit(anthropic, 'claude', claudeTurns(id), { mode: 'pr', result_format: 'v2' });
    const branch = `fleet/${requestId}`;
    await expectPushed('claude', result, branch, `hello from claude ${id}`);
    expect(result.branch).toBe(branch);
    expect(await git.git(REPOS.claude, 'rev-parse', 'main')).not.toBe(result.commit_sha);
    const v2 = result as SpawnResult & {
      pull_request: { number: number; head_sha: string };
      model_used: string;
      usage: Record<string, unknown>;
    };
    expect(v2.model_used).toBe(CLAUDE_MODEL);
    // The usage ledger read Claude Code's own stream: its turns, tokens and reported cost.
    expect(v2.usage).toMatchObject({ agent: 'claude', model: CLAUDE_MODEL, turns: expect.any(Number) });
    expect(v2.usage.turns as number).toBeGreaterThan(0);
    expect(v2.usage.output_tokens as number).toBeGreaterThan(0);
    expect(v2.pull_request.head_sha).toBe(result.commit_sha);
    expect(openPullOf(github, REPOS.claude, branch)).toBe(v2.pull_request.number);
    expect(anthropic.mainRequests(requestId).every((r) => r.body?.model === CLAUDE_MODEL)).toBe(true);
  }, 300_000);

  describe('a model that fails', () => {
    it.concurrent("claude: HTTP 429 ends as task_failed with the API's message in logs_tail, after one call", async () => {
      const { id, result, ms } = await submit(anthropic, 'claude', [
        { kind: 'http_error', status: 429, message: 'Number of request tokens has exceeded your per-minute rate limit' },
      ]);
      console.log(`claude 429: ${ms} ms`);
      expect(result).toMatchObject({ success: false, error_type: 'task_failed', commit_sha: null });
      expect(result.error_message).toContain('claude exited with code 1');
      expect(result.logs_tail).toContain('per-minute rate limit');
      expect(anthropic.mainRequests(id)).toHaveLength(1);
    }, 300_000);

    it.concurrent('codex: HTTP 500 on every call ends as task_failed with the error in logs_tail', async () => {
      const errors: Turn[] = Array.from({ length: 10 }, () => ({
        kind: 'http_error',
        status: 500,
        message: 'The server had an error while processing your request.',
      }));
      const { id, result, ms } = await submit(responses, 'codex', errors);
      console.log(`codex 500: ${ms} ms, ${responses.mainRequests(id).length} calls`);
      expect(result).toMatchObject({ success: false, error_type: 'task_failed', commit_sha: null });
      expect(result.error_message).toMatch(/codex exited with code [1-9]/);
      // Codex words a 500 in its own way; its stream ends with the failed turn.
      expect(result.logs_tail).toContain('"type":"turn.failed"');
      expect(result.logs_tail).toContain('experiencing high demand');
      expect(responses.mainRequests(id)).toHaveLength(1);
    }, 300_000);

    it.concurrent('claude: a stream cut in the middle ends as task_failed naming the dropped connection', async () => {
      const cuts: Turn[] = Array.from({ length: 5 }, () => ({
        kind: 'cut',
        steps: [text('Starting.'), tool('Write', { file_path: '/workspace/x.txt', content: 'x' })],
      }));
      const { result, ms } = await submit(anthropic, 'claude', cuts);
      console.log(`claude stream cut: ${ms} ms`);
      expect(result).toMatchObject({ success: false, error_type: 'task_failed', commit_sha: null });
      expect(result.logs_tail).toMatch(/Connection dropped|ECONNRESET|terminated/i);
    }, 300_000);

    it.concurrent("droid: a model that never answers is stopped by the request's timeout", async () => {
      const { result, ms } = await submit(droidModel, 'droid', [{ kind: 'stall' }], { timeout_seconds: 25 });
      console.log(`droid stalled model: ${ms} ms`);
      expect(result).toMatchObject({ success: false, error_type: 'timeout' });
      expect(ms).toBeLessThan(25_000 + 30_000);
    }, 300_000);
  });
});

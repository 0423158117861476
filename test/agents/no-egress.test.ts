import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDocker } from '../support/docker.ts';
import { startAnthropicTestServer, type AnthropicTestServer } from '../servers/anthropic.ts';
import { reply, text, tool } from '../servers/model-server.ts';
import { startResponsesTestServer, type ResponsesTestServer } from '../servers/openai-responses.ts';
import { buildWorkerImage, byType, fakeToken, makeBareRepo, removeLeftovers, runWorker, type BareRepo } from '../worker-image/harness.ts';

// A worker whose egress is dropped, not refused: every connection beyond loopback goes to a "proxy" that
// accepts and never answers, as a firewall that drops packets makes a client wait. Each CLI, as the worker
// image invokes it, must do its task without opening one such connection (Claude Code's telemetry and
// update checks, Codex's plugin sync and analytics, droid's calls to api.factory.ai all did before their
// switches were set), so nothing waits on them. The workers run the entrypoint directly (no fleet).

interface Blackhole {
  url: string;
  /** The CONNECT lines received: every host a CLI tried to reach. */
  attempts: string[];
  close(): Promise<void>;
}

async function startBlackhole(): Promise<Blackhole> {
  const attempts: string[] = [];
  const sockets: Socket[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    socket.once('data', (d) => attempts.push(d.toString('latin1').split('\r\n')[0]!));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    attempts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const MODEL = 'claude-sonnet-4-5-20250929';

describeDocker('real agent CLIs with egress dropped', () => {
  let image: string;
  let hole: Blackhole;
  let anthropic: AnthropicTestServer;
  let responses: ResponsesTestServer;
  const repos: BareRepo[] = [];

  beforeAll(async () => {
    image = await buildWorkerImage();
    hole = await startBlackhole();
    anthropic = await startAnthropicTestServer({ apiKey: 'sk-ant-egress-0123456789', model: MODEL });
    responses = await startResponsesTestServer({ apiKey: 'sk-codex-egress-0123456789', model: MODEL });
  }, 30 * 60_000);

  afterAll(async () => {
    expect(await removeLeftovers()).toEqual([]);
    for (const r of repos) r.cleanup();
    await anthropic?.close();
    await responses?.close();
    await hole?.close();
  });

  async function run(agent: string, env: Record<string, string>) {
    const repo = await makeBareRepo();
    repos.push(repo);
    const proxy = hole.url;
    const started = Date.now();
    const worker = await runWorker(image, {
      network: 'host',
      timeoutMs: 120_000,
      env: {
        FLEET_REQUEST_ID: `egress-${agent}`,
        REPO: 'acme/widgets',
        FLEET_GIT_URL: 'file:///srv/origin.git',
        FLEET_AGENT: agent,
        MODEL,
        TASK_TITLE: 'Greeting',
        GITHUB_TOKEN: fakeToken(),
        FLEET_DIND: 'off',
        HTTPS_PROXY: proxy,
        HTTP_PROXY: proxy,
        https_proxy: proxy,
        http_proxy: proxy,
        NO_PROXY: '127.0.0.1,localhost',
        no_proxy: '127.0.0.1,localhost',
        ...env,
      },
      input: { 'TASK.md': `Write hello.txt (egress ${agent}).\n` },
      binds: { [repo.path]: '/srv/origin.git' },
    });
    const ms = Date.now() - started;
    await worker.remove();
    return { worker, ms };
  }

  it.concurrent('claude opens no connection beyond its model endpoint', async () => {
    anthropic.answerFor(
      'egress claude',
      reply(tool('Write', { file_path: '/workspace/hello.txt', content: 'hi\n' })),
      reply(text('Done.')),
    );
    const { worker, ms } = await run('claude', { ANTHROPIC_API_KEY: 'sk-ant-egress-0123456789', ANTHROPIC_BASE_URL: anthropic.url });
    console.log(`claude with egress dropped: ${ms} ms`);
    expect(worker.timedOut).toBe(false);
    expect(byType(worker.events, 'completed')).toHaveLength(1);
    expect(hole.attempts.filter((a) => /anthropic|claude|sentry|statsig|datadog/.test(a))).toEqual([]);
  }, 180_000);

  it.concurrent('codex opens no connection beyond its model endpoint', async () => {
    responses.answerFor('egress codex', reply(tool('exec_command', { cmd: "printf 'hi\\n' > hello.txt" })), reply(text('Done.')));
    const { worker, ms } = await run('codex', { OPENAI_API_KEY: 'sk-codex-egress-0123456789', OPENAI_BASE_URL: `${responses.url}/v1` });
    console.log(`codex with egress dropped: ${ms} ms`);
    expect(worker.timedOut).toBe(false);
    expect(byType(worker.events, 'completed')).toHaveLength(1);
    expect(hole.attempts.filter((a) => /chatgpt|github|openai/.test(a))).toEqual([]);
  }, 180_000);

  it.concurrent('droid with a custom model opens no connection to Factory', async () => {
    anthropic.answerFor(
      'egress droid',
      reply(tool('Create', { file_path: '/workspace/hello.txt', content: 'hi\n' })),
      reply(text('Done.')),
    );
    const { worker, ms } = await run('droid', {
      FLEET_DROID_MODEL_PROVIDER: 'anthropic',
      FLEET_DROID_MODEL_BASE_URL: anthropic.url,
      FLEET_DROID_MODEL_API_KEY: 'sk-ant-egress-0123456789',
    });
    console.log(`droid with egress dropped: ${ms} ms`);
    expect(worker.timedOut).toBe(false);
    expect(byType(worker.events, 'completed')).toHaveLength(1);
    expect(hole.attempts.filter((a) => a.includes('factory'))).toEqual([]);
  }, 180_000);

  it('nothing of the three reached the dropped egress at all', () => {
    expect(hole.attempts).toEqual([]);
  });
});

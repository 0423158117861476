import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDocker } from '../support/docker.ts';
import { startAnthropicTestServer, type AnthropicTestServer } from '../servers/anthropic.ts';
import { reply, text, tool } from '../servers/model-server.ts';
import { type BareRepo, buildWorkerImage, byType, fakeToken, makeBareRepo, removeLeftovers, runWorker } from '../worker-image/harness.ts';

// FLEET_MAX_TURNS in the container's env caps Claude Code's turns (--max-turns): a model that keeps
// calling tools is stopped after that many, and the run fails instead of going on until the timeout.

const MODEL = 'claude-sonnet-4-5-20250929';
const KEY = 'sk-ant-turns-0123456789';

describeDocker('FLEET_MAX_TURNS', () => {
  let image: string;
  let anthropic: AnthropicTestServer;
  let repo: BareRepo;

  beforeAll(async () => {
    image = await buildWorkerImage();
    anthropic = await startAnthropicTestServer({ apiKey: KEY, model: MODEL });
    repo = await makeBareRepo();
  }, 30 * 60_000);

  afterAll(async () => {
    expect(await removeLeftovers()).toEqual([]);
    repo?.cleanup();
    await anthropic?.close();
  });

  it("stops claude after that many turns, and the worker reports the agent's failure", async () => {
    const turn = (n: number) => reply(tool('Bash', { command: `echo turn ${n}`, description: `turn ${n}` }));
    anthropic.answerFor('max turns', turn(1), turn(2), turn(3), turn(4), reply(text('Done.')));
    const run = await runWorker(image, {
      network: 'host',
      timeoutMs: 120_000,
      env: {
        FLEET_REQUEST_ID: 'max-turns',
        FLEET_GIT_URL: 'file:///srv/origin.git',
        FLEET_AGENT: 'claude',
        MODEL,
        GITHUB_TOKEN: fakeToken(),
        FLEET_DIND: 'off',
        FLEET_MAX_TURNS: '2',
        ANTHROPIC_API_KEY: KEY,
        ANTHROPIC_BASE_URL: anthropic.url,
      },
      input: { 'TASK.md': 'Keep going (max turns).\n' },
      binds: { [repo.path]: '/srv/origin.git' },
    });
    await run.remove();
    expect(run.timedOut).toBe(false);
    expect(anthropic.mainRequests('max turns')).toHaveLength(2);
    expect(byType(run.events, 'failed')[0]).toMatchObject({ error_type: 'task_failed' });
    expect(run.logLines.join('\n')).toContain('error_max_turns');
  }, 180_000);
});

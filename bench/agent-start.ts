/**
 * Cold start of each real agent CLI in the worker image: from the container's start (Docker's
 * State.StartedAt) to the agent's first model request at a loopback test server, beside the custom shell
 * agent (`curl` to the same server) as the baseline measured in the same run. Workers run the entrypoint
 * as the spawn role would (network host, no Docker-in-Docker, a local bare repository), one at a time.
 */
import { startAnthropicTestServer } from '../test/servers/anthropic.ts';
import { reply, text, type ModelTestServer } from '../test/servers/model-server.ts';
import { startResponsesTestServer } from '../test/servers/openai-responses.ts';
import { buildWorkerImage, docker, fakeToken, makeBareRepo, runWorker } from '../test/worker-image/harness.ts';

const MODEL = 'claude-sonnet-4-5-20250929';
const KEY = 'sk-bench-0123456789';

export interface AgentStartRow {
  agent: string;
  runs: number;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  /** The whole worker run: container start to exit (clone, agent, commit, push). */
  median_run_ms: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchAgentStart(runs = Number(process.env.BENCH_AGENT_RUNS ?? 3)): Promise<AgentStartRow[]> {
  const image = await buildWorkerImage();
  const anthropic = await startAnthropicTestServer({ apiKey: KEY, model: MODEL });
  const responses = await startResponsesTestServer({ apiKey: KEY, model: MODEL });
  const repo = await makeBareRepo();
  const agents: { agent: string; server: ModelTestServer; env: Record<string, string> }[] = [
    {
      agent: 'custom',
      server: anthropic,
      env: {
        // The baseline's "model request": the first thing its command does, to the same kind of server.
        FLEET_AGENT_CMD: `curl -fsS -o /dev/null -H 'x-api-key: ${KEY}' -H 'content-type: application/json' -d "{\\"model\\":\\"${MODEL}\\",\\"tools\\":[{\\"name\\":\\"none\\"}],\\"messages\\":[{\\"role\\":\\"user\\",\\"content\\":\\"$(cat TASK.md)\\"}]}" ${anthropic.url}/v1/messages`,
      },
    },
    { agent: 'claude', server: anthropic, env: { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: anthropic.url } },
    { agent: 'codex', server: responses, env: { OPENAI_API_KEY: KEY, OPENAI_BASE_URL: `${responses.url}/v1` } },
    {
      agent: 'droid',
      server: anthropic,
      env: { FLEET_DROID_MODEL_PROVIDER: 'anthropic', FLEET_DROID_MODEL_BASE_URL: anthropic.url, FLEET_DROID_MODEL_API_KEY: KEY },
    },
  ];
  const rows: AgentStartRow[] = [];
  try {
    for (const { agent, server, env } of agents) {
      const firsts: number[] = [];
      const totals: number[] = [];
      for (let i = 0; i < runs; i++) {
        const marker = `bench-${agent}-${i}-${Date.now()}`;
        server.answerFor(marker, reply(text('Done.')));
        const run = await runWorker(image, {
          network: 'host',
          timeoutMs: 180_000,
          env: {
            FLEET_REQUEST_ID: marker,
            REPO: 'acme/widgets',
            FLEET_GIT_URL: 'file:///srv/origin.git',
            FLEET_AGENT: agent,
            MODEL,
            TASK_TITLE: 'bench',
            GITHUB_TOKEN: fakeToken(),
            FLEET_DIND: 'off',
            ...env,
          },
          input: { 'TASK.md': `Say done (${marker}).\n` },
          binds: { [repo.path]: '/srv/origin.git' },
        });
        try {
          const { stdout } = await docker(['inspect', '--format', '{{.State.StartedAt}} {{.State.FinishedAt}}', run.container]);
          const [startedAt, finishedAt] = stdout.trim().split(' ').map(toMs);
          const first = server.mainRequests(marker)[0];
          if (!first || run.exitCode !== 0)
            throw new Error(
              `${agent} run ${i}: exit ${run.exitCode}, ${first ? 'a' : 'no'} model request:\n${run.logLines.slice(-15).join('\n')}`,
            );
          firsts.push(first.at - startedAt!);
          totals.push(finishedAt! - startedAt!);
        } finally {
          await run.remove();
        }
      }
      rows.push({
        agent,
        runs,
        median_ms: median(firsts),
        min_ms: Math.min(...firsts),
        max_ms: Math.max(...firsts),
        median_run_ms: median(totals),
      });
    }
  } finally {
    repo.cleanup();
    await anthropic.close();
    await responses.close();
  }
  return rows;
}

/** Docker's RFC 3339 times carry nanoseconds; Date.parse takes milliseconds. */
function toMs(rfc3339: string): number {
  return Date.parse(rfc3339.replace(/(\.\d{3})\d+/, '$1'));
}

/**
 * Cold start of each real agent CLI in the worker image: from the container's start (Docker's
 * State.StartedAt) to the agent's first model request at a loopback test server, beside the custom shell
 * agent (`curl` to the same server) as the baseline measured in the same run. Workers run the entrypoint
 * as the spawn role would (network host, no Docker-in-Docker, a local bare repository), one at a time.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { channels } from '../src/protocol.ts';
import { legacyRequest, startTestFleet, testEnv, uid } from '../test/support/fleet.ts';
import { startGitDaemon } from '../test/support/git-daemon.ts';
import { startRedis } from '../test/support/redis.ts';
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

export interface WarmStartRow {
  path: string;
  runs: number;
  /** PUBLISH → the worker's `started` event: the launch alone (claim or create + start), before the clone. */
  started_p50_ms: number;
  started_p95_ms: number;
  /** PUBLISH on worker:spawn → the worker's `progress` event of stage `run` (the agent starts right after). */
  agent_start_p50_ms: number;
  agent_start_p95_ms: number;
  /** PUBLISH → the result on worker:result:{id}, for a trivial task (no changes). */
  result_p50_ms: number;
  result_p95_ms: number;
  /** Jobs that got a pool container / that found none. */
  claims: number;
  misses: number;
}

/** The pool each row runs with: none (cold), generic containers, or containers of the bench's repository. */
const POOLS = {
  cold: { FLEET_WARM_POOL: '0' },
  warm: { FLEET_WARM_POOL: '1' },
  'warm (repository)': { FLEET_WARM_POOL: '0', FLEET_WARM_REPOS: 'acme/widgets' },
} as const;

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
};

/**
 * Publish → agent start and publish → result through an in-process fleet (bridge + spawn) with the real worker
 * image, the custom agent and a loopback git daemon, sequential legacy requests: cold (FLEET_WARM_POOL=0) against
 * warm (a full pool before each request: generic containers, or FLEET_WARM_REPOS containers with the repository
 * cloned), Docker-in-Docker off and on (caps mode: this machine has no sysbox). The git mirror cache is on, as by
 * default. The cold rows are the baseline of the same run.
 */
export async function benchWarmStart(runs = Number(process.env.BENCH_WARM_RUNS ?? 8)): Promise<WarmStartRow[]> {
  const image = await buildWorkerImage();
  const redisServer = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-warm-'));
  mkdirSync(join(dir, 'acme'), { recursive: true });
  const repo = await makeBareRepo();
  cpSync(repo.path, join(dir, 'acme', 'widgets.git'), { recursive: true });
  const daemon = await startGitDaemon(dir, 'acme/widgets');
  const publisher = new Redis(redisServer.url);
  const listener = new Redis(redisServer.url);
  const seen = new Map<string, { started?: number; run?: number; result?: number; wake?: () => void; done?: () => void }>();
  listener.on('message', (_channel, message: string) => {
    const event = JSON.parse(message) as { request_id: string; event_type: string; stage?: string };
    const entry = seen.get(event.request_id);
    if (entry && event.event_type === 'started') entry.started ??= performance.now();
    if (entry && event.event_type === 'progress' && event.stage === 'run') entry.run ??= performance.now();
  });
  listener.on('pmessage', (_pattern, channel: string) => {
    const entry = seen.get(channel.slice(channels.result('').length));
    if (entry) {
      entry.result = performance.now();
      entry.wake?.();
    }
  });
  await listener.subscribe(channels.allEvents);
  await listener.psubscribe(channels.result('*'));
  const rows: WarmStartRow[] = [];
  try {
    for (const dind of ['off', 'caps'] as const) {
      for (const [pool, poolEnv] of Object.entries(POOLS)) {
        const fleet = await startTestFleet(
          testEnv(redisServer.url, image, {
            FLEET_DOCKER_NETWORK: 'host',
            FLEET_GIT_BASE_URL: daemon.url,
            FLEET_AGENT_CMD: 'sh TASK.md',
            FLEET_DIND: dind,
            FLEET_WORKER_MEMORY: '1g',
            FLEET_HOST_CONCURRENCY: '1',
            FLEET_GIT_CACHE: 'on',
            ...poolEnv,
          }),
          ['bridge', 'spawn'],
        );
        // The job ends once its container is gone (the result comes first): the next request is sent then, so
        // that it measures a start and not the wait for the cap's one slot (the dispatch bench waits alike).
        fleet.spawn!.worker.on('completed', (job) => seen.get(job.id!)?.done?.());
        const toStarted: number[] = [];
        const toRun: number[] = [];
        const toResult: number[] = [];
        try {
          for (let i = -1; i < runs; i++) {
            // A warm start is a claim from a full pool: wait for the refill of the last one. A repository's pool
            // container needs the host's mirror of it, which the warm-up run (a miss) makes.
            if (i >= 0 || pool !== 'warm (repository)') await fleet.spawn!.pool?.whenIdle();
            const request = legacyRequest({ agent: 'custom', timeout_seconds: 120, task_content: `echo bench ${uid()}\n` });
            const id = request.request_id as string;
            let wake!: () => void;
            const resulted = new Promise<void>((resolve) => (wake = resolve));
            const completed = new Promise<void>((resolve) => seen.set(id, { wake, done: resolve }));
            const sent = performance.now();
            await publisher.publish(channels.spawn, JSON.stringify(request));
            await resulted;
            await completed;
            const entry = seen.get(id)!;
            if (entry.run === undefined) throw new Error(`${id}: a result without the run stage (dind ${dind}, ${pool})`);
            // Run -1 warms up connections and the page cache, outside the figures.
            if (i >= 0) {
              toStarted.push(entry.started! - sent);
              toRun.push(entry.run - sent);
              toResult.push(entry.result! - sent);
            }
          }
          const stats = fleet.spawn!.warmPool();
          rows.push({
            path: `${pool}, DinD ${dind === 'off' ? 'off' : 'on (caps)'}`,
            runs,
            started_p50_ms: percentile(toStarted, 50),
            started_p95_ms: percentile(toStarted, 95),
            agent_start_p50_ms: percentile(toRun, 50),
            agent_start_p95_ms: percentile(toRun, 95),
            result_p50_ms: percentile(toResult, 50),
            result_p95_ms: percentile(toResult, 95),
            claims: stats?.claims ?? 0,
            misses: stats?.misses ?? runs + 1,
          });
        } finally {
          await fleet.stop();
        }
      }
    }
  } finally {
    publisher.disconnect();
    listener.disconnect();
    await daemon.stop();
    await redisServer.stop();
    repo.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

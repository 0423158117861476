/**
 * Result before teardown (issue 11, item 2): sequential trivial requests on one spawn host (the busybox test
 * worker, no Docker-in-Docker, cap 1), timed from publish to the result and from publish to Docker's `destroy`
 * event of the request's container. Before this change the result went out only after the removal, so the
 * second column is the baseline in the same run: what the orchestrator waited before.
 */
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { Redis } from 'ioredis';
import { channels } from '../src/protocol.ts';
import { testImage } from '../test/support/docker.ts';
import { completedLine, legacyRequest, publishJson, ResultListener, startTestFleet, testEnv } from '../test/support/fleet.ts';
import { startRedis } from '../test/support/redis.ts';

export interface TeardownRow {
  measure: string;
  runs: number;
  p50_ms: number;
  p95_ms: number;
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

export async function benchResultTeardown(runs = Number(process.env.BENCH_TEARDOWN_RUNS ?? 10)): Promise<TeardownRow[]> {
  const server = await startRedis();
  const redis = new Redis(server.url);
  const results = await ResultListener.start(server.url);
  const env = testEnv(server.url, testImage(), { FLEET_HOST_CONCURRENCY: '1' });
  const fleet = await startTestFleet(env, ['bridge', 'spawn']);
  const docker = new Docker();
  const events = (await docker.getEvents({
    filters: { type: ['container'], event: ['destroy'], label: [`fleet.host=${env.FLEET_HOST_ID}`] },
  })) as unknown as Readable;
  const destroyedAt = new Map<string, number>();
  const waiting = new Map<string, () => void>();
  let buffered = '';
  events.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line) as { timeNano: number; Actor: { Attributes: Record<string, string> } };
      const id = event.Actor.Attributes['fleet.request_id'];
      if (!id) continue;
      destroyedAt.set(id, event.timeNano / 1e6);
      waiting.get(id)?.();
    }
  });
  const destroyed = (id: string) =>
    new Promise<number>((resolve) => {
      const done = () => resolve(destroyedAt.get(id)!);
      if (destroyedAt.has(id)) done();
      else waiting.set(id, done);
    });

  const toResult: number[] = [];
  const toRemoved: number[] = [];
  try {
    // One warm-up run: the first create pays for image and layer caches.
    for (let i = -1; i < runs; i++) {
      const request = legacyRequest({ task_content: completedLine(`run ${i}`) });
      const id = request.request_id as string;
      const t0 = Date.now();
      await publishJson(redis, channels.spawn, request);
      await results.next(id, 60_000);
      const resultMs = Date.now() - t0;
      const removedMs = (await destroyed(id)) - t0;
      if (i < 0) continue;
      toResult.push(resultMs);
      toRemoved.push(removedMs);
    }
  } finally {
    events.destroy();
    await fleet.stop();
    await results.close();
    redis.disconnect();
    await server.stop();
  }
  const gains = toRemoved.map((removed, i) => removed - toResult[i]!);
  return [
    { measure: 'publish → result (now: before teardown)', runs, p50_ms: quantile(toResult, 0.5), p95_ms: quantile(toResult, 0.95) },
    {
      measure: 'publish → container removed (baseline: the result came after this)',
      runs,
      p50_ms: Math.round(quantile(toRemoved, 0.5)),
      p95_ms: Math.round(quantile(toRemoved, 0.95)),
    },
    // Per run, so the noise of a shared machine cancels: positive = the result was out that long before removal.
    {
      measure: 'result ahead of removal, per run',
      runs,
      p50_ms: Math.round(quantile(gains, 0.5)),
      p95_ms: Math.round(quantile(gains, 0.95)),
    },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.table(await benchResultTeardown());
  process.exit(0);
}

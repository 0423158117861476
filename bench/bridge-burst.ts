import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { FlowProducer, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE_NAMES } from '../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../queues/spawn.ts';
import { startBridge, type Bridge } from '../src/bridge.ts';
import { fleetKeys } from '../src/keys.ts';
import { createLogger } from '../src/logger.ts';
import { channels } from '../src/protocol.ts';
import { createSecretBox } from '../src/secrets.ts';

const run = promisify(execFile);
const PUBLISHER = join(import.meta.dirname, '../test/support/publish-burst.mjs');
const SUBSCRIBER_NAME = 'burst-bench-sub';

export interface BurstFigures {
  /** Requests the bridge received (or, for the raw subscriber, messages it read). */
  received: number;
  /** Spawn jobs in the queue at the end. */
  queued: number;
  lost: number;
  /** Subscriber connections Redis closed during the burst. */
  disconnects: number;
  seconds: number;
  perSecond: number;
  /** The most the Redis side held for the subscriber (CLIENT LIST omem), in MiB. */
  peakOmemMiB: number;
  /** This process's resident memory above its level before the burst, at its peak, in MiB. */
  peakRssMiB: number;
  lagP99Ms: number;
  lagMaxMs: number;
}

/** Samples what a burst does to Redis's output buffer and to this process, every 10 ms. */
function sampler(url: string) {
  const probe = new Redis(url);
  const lag = monitorEventLoopDelay({ resolution: 5 });
  const baseRss = process.memoryUsage().rss;
  let peakOmem = 0;
  let peakRss = 0;
  let busy = false;
  lag.enable();
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss - baseRss);
    if (busy) return;
    busy = true;
    probe
      .client('LIST')
      .then((list) => {
        for (const line of String(list).split('\n')) {
          if (!line.includes(`name=${SUBSCRIBER_NAME}`)) continue;
          peakOmem = Math.max(peakOmem, Number(/ omem=(\d+)/.exec(line)?.[1] ?? 0));
        }
      })
      .catch(() => {})
      .finally(() => (busy = false));
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      lag.disable();
      probe.disconnect();
      return {
        peakOmemMiB: Math.round((peakOmem / 2 ** 20) * 10) / 10,
        peakRssMiB: Math.round(peakRss / 2 ** 20),
        lagP99Ms: Math.round(lag.percentile(99) / 1e5) / 10,
        lagMaxMs: Math.round(lag.max / 1e5) / 10,
      };
    },
  };
}

async function publish(url: string, count: number, bytes: number, idPrefix: string): Promise<{ receivers: number }> {
  const { stdout } = await run(process.execPath, [PUBLISHER, url, String(count), String(bytes), idPrefix], {
    maxBuffer: 1 << 20,
    timeout: 120_000,
  });
  return JSON.parse(stdout) as { receivers: number };
}

/**
 * Waits until `done()` stops growing for `quietMs` after the publisher finished: how a burst is
 * known to be over when some of it may have been lost (a lost message gives no event).
 */
async function settle(read: () => number | Promise<number>, target: number, quietMs: number, deadlineMs: number) {
  const deadline = Date.now() + deadlineMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const now = await read();
    if (now >= target) return now;
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since > quietMs || Date.now() > deadline) return now;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The fleet bridge alone on `url`: a burst published at once, counted as queued jobs. */
export async function burstThroughBridge(
  url: string,
  count: number,
  bytes: number,
  options: { quietMs?: number; concurrency?: number } = {},
): Promise<BurstFigures> {
  const prefix = `burst-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
  const connection = { url };
  const queue = new Queue<SpawnJobData, SpawnJobResult>(QUEUE_NAMES.spawn, { connection, prefix });
  const flows = new FlowProducer({ connection, prefix });
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableAutoPipelining: true });
  let disconnects = 0;
  const bridge: Bridge = await startBridge({
    subscriber: { url, connectionName: SUBSCRIBER_NAME },
    redis,
    queue,
    flows,
    secrets: createSecretBox('bench-secret-key-with-at-least-32-characters'),
    keys: fleetKeys(prefix),
    logger: createLogger({ level: 'silent' }),
    attempts: 3,
    keepLogs: 100,
    intake: false,
    inbox: options.concurrency ? { concurrency: options.concurrency } : {},
    observer: { disconnected: () => disconnects++ },
  });
  const sample = sampler(url);
  const started = performance.now();
  await publish(url, count, bytes, prefix);
  const received = await settle(() => bridge.handled(), count, options.quietMs ?? 3_000, 120_000);
  await bridge.idle();
  const seconds = (performance.now() - started) / 1000;
  const figures = sample.stop();
  const queued = await queue.count();
  await bridge.stop();
  await queue.obliterate({ force: true }).catch(() => {});
  await Promise.all([queue.close(), flows.close()]);
  redis.disconnect();
  return {
    received,
    queued,
    lost: count - queued,
    disconnects,
    seconds: round(seconds),
    perSecond: Math.round(queued / seconds),
    ...figures,
  };
}

/** Baseline: a subscriber that only counts what it reads; how fast Redis and ioredis move the burst. */
export async function burstToRawSubscriber(url: string, count: number, bytes: number): Promise<BurstFigures> {
  const subscriber = new Redis(url, { connectionName: SUBSCRIBER_NAME });
  subscriber.on('error', () => {});
  let received = 0;
  let disconnects = 0;
  subscriber.on('messageBuffer', () => received++);
  subscriber.on('close', () => disconnects++);
  await subscriber.subscribe(channels.spawn);
  const sample = sampler(url);
  const started = performance.now();
  await publish(url, count, bytes, 'raw');
  await settle(() => received, count, 2_000, 60_000);
  const seconds = (performance.now() - started) / 1000;
  const figures = sample.stop();
  subscriber.disconnect();
  return {
    received,
    queued: 0,
    lost: count - received,
    disconnects,
    seconds: round(seconds),
    perSecond: Math.round(received / seconds),
    ...figures,
  };
}

const round = (n: number) => Math.round(n * 100) / 100;

export interface BurstRow {
  redis: string;
  path: string;
  burst: string;
  received: number;
  queued: number;
  lost: number;
  disconnects: number;
  req_per_s: number;
  peak_omem_mib: number;
  peak_rss_mib: number;
  lag_p99_ms: number;
  lag_max_ms: number;
}

/**
 * Bridge throughput and memory for 2 KiB and 1 MiB bursts published at once, beside a subscriber
 * that only counts (the most any reader could do) on the same Redis, in the same run; with the
 * settings fleet applies and with Redis's stock limit.
 */
export async function benchBursts(options: {
  startRedis: (args: readonly string[]) => Promise<{ url: string; stop(): Promise<void> }>;
  fleetArgs: readonly string[];
}): Promise<BurstRow[]> {
  const rows: BurstRow[] = [];
  const cases: [string, readonly string[], [number, number][]][] = [
    [
      'fleet (pubsub 512mb 0 0)',
      options.fleetArgs,
      [
        [20_000, 2048],
        [200, 2 ** 20],
      ],
    ],
    [
      'stock (pubsub 32mb 8mb 60)',
      [],
      [
        [20_000, 2048],
        [80, 2 ** 20],
      ],
    ],
  ];
  for (const [label, args, bursts] of cases) {
    const server = await options.startRedis(args);
    try {
      for (const [count, bytes] of bursts) {
        const burst = `${count} × ${bytes >= 2 ** 20 ? `${bytes / 2 ** 20} MiB` : `${bytes / 1024} KiB`}`;
        for (const [path, figures] of [
          ['raw subscriber (counts only)', await burstToRawSubscriber(server.url, count, bytes)],
          ['fleet bridge → queued jobs', await burstThroughBridge(server.url, count, bytes)],
        ] as const) {
          rows.push({
            redis: label,
            path,
            burst,
            received: figures.received,
            queued: figures.queued,
            lost: figures.lost,
            disconnects: figures.disconnects,
            req_per_s: figures.perSecond,
            peak_omem_mib: figures.peakOmemMiB,
            peak_rss_mib: figures.peakRssMiB,
            lag_p99_ms: figures.lagP99Ms,
            lag_max_ms: figures.lagMaxMs,
          });
        }
      }
    } finally {
      await server.stop();
    }
  }
  return rows;
}

import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_NAMES, type QueueName } from '../../../queues/common.ts';
import { loadConfig, type FleetConfig } from '../../config.ts';
import { fleetKeys, type FleetKeys } from '../../keys.ts';
import { connectRedis, describeTarget, singleTarget, type RedisTarget } from '../../redis-connection.ts';

/** What every operator command works with; `close()` releases it all. */
export interface OpsContext {
  config: FleetConfig;
  redisUrl: string;
  redis: Redis;
  keys: FleetKeys;
  queue(name: QueueName): Queue;
  /** A second connection for SUBSCRIBE (a subscribed connection runs no other command). */
  subscriber(): Redis;
  close(): Promise<void>;
}

/** Where the commands find Redis: REDIS_URL, or the embedded server `fleet start` runs on loopback. */
export function opsRedisUrl(config: FleetConfig): string {
  return config.redisUrl ?? `redis://127.0.0.1:${config.embeddedRedisPort}`;
}

/** The same, for any topology: the configured target (URL, Sentinel, Cluster) or the embedded server. */
export function opsRedisTarget(config: FleetConfig): RedisTarget {
  return config.redis ?? singleTarget(opsRedisUrl(config));
}

/** A URL fit for a message: the password masked. */
export function displayUrl(url: string): string {
  return url.replace(/(\/\/[^/@]*:)[^/@]*@/, '$1***@');
}

/** A command connection that fails fast (the factory's `cli` purpose): an operator wants an answer, not a silent retry loop. */
function connect(target: RedisTarget, name: string): Redis {
  const redis = connectRedis(target, 'cli', name);
  redis.on('error', (error: Error) => lastError.set(redis, error));
  return redis;
}

/** ioredis reports a refused connection as "Connection is closed"; the error event says why. */
const lastError = new WeakMap<Redis, Error>();

export async function openOps(env: Record<string, string | undefined> = process.env): Promise<OpsContext> {
  const config = loadConfig(env);
  const target = opsRedisTarget(config);
  const redisUrl = target.kind === 'single' ? target.url : describeTarget(target);
  const redis = connect(target, 'fleet:cli');
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    const hint = config.redisUrl
      ? 'check REDIS_URL'
      : config.redis
        ? `check ${config.redis.kind === 'sentinel' ? 'REDIS_SENTINELS and REDIS_SENTINEL_NAME' : 'REDIS_CLUSTER_NODES'}`
        : 'REDIS_URL is unset, so this is the embedded Redis of `fleet start` on this machine (FLEET_REDIS_PORT); is it running?';
    const reason = lastError.get(redis)?.message ?? (error as Error).message;
    throw new Error(`cannot reach Redis at ${target.kind === 'single' ? displayUrl(redisUrl) : redisUrl}: ${reason} (${hint})`);
  }
  const queues = new Map<QueueName, Queue>();
  const subscribers: Redis[] = [];
  return {
    config,
    redisUrl,
    redis,
    keys: fleetKeys(config.prefix),
    queue(name) {
      let queue = queues.get(name);
      if (!queue) {
        queue = new Queue(QUEUE_NAMES[name], { connection: redis, prefix: config.prefix });
        queue.on('error', () => {});
        queues.set(name, queue);
      }
      return queue;
    },
    subscriber() {
      const sub = redis.duplicate();
      sub.on('error', () => {});
      subscribers.push(sub);
      return sub;
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close().catch(() => {})));
      for (const sub of subscribers) sub.disconnect();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** Runs `body` with an open context and always closes it. */
export async function withOps<T>(body: (ops: OpsContext) => Promise<T>, env?: Record<string, string | undefined>): Promise<T> {
  const ops = await openOps(env);
  try {
    return await body(ops);
  } finally {
    await ops.close();
  }
}

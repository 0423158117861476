import { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_NAMES } from '../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../queues/spawn.ts';
import { cancelRequest, type CancelOutcome } from './cancel.ts';
import { enqueueSpawn, validateSpawnRequest, type IntakeOutcome } from './intake.ts';
import { fleetKeys } from './keys.ts';
import { channels, type SpawnRequestInput, type SpawnResult } from './protocol.ts';
import { assertPrefixFits, connectRedis, singleTarget, type RedisTarget } from './redis-connection.ts';
import { readResult } from './results.ts';
import { createSecretBox, loadSecretBox, type SecretBox } from './secrets.ts';

export interface FleetClientOptions {
  /** The fleet's Redis, as a URL; or `redis` for Sentinel or Cluster. */
  redisUrl?: string;
  /** The fleet's Redis as `loadConfig().redis` describes it (URL, Sentinel or Cluster). */
  redis?: RedisTarget;
  /** BullMQ prefix of the fleet. @defaultValue `'fleet'` */
  prefix?: string;
  /** The fleet's FLEET_SECRET_KEY; or `dataDir` of a fleet on this machine that generated its key. */
  secretKey?: string;
  dataDir?: string;
  /** Tries of a spawn job on transient Docker failures. @defaultValue 3 */
  attempts?: number;
}

/** Thrown when a result does not arrive in time; the request itself keeps running. */
export class ResultTimeoutError extends Error {
  override name = 'ResultTimeoutError';
}

/**
 * The durable path into the fleet: requests go straight onto the `spawn` queue through the
 * BullMQ API, so nothing is lost while no bridge listens (pub/sub delivers at most once).
 * Results still come back on `worker:result:{id}`, and from `fleet:result:{id}` for a late reader.
 */
export class FleetClient {
  private readonly redis: Redis;
  /** Shared by the queue and the flow producer; BullMQ leaves a given connection open, close() ends it. */
  private readonly bull: Redis;
  private readonly queue: Queue<SpawnJobData, SpawnJobResult>;
  private readonly flows: FlowProducer;
  private readonly secrets: SecretBox;
  private readonly keys;
  private readonly attempts: number;

  constructor(options: FleetClientOptions) {
    if (!options.secretKey && !options.dataDir) {
      throw new Error("FleetClient needs the fleet's secretKey (FLEET_SECRET_KEY) or its dataDir to seal tokens");
    }
    this.secrets = options.secretKey
      ? createSecretBox(options.secretKey)
      : loadSecretBox({ secretKey: undefined, dataDir: options.dataDir! });
    const target = options.redis ?? (options.redisUrl ? singleTarget(options.redisUrl) : undefined);
    if (!target) throw new Error('FleetClient needs redisUrl or redis (a Sentinel or Cluster target)');
    const prefix = options.prefix ?? 'fleet';
    assertPrefixFits(target, prefix);
    this.redis = connectRedis(target, 'command', 'fleet:client');
    this.bull = connectRedis(target, 'queue', 'fleet:client-bullmq');
    // A failed command rejects its own promise, which reaches the caller; the connection's error
    // events (each reconnect attempt during a failover) have nobody else to tell.
    for (const connection of [this.redis, this.bull]) connection.on('error', () => {});
    this.queue = new Queue(QUEUE_NAMES.spawn, { connection: this.bull, prefix });
    this.flows = new FlowProducer({ connection: this.bull, prefix });
    this.keys = fleetKeys(prefix);
    this.attempts = options.attempts ?? 3;
  }

  /** Validates and enqueues; throws InvalidRequestError naming the bad field. */
  async enqueue(request: SpawnRequestInput): Promise<{ requestId: string; outcome: IntakeOutcome }> {
    const valid = validateSpawnRequest(request);
    const outcome = await enqueueSpawn(
      valid,
      {
        queue: this.queue,
        flows: this.flows,
        redis: this.redis,
        secrets: this.secrets,
        keys: this.keys,
        attempts: this.attempts,
        keepLogs: 2000,
      },
      'api',
    );
    return { requestId: valid.request_id, outcome };
  }

  /** Enqueues and resolves with the request's one result. */
  async submit(request: SpawnRequestInput, options: { timeoutMs?: number } = {}): Promise<SpawnResult> {
    const valid = validateSpawnRequest(request);
    // Subscribe before enqueueing: a fast worker must not finish before anyone listens.
    const waiting = this.waitForResult(valid.request_id, options);
    try {
      await this.enqueue(request);
    } catch (error) {
      waiting.catch(() => {});
      throw error;
    }
    return waiting;
  }

  /** Resolves with the result of a request, whether it is published later or was already. */
  async waitForResult(requestId: string, options: { timeoutMs?: number } = {}): Promise<SpawnResult> {
    const subscriber = this.redis.duplicate();
    try {
      const channel = channels.result(requestId);
      const arrived = new Promise<SpawnResult>((resolve) => {
        subscriber.on('message', (c: string, message: string) => {
          if (c === channel) resolve(JSON.parse(message) as SpawnResult);
        });
      });
      await subscriber.subscribe(channel);
      const stored = await readResult(this.redis, requestId);
      if (stored) return stored;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        if (options.timeoutMs !== undefined) {
          timer = setTimeout(
            () => reject(new ResultTimeoutError(`no result for ${requestId} within ${options.timeoutMs} ms`)),
            options.timeoutMs,
          );
        }
      });
      try {
        return await Promise.race([arrived, timeout]);
      } finally {
        clearTimeout(timer);
      }
    } finally {
      subscriber.disconnect();
    }
  }

  cancel(requestId: string): Promise<CancelOutcome> {
    return cancelRequest(requestId, { redis: this.redis, queue: this.queue, keys: this.keys });
  }

  async close(): Promise<void> {
    await Promise.all([this.queue.close(), this.flows.close()]);
    this.bull.disconnect();
    this.redis.disconnect();
  }
}

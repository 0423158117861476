import { FlowProducer, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import type { MergeQueueJobData, MergeQueueJobResult } from '../queues/merge.ts';
import type { ReviewJobData, ReviewJobResult } from '../queues/review.ts';
import { QUEUE_NAMES } from '../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../queues/spawn.ts';
import { BOARD_PATH, createBoardRouter } from '../board/board.ts';
import { startBridge, type Bridge } from './bridge.ts';
import type { FleetConfig, Role } from './config.ts';
import type { ContainerRuntime } from './container-runtime.ts';
import { createDockerRuntime } from './docker-runtime.ts';
import { startEmbeddedRedis, type EmbeddedRedis } from './embedded-redis.ts';
import { startHttpServer, type HttpServer, type ReadinessCheck } from './http-server.ts';
import { startHeartbeat } from './host-registry.ts';
import { fleetKeys } from './keys.ts';
import { createFleetMetrics, type FleetMetrics } from './metrics.ts';
import { redactor } from './redact.ts';
import { createGitHubForges, type GitHubForges } from './github/index.ts';
import { createReviewer } from './reviewers.ts';
import { startMergeRole, startReviewRole } from './roles/flow-workers.ts';
import { startSpawnRole, type SpawnRole } from './roles/spawn.ts';
import { loadSecretBox } from './secrets.ts';

/** The roles this build can run; `fleet start` with no --roles runs all of them. */
export const AVAILABLE_ROLES: Role[] = ['bridge', 'spawn', 'review', 'merge', 'board'];

export interface RunningFleet {
  redisUrl: string;
  httpPort: number;
  spawn?: SpawnRole;
  bridge?: Bridge;
  /** Prometheus hooks; `metrics.onBudget` is for the GitHub client. */
  metrics: FleetMetrics;
  /** Ordered shutdown: intake first, then running work (drained), then servers and Redis. */
  stop(): Promise<void>;
}

/** A connection for commands; BullMQ needs maxRetriesPerRequest null so commands wait out a reconnect. */
export function connectRedis(url: string, name: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: name, enableAutoPipelining: true });
}

export async function startFleet(options: {
  config: FleetConfig;
  roles: Role[];
  logger: Logger;
  runtime?: ContainerRuntime;
}): Promise<RunningFleet> {
  const { config, logger } = options;
  const unknown = options.roles.filter((role) => !AVAILABLE_ROLES.includes(role));
  if (unknown.length)
    throw new Error(
      `role${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} not available in this build (available: ${AVAILABLE_ROLES.join(', ')})`,
    );

  const stack: { name: string; stop: () => Promise<void> }[] = [];
  const stopAll = async () => {
    for (const item of stack.reverse()) {
      try {
        await item.stop();
      } catch (error) {
        logger.error({ err: error, what: item.name }, 'error while stopping');
      }
    }
    stack.length = 0;
  };

  try {
    let embedded: EmbeddedRedis | undefined;
    if (!config.redisUrl) {
      embedded = await startEmbeddedRedis({ dataDir: config.dataDir, port: config.embeddedRedisPort, logger });
      stack.push({ name: 'embedded redis', stop: () => embedded!.stop() });
    }
    const redisUrl = config.redisUrl ?? embedded!.url;
    const connection = { url: redisUrl };
    const keys = fleetKeys(config.prefix);
    const secrets = loadSecretBox({ secretKey: config.secretKey, dataDir: config.dataDir });
    for (const secret of [
      config.secretKey,
      config.githubToken,
      config.github.reviewerToken,
      config.reviewer.llm.apiKey,
      ...Object.values(config.agentKeys),
      config.models.droid?.apiKey,
      config.http.admin?.password,
      config.http.readonly?.password,
    ]) {
      redactor.add(secret);
    }

    const redis = connectRedis(redisUrl, `fleet:${config.hostId}:cmd`);
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    stack.push({ name: 'redis', stop: async () => void (await redis.quit().catch(() => redis.disconnect())) });

    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'fleet_process_' });
    const checks: ReadinessCheck[] = [{ name: 'redis', check: async () => void (await redis.ping()) }];

    // One Queue object per queue for the whole process: roles, board and metrics share them.
    const spawnQueue = new Queue<SpawnJobData, SpawnJobResult>(QUEUE_NAMES.spawn, { connection, prefix: config.prefix });
    const reviewQueue = new Queue<ReviewJobData, ReviewJobResult>(QUEUE_NAMES.review, { connection, prefix: config.prefix });
    const mergeQueue = new Queue<MergeQueueJobData, MergeQueueJobResult>(QUEUE_NAMES.merge, { connection, prefix: config.prefix });
    const queues = [spawnQueue, reviewQueue, mergeQueue] as Queue[];
    stack.push({ name: 'queues', stop: async () => void (await Promise.all(queues.map((q) => q.close()))) });
    // Without a listener BullMQ prints every reconnect error to the console itself.
    for (const queue of queues) queue.on('error', (error) => logger.warn({ err: error, queue: queue.name }, 'queue connection error'));
    const metrics = createFleetMetrics({ registry, queues, redis, keys, logger });

    const running: RunningFleet = { redisUrl, httpPort: 0, metrics, stop: stopAll };

    // One GitHub client set per process: every call of every token is metered by limiters shared
    // over Redis with all other fleet processes.
    let forges: GitHubForges | undefined;
    // The bridge reads GitHub only for a follow-up request's pull request.
    if (options.roles.some((role) => role === 'bridge' || role === 'spawn' || role === 'review' || role === 'merge')) {
      const github = createGitHubForges({
        apiUrl: config.github.apiUrl,
        redis: redisUrl,
        prefix: config.prefix,
        logger: logger.child({ component: 'github' }),
        onBudget: metrics.onBudget,
      });
      forges = github;
      stack.push({ name: 'github clients', stop: () => github.close() });
    }

    if (options.roles.includes('spawn')) {
      const runtime = options.runtime ?? createDockerRuntime({ dockerHost: config.dockerHost });
      const subscriber = connectRedis(redisUrl, `fleet:${config.hostId}:spawn-sub`);
      subscriber.on('error', (error) => logger.warn({ err: error }, 'redis subscriber error'));
      stack.push({ name: 'spawn subscriber', stop: async () => subscriber.disconnect() });
      const spawn = await startSpawnRole({
        config,
        connection,
        queue: spawnQueue,
        redis,
        subscriber,
        runtime,
        secrets,
        keys,
        logger,
        observer: metrics.observer,
        forges,
      });
      metrics.watchWarmPool(spawn.warmPool);
      let stopping = false;
      const heartbeat = await startHeartbeat({
        redis,
        keys,
        hostId: config.hostId,
        cap: config.hostConcurrency,
        state: () => ({ running: spawn.running(), drained: stopping || spawn.drained(), warm: spawn.warmPool() }),
        logger,
      });
      stack.push({
        name: 'spawn role',
        // The record stays, marked drained, while running jobs finish; it goes once they have.
        stop: async () => {
          stopping = true;
          void heartbeat.beat().catch(() => {});
          try {
            await spawn.stop();
          } finally {
            await heartbeat.stop();
          }
        },
      });
      checks.push({ name: 'docker', check: () => runtime.ping() });
      checks.push({ name: 'host faults', check: async () => spawn.checkHealth() });
      checks.push({
        name: 'worker image',
        check: async () => {
          if (!(await runtime.hasImage(config.worker.image))) throw new Error(`${config.worker.image} is not on this host`);
        },
      });
      running.spawn = spawn;
    }

    for (const role of ['review', 'merge'] as const) {
      if (!options.roles.includes(role)) continue;
      const flowDeps = {
        config,
        connection,
        queues: { spawn: spawnQueue, review: reviewQueue, merge: mergeQueue },
        redis,
        secrets,
        keys,
        forges: forges!,
        logger,
        onCiWait: metrics.onCiWait,
      };
      const started =
        role === 'review'
          ? await startReviewRole({ ...flowDeps, reviewer: createReviewer(config, logger) })
          : await startMergeRole(flowDeps);
      stack.push({ name: `${role} role`, stop: () => started.stop() });
    }

    if (options.roles.includes('bridge')) {
      const flows = new FlowProducer({ connection, prefix: config.prefix });
      stack.push({ name: 'flow producer', stop: () => flows.close() });
      const bridge = await startBridge({
        // Its own connection, opened in the bridge's reader thread.
        subscriber: { url: redisUrl, connectionName: `fleet:${config.hostId}:bridge-sub` },
        redis,
        queue: spawnQueue,
        flows,
        secrets,
        keys,
        logger,
        attempts: config.spawnAttempts,
        repoAllow: config.repoAllow,
        forges,
        hostToken: config.githubToken,
        keepLogs: config.jobLogLines,
        onRejected: metrics.onRejected,
        onAccepted: metrics.onAccepted,
        observer: metrics.bridge,
        hostId: config.hostId,
      });
      stack.push({ name: 'bridge', stop: () => bridge.stop() });
      running.bridge = bridge;
      metrics.watchBridge(bridge.stats);
      // Not subscribed means every message published now is lost: not ready.
      checks.push({
        name: 'bridge',
        check: async () => {
          if (!bridge.stats().subscribed) throw new Error('the bridge is not subscribed to worker:spawn (reconnecting to Redis)');
        },
      });
    }

    const routers = options.roles.includes('board')
      ? [
          {
            path: BOARD_PATH,
            router: createBoardRouter({
              queues,
              accounts: { admin: config.http.admin, readonly: config.http.readonly },
              listenHost: config.http.host,
              logger,
            }),
          },
        ]
      : [];
    const http: HttpServer = await startHttpServer({ port: config.http.port, host: config.http.host, registry, checks, logger, routers });
    stack.push({ name: 'http server', stop: () => http.close() });
    running.httpPort = http.port;
    logger.info(
      { roles: options.roles, host: config.hostId, prefix: config.prefix, redis: embedded ? 'embedded' : 'external', http_port: http.port },
      'fleet started',
    );
    return running;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

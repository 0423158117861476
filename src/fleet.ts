import { FlowProducer, Queue } from 'bullmq';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Router } from 'express';
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
import { checkRuntimeKnown } from './host-health.ts';
import { startEmbeddedRedis, type EmbeddedRedis } from './embedded-redis.ts';
import { startHttpServer, type HttpServer, type ReadinessCheck } from './http-server.ts';
import { startHeartbeat } from './host-registry.ts';
import { fleetKeys } from './keys.ts';
import { createFleetMetrics, type FleetMetrics } from './metrics.ts';
import { redactor } from './redact.ts';
import { assertPrefixFits, connectRedis, describeTarget, singleTarget, targetSecrets, type RedisTarget } from './redis-connection.ts';
import { createGitHubForges, type GitHubForges } from './github/index.ts';
import { createReviewer } from './reviewers.ts';
import { startMergeRole, startReviewRole } from './roles/flow-workers.ts';
import { startSpawnRole, type SpawnRole } from './roles/spawn.ts';
import { startWebhookRole } from './roles/webhook.ts';
import { loadSecretBox } from './secrets.ts';
import { bullTelemetry, startTracing } from './tracing.ts';

/** The roles this build can run; `fleet start` with no --roles runs all of them. */
export const AVAILABLE_ROLES: Role[] = ['bridge', 'spawn', 'review', 'merge', 'board'];
/** Roles that run only when named in --roles: `webhook` opens an endpoint for GitHub and needs its secret. */
export const OPT_IN_ROLES: Role[] = ['webhook'];

export interface RunningFleet {
  /** The URL of a single server (REDIS_URL or the embedded one); for Sentinel or Cluster, a description. */
  redisUrl: string;
  redis: RedisTarget;
  httpPort: number;
  spawn?: SpawnRole;
  bridge?: Bridge;
  /** Prometheus hooks; `metrics.onBudget` is for the GitHub client. */
  metrics: FleetMetrics;
  /** Ordered shutdown: intake first, then running work (drained), then servers and Redis. */
  stop(): Promise<void>;
}

export async function startFleet(options: {
  config: FleetConfig;
  roles: Role[];
  logger: Logger;
  runtime?: ContainerRuntime;
}): Promise<RunningFleet> {
  const { config, logger } = options;
  const unknown = options.roles.filter((role) => !AVAILABLE_ROLES.includes(role) && !OPT_IN_ROLES.includes(role));
  if (unknown.length)
    throw new Error(
      `role${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} not available in this build (available: ${[...AVAILABLE_ROLES, ...OPT_IN_ROLES].join(', ')})`,
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
    // Before any queue or worker: they take BullMQ's telemetry option only while tracing runs.
    const tracing = await startTracing(config);
    if (tracing) {
      stack.push({ name: 'tracing', stop: () => tracing.flush() });
      logger.info({ endpoint: config.tracing.endpoint }, 'tracing: OTLP/HTTP export on');
    }
    let embedded: EmbeddedRedis | undefined;
    let target = config.redis ?? (config.redisUrl ? singleTarget(config.redisUrl) : undefined);
    if (target) assertPrefixFits(target, config.prefix);
    if (!target) {
      embedded = await startEmbeddedRedis({ dataDir: config.dataDir, port: config.embeddedRedisPort, logger });
      stack.push({ name: 'embedded redis', stop: () => embedded!.stop() });
      target = singleTarget(embedded.url);
    }
    const redisUrl = target.kind === 'single' ? target.url : describeTarget(target);
    // Every connection below comes from src/redis-connection.ts, so each follows the topology.
    const open = (purpose: Parameters<typeof connectRedis>[1], role: string) =>
      connectRedis(target, purpose, `fleet:${config.hostId}:${role}`);
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
      config.webhook.secret,
      ...targetSecrets(target),
    ]) {
      redactor.add(secret);
    }

    const redis = open('command', 'cmd');
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    stack.push({ name: 'redis', stop: async () => void (await redis.quit().catch(() => redis.disconnect())) });
    // One connection shared by every BullMQ queue, flow producer and worker of this process (each worker
    // duplicates it for its blocking reads); BullMQ leaves a connection it was given open, so it closes last.
    const connection = open('queue', 'bullmq');
    connection.on('error', (error) => logger.warn({ err: error }, 'redis (BullMQ) connection error'));
    stack.push({ name: 'bullmq connection', stop: async () => void (await connection.quit().catch(() => connection.disconnect())) });

    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'fleet_process_' });
    const checks: ReadinessCheck[] = [{ name: 'redis', check: async () => void (await redis.ping()) }];

    // One Queue object per queue for the whole process: roles, board and metrics share them.
    const spawnQueue = new Queue<SpawnJobData, SpawnJobResult>(QUEUE_NAMES.spawn, {
      connection,
      prefix: config.prefix,
      ...bullTelemetry(),
    });
    const reviewQueue = new Queue<ReviewJobData, ReviewJobResult>(QUEUE_NAMES.review, {
      connection,
      prefix: config.prefix,
      ...bullTelemetry(),
    });
    const mergeQueue = new Queue<MergeQueueJobData, MergeQueueJobResult>(QUEUE_NAMES.merge, {
      connection,
      prefix: config.prefix,
      ...bullTelemetry(),
    });
    const queues = [spawnQueue, reviewQueue, mergeQueue] as Queue[];
    stack.push({ name: 'queues', stop: async () => void (await Promise.all(queues.map((q) => q.close()))) });
    // Without a listener BullMQ prints every reconnect error to the console itself.
    for (const queue of queues) queue.on('error', (error) => logger.warn({ err: error, queue: queue.name }, 'queue connection error'));
    const metrics = createFleetMetrics({ registry, queues, redis, keys, logger });

    const running: RunningFleet = { redisUrl, redis: target, httpPort: 0, metrics, stop: stopAll };

    // One GitHub client set per process: every call of every token is metered by limiters shared
    // over Redis with all other fleet processes.
    let forges: GitHubForges | undefined;
    // The bridge reads GitHub only for a follow-up request's pull request.
    if (
      options.roles.some((role) => role === 'bridge' || role === 'spawn' || role === 'review' || role === 'merge' || role === 'webhook')
    ) {
      const github = createGitHubForges({
        apiUrl: config.github.apiUrl,
        redis: open('command', 'github-limiter'),
        prefix: config.prefix,
        logger: logger.child({ component: 'github' }),
        onBudget: metrics.onBudget,
        ...(config.githubApp ? { app: config.githubApp } : {}),
      });
      forges = github;
      stack.push({ name: 'github clients', stop: () => github.close() });
    }

    if (options.roles.includes('spawn')) {
      const runtime = options.runtime ?? createDockerRuntime({ dockerHost: config.dockerHost });
      const subscriber = open('subscriber', 'spawn-sub');
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
      // Named after the runtime, so a 503 says which one Docker lacks (the reason itself stays in the log).
      checks.push({ name: `runtime ${config.worker.runtime}`, check: () => checkRuntimeKnown(runtime, config.worker.runtime) });
      await checkRuntimeKnown(runtime, config.worker.runtime).catch((error) =>
        logger.error({ err: error }, 'HOST MISCONFIGURED: every job this host takes fails with spawn_error until this is fixed'),
      );
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
      const flows = new FlowProducer({ connection, prefix: config.prefix, ...bullTelemetry() });
      stack.push({ name: 'flow producer', stop: () => flows.close() });
      const bridge = await startBridge({
        // Its own connection, opened in the bridge's reader thread.
        subscriber: { target, connectionName: `fleet:${config.hostId}:bridge-sub` },
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
        githubAuth: config.githubAuth,
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

    const mounts: { path: string; router: Router }[] = [];
    if (options.roles.includes('webhook')) {
      const flows = new FlowProducer({ connection, prefix: config.prefix });
      stack.push({ name: 'webhook flow producer', stop: () => flows.close() });
      const subscriber = open('subscriber', 'webhook-sub');
      subscriber.on('error', (error) => logger.warn({ err: error }, 'redis subscriber error'));
      stack.push({ name: 'webhook subscriber', stop: async () => subscriber.disconnect() });
      const webhook = await startWebhookRole({
        config,
        queue: spawnQueue,
        flows,
        redis,
        subscriber,
        secrets,
        keys,
        forges: forges!,
        logger,
      });
      stack.push({ name: 'webhook role', stop: () => webhook.stop() });
      mounts.push(webhook.mount);
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
    const http: HttpServer = await startHttpServer({
      port: config.http.port,
      host: config.http.host,
      registry,
      checks,
      logger,
      routers: [...routers, ...mounts],
    });
    stack.push({ name: 'http server', stop: () => http.close() });
    running.httpPort = http.port;
    logger.info(
      {
        roles: options.roles,
        host: config.hostId,
        prefix: config.prefix,
        redis: embedded ? 'embedded' : describeTarget(target),
        http_port: http.port,
      },
      'fleet started',
    );
    return running;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

import { Worker, type ConnectionOptions, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { processSpawn } from '../../processors/spawn.ts';
import type { SpawnObserver } from '../../queues/spawn.ts';
import { QUEUE_NAMES } from '../../queues/common.ts';
import type { SpawnJobData, SpawnJobResult } from '../../queues/spawn.ts';
import type { ControlMessage } from '../cancel.ts';
import type { FleetConfig } from '../config.ts';
import type { ContainerRuntime } from '../container-runtime.ts';
import type { FleetKeys } from '../keys.ts';
import { reapOrphans } from '../reaper.ts';
import type { SecretBox } from '../secrets.ts';
import { publishResultOfFailedJob, workerOptions } from './worker-common.ts';
import { DindSlots } from '../dind-cache.ts';
import { isErrorNamed } from '../errors.ts';
import { repoGitUrl } from '../container-spec.ts';
import { GitMirrorCache } from '../git-mirror.ts';
import { HostHealth } from '../host-health.ts';
import type { GitHubForges } from '../github/index.ts';
import { WarmPool, type WarmPoolStats } from '../warm-pool.ts';
import { warmPoolSize } from '../warm-repos.ts';

export interface SpawnRoleDeps {
  config: FleetConfig;
  /** The process's BullMQ connection (src/redis-connection.ts); the worker duplicates it for blocking reads. */
  connection: ConnectionOptions;
  /** The process's spawn queue, where the fleet-wide concurrency is set. */
  queue: Queue<SpawnJobData, SpawnJobResult>;
  redis: Redis;
  subscriber: Redis;
  runtime: ContainerRuntime;
  secrets: SecretBox;
  keys: FleetKeys;
  logger: Logger;
  observer?: SpawnObserver;
  /** GitHub clients, for opening the pull requests of `mode: "pr"` requests. */
  forges?: GitHubForges;
  /** Reaping period; the start-up pass always runs. */
  reapIntervalMs?: number;
  /** How often a host out of rotation (Docker away, disk full) probes for recovery. @defaultValue 1 s */
  healthProbeMs?: number;
}

export interface SpawnRole {
  worker: Worker<SpawnJobData, SpawnJobResult>;
  /** Jobs this host is running now. */
  running(): number;
  /** Drained, or out of rotation for a host fault: either way it takes no new jobs. */
  drained(): boolean;
  /** For /readyz: throws while a host fault (Docker away, disk full) keeps this host out of rotation. */
  checkHealth(): void;
  /** The warm pool's counts; undefined when the host runs none (FLEET_WARM_POOL=0). */
  warmPool(): WarmPoolStats | undefined;
  /** The warm pool itself, if the host runs one. */
  pool: WarmPool | undefined;
  /** Stops taking jobs and lets running ones finish (`fleet drain`). */
  drain(): Promise<void>;
  /** Takes jobs again after a drain (`fleet undrain`). */
  undrain(): Promise<void>;
  /** Graceful stop: running containers get FLEET_DRAIN_TIMEOUT, then go back to the queue. */
  stop(): Promise<void>;
}

/**
 * One BullMQ worker per host, concurrency = the host's cap: the worker never holds more jobs than
 * that, and each job runs one container, so the host never runs more containers than its cap.
 */
export async function startSpawnRole(deps: SpawnRoleDeps): Promise<SpawnRole> {
  const { config, keys } = deps;
  const log = deps.logger.child({ role: 'spawn', host: config.hostId });

  if (config.worker.dind === 'caps') {
    log.warn(
      'FLEET_DIND=caps: worker containers get SYS_ADMIN and run unconfined. This is for test machines without sysbox only; use FLEET_RUNTIME=sysbox-runc in production',
    );
  }
  await deps.runtime.ping();
  if (!(await deps.runtime.hasImage(config.worker.image))) {
    log.warn(
      { image: config.worker.image },
      'the worker image is not on this host yet: jobs fail with spawn_error until it is built (worker-image/build.sh)',
    );
  }

  if (config.globalConcurrency !== undefined) {
    if (config.globalConcurrency === 0) await deps.queue.removeGlobalConcurrency();
    else await deps.queue.setGlobalConcurrency(config.globalConcurrency);
    log.info({ global_concurrency: config.globalConcurrency || 'none' }, 'fleet-wide concurrency set');
  }

  const reap = () => reapOrphans({ runtime: deps.runtime, redis: deps.redis, prefix: config.prefix, hostId: config.hostId, logger: log });
  await reap();

  // Running jobs → their request id: a cancel names the request, and one request of a flow runs
  // several spawn jobs (one per scope), each with its own job id.
  const active = new Map<string, string>();
  // The pool needs a runtime that can rename a running container (Docker's can; a test fake may not). Each
  // pool container has a host directory of its own bound at /fleet/input, where its claim is written, and under
  // FLEET_EGRESS=proxy an empty egress directory, where the job's proxy socket appears (src/warm-pool.ts).
  const canHandOver = deps.runtime.rename !== undefined;
  // Generic containers and repositories' (FLEET_WARM_REPOS, cloned from the host's mirrors, which config demands).
  const wanted = warmPoolSize(config.warmPool);
  const poolSize = canHandOver ? wanted : 0;
  if (!canHandOver && wanted > 0) log.info('warm pool off: this container runtime cannot hand a job to a running container');
  const slots = config.worker.dindCache
    ? new DindSlots({
        hostId: config.hostId,
        prefix: config.prefix,
        // Idle pool containers hold a slot each too: up to cap running plus the pool's idle ones.
        slots: config.hostConcurrency + poolSize,
        maxBytes: config.worker.dindCacheMaxBytes,
        runtime: deps.runtime,
        logger: log,
      })
    : undefined;
  const gitMirror = config.gitCache
    ? new GitMirrorCache({
        ...config.gitCache,
        logger: log,
        onUpdate: (outcome, ms) => deps.observer?.gitMirrorUpdated?.({ outcome, ms }),
      })
    : undefined;
  // `fleet drain` leaves a key behind so a drained host that restarts stays drained; such a host
  // never starts its worker loop until `fleet undrain`.
  let drained = (await deps.redis.hexists(keys.drained, config.hostId)) === 1;
  const health = new HostHealth({
    logger: log,
    intervalMs: deps.healthProbeMs,
    probe: async (fault) => {
      await deps.runtime.ping();
      if (isErrorNamed(fault, 'DiskFullError')) await deps.runtime.probeCreate(config.worker.image);
    },
    // Not waiting for running jobs: they meet the same fault and go back to the queue themselves.
    pause: () => worker.pause(true),
    resume: async () => {
      // What the fault left behind (a container the daemon killed, one we could not remove) goes first.
      await reap().catch((error) => log.error({ err: error }, 'reaping after a host fault failed'));
      if (drained || stopping) return;
      if (worker.isPaused()) await worker.resume();
      else if (!worker.isRunning()) void worker.run().catch((error) => log.error({ err: error }, 'spawn worker loop failed'));
    },
  });
  let stopping = false;
  const pool =
    poolSize > 0
      ? new WarmPool({
          runtime: deps.runtime,
          redis: deps.redis,
          keys,
          config,
          logger: log,
          dindVolume: slots ? () => slots.acquire() : undefined,
          mirrors: gitMirror && {
            lease: (repo) => gitMirror.leaseExisting(repoGitUrl(config, repo)),
            url: (repo) => repoGitUrl(config, repo),
          },
        })
      : undefined;
  await pool?.start();
  const processDeps = {
    ...deps,
    logger: log,
    warmPool: pool,
    dindVolume: slots ? () => slots.acquire() : undefined,
    gitMirror,
    onHostFault: health.report.bind(health),
  };
  if (drained) log.warn(`this host is drained: it takes no jobs until \`fleet undrain ${config.hostId}\``);
  const worker: Worker<SpawnJobData, SpawnJobResult> = new Worker<SpawnJobData, SpawnJobResult>(
    QUEUE_NAMES.spawn,
    async (job, token, signal) => {
      active.set(job.id!, job.data.request.request_id);
      try {
        return await processSpawn(job, processDeps, { token, signal });
      } finally {
        active.delete(job.id!);
      }
    },
    { ...workerOptions(config, deps.connection, config.hostConcurrency), autorun: !drained },
  );

  worker.on('failed', (job, error) => {
    // A flow step reports to its parent job (which reads the failure), never to the orchestrator.
    if (job && !job.data.flow) publishResultOfFailedJob(job, error, job.data.request, { redis: deps.redis, logger: log });
  });
  worker.on('error', (error) => log.error({ err: error }, 'spawn worker error'));

  const onControl = (channel: string, text: string) => {
    if (channel !== keys.control) return;
    let message: ControlMessage;
    try {
      message = JSON.parse(text) as ControlMessage;
    } catch {
      return;
    }
    if (message.type === 'cancel') {
      for (const [jobId, requestId] of active) {
        if (requestId === message.request_id && worker.cancelJob(jobId, 'cancelled'))
          log.info({ request_id: requestId, job: jobId }, 'cancelling a running job');
      }
    }
    if (message.type === 'drain' && message.host === config.hostId)
      void role.drain().catch((error) => log.error({ err: error }, 'drain failed'));
    if (message.type === 'undrain' && message.host === config.hostId)
      void role.undrain().catch((error) => log.error({ err: error }, 'undrain failed'));
  };
  deps.subscriber.on('message', onControl);
  await deps.subscriber.subscribe(keys.control);

  const reaper = setInterval(
    () => void reap().catch((error) => log.error({ err: error }, 'reaping failed')),
    deps.reapIntervalMs ?? 60_000,
  );
  reaper.unref();
  await worker.waitUntilReady();
  log.info({ cap: config.hostConcurrency, image: config.worker.image, runtime: config.worker.runtime }, 'spawn role ready');

  const role: SpawnRole = {
    worker,
    running: () => active.size,
    drained: () => drained || health.faulted(),
    checkHealth: () => health.check(),
    warmPool: () => pool?.stats(),
    pool,
    async drain() {
      if (drained) return;
      drained = true;
      log.warn('draining: no new jobs; running jobs finish');
      await worker.pause();
    },
    async undrain() {
      if (!drained) return;
      drained = false;
      log.warn('undrained: taking jobs again');
      // A host fault keeps it out until its probe passes; the probe resumes it then.
      if (health.faulted()) return;
      if (worker.isPaused()) await worker.resume();
      else if (!worker.isRunning()) void worker.run().catch((error) => log.error({ err: error }, 'spawn worker loop failed'));
    },
    async stop() {
      stopping = true;
      health.stop();
      clearInterval(reaper);
      // Idle pool containers go at once: they hold no job, and a stopping host takes none.
      await pool?.stopIdle().catch((error) => log.error({ err: error }, 'could not remove the idle pool containers'));
      log.info({ running: active.size, drain_timeout_ms: config.drainTimeoutMs }, 'stopping: running jobs get the drain timeout');
      const timer = setTimeout(() => {
        log.warn({ running: active.size }, 'drain timeout: stopping containers, their jobs go back to the queue');
        worker.cancelAllJobs('drain');
      }, config.drainTimeoutMs);
      try {
        await worker.close();
      } finally {
        clearTimeout(timer);
        deps.subscriber.off('message', onControl);
        await deps.subscriber.unsubscribe(keys.control).catch(() => {});
        await gitMirror?.settled();
        await pool?.close();
      }
    },
  };
  return role;
}

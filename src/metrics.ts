import type { JobState, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { SpawnObserver } from '../queues/spawn.ts';
import type { BridgeObserver, BridgeStats } from './bridge.ts';
import { readHosts, type HostStatus } from './host-registry.ts';
import type { FleetKeys } from './keys.ts';
import { isKnownErrorType, type AgentUsage, type SpawnResult } from './protocol.ts';
import { withTimeout } from './timeout.ts';
import type { BudgetReading } from './github/budget.ts';
import type { WarmPoolStats } from './warm-pool.ts';

export type { BudgetReading };

/**
 * The hooks through which the rest of fleet reports to Prometheus. Gauges describing the whole
 * fleet (queue counts, the host registry) are read from Redis at scrape time, so every process
 * reports the same values for them: scrape one process for those, or aggregate with `max`.
 */
export interface FleetMetrics {
  /** Pass to the spawn role: job durations, container start latency. */
  observer: SpawnObserver;
  /** Bridge hook: a message was rejected. */
  onRejected(reason: string): void;
  /** Bridge hook: a request was accepted (`enqueued`, `duplicate`, `already_final`). */
  onAccepted(outcome: string): void;
  /** GitHub client hook: the budget its last answer reported. */
  onBudget(reading: BudgetReading): void;
  /** Merge hook: how a wait for CI ended (`green`, `failed`, `timeout`) and how long it took. */
  onCiWait(outcome: string, waitedMs: number): void;
  /** Bridge hooks: subscriber drops, resubscribes, messages dropped from a full inbox. */
  bridge: BridgeObserver;
  /** Bridge gauges (subscribed, inbox depth and bytes), read from `stats` at scrape time. */
  watchBridge(stats: () => BridgeStats): void;
  /** Warm pool gauges and counters (idle, claims, misses), read from `stats` at scrape time. */
  watchWarmPool(stats: () => WarmPoolStats | undefined): void;
}

/** The job states BullMQ counts; each becomes a `state` label value. */
export const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'completed',
  'failed',
] as const satisfies readonly JobState[];

/** Distinct `model` label values of the agent usage metrics; a request chooses its model, so they are bounded. */
export const MAX_MODEL_LABELS = 50;

/** A scrape must answer even when Redis does not: collectors give up after this. */
const COLLECT_TIMEOUT_MS = 2_000;

/** A worker may invent error types; the label keeps to the known ones so its cardinality stays bounded. */
function outcomeLabel(result: SpawnResult): string {
  if (result.success) return 'success';
  return result.error_type !== null && isKnownErrorType(result.error_type) ? result.error_type : 'other';
}

export function createFleetMetrics(deps: {
  registry: Registry;
  queues: Queue[];
  redis: Redis;
  keys: FleetKeys;
  logger: Logger;
}): FleetMetrics {
  const { registry, logger } = deps;
  const registers = [registry];

  // Fleet-wide state is read once per scrape and shared by every gauge that shows it; a part that
  // Redis does not deliver in time is left out of this scrape and counted as a collect error.
  type Snapshot = { counts?: Map<string, Record<string, number>>; hosts?: HostStatus[]; intake?: number };
  let pending: Promise<Snapshot> | undefined;
  const snapshot = () => {
    pending ??= takeSnapshot().finally(() => setImmediate(() => (pending = undefined)));
    return pending;
  };
  const takeSnapshot = async (): Promise<Snapshot> => {
    const [counts, hosts, intake] = await Promise.allSettled([
      withTimeout(
        Promise.all(deps.queues.map(async (q) => [q.name, await q.getJobCounts(...JOB_STATES)] as const)),
        COLLECT_TIMEOUT_MS,
        'queue counts',
      ),
      withTimeout(readHosts(deps.redis, deps.keys), COLLECT_TIMEOUT_MS, 'host registry'),
      withTimeout(deps.redis.xlen(deps.keys.intake), COLLECT_TIMEOUT_MS, 'intake stream'),
    ]);
    const snap: Snapshot = {};
    if (counts.status === 'fulfilled') snap.counts = new Map(counts.value);
    else failed('queue_jobs', counts.reason);
    if (hosts.status === 'fulfilled') snap.hosts = hosts.value;
    else failed('hosts', hosts.reason);
    if (intake.status === 'fulfilled') snap.intake = intake.value;
    else failed('intake', intake.reason);
    return snap;
  };

  const collectErrors = new Counter({
    name: 'fleet_metrics_collect_errors_total',
    help: 'Scrapes in which fleet-wide state could not be read from Redis in time (its series are then absent)',
    labelNames: ['collector'],
    registers,
    // Counts this scrape's failures too, not only earlier ones.
    async collect() {
      await snapshot();
    },
  });
  const failed = (collector: string, error: unknown) => {
    collectErrors.inc({ collector });
    logger.warn({ err: error, collector }, 'metrics: could not read fleet-wide state from Redis');
  };

  new Gauge({
    name: 'fleet_queue_jobs',
    help: 'Jobs per queue and state (whole fleet, read from Redis at scrape time)',
    labelNames: ['queue', 'state'],
    registers,
    async collect() {
      this.reset();
      for (const [queue, counts] of (await snapshot()).counts ?? []) {
        for (const state of JOB_STATES) this.set({ queue, state }, counts[state] ?? 0);
      }
    },
  });

  const hostGauge = (name: string, help: string, value: (h: HostStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['host'],
      registers,
      async collect() {
        this.reset();
        for (const host of (await snapshot()).hosts ?? []) this.set({ host: host.host }, value(host));
      },
    });
  hostGauge('fleet_host_running_containers', 'Worker containers running on each spawn host (host registry)', (h) => h.running);
  hostGauge('fleet_host_capacity', 'Worker containers each spawn host runs at most (FLEET_HOST_CONCURRENCY)', (h) => h.cap);
  hostGauge(
    'fleet_host_last_seen_timestamp_seconds',
    "Unix time of each spawn host's last heartbeat",
    (h) => Date.parse(h.last_seen) / 1000,
  );
  hostGauge('fleet_host_up', '1 while a spawn host heartbeats, 0 once it missed three heartbeats', (h) => (h.stale ? 0 : 1));
  hostGauge('fleet_host_drained', '1 while a spawn host takes no new jobs (fleet drain, or stopping)', (h) => (h.drained ? 1 : 0));

  const jobDuration = new Histogram({
    name: 'fleet_job_duration_seconds',
    help: 'Time from a spawn job starting on this host to its final result, by outcome (success or error_type)',
    labelNames: ['outcome'],
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
    registers,
  });
  const startLatency = new Histogram({
    name: 'fleet_container_start_latency_seconds',
    help: "Time from a spawn job starting on this host to its worker's `started` event",
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
    registers,
  });
  const gitMirrorUpdates = new Histogram({
    name: 'fleet_git_mirror_update_seconds',
    help: 'Git mirror updates before a clone, by outcome (created, updated, failed: the worker cloned without it)',
    labelNames: ['outcome'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers,
  });
  const rejected = new Counter({
    name: 'fleet_rejected_messages_total',
    help: 'Spawn messages the bridge rejected (invalid; see the rejected list in Redis for why)',
    registers,
  });
  const accepted = new Counter({
    name: 'fleet_accepted_requests_total',
    help: 'Spawn requests the bridge accepted, by outcome (enqueued, duplicate, already_final)',
    labelNames: ['outcome'],
    registers,
  });
  new Gauge({
    name: 'fleet_intake_stream_entries',
    help: 'Entries waiting in the durable intake stream (whole fleet, read from Redis at scrape time)',
    registers,
    async collect() {
      const { intake } = await snapshot();
      if (intake === undefined) this.reset();
      else this.set(intake);
    },
  });
  const bridgeCounter = (name: string, help: string) => new Counter({ name, help, registers });
  const disconnects = bridgeCounter(
    'fleet_bridge_disconnects_total',
    "Times this bridge's subscriber connection dropped; messages published until it resubscribed were lost",
  );
  const resubscribes = bridgeCounter(
    'fleet_bridge_resubscribes_total',
    'Times this bridge subscribed again after a drop; each one follows a window in which messages were lost',
  );
  const droppedMessages = bridgeCounter(
    'fleet_bridge_dropped_messages_total',
    'Messages this bridge dropped because its in-process inbox was full (each logged with its request id)',
  );
  // Registered only in a process that runs the bridge: elsewhere a 0 would read as "not subscribed".
  const registerBridgeGauges = (stats: () => BridgeStats) => {
    const bridgeGauge = (name: string, help: string, value: (s: BridgeStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value(stats()));
        },
      });
    bridgeGauge('fleet_bridge_subscribed', '1 while this bridge is subscribed to worker:spawn and worker:cancel', (s) =>
      s.subscribed ? 1 : 0,
    );
    bridgeGauge('fleet_bridge_inbox_messages', "Messages waiting in this bridge's in-process inbox", (s) => s.inbox.depth);
    bridgeGauge('fleet_bridge_inbox_bytes', "Bytes of the messages waiting in this bridge's in-process inbox", (s) => s.inbox.bytes);
    bridgeGauge(
      'fleet_bridge_inbox_peak_messages',
      "The most messages that ever waited in this bridge's inbox at once",
      (s) => s.inbox.peakDepth,
    );
  };

  const agentTokens = new Counter({
    name: 'fleet_agent_tokens_total',
    help: "Tokens the agents of this host's workers used, read from their streams, by agent, model and kind (input: uncached input, cached: cache reads, cache_write, output)",
    labelNames: ['agent', 'model', 'kind'],
    registers,
  });
  const agentCost = new Counter({
    name: 'fleet_agent_cost_usd_total',
    help: "USD the agents of this host's workers spent, as the agent reported it or from the price table, by agent and model",
    labelNames: ['agent', 'model'],
    registers,
  });
  // A request names its model freely: past this many distinct models, further ones count as `other`.
  const models = new Set<string>();
  const modelLabel = (model: string) => {
    if (models.has(model) || models.size < MAX_MODEL_LABELS) {
      models.add(model);
      return model;
    }
    return 'other';
  };
  const countUsage = (usage: AgentUsage) => {
    const labels = { agent: usage.agent, model: modelLabel(usage.model) };
    const kinds = {
      input: usage.input_tokens,
      cached: usage.cached_tokens,
      cache_write: usage.cache_write_tokens,
      output: usage.output_tokens,
    };
    for (const [kind, tokens] of Object.entries(kinds)) agentTokens.inc({ ...labels, kind }, tokens);
    if (usage.cost_usd !== null) agentCost.inc(labels, usage.cost_usd);
  };

  const budgetRemaining = new Gauge({
    name: 'fleet_github_budget_remaining',
    help: 'GitHub rate-limit requests left in the current window, by resource, as last reported to this process',
    labelNames: ['resource'],
    registers,
  });
  const budgetLimit = new Gauge({
    name: 'fleet_github_budget_limit',
    help: 'GitHub rate-limit requests per window, by resource',
    labelNames: ['resource'],
    registers,
  });
  const budgetReset = new Gauge({
    name: 'fleet_github_budget_reset_timestamp_seconds',
    help: 'Unix time at which the GitHub rate-limit window of each resource resets',
    labelNames: ['resource'],
    registers,
  });

  const ciWait = new Histogram({
    name: 'fleet_merge_ci_wait_seconds',
    help: 'How long merges waited for required checks, by how the wait ended (green, failed, timeout)',
    labelNames: ['outcome'],
    buckets: [0, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600],
    registers,
  });

  const egressBlocked = new Counter({
    name: 'fleet_egress_blocked_total',
    help: 'Connections the egress proxy refused, by reason (not_allowed, method, other_repository, bad_request)',
    labelNames: ['reason'],
    registers,
  });

  return {
    onCiWait: (outcome, waitedMs) => ciWait.observe({ outcome }, waitedMs / 1000),
    observer: {
      containerStarted: ({ startLatencyMs }) => startLatency.observe(startLatencyMs / 1000),
      jobFinished: ({ result, durationMs }) => jobDuration.observe({ outcome: outcomeLabel(result) }, durationMs / 1000),
      agentUsage: countUsage,
      egressBlocked: ({ reason }) => egressBlocked.inc({ reason }),
      gitMirrorUpdated: ({ outcome, ms }) => gitMirrorUpdates.observe({ outcome }, ms / 1000),
    },
    onRejected: () => rejected.inc(),
    onAccepted: (outcome) => accepted.inc({ outcome }),
    onBudget: ({ remaining, limit, resetAt, resource }) => {
      budgetRemaining.set({ resource }, remaining);
      budgetLimit.set({ resource }, limit);
      budgetReset.set({ resource }, resetAt.getTime() / 1000);
    },
    bridge: {
      disconnected: () => disconnects.inc(),
      resubscribed: () => resubscribes.inc(),
      dropped: (count) => droppedMessages.inc(count),
    },
    watchBridge: registerBridgeGauges,
    watchWarmPool: (stats) => {
      // Registered only where the spawn role runs; the counts live in the pool and are read at scrape time.
      const poolMetric = (kind: typeof Gauge | typeof Counter, name: string, help: string, value: (s: WarmPoolStats) => number) =>
        new kind({
          name,
          help,
          registers,
          collect(this: Gauge | Counter) {
            const s = stats();
            this.reset();
            if (s) (this as Gauge).inc(value(s));
          },
        });
      poolMetric(Gauge, 'fleet_warm_pool_idle', 'Started worker containers of this host waiting for a job', (s) => s.idle);
      poolMetric(
        Gauge,
        'fleet_warm_pool_size',
        'Idle worker containers this host keeps (FLEET_WARM_POOL plus the counts of FLEET_WARM_REPOS)',
        (s) => s.size,
      );
      poolMetric(Counter, 'fleet_warm_pool_claims_total', 'Jobs of this host that started in a warm pool container', (s) => s.claims);
      poolMetric(
        Counter,
        'fleet_warm_pool_repo_claims_total',
        'Jobs of this host that started in a pool container with their repository already cloned (FLEET_WARM_REPOS)',
        (s) => s.repoClaims,
      );
      poolMetric(
        Counter,
        'fleet_warm_pool_misses_total',
        'Jobs of this host that found the warm pool empty and started cold',
        (s) => s.misses,
      );
    },
  };
}

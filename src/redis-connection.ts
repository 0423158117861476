import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/**
 * Where fleet's Redis is and how to reach it: one plain server (`REDIS_URL`), a Sentinel-managed
 * primary (`REDIS_SENTINELS` + `REDIS_SENTINEL_NAME`) or a Cluster (`REDIS_CLUSTER_NODES`). Plain
 * data only, so it crosses into the bridge's reader thread unchanged.
 */
export type RedisTarget =
  | { kind: 'single'; url: string; username?: string; password?: string; tls?: TlsSettings }
  | {
      kind: 'sentinel';
      sentinels: HostPort[];
      name: string;
      username?: string;
      password?: string;
      sentinelPassword?: string;
      tls?: TlsSettings;
    }
  | { kind: 'cluster'; nodes: HostPort[]; username?: string; password?: string; tls?: TlsSettings };

export interface HostPort {
  host: string;
  port: number;
}

/** TLS towards Redis (and its sentinels): the CA's PEM, read once at start; absent = the system's CAs. */
export interface TlsSettings {
  ca?: string;
}

/**
 * What a connection is for; each gets the options it needs:
 * - `command`: fleet's own commands, auto-pipelined. `maxRetriesPerRequest: null`: a command waits
 *   out a reconnect or a failover instead of failing the job.
 * - `queue`: shared by the process's BullMQ queues, flow producer and workers (a worker duplicates it
 *   for its blocking reads, which is why it is not auto-pipelined); `maxRetriesPerRequest: null`, as
 *   BullMQ requires.
 * - `subscriber`: SUBSCRIBE only; also waits out failovers, and ioredis resubscribes on reconnect.
 * - `cli`: an operator command: fails within seconds with the reason, never a silent retry loop.
 */
export type ConnectionPurpose = 'command' | 'queue' | 'subscriber' | 'cli';

/** The Redis settings as the environment gives them (the names are the variables). */
export interface RedisEnv {
  REDIS_URL?: string | undefined;
  REDIS_SENTINELS?: string | undefined;
  REDIS_SENTINEL_NAME?: string | undefined;
  REDIS_SENTINEL_PASSWORD?: string | undefined;
  REDIS_CLUSTER_NODES?: string | undefined;
  REDIS_USERNAME?: string | undefined;
  REDIS_PASSWORD?: string | undefined;
  REDIS_TLS?: boolean | undefined;
  REDIS_TLS_CA_FILE?: string | undefined;
}

/** A bad Redis setting: names the variable to fix. */
export class RedisSettingError extends Error {
  constructor(
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'RedisSettingError';
  }
}

function parseHostPorts(variable: string, value: string): HostPort[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!items.length) throw new RedisSettingError(variable, 'give at least one host:port');
  return items.map((item) => {
    // `[::1]:26379` for IPv6, `host:port` otherwise.
    const match = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(item);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) throw new RedisSettingError(variable, `"${item}" is not host:port`);
    return { host: (match[1] ?? match[2])!, port };
  });
}

/**
 * The target the environment describes, or undefined when none is set (`fleet start` then runs its
 * embedded server). Throws RedisSettingError naming the variable on a combination that cannot work.
 */
export function redisTargetFromEnv(env: RedisEnv): RedisTarget | undefined {
  const given = (['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const).filter((name) => env[name]);
  if (given.length > 1)
    throw new RedisSettingError(given[1]!, `set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES (got ${given.join(' and ')})`);
  if (env.REDIS_SENTINEL_NAME && !env.REDIS_SENTINELS) throw new RedisSettingError('REDIS_SENTINEL_NAME', 'needs REDIS_SENTINELS');
  if (env.REDIS_SENTINEL_PASSWORD && !env.REDIS_SENTINELS) throw new RedisSettingError('REDIS_SENTINEL_PASSWORD', 'needs REDIS_SENTINELS');
  if (env.REDIS_URL) {
    // REDIS_PASSWORD keeps the secret out of a URL that gets logged; it must not contradict the URL's.
    const inUrl = urlPassword(env.REDIS_URL);
    if (env.REDIS_PASSWORD && inUrl !== undefined && inUrl !== env.REDIS_PASSWORD) {
      throw new RedisSettingError('REDIS_PASSWORD', 'differs from the password in REDIS_URL: give it in one place');
    }
    if (env.REDIS_TLS) throw new RedisSettingError('REDIS_TLS', 'with REDIS_URL, use a rediss:// URL for TLS');
    if (!/^rediss?:\/\//.test(env.REDIS_URL)) throw new RedisSettingError('REDIS_URL', 'must start with redis:// or rediss://');
  }
  if (!given.length) {
    for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS', 'REDIS_TLS_CA_FILE'] as const) {
      if (env[name])
        throw new RedisSettingError(name, 'needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES (the embedded Redis is loopback-only)');
    }
    return undefined;
  }
  const tlsOn = env.REDIS_URL ? env.REDIS_URL.startsWith('rediss://') : Boolean(env.REDIS_TLS);
  if (env.REDIS_TLS_CA_FILE && !tlsOn) {
    throw new RedisSettingError('REDIS_TLS_CA_FILE', env.REDIS_URL ? 'needs a rediss:// REDIS_URL' : 'needs REDIS_TLS=1');
  }
  let tls: TlsSettings | undefined;
  if (tlsOn) {
    tls = {};
    if (env.REDIS_TLS_CA_FILE) {
      try {
        tls.ca = readFileSync(env.REDIS_TLS_CA_FILE, 'utf8');
      } catch (error) {
        throw new RedisSettingError('REDIS_TLS_CA_FILE', `cannot read ${env.REDIS_TLS_CA_FILE}: ${(error as Error).message}`);
      }
    }
  }
  const credentials = {
    ...(env.REDIS_USERNAME ? { username: env.REDIS_USERNAME } : {}),
    ...(env.REDIS_PASSWORD ? { password: env.REDIS_PASSWORD } : {}),
  };
  if (env.REDIS_URL) return { kind: 'single', url: env.REDIS_URL, ...credentials, ...(tls ? { tls } : {}) };
  if (env.REDIS_SENTINELS) {
    if (!env.REDIS_SENTINEL_NAME)
      throw new RedisSettingError(
        'REDIS_SENTINEL_NAME',
        "REDIS_SENTINELS needs the monitored primary's name (sentinel monitor <name> ...)",
      );
    return {
      kind: 'sentinel',
      sentinels: parseHostPorts('REDIS_SENTINELS', env.REDIS_SENTINELS),
      name: env.REDIS_SENTINEL_NAME,
      ...credentials,
      ...(env.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: env.REDIS_SENTINEL_PASSWORD } : {}),
      ...(tls ? { tls } : {}),
    };
  }
  return {
    kind: 'cluster',
    nodes: parseHostPorts('REDIS_CLUSTER_NODES', env.REDIS_CLUSTER_NODES!),
    ...credentials,
    ...(tls ? { tls } : {}),
  };
}

function urlPassword(url: string): string | undefined {
  const password = /^rediss?:\/\/[^/@]*:([^/@]*)@/.exec(url)?.[1];
  return password ? decodeURIComponent(password) : undefined;
}

/** The target of a plain URL (the embedded server, tests, `FleetClient({ redisUrl })`). */
export function singleTarget(url: string): RedisTarget {
  return { kind: 'single', url };
}

/**
 * Redis Cluster keeps a multi-key command or script to keys of one slot; BullMQ's scripts touch
 * several keys of a queue, so the prefix must hold a hash tag (`{fleet}`): Redis hashes only what is
 * between the first `{` and the next `}`, and only when that is not empty.
 */
export function clusterPrefixProblem(prefix: string): string | null {
  const open = prefix.indexOf('{');
  const close = open < 0 ? -1 : prefix.indexOf('}', open + 1);
  if (close > open + 1) return null;
  return `"${prefix}" has no Redis Cluster hash tag: with REDIS_CLUSTER_NODES every key must fall in one slot, so use a prefix such as {${prefix.replace(/[{}]/g, '') || 'fleet'}}`;
}

/** Throws naming FLEET_PREFIX when a Cluster target is used with a prefix without a hash tag. */
export function assertPrefixFits(target: RedisTarget, prefix: string): void {
  if (target.kind !== 'cluster') return;
  const problem = clusterPrefixProblem(prefix);
  if (problem) throw new RedisSettingError('FLEET_PREFIX', problem);
}

/** For logs and messages: where, never the password. */
export function describeTarget(target: RedisTarget): string {
  const list = (nodes: HostPort[]) => nodes.map((n) => `${n.host}:${n.port}`).join(',');
  if (target.kind === 'single') return target.url.replace(/(\/\/[^/@]*:)[^/@]*@/, '$1***@');
  if (target.kind === 'sentinel') return `sentinel ${target.name} via ${list(target.sentinels)}${target.tls ? ' (tls)' : ''}`;
  return `cluster ${list(target.nodes)}${target.tls ? ' (tls)' : ''}`;
}

/** The passwords a target holds, for the log redactor. */
export function targetSecrets(target: RedisTarget): string[] {
  const fromUrl = target.kind === 'single' ? urlPassword(target.url) : undefined;
  return [fromUrl, target.password, target.kind === 'sentinel' ? target.sentinelPassword : undefined].filter((s): s is string => !!s);
}

/**
 * The constructor arguments of one connection: plain data (no functions), so the bridge's reader
 * thread builds its subscriber from the same decision (see openConnection, which adds the functions).
 */
export type ConnectionSpec =
  | { kind: 'single'; url: string; options: RedisOptions }
  | { kind: 'sentinel'; options: RedisOptions }
  | { kind: 'cluster'; nodes: HostPort[]; options: ClusterOptions };

function purposeOptions(purpose: ConnectionPurpose, name: string): RedisOptions {
  if (purpose === 'cli') {
    return { connectionName: name, lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 1 };
  }
  // Auto-pipelining batches fleet's many small commands; a subscriber sends none worth batching.
  return { connectionName: name, maxRetriesPerRequest: null, ...(purpose === 'command' ? { enableAutoPipelining: true } : {}) };
}

export function connectionSpec(target: RedisTarget, purpose: ConnectionPurpose, name: string): ConnectionSpec {
  const base = purposeOptions(purpose, name);
  const tls = target.tls ? { tls: target.tls.ca ? { ca: target.tls.ca } : {} } : {};
  const credentials = {
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
  };
  if (target.kind === 'single') return { kind: 'single', url: target.url, options: { ...base, ...credentials, ...tls } };
  if (target.kind === 'sentinel') {
    return {
      kind: 'sentinel',
      options: {
        ...base,
        ...credentials,
        ...tls,
        sentinels: target.sentinels,
        name: target.name,
        ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
        ...(target.tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls.tls } : {}),
        // Not ioredis's failoverDetector: measured, its disconnect on +switch-master can land while the
        // client is asking a sentinel, and ioredis then ends the client for good ("Connection is closed").
        // The capped reconnect below asks the sentinels again every second at most instead.
      },
    };
  }
  const { lazyConnect, maxRetriesPerRequest, enableAutoPipelining, connectionName, ...perNode } = base;
  return {
    kind: 'cluster',
    nodes: target.nodes,
    options: {
      // Cluster-level: how commands wait, per-node: who we are and how we log in.
      ...(lazyConnect ? { lazyConnect } : {}),
      ...(maxRetriesPerRequest === undefined ? {} : { maxRetriesPerRequest }),
      ...(enableAutoPipelining ? { enableAutoPipelining } : {}),
      redisOptions: { ...perNode, connectionName, ...credentials, ...tls },
      // A failover moves slots: follow MOVED/ASK and refresh the slot map rather than fail.
      slotsRefreshTimeout: 2_000,
    } as ClusterOptions,
  };
}

/**
 * A demoted primary answers writes with READONLY until the client notices the failover; reconnecting
 * (and resending the command) reaches the promoted one.
 */
const reconnectOnReadonly = (error: Error) => (error.message.startsWith('READONLY') ? 2 : false);

/** An operator command gives up after two quick retries: it must answer, not hang. */
const cliRetry = (times: number) => (times > 2 ? null : 250);

/**
 * Everything else retries for ever, at most a second apart: a failover takes seconds, and ioredis's
 * default backoff (doubling to 5 s) would leave a bridge deaf for seconds after the promotion.
 */
const serviceRetry = (times: number) => Math.min(times * 100, 1_000);

/**
 * Builds one connection from its spec. Typed as Redis: a Cluster answers every command fleet sends
 * (each multi-key command and script of fleet's stays in one slot), so the call sites need not care.
 */
export function openConnection(spec: ConnectionSpec, purpose: ConnectionPurpose): Redis {
  const functions: RedisOptions = { reconnectOnError: reconnectOnReadonly, retryStrategy: purpose === 'cli' ? cliRetry : serviceRetry };
  if (spec.kind === 'single') return new Redis(spec.url, { ...spec.options, ...functions });
  if (spec.kind === 'sentinel') return new Redis({ ...spec.options, ...functions });
  const options: ClusterOptions = {
    ...spec.options,
    redisOptions: { ...spec.options.redisOptions, ...functions },
    ...(purpose === 'cli' ? { clusterRetryStrategy: cliRetry } : {}),
  };
  return new Cluster(spec.nodes, options) as unknown as Redis;
}

/** The one way fleet opens a Redis connection: every role, the bridge, the limiters, the CLI and FleetClient. */
export function connectRedis(target: RedisTarget, purpose: ConnectionPurpose, name: string): Redis {
  return openConnection(connectionSpec(target, purpose, name), purpose);
}

/** True when the client is a Cluster (some commands, like INFO, then answer per node). */
export function isCluster(redis: Redis): boolean {
  return (redis as unknown as { isCluster?: boolean }).isCluster === true;
}

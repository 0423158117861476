import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { FleetKeys } from './keys.ts';
import { withTimeout } from './timeout.ts';

/** The heartbeat record of one spawn host, as JSON in the `hosts` hash (field = host id). */
export interface HostRecord {
  host: string;
  /** Containers this host runs at once (FLEET_HOST_CONCURRENCY). */
  cap: number;
  /** Containers running now. */
  running: number;
  /** True while the host takes no new jobs (`fleet drain`, or stopping). */
  drained: boolean;
  /** fleet's package version on that host. */
  version: string;
  pid: number;
  /** ISO 8601, UTC. */
  started_at: string;
  /** ISO 8601, UTC: the last heartbeat. */
  last_seen: string;
  /** Heartbeat period in milliseconds; a record older than STALE_BEATS of these is stale. */
  heartbeat_ms: number;
  /** The warm pool (src/warm-pool.ts): idle containers, its size, claims and misses since start; absent: none. */
  warm?: { idle: number; size: number; claims: number; misses: number };
}

/** A record as readers see it: with its age and whether its host looks gone. */
export interface HostStatus extends HostRecord {
  age_seconds: number;
  stale: boolean;
}

/** @defaultValue 5 s between heartbeats. */
export const HEARTBEAT_INTERVAL_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;
/** Missed beats after which a host counts as stale (crashed, partitioned, or stopped uncleanly). */
export const STALE_BEATS = 3;

export const FLEET_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

// Removes the record only while it is still ours: a second process started with the same host id
// (a restart overlapping the old one's drain) must not lose its record when the old one exits.
const FORGET_IF_OURS = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local ok, rec = pcall(cjson.decode, cur)
if ok and tostring(rec.pid) == ARGV[2] and rec.started_at == ARGV[3] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0`;

export interface Heartbeat {
  /** Writes the record now (also on every tick). */
  beat(): Promise<void>;
  /** Stops the ticks and removes the record: a clean stop leaves nothing stale behind. */
  stop(): Promise<void>;
}

/**
 * Keeps this host's record fresh in Redis. A failed beat (Redis away) is logged and the next tick
 * tries again; the first beat must succeed, so a host that cannot register does not start.
 */
export async function startHeartbeat(deps: {
  redis: Redis;
  keys: FleetKeys;
  hostId: string;
  cap: number;
  state: () => { running: number; drained: boolean; warm?: HostRecord['warm'] };
  logger: Logger;
  intervalMs?: number;
  now?: () => Date;
}): Promise<Heartbeat> {
  const intervalMs = deps.intervalMs ?? HEARTBEAT_INTERVAL_MS;
  const now = deps.now ?? (() => new Date());
  const startedAt = now().toISOString();
  let stopped = false;
  let inFlight: Promise<void> | undefined;

  const write = async () => {
    const { running, drained, warm } = deps.state();
    const record: HostRecord = {
      host: deps.hostId,
      cap: deps.cap,
      running,
      drained,
      version: FLEET_VERSION,
      pid: process.pid,
      started_at: startedAt,
      last_seen: now().toISOString(),
      heartbeat_ms: intervalMs,
      ...(warm ? { warm } : {}),
    };
    await deps.redis.hset(deps.keys.hosts, deps.hostId, JSON.stringify(record));
  };
  const beat = async () => {
    if (stopped) return;
    // One beat at a time: a slow Redis must not pile writes up.
    inFlight ??= write().finally(() => (inFlight = undefined));
    await inFlight;
  };

  await beat();
  const timer = setInterval(() => {
    beat().catch((error) => deps.logger.warn({ err: error, host: deps.hostId }, 'heartbeat failed; retrying on the next tick'));
  }, intervalMs);
  timer.unref();

  return {
    beat,
    async stop() {
      stopped = true;
      clearInterval(timer);
      // Bounded: a stop must go on when Redis is away (the record then goes stale instead).
      try {
        await withTimeout(
          (async () => {
            await inFlight?.catch(() => {});
            await deps.redis.eval(FORGET_IF_OURS, 1, deps.keys.hosts, deps.hostId, String(process.pid), startedAt);
          })(),
          STOP_TIMEOUT_MS,
          'Redis',
        );
      } catch (error) {
        deps.logger.warn({ host: deps.hostId, err: error }, 'could not remove the host record; it will show as stale');
      }
    },
  };
}

/** Every registered host, freshest first; `stale` marks those that missed STALE_BEATS heartbeats. */
export async function readHosts(redis: Redis, keys: FleetKeys, now: number = Date.now()): Promise<HostStatus[]> {
  const raw = await redis.hgetall(keys.hosts);
  const hosts: HostStatus[] = [];
  for (const [field, json] of Object.entries(raw)) {
    let record: HostRecord;
    try {
      record = JSON.parse(json) as HostRecord;
    } catch {
      continue;
    }
    const age = Math.max(0, now - Date.parse(record.last_seen));
    const staleAfter = STALE_BEATS * (record.heartbeat_ms || HEARTBEAT_INTERVAL_MS);
    hosts.push({ ...record, host: field, age_seconds: Math.round(age / 1000), stale: !(age <= staleAfter) });
  }
  return hosts.sort((a, b) => a.age_seconds - b.age_seconds || a.host.localeCompare(b.host));
}

/** Removes the records of stale hosts; returns their ids. */
export async function forgetStaleHosts(redis: Redis, keys: FleetKeys, now: number = Date.now()): Promise<string[]> {
  const stale = (await readHosts(redis, keys, now)).filter((h) => h.stale).map((h) => h.host);
  if (stale.length) await redis.hdel(keys.hosts, ...stale);
  return stale;
}

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { FLEET_VERSION } from './host-registry.ts';
import type { FleetKeys } from './keys.ts';
import { withTimeout } from './timeout.ts';

/**
 * Each bridge's state, kept in the `bridges` hash so `fleet status` (another process) can show it:
 * a bridge that lost its subscription, or dropped messages, is visible from any shell.
 */
export interface BridgeRecord {
  /** host id and pid: several bridges may share a host. */
  id: string;
  host: string;
  pid: number;
  version: string;
  subscribed: boolean;
  disconnects: number;
  resubscribes: number;
  last_disconnect_at: string | null;
  /** Messages dropped because the in-process inbox was full. */
  dropped: number;
  inbox_depth: number;
  inbox_peak_depth: number;
  started_at: string;
  last_seen: string;
  heartbeat_ms: number;
}

export interface BridgeStatus extends BridgeRecord {
  age_seconds: number;
  stale: boolean;
}

export const BRIDGE_HEARTBEAT_MS = 5_000;
const STALE_BEATS = 3;

export type BridgeState = Pick<
  BridgeRecord,
  'subscribed' | 'disconnects' | 'resubscribes' | 'last_disconnect_at' | 'dropped' | 'inbox_depth' | 'inbox_peak_depth'
>;

export interface BridgeHeartbeat {
  /** Writes the record now: called on every change a reader must see at once (a drop, a resubscribe). */
  beat(): Promise<void>;
  stop(): Promise<void>;
}

export function startBridgeHeartbeat(deps: {
  redis: Redis;
  keys: FleetKeys;
  hostId: string;
  state: () => BridgeState;
  logger: Logger;
  intervalMs?: number;
}): BridgeHeartbeat {
  const intervalMs = deps.intervalMs ?? BRIDGE_HEARTBEAT_MS;
  const id = `${deps.hostId}:${process.pid}`;
  const startedAt = new Date().toISOString();
  let stopped = false;
  const write = async () => {
    if (stopped) return;
    const record: BridgeRecord = {
      id,
      host: deps.hostId,
      pid: process.pid,
      version: FLEET_VERSION,
      ...deps.state(),
      started_at: startedAt,
      last_seen: new Date().toISOString(),
      heartbeat_ms: intervalMs,
    };
    await deps.redis.hset(deps.keys.bridges, id, JSON.stringify(record));
  };
  const timer = setInterval(() => {
    write().catch((error) => deps.logger.warn({ err: error }, 'bridge heartbeat failed; retrying on the next tick'));
  }, intervalMs);
  timer.unref();
  return {
    beat: write,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await withTimeout(deps.redis.hdel(deps.keys.bridges, id), 3_000, 'Redis').catch((error) =>
        deps.logger.warn({ err: error }, 'could not remove the bridge record; it will show as stale'),
      );
    },
  };
}

/** Every bridge record; `stale` marks those that missed three heartbeats. */
export async function readBridges(redis: Redis, keys: FleetKeys, now: number = Date.now()): Promise<BridgeStatus[]> {
  const raw = await redis.hgetall(keys.bridges);
  const bridges: BridgeStatus[] = [];
  for (const json of Object.values(raw)) {
    let record: BridgeRecord;
    try {
      record = JSON.parse(json) as BridgeRecord;
    } catch {
      continue;
    }
    const age = Math.max(0, now - Date.parse(record.last_seen));
    bridges.push({
      ...record,
      age_seconds: Math.round(age / 1000),
      stale: !(age <= STALE_BEATS * (record.heartbeat_ms || BRIDGE_HEARTBEAT_MS)),
    });
  }
  return bridges.sort((a, b) => a.id.localeCompare(b.id));
}

/** Removes the records of stale bridges (crashed without removing theirs); returns their ids. */
export async function forgetStaleBridges(redis: Redis, keys: FleetKeys, now: number = Date.now()): Promise<string[]> {
  const stale = (await readBridges(redis, keys, now)).filter((b) => b.stale).map((b) => b.id);
  if (stale.length) await redis.hdel(keys.bridges, ...stale);
  return stale;
}

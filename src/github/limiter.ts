/**
 * Bottleneck limiters clustered over the fleet's Redis, so every fleet process that uses one token shares one
 * budget for it, with recovery from lost limiter state.
 *
 * Why the recovery: Bottleneck 2.19.5 keeps each limiter's state in Redis (`b_{id}_settings` and friends) and
 * re-creates it when a script answers `SETTINGS_KEY_NOT_FOUND` (keys expired, FLUSHALL, a restart without
 * persistence) — but it compares the error message for equality, and Redis 7 prefixes errors that scripts
 * return with `redis.error_reply` by `ERR `. On Redis 7 the comparison never matches, so the limiter fails
 * every call from then on (and `UNKNOWN_CLIENT` and `OVERWEIGHT` are broken the same way). We wrap the
 * connection's script functions to give Bottleneck back the bare codes, which makes its own recovery path
 * (run `init` without clearing, `register_client`, then the original script again) work.
 *
 * A re-created limiter starts with `nextRequest = now`: it has forgotten the mutation another process sent a
 * moment ago. After every `init` we push `nextRequest` to at least `now + minTime`, so the first call after a
 * loss waits one spacing interval instead of risking a secondary-limit violation.
 *
 * Why `register` is replaced: when the connection drops after Redis ran a script but before its reply arrived
 * (Redis stopping runs the commands it has read and exits without writing their replies), ioredis sends the
 * command again on the new connection. Bottleneck's `register` is not safe to run twice: the second run finds
 * the slot taken by the first and answers "no capacity", Bottleneck keeps the job queued and forgets the
 * registration, and that phantom holds the slot until its expiration (five minutes for a mutation: every
 * host's mutations of that token stall). Our copy of the script first looks for its own job index and, if it
 * is there, answers as the first run did.
 */
import { createRequire } from 'node:module';
import Bottleneck from 'bottleneck';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { fleetKeys } from '../keys.ts';

export type LimiterLogger = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

export interface ClusteredLimitersOptions {
  /**
   * Redis URL or ioredis options, or a connection src/redis-connection.ts made for the limiters alone (a
   * Sentinel or Cluster one: they take it over and close it). Bottleneck duplicates it for pub/sub.
   */
  redis: string | RedisOptions | Redis;
  /** Namespace of every limiter id (Bottleneck turns id X into keys `b_X_*`). */
  prefix: string;
  logger: LimiterLogger;
  /** Redis TTL of an idle limiter's keys. @defaultValue 600000 */
  idleTtlMs?: number;
  /** Longest `close()` waits for held mutation slots to be released. @defaultValue 10000 */
  closeTimeoutMs?: number;
  /** How often each limiter refreshes its cluster state (and picks up capacity lost with pub/sub). @defaultValue 2000 */
  heartbeatIntervalMs?: number;
}

/** Settings of one limiter kind; `id` is per kind and token. */
export interface LimiterSettings {
  maxConcurrent?: number;
  minTime?: number;
}

const BOTTLENECK_CODES = /(SETTINGS_KEY_NOT_FOUND|UNKNOWN_CLIENT|OVERWEIGHT:\S*)/;

// Pushes nextRequest to at least now + minTime (ARGV[1] = now in ms, the caller's clock like Bottleneck's).
const GUARD_NEXT_REQUEST = `
local s = redis.call('hmget', KEYS[1], 'nextRequest', 'minTime')
if not s[1] then return 0 end
local target = tonumber(ARGV[1]) + (tonumber(s[2]) or 0)
if (tonumber(s[1]) or 0) < target then
  redis.call('hset', KEYS[1], 'nextRequest', target)
  return 1
end
return 0`;

// Inserted after register.lua reads its job index. The first run set nextRequest to now + wait + minTime with the
// same ARGV `now`; a later registration only moved it further, so the wait answered here is never too short.
const REGISTER_REPLAY_GUARD = `
if redis.call('hexists', job_weights_key, index) == 1 then
  local replayed = redis.call('hmget', settings_key, 'nextRequest', 'minTime', 'reservoir')
  return {true, math.max((tonumber(replayed[1]) or 0) - (tonumber(replayed[2]) or 0) - now, 0), tonumber(replayed[3])}
end`;
const REGISTER_INDEX_LINE = 'local index = ARGV[num_static_argv + 1]';
const REGISTER_ONCE_COMMAND = 'fleetBottleneckRegisterOnce';

/** Bottleneck's own `register` script (its header functions included) with the replay guard after the index. */
export function registerOnceLua(): string {
  const scripts = createRequire(import.meta.url)('bottleneck/lib/Scripts.js') as { payload(name: string): string };
  const lua = scripts.payload('register');
  if (!lua.includes(REGISTER_INDEX_LINE)) {
    // A Bottleneck release other than the 2.19.5 this was written against: refuse rather than run unguarded.
    throw new Error(`Bottleneck's register script no longer has "${REGISTER_INDEX_LINE}"; update src/github/limiter.ts`);
  }
  return lua.replace(REGISTER_INDEX_LINE, `${REGISTER_INDEX_LINE}\n${REGISTER_REPLAY_GUARD}`);
}

type ScriptCallback = (err: Error | null, replies?: unknown) => void;
type ScriptFn = (...args: unknown[]) => unknown;
interface ConnectionInternals {
  __scriptFn__(name: string): ScriptFn;
}

/** A connection (a Redis or a Cluster, which both have `duplicate`), as opposed to options. */
function isClient(redis: RedisOptions | Redis): redis is Redis {
  return typeof (redis as Redis).duplicate === 'function';
}

export class ClusteredLimiters {
  /** Commands client; also used by the budget book. */
  readonly redis: Redis;
  readonly connection: Bottleneck.IORedisConnection;
  /** Times a limiter's lost Redis state was re-created (for tests and metrics). */
  recoveries = 0;
  private readonly limiters = new Map<string, Bottleneck>();
  private readonly logger: LimiterLogger;
  private readonly idleTtlMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly prefix: string;
  private readonly closeTimeoutMs: number;
  private closed = false;
  private readonly heldJobs = new Set<Promise<unknown>>();

  constructor(opts: ClusteredLimitersOptions) {
    this.logger = opts.logger;
    this.prefix = opts.prefix;
    this.idleTtlMs = opts.idleTtlMs ?? 600_000;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 2_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;
    if (!opts.prefix || /\s/.test(opts.prefix)) throw new Error(`GitHub limiter prefix must be a non-empty word, got "${opts.prefix}"`);
    this.redis = typeof opts.redis === 'string' ? new Redis(opts.redis) : isClient(opts.redis) ? opts.redis : new Redis(opts.redis);
    // Bottleneck's IORedisConnection works with ioredis 6 (callback-style script commands and defineCommand are
    // still there); we hand it our client so it does not `require('ioredis')` itself, and it duplicates it for
    // pub/sub.
    this.connection = new Bottleneck.IORedisConnection({ client: this.redis });
    this.connection.on('error', (error: Error) => this.logger.warn({ err: error }, 'GitHub limiter Redis connection error'));
    this.installRecovery();
  }

  /** The limiter of one kind (`global`, `write`, ...) for one token id; created on first use. */
  limiter(kind: string, tokenId: string, settings: LimiterSettings): Bottleneck {
    if (this.closed) throw new Error('GitHub limiters are closed');
    const id = fleetKeys(this.prefix).githubLimiter(kind, tokenId);
    let limiter = this.limiters.get(id);
    if (!limiter) {
      limiter = new Bottleneck({
        id,
        datastore: 'ioredis',
        connection: this.connection,
        timeout: this.idleTtlMs,
        heartbeatInterval: this.heartbeatIntervalMs,
        maxConcurrent: settings.maxConcurrent ?? null,
        minTime: settings.minTime ?? 0,
      });
      limiter.on('error', (error: Error) => this.logger.warn({ err: error, limiter: id, message: error.message }, 'GitHub limiter error'));
      // Bottleneck keeps the settings it finds in Redis; a process started with other limits (a new release)
      // would otherwise run with the old ones until the keys expire. The latest process's settings win.
      // (Typed as synchronous, but clustered it returns a promise.)
      Promise.resolve(
        limiter.updateSettings({ maxConcurrent: settings.maxConcurrent ?? null, minTime: settings.minTime ?? 0 }) as unknown,
      ).catch((error: Error) =>
        this.logger.warn({ err: error, limiter: id, message: error.message }, 'GitHub limiter settings not stored'),
      );
      this.limiters.set(id, limiter);
    }
    return limiter;
  }

  /**
   * Runs `fn` in one of `limiter`'s slots and keeps the slot for `holdMs()` more milliseconds after `fn`
   * settles, while the caller already has its result. Bottleneck's `minTime` counts from when a job starts; a
   * mutation that was retried inside its slot was last sent later than that, and GitHub's 1 s spacing counts
   * between requests, so the slot is held until one spacing after the last send. `close()` waits for held
   * slots to be freed in Redis: a slot left behind would block every host's mutations until it expires.
   */
  runHeld<T>(limiter: Bottleneck, jobOptions: Bottleneck.JobOptions, fn: () => Promise<T>, holdMs: () => number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job = limiter
        .schedule(jobOptions, async () => {
          try {
            resolve(await fn());
          } catch (error) {
            reject(error);
          }
          const hold = holdMs();
          if (hold > 0) await new Promise((r) => setTimeout(r, hold));
        })
        .catch(reject)
        .finally(() => this.heldJobs.delete(job));
      this.heldJobs.add(job);
    });
  }

  /** Whether a limiter of this token has a job here: queued, running, or holding its slot. */
  busy(tokenId: string): boolean {
    return this.limitersOf(tokenId).some(([, limiter]) => {
      const c = limiter.counts();
      return c.RECEIVED + c.QUEUED + c.RUNNING + c.EXECUTING > 0;
    });
  }

  /**
   * Disconnects this token's limiters: their heartbeats stop polling Redis and their pub/sub channels are left
   * (the connections are shared and stay). They are forgotten at once, so a later call makes new ones.
   * Call it only when {@link busy} is false: a job of a released limiter would not be freed in Redis.
   */
  async release(tokenId: string): Promise<void> {
    if (this.closed) return;
    const released = this.limitersOf(tokenId);
    for (const [id] of released) this.limiters.delete(id);
    if (released.length === 0) return;
    // A limiter still starting would subscribe and start its heartbeat after being disconnected.
    await Promise.allSettled(released.map(([, limiter]) => limiter.ready()));
    await Promise.allSettled(released.map(([, limiter]) => limiter.disconnect(false)));
    // Bottleneck sends its UNSUBSCRIBEs without waiting for them; a PING on the same connection answers after.
    const { subscriber } = this.connection as unknown as { subscriber: Redis };
    await subscriber.ping();
  }

  private limitersOf(tokenId: string): [string, Bottleneck][] {
    return [...this.limiters.entries()].filter(([id]) => id.startsWith(`${this.prefix}:gh:`) && id.endsWith(`:${tokenId}`));
  }

  /** Local job counts and cluster-wide running weight of every limiter this process made (diagnostics). */
  async stats(): Promise<{ id: string; local: Bottleneck.Counts; clusterRunning: number | null }[]> {
    return Promise.all(
      [...this.limiters.entries()].map(async ([id, limiter]) => ({
        id,
        local: limiter.counts(),
        clusterRunning: await limiter.running().catch(() => null),
      })),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let held slots run out and be freed in Redis, but do not wait for ever on a Redis that is gone.
    const drained = Promise.allSettled([...this.heldJobs]);
    await Promise.race([drained, new Promise((r) => setTimeout(r, this.closeTimeoutMs).unref())]);
    await Promise.allSettled([...this.limiters.values()].map((l) => l.disconnect(false)));
    this.limiters.clear();
    await this.connection.disconnect(true);
  }

  private installRecovery(): void {
    const internals = this.connection as unknown as ConnectionInternals;
    const original = internals.__scriptFn__.bind(this.connection);
    this.redis.defineCommand(REGISTER_ONCE_COMMAND, { lua: registerOnceLua() });
    const client = this.redis as unknown as Record<string, ScriptFn>;
    const registerOnce = client[REGISTER_ONCE_COMMAND]!.bind(this.redis);
    internals.__scriptFn__ = (name: string) => {
      const fn = name === 'register' ? registerOnce : original(name);
      return (...args: unknown[]) => {
        const callback = args.pop() as ScriptCallback;
        fn(...args, (err: Error | null, replies?: unknown) => {
          if (err) {
            const code = BOTTLENECK_CODES.exec(err.message)?.[1];
            if (code === 'SETTINGS_KEY_NOT_FOUND' && name !== 'heartbeat') {
              this.recoveries += 1;
              this.logger.warn({ script: name, key: String(args[1]) }, 'GitHub limiter state missing in Redis; re-creating it');
            }
            // Bottleneck matches these codes by equality; Redis 7 adds "ERR " in front.
            callback(code ? Object.assign(new Error(code), { cause: err }) : err, replies);
            return;
          }
          if (name !== 'init') {
            callback(null, replies);
            return;
          }
          const numKeys = Number(args[0]);
          const settingsKey = String(args[1]);
          const now = Number(args[1 + numKeys]);
          this.redis.eval(GUARD_NEXT_REQUEST, 1, settingsKey, now).then(
            () => callback(null, replies),
            (guardError: Error) => callback(guardError),
          );
        });
      };
    };
  }
}

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

const MIB = 1024 * 1024;

/**
 * What a subscriber may have pending in Redis before Redis closes it. The bridge drains its socket
 * at once, but a GC pause or a slow host still lets a burst pile up in Redis; fleet's promised
 * burst (README "Bursts": 200 × 1 MiB, 50 000 × 2 KiB) must fit whole, with room to spare.
 * No soft limit: a burst is by nature above any soft limit for a while.
 */
export const PUBSUB_BUFFER_LIMIT = { hardBytes: 512 * MIB, softBytes: 0, softSeconds: 0 } as const;
/** Below this hard limit the promised burst is not safe. */
export const PUBSUB_BUFFER_REQUIRED_BYTES = 256 * MIB;

/** The value of `client-output-buffer-limit` for the pubsub class, as CONFIG SET and redis.conf take it. */
export const PUBSUB_BUFFER_SETTING = `pubsub ${PUBSUB_BUFFER_LIMIT.hardBytes / MIB}mb ${PUBSUB_BUFFER_LIMIT.softBytes} ${PUBSUB_BUFFER_LIMIT.softSeconds}`;

export interface PubsubBufferLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/** Reads the pubsub class out of CONFIG GET's value: "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60". */
export function parsePubsubLimit(value: string): PubsubBufferLimit | undefined {
  const words = value.trim().split(/\s+/);
  const at = words.indexOf('pubsub');
  if (at < 0 || words.length < at + 4) return undefined;
  const [hard, soft, seconds] = words.slice(at + 1, at + 4).map(Number) as [number, number, number];
  if (![hard, soft, seconds].every(Number.isFinite)) return undefined;
  return { hardBytes: hard, softBytes: soft, softSeconds: seconds };
}

/**
 * Whether a limit lets the promised burst through: 0 means unlimited. The soft limit closes a
 * connection only after it stayed above it for softSeconds, which a burst drained in seconds does not.
 */
export function limitFitsBurst(limit: PubsubBufferLimit): boolean {
  const fits = (bytes: number) => bytes === 0 || bytes >= PUBSUB_BUFFER_REQUIRED_BYTES;
  return fits(limit.hardBytes) && (fits(limit.softBytes) || limit.softSeconds >= 30);
}

export type LimitCheck =
  | { status: 'ok'; limit: PubsubBufferLimit }
  | { status: 'too_low'; limit: PubsubBufferLimit }
  | { status: 'unreadable'; reason: string };

/**
 * At bridge start: reads Redis's pubsub output-buffer limit (CONFIG GET, where the server allows
 * it) and warns loudly when a burst fleet promises would make Redis drop the bridge's connection.
 * Never fails the start: an external Redis is the operator's, and the bridge still works below it.
 */
export async function checkPubsubLimit(redis: Redis, logger: Logger): Promise<LimitCheck> {
  let check: LimitCheck;
  try {
    const [, value] = (await redis.config('GET', 'client-output-buffer-limit')) as [string, string];
    const limit = parsePubsubLimit(value ?? '');
    check = limit
      ? { status: limitFitsBurst(limit) ? 'ok' : 'too_low', limit }
      : { status: 'unreadable', reason: `unexpected value "${value}"` };
  } catch (error) {
    // Managed Redis services often rename or forbid CONFIG; ACLs may too.
    check = { status: 'unreadable', reason: (error as Error).message };
  }
  const fix = `CONFIG SET client-output-buffer-limit "${PUBSUB_BUFFER_SETTING}" (and in redis.conf: client-output-buffer-limit ${PUBSUB_BUFFER_SETTING})`;
  if (check.status === 'too_low') {
    logger.warn(
      { pubsub_limit: check.limit, needed_hard_bytes: PUBSUB_BUFFER_REQUIRED_BYTES, setting: PUBSUB_BUFFER_SETTING },
      `REDIS WILL DROP BURSTS: client-output-buffer-limit pubsub is ${check.limit.hardBytes} ${check.limit.softBytes} ${check.limit.softSeconds}; ` +
        `a burst past it closes the bridge's connection and every message in it is lost. Set: ${fix}`,
    );
  } else if (check.status === 'unreadable') {
    logger.warn(
      { reason: check.reason, setting: PUBSUB_BUFFER_SETTING },
      `could not read Redis's client-output-buffer-limit (${check.reason}); check it with: redis-cli CONFIG GET client-output-buffer-limit ` +
        `(the pubsub class needs a hard limit of at least ${PUBSUB_BUFFER_REQUIRED_BYTES / MIB} MiB, e.g. ${fix}), or bursts may be lost`,
    );
  } else {
    logger.info({ pubsub_limit: check.limit }, 'redis pubsub output-buffer limit fits the promised burst');
  }
  return check;
}

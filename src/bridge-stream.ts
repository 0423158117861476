import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { SpawnHandler } from './bridge-spawn.ts';
import { parseMessage, readableRequestId } from './bridge-spawn.ts';
import { InvalidRequestError, SecretMismatchError } from './errors.ts';
import { INTAKE_GROUP, type FleetKeys } from './keys.ts';
import type { SecretBox } from './secrets.ts';
import { withTimeout } from './timeout.ts';

/**
 * The durable intake: a Redis Stream that senders XADD to and every bridge reads through one
 * consumer group, so an entry goes to one bridge, stays in Redis while no bridge runs, and is
 * deleted only once its request is queued (or answered). An entry a crashed bridge had taken is
 * claimed by another after RECLAIM_IDLE_MS; enqueueing is idempotent on the request id, so a
 * request handled twice still makes one job.
 *
 * Entry fields: `request` (the spawn request's JSON, without `github_token`) and, optionally,
 * `sealed_token` (the token sealed with the fleet's key, src/secrets.ts): no plaintext token
 * ever rests in Redis.
 */
export const INTAKE_FIELDS = { request: 'request', sealedToken: 'sealed_token' } as const;

const BATCH = 64;
const BLOCK_MS = 1_000;
/** An entry taken but not acknowledged for this long belongs to a bridge that died: take it over. */
export const RECLAIM_IDLE_MS = 30_000;
const RECLAIM_EVERY_MS = 10_000;
/** After an error (Redis away), wait this long before reading again. */
const BACKOFF_MS = 1_000;

export interface IntakeConsumer {
  /** Entries this bridge handled (acknowledged and deleted). */
  handled(): number;
  stop(): Promise<void>;
}

type Entry = [id: string, fields: string[]];

function fieldsOf(flat: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i]!, flat[i + 1]!);
  return map;
}

export async function startIntakeConsumer(deps: {
  redis: Redis;
  keys: FleetKeys;
  secrets: SecretBox;
  handler: SpawnHandler;
  consumerName: string;
  logger: Logger;
  reclaimIdleMs?: number;
}): Promise<IntakeConsumer> {
  const key = deps.keys.intake;
  const log = deps.logger;
  const reclaimIdleMs = deps.reclaimIdleMs ?? RECLAIM_IDLE_MS;
  // XREADGROUP BLOCK holds its connection: it gets one of its own.
  const conn = deps.redis.duplicate({ connectionName: `${deps.consumerName}:intake` });
  conn.on('error', (error) => log.warn({ err: error }, 'redis intake connection error'));

  const createGroup = async () => {
    try {
      // From 0: entries added before any bridge ever ran are requests too.
      await conn.xgroup('CREATE', key, INTAKE_GROUP, '0', 'MKSTREAM');
    } catch (error) {
      if (!String((error as Error).message).includes('BUSYGROUP')) throw error;
    }
  };
  await createGroup();

  /** Handles one entry; true when it is done with (queued or answered) and may be deleted. */
  const handleEntry = async ([id, flat]: Entry): Promise<boolean> => {
    const fields = fieldsOf(flat);
    const raw = Buffer.from(fields.get(INTAKE_FIELDS.request) ?? '', 'utf8');
    const sealed = fields.get(INTAKE_FIELDS.sealedToken);
    try {
      await deps.handler.fromIntake(raw, () => {
        if (!fields.has(INTAKE_FIELDS.request)) throw new InvalidRequestError(`the intake entry has no "${INTAKE_FIELDS.request}" field`);
        const parsed = parseMessage(raw);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return parsed;
        if ('github_token' in parsed) {
          throw new InvalidRequestError(
            `a plaintext github_token may not rest in Redis: seal it into the "${INTAKE_FIELDS.sealedToken}" field (README "Bursts")`,
          );
        }
        return sealed ? { ...parsed, github_token: deps.secrets.open(sealed) } : parsed;
      });
      return true;
    } catch (error) {
      if (error instanceof SecretMismatchError) {
        const requestId = readableRequestId(undefined, raw.subarray(0, 4096).toString('utf8'));
        log.warn({ request_id: requestId, entry: id, err: error }, 'an intake entry carries a token this fleet cannot open');
        await deps.handler.fail(requestId, 'secret_mismatch', error.message);
        return true;
      }
      // Redis away or the queue refused: the entry stays pending and is read again.
      log.warn({ entry: id, err: error }, 'could not handle an intake entry; it stays in the stream and is retried');
      return false;
    }
  };

  let handledCount = 0;
  const handleBatch = async (entries: Entry[]) => {
    const done = await Promise.all(entries.map(handleEntry));
    const ids = entries.filter((_, i) => done[i]).map(([id]) => id);
    if (!ids.length) return;
    await conn
      .multi()
      .xack(key, INTAKE_GROUP, ...ids)
      .xdel(key, ...ids)
      .exec();
    handledCount += ids.length;
  };

  /** Takes over entries another bridge took and never acknowledged (it crashed), and our own failed ones. */
  const reclaim = async () => {
    let cursor = '0-0';
    do {
      const [next, entries] = (await conn.xautoclaim(key, INTAKE_GROUP, deps.consumerName, reclaimIdleMs, cursor, 'COUNT', BATCH)) as [
        string,
        Entry[],
      ];
      const live = entries.filter((entry) => entry?.[1]);
      if (live.length) {
        log.warn({ entries: live.length }, 'took over intake entries left unacknowledged (a bridge died or Redis failed)');
        await handleBatch(live);
      }
      cursor = next;
    } while (cursor !== '0-0' && !stopping);
  };

  let stopping = false;
  let nextReclaim = 0;
  const loop = (async () => {
    while (!stopping) {
      try {
        if (Date.now() >= nextReclaim) {
          nextReclaim = Date.now() + RECLAIM_EVERY_MS;
          await reclaim();
        }
        const reply = (await conn.xreadgroup(
          'GROUP',
          INTAKE_GROUP,
          deps.consumerName,
          'COUNT',
          BATCH,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          key,
          '>',
        )) as [string, Entry[]][] | null;
        for (const [, entries] of reply ?? []) await handleBatch(entries);
      } catch (error) {
        if (stopping) break;
        const message = String((error as Error).message);
        log.warn({ err: error }, 'intake stream read failed; retrying');
        if (message.includes('NOGROUP')) await createGroup().catch(() => {});
        await new Promise((r) => setTimeout(r, BACKOFF_MS));
      }
    }
  })();

  log.info({ stream: key, group: INTAKE_GROUP, consumer: deps.consumerName }, 'bridge reads the durable intake stream');
  return {
    handled: () => handledCount,
    async stop() {
      stopping = true;
      // A blocked read returns within BLOCK_MS; an unreachable Redis must not hold the stop.
      await withTimeout(loop, BLOCK_MS + 5_000, 'the intake stream').catch(() => {});
      conn.disconnect();
    },
  };
}

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { cancelRequest } from './cancel.ts';
import { InvalidRequestError } from './errors.ts';
import { enqueueSpawn, requestExists, validateSpawnRequest, type IntakeDeps } from './intake.ts';
import { REJECTED_KEEP } from './keys.ts';
import { cancelRequestSchema, channels, MAX_TASK_BYTES } from './protocol.ts';
import { redactor } from './redact.ts';
import { failureResult, publishFinal } from './results.ts';

/** A 1 MiB task can double in size when JSON-escaped; anything past this is not a request. */
export const MAX_MESSAGE_BYTES = 4 * MAX_TASK_BYTES;
const EXCERPT_CHARS = 300;

export interface BridgeDeps extends IntakeDeps {
  /** A connection used only for SUBSCRIBE; ioredis resubscribes on it after every reconnect. */
  subscriber: Redis;
  logger: Logger;
  onRejected?: (reason: string) => void;
  onAccepted?: (outcome: string) => void;
}

export interface Bridge {
  stop(): Promise<void>;
  /** Settles when every message received so far has been handled (shutdown). */
  idle(): Promise<void>;
  /** Messages handled since start, spawn and cancel alike. */
  handled(): number;
  /** Settles once `count` messages have been handled: how tests wait without sleeping. */
  waitForHandled(count: number): Promise<void>;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The request id of a message that failed validation, when one can be read from it at all. */
function readableRequestId(message: unknown, raw: string | undefined): string | undefined {
  const fromObject = (message as { request_id?: unknown } | undefined)?.request_id;
  if (typeof fromObject === 'string' && fromObject.length > 0 && fromObject.length <= 256) return fromObject;
  // A message too large to parse or broken JSON may still name its id; the sender is waiting on it.
  const match = raw ? /"request_id"\s*:\s*"([A-Za-z0-9._-]{1,128})"/.exec(raw.slice(0, 4096)) : null;
  return match?.[1];
}

function excerpt(raw: Buffer): string {
  const text = raw.subarray(0, EXCERPT_CHARS * 4).toString('utf8').slice(0, EXCERPT_CHARS);
  return redactor.redact(text.replace(/[^\x20-\x7e]/g, '?'));
}

/**
 * Bridges the orchestrator's pub/sub channels into the `spawn` queue. Every message is handled
 * on its own: whatever one message holds, it cannot stop the bridge or touch another request.
 */
export async function startBridge(deps: BridgeDeps): Promise<Bridge> {
  const log = deps.logger.child({ role: 'bridge' });
  const inFlight = new Set<Promise<void>>();
  let handledCount = 0;
  const handledWaiters: { count: number; resolve: () => void }[] = [];
  const markHandled = () => {
    handledCount++;
    for (const waiter of handledWaiters.filter((w) => w.count <= handledCount)) {
      handledWaiters.splice(handledWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };

  const reject = async (raw: Buffer, reason: string, requestId: string | undefined, parsed?: unknown) => {
    deps.onRejected?.(reason);
    log.warn({ request_id: requestId, reason }, 'rejected a spawn message');
    const entry = JSON.stringify({ at: new Date().toISOString(), reason, request_id: requestId ?? null, bytes: raw.length, excerpt: excerpt(raw) });
    await deps.redis.multi().lpush(deps.keys.rejected, entry).ltrim(deps.keys.rejected, 0, REJECTED_KEEP - 1).exec();
    if (!requestId) return;
    // A malformed duplicate of a request that is already queued (a job or a flow) gets no result of its own.
    if (await requestExists(requestId, deps)) {
      log.warn({ request_id: requestId }, 'a job with this id exists: the invalid duplicate gets no result of its own');
      return;
    }
    const requestFormat = (parsed as { result_format?: unknown } | undefined)?.result_format === 'v2' ? 'v2' : 'legacy';
    await publishFinal(deps.redis, failureResult(requestId, 'invalid_request', reason), { format: requestFormat });
  };

  const onSpawn = async (raw: Buffer) => {
    let text: string | undefined;
    let parsed: unknown;
    try {
      if (raw.length > MAX_MESSAGE_BYTES) {
        text = raw.subarray(0, 4096).toString('utf8');
        throw new InvalidRequestError(`the message is ${raw.length} bytes; at most ${MAX_MESSAGE_BYTES} are accepted (task_content ≤ 1 MiB)`);
      }
      try {
        text = decoder.decode(raw);
      } catch {
        throw new InvalidRequestError('the message is not valid UTF-8 text');
      }
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw new InvalidRequestError(`the message is not JSON: ${(error as Error).message.slice(0, 200)}`);
      }
      const request = validateSpawnRequest(parsed);
      const outcome = await enqueueSpawn(request, deps, 'pubsub');
      deps.onAccepted?.(outcome);
      log.info({ request_id: request.request_id, repo: request.repo, outcome }, 'spawn request accepted');
    } catch (error) {
      if (error instanceof InvalidRequestError) return reject(raw, error.message, readableRequestId(parsed, text), parsed);
      throw error;
    }
  };

  const onCancel = async (raw: Buffer) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(raw));
    } catch {
      log.warn({ excerpt: excerpt(raw) }, 'ignored a cancel message that is not JSON text');
      return;
    }
    const cancel = cancelRequestSchema.safeParse(parsed);
    if (!cancel.success) {
      log.warn({ excerpt: excerpt(raw), problem: cancel.error.issues[0]?.message }, 'ignored a cancel message without a valid request_id');
      return;
    }
    const outcome = await cancelRequest(cancel.data.request_id, deps);
    log.info({ request_id: cancel.data.request_id, outcome }, 'cancel handled');
  };

  const handle = (channel: string, raw: Buffer) => {
    const task = (channel === channels.spawn ? onSpawn(raw) : onCancel(raw))
      .catch((error) => log.error({ err: error, channel }, 'a message could not be handled (Redis unavailable?)'))
      .finally(() => {
        inFlight.delete(task);
        markHandled();
      });
    inFlight.add(task);
  };
  const listener = (channel: Buffer, message: Buffer) => handle(channel.toString(), message);
  deps.subscriber.on('messageBuffer', listener);
  await deps.subscriber.subscribe(channels.spawn, channels.cancel);
  log.info({ channels: [channels.spawn, channels.cancel] }, 'bridge subscribed');

  const idle = async () => {
    while (inFlight.size) await Promise.allSettled([...inFlight]);
  };
  return {
    idle,
    handled: () => handledCount,
    waitForHandled: (count) =>
      count <= handledCount ? Promise.resolve() : new Promise<void>((resolve) => handledWaiters.push({ count, resolve })),
    async stop() {
      await deps.subscriber.unsubscribe(channels.spawn, channels.cancel).catch(() => {});
      deps.subscriber.off('messageBuffer', listener);
      await idle();
    },
  };
}

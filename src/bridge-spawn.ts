import { isUtf8 } from 'node:buffer';
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { SpawnJobData } from '../queues/spawn.ts';
import { InvalidRequestError } from './errors.ts';
import { enqueueSpawn, requestExists, validateSpawnRequest, type IntakeDeps } from './intake.ts';
import { REJECTED_KEEP } from './keys.ts';
import { MAX_TASK_BYTES, type ErrorType } from './protocol.ts';
import { redactor } from './redact.ts';
import { failureResult, publishFinal } from './results.ts';
import { inSpan } from './tracing.ts';

/** A 1 MiB task can double in size when JSON-escaped; anything past this is not a request. */
export const MAX_MESSAGE_BYTES = 4 * MAX_TASK_BYTES;
const EXCERPT_CHARS = 300;
/** How far into a message an id is looked for when it cannot (or may not) be parsed whole. */
const ID_SCAN_BYTES = 4096;

export interface SpawnHandlerDeps extends IntakeDeps {
  logger: Logger;
  onRejected?: (reason: string) => void;
  onAccepted?: (outcome: string) => void;
}

/** The request id of a message that failed validation, when one can be read from it at all. */
export function readableRequestId(message: unknown, raw: string | undefined): string | undefined {
  const fromObject = (message as { request_id?: unknown } | undefined)?.request_id;
  if (typeof fromObject === 'string' && fromObject.length > 0 && fromObject.length <= 256) return fromObject;
  // A message too large to parse or broken JSON may still name its id; the sender is waiting on it.
  const match = raw ? /"request_id"\s*:\s*"([A-Za-z0-9._-]{1,128})"/.exec(raw.slice(0, ID_SCAN_BYTES)) : null;
  return match?.[1];
}

/** The id a raw message names, read from its first bytes only: cheap enough for the read path. */
export function peekRequestId(raw: Buffer): string | undefined {
  return readableRequestId(undefined, raw.subarray(0, ID_SCAN_BYTES).toString('utf8'));
}

export function excerptOf(raw: Buffer): string {
  const text = raw
    .subarray(0, EXCERPT_CHARS * 4)
    .toString('utf8')
    .slice(0, EXCERPT_CHARS);
  return redactor.redact(text.replace(/[^\x20-\x7e]/g, '?'));
}

/** Decodes and parses one message; an InvalidRequestError says what is wrong with it. */
export function parseMessage(raw: Buffer): unknown {
  if (raw.length > MAX_MESSAGE_BYTES) {
    throw new InvalidRequestError(`the message is ${raw.length} bytes; at most ${MAX_MESSAGE_BYTES} are accepted (task_content ≤ 1 MiB)`);
  }
  // isUtf8 validates without building a string, then toString decodes once.
  if (!isUtf8(raw)) throw new InvalidRequestError('the message is not valid UTF-8 text');
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw new InvalidRequestError(`the message is not JSON: ${(error as Error).message.slice(0, 200)}`);
  }
}

/**
 * What the bridge does with one spawn request, from either path (pub/sub or the durable stream):
 * validate, enqueue, and answer what cannot be enqueued with a result its sender can read.
 */
export function spawnHandler(deps: SpawnHandlerDeps) {
  const log = deps.logger;

  const reject = async (raw: Buffer, reason: string, requestId: string | undefined, parsed?: unknown) => {
    deps.onRejected?.(reason);
    log.warn({ request_id: requestId, reason }, 'rejected a spawn message');
    const entry = JSON.stringify({
      at: new Date().toISOString(),
      reason,
      request_id: requestId ?? null,
      bytes: raw.length,
      excerpt: excerptOf(raw),
    });
    await deps.redis
      .multi()
      .lpush(deps.keys.rejected, entry)
      .ltrim(deps.keys.rejected, 0, REJECTED_KEEP - 1)
      .exec();
    if (!requestId) return;
    // A malformed duplicate of a request that is already queued (a job or a flow) gets no result of its own.
    if (await requestExists(requestId, deps)) {
      log.warn({ request_id: requestId }, 'a job with this id exists: the invalid duplicate gets no result of its own');
      return;
    }
    await publishFinal(deps.redis, failureResult(requestId, 'invalid_request', reason), { format: resultFormat(parsed) });
  };

  /** Validates and enqueues a decoded request; InvalidRequestError answers the sender. */
  const accept = (raw: Buffer, parse: () => unknown, source: SpawnJobData['source']) =>
    // A request's trace starts here; BullMQ carries it on to every job of the request (src/tracing.ts).
    inSpan('bridge receive', { 'fleet.source': source }, (span) => receive(raw, parse, source, span), { root: true });

  const receive = async (raw: Buffer, parse: () => unknown, source: SpawnJobData['source'], span: Span) => {
    let parsed: unknown;
    try {
      parsed = parse();
      const request = validateSpawnRequest(parsed);
      span.setAttribute('fleet.request_id', request.request_id);
      const outcome = await enqueueSpawn(request, deps, source);
      span.setAttribute('fleet.intake', outcome);
      deps.onAccepted?.(outcome);
      log.info({ request_id: request.request_id, repo: request.repo, outcome, source }, 'spawn request accepted');
    } catch (error) {
      if (error instanceof InvalidRequestError) {
        const scanned = parsed === undefined ? raw.subarray(0, ID_SCAN_BYTES).toString('utf8') : undefined;
        return reject(raw, error.message, readableRequestId(parsed, scanned), parsed);
      }
      throw error;
    }
  };

  return {
    /** A message from `worker:spawn`. */
    fromMessage: (raw: Buffer) => accept(raw, () => parseMessage(raw), 'pubsub'),
    /** A request from the durable stream, its token already opened by the caller. */
    fromIntake: (raw: Buffer, parse: () => unknown) => accept(raw, parse, 'api'),
    /** Answers a request fleet could not take (not the sender's fault), when its id can be read. */
    async fail(requestId: string | undefined, errorType: ErrorType, message: string, parsed?: unknown): Promise<boolean> {
      if (!requestId) return false;
      return publishFinal(deps.redis, failureResult(requestId, errorType, message), { format: resultFormat(parsed) });
    },
    reject,
  };
}

function resultFormat(parsed: unknown): 'legacy' | 'v2' {
  return (parsed as { result_format?: unknown } | undefined)?.result_format === 'v2' ? 'v2' : 'legacy';
}

export type SpawnHandler = ReturnType<typeof spawnHandler>;

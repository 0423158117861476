import type { Redis } from 'ioredis';
import { channels, RESULT_TTL_SECONDS, toLegacyResult, type SpawnResult } from './protocol.ts';
import { redactor } from './redact.ts';

/**
 * SET NX and PUBLISH in one script: whichever process gets there first publishes, and no retry,
 * second bridge or late failure handler can publish a request's result twice.
 */
const PUBLISH_ONCE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('PUBLISH', ARGV[3], ARGV[1])
  return 1
end
return 0`;

export type ResultFormat = 'legacy' | 'v2';

/** The published form: exactly the eleven legacy keys unless the sender asked for v2. */
export function formatResult(result: SpawnResult, format: ResultFormat = 'legacy'): string {
  const body = format === 'v2' ? result : toLegacyResult(result);
  return redactor.redact(JSON.stringify(body));
}

/** Publishes a request's final result unless one was published before; true when this call did. */
export async function publishResultOnce(redis: Redis, result: SpawnResult, format: ResultFormat = 'legacy'): Promise<boolean> {
  const json = formatResult(result, format);
  const id = result.request_id;
  const published = await redis.eval(PUBLISH_ONCE, 1, channels.resultKey(id), json, String(RESULT_TTL_SECONDS), channels.result(id));
  return published === 1;
}

/** The final result of a request, if one was published in the last 24 hours. */
export async function readResult(redis: Redis, requestId: string): Promise<SpawnResult | null> {
  const json = await redis.get(channels.resultKey(requestId));
  return json === null ? null : (JSON.parse(json) as SpawnResult);
}

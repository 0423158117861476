import type { Redis } from 'ioredis';
import type { SpawnQueue } from '../queues/spawn.ts';
import { CANCEL_TTL_SECONDS, type FleetKeys } from './keys.ts';
import { WORKER_TYPES } from './protocol.ts';
import { failureResult, publishFinal } from './results.ts';

/** A broadcast on the fleet's control channel. */
export type ControlMessage = { type: 'cancel'; request_id: string } | { type: 'drain'; host: string } | { type: 'undrain'; host: string };

/** The one way onto the control channel, so a message's shape is checked where it is made. */
export async function publishControl(redis: Redis, keys: FleetKeys, message: ControlMessage): Promise<void> {
  await redis.publish(keys.control, JSON.stringify(message));
}

export type CancelOutcome = 'removed_waiting' | 'signalled_running' | 'already_final' | 'unknown_yet';

/**
 * Stops a request wherever it is. The flag comes first: a job that starts after this (or on a
 * host that missed the broadcast while reconnecting) sees it before launching anything. A
 * waiting job is removed here; a running one is killed by whichever host holds it.
 */
export async function cancelRequest(requestId: string, deps: { redis: Redis; queue: SpawnQueue; keys: FleetKeys }): Promise<CancelOutcome> {
  await deps.redis.set(deps.keys.cancelled(requestId), '1', 'EX', CANCEL_TTL_SECONDS);
  await publishControl(deps.redis, deps.keys, { type: 'cancel', request_id: requestId });

  const job = await deps.queue.getJob(requestId);
  if (!job) return 'unknown_yet';
  const state = await job.getState();
  if (state === 'completed' || state === 'failed') return 'already_final';
  if (state === 'active') return 'signalled_running';
  try {
    await job.remove();
  } catch {
    // Taken by a worker between getState and remove: the flag and the broadcast reach it there.
    return 'signalled_running';
  }
  const { request } = job.data;
  await publishFinal(deps.redis, failureResult(requestId, 'cancelled', 'the request was cancelled before a worker took it'), {
    format: request.result_format,
    workerType: WORKER_TYPES[request.agent],
  });
  return 'removed_waiting';
}

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { QUEUE_NAMES } from '../queues/common.ts';
import { fleetKeys } from './keys.ts';
import { LABELS, type ContainerRuntime } from './container-runtime.ts';
import { warmPoolAlive } from './warm-pool.ts';

/**
 * Removes this host's worker containers that no live job attempt owns. A container is owned
 * while the BullMQ lock of its job still holds the token the container was labelled with; once
 * the lock is gone or belongs to another attempt (the job moved on after this host died), the
 * container is an orphan. Two processes sharing a host id therefore never reap each other's work.
 */
export async function reapOrphans(deps: {
  runtime: ContainerRuntime;
  redis: Redis;
  prefix: string;
  hostId: string;
  logger: Logger;
}): Promise<string[]> {
  const containers = await deps.runtime.list({ [LABELS.host]: deps.hostId, [LABELS.prefix]: deps.prefix });
  const reaped: string[] = [];
  for (const container of containers) {
    // A warm pool's container (idle, or serving a job it was claimed for) lives while its pool instance does.
    const pool = container.labels[LABELS.pool];
    if (pool && (await warmPoolAlive(deps.redis, fleetKeys(deps.prefix), pool))) continue;
    const jobId = container.labels[LABELS.job];
    const holder = jobId ? await deps.redis.get(fleetKeys(deps.prefix).bullJobLock(QUEUE_NAMES.spawn, jobId)) : null;
    if (holder !== null && holder === container.labels[LABELS.lock]) continue;
    await deps.runtime.removeById(container.id);
    reaped.push(container.id);
    deps.logger.warn(
      { container: container.id.slice(0, 12), request_id: container.labels[LABELS.requestId], state: container.state },
      'removed an orphaned worker container',
    );
  }
  return reaped;
}

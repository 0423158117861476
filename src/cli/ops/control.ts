import { cancelRequest, publishControl, type CancelOutcome } from '../../cancel.ts';
import { createDockerRuntime } from '../../docker-runtime.ts';
import { readHosts } from '../../host-registry.ts';
import { createLogger } from '../../logger.ts';
import { reapOrphans } from '../../reaper.ts';
import type { OpsContext } from './connect.ts';

const CANCEL_MESSAGES: Record<CancelOutcome, string> = {
  removed_waiting: 'was waiting; removed from the queue, and its failure result (error_type "cancelled") is published',
  signalled_running: 'is running; its host stops the container and publishes the result',
  already_final: 'has finished already; nothing to cancel',
  unknown_yet: 'is not in the queue (yet); it is flagged for 24 h, so it is cancelled if it arrives',
};

export async function runCancel(ops: OpsContext, requestId: string, out: NodeJS.WritableStream): Promise<number> {
  const outcome = await cancelRequest(requestId, { redis: ops.redis, queue: ops.queue('spawn'), keys: ops.keys });
  out.write(`${requestId} ${CANCEL_MESSAGES[outcome]}\n`);
  return 0;
}

/**
 * Drains a host: its field in the drained hash keeps it drained across restarts, the broadcast
 * reaches it now. The mark comes first, so a host that restarts between the two still sees it.
 */
export async function runDrain(ops: OpsContext, host: string, out: NodeJS.WritableStream): Promise<number> {
  await ops.redis.hset(ops.keys.drained, host, new Date().toISOString());
  await publishControl(ops.redis, ops.keys, { type: 'drain', host });
  const record = (await readHosts(ops.redis, ops.keys)).find((h) => h.host === host && !h.stale);
  out.write(
    record
      ? `${host} drained: it takes no new jobs; its ${record.running} running job(s) finish. It stays drained across restarts until \`fleet undrain ${host}\`\n`
      : `${host} is not running now; it will start drained and take no jobs until \`fleet undrain ${host}\`\n`,
  );
  return 0;
}

export async function runUndrain(ops: OpsContext, host: string, out: NodeJS.WritableStream): Promise<number> {
  const removed = await ops.redis.hdel(ops.keys.drained, host);
  await publishControl(ops.redis, ops.keys, { type: 'undrain', host });
  out.write(removed ? `${host} undrained: it takes jobs again\n` : `${host} was not drained (told it to take jobs anyway)\n`);
  return 0;
}

/** Removes this host's worker containers whose job attempt is gone (the same pass a spawn host runs each minute). */
export async function runReap(ops: OpsContext, out: NodeJS.WritableStream): Promise<number> {
  const runtime = createDockerRuntime({ dockerHost: ops.config.dockerHost });
  await runtime.ping();
  const removed = await reapOrphans({
    runtime,
    redis: ops.redis,
    prefix: ops.config.prefix,
    hostId: ops.config.hostId,
    logger: createLogger({ level: 'silent' }),
  });
  out.write(
    removed.length
      ? `removed ${removed.length} orphaned worker container(s) of host ${ops.config.hostId}:\n${removed.map((id) => `  ${id.slice(0, 12)}`).join('\n')}\n`
      : `no orphaned worker container of host ${ops.config.hostId} (prefix ${ops.config.prefix})\n`,
  );
  return 0;
}

import { QUEUE_NAMES } from '../../../queues/common.ts';
import { channels } from '../../protocol.ts';
import type { OpsContext } from './connect.ts';
import { printableResult } from './spawn.ts';

/** Exit codes of `fleet result` (and of `fleet logs` where they overlap). */
export const RESULT_EXIT = { success: 0, failed: 1, usage: 2, pending: 3, unknown: 4 } as const;

/**
 * Whether fleet holds a job of the request: a plain request is the spawn job `ID`, a flow the root job `ID` on
 * the merge queue (src/flow/build.ts). Jobs stay a day (plain) or a week (flows) after they end.
 */
export async function requestKnown(ops: OpsContext, id: string): Promise<boolean> {
  const [plain, flow] = await Promise.all([ops.queue(QUEUE_NAMES.spawn).getJob(id), ops.queue(QUEUE_NAMES.merge).getJob(id)]);
  return plain !== undefined || flow !== undefined;
}

/**
 * Prints the stored result of a request (`fleet:result:{id}`, kept 24 h) as published, made terminal-safe.
 * No result: says whether the request is still running (its job exists) or unknown, and exits non-zero.
 */
export async function runResult(
  ops: OpsContext,
  id: string,
  io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream },
): Promise<number> {
  const stored = await ops.redis.get(channels.resultKey(id));
  if (stored !== null) {
    const printable = printableResult(id, stored);
    io.out.write(`${printable.json}\n`);
    return printable.success ? RESULT_EXIT.success : RESULT_EXIT.failed;
  }
  if (await requestKnown(ops, id)) {
    io.err.write(`fleet result: ${id} has no result yet: it is queued or running (\`fleet logs ${id} -f\` follows it)\n`);
    return RESULT_EXIT.pending;
  }
  io.err.write(`fleet result: no result and no job for ${id}: unknown request id, or its result expired (results are kept 24 h)\n`);
  return RESULT_EXIT.unknown;
}

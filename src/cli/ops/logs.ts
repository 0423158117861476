import { Job } from 'bullmq';
import { QUEUE_NAMES, type QueueName } from '../../../queues/common.ts';
import { STEP_ID_SEPARATOR } from '../../flow/ids.ts';
import { channels } from '../../protocol.ts';
import { terminalSafe } from '../terminal-text.ts';
import type { OpsContext } from './connect.ts';
import { RESULT_EXIT } from './result.ts';
import { printableResult } from './spawn.ts';

/** How often `fleet logs -f` looks for new log entries and new jobs (a fix round, a reviewer) of the request. */
export const FOLLOW_POLL_MS = 300;

/** One job of a request: the plain spawn job, or a step of its flow. */
export interface RequestJob {
  queue: QueueName;
  id: string;
}

/**
 * Every job of a request, parents before children: a plain request is its spawn job; a flow is the root on the
 * merge queue and, under it, each scope's merge → review → spawn chain with the follow-ups (fix, rebase, agent
 * reviewer) that steps add as children at run time. Found by walking BullMQ's own dependency records.
 */
export async function requestJobs(ops: OpsContext, requestId: string): Promise<RequestJob[]> {
  const roots: RequestJob[] = [];
  if (await ops.queue(QUEUE_NAMES.merge).getJob(requestId)) roots.push({ queue: QUEUE_NAMES.merge, id: requestId });
  // A flow's root holds the spawn job of the same id as a child; only a plain request has it as a root.
  else if (await ops.queue(QUEUE_NAMES.spawn).getJob(requestId)) roots.push({ queue: QUEUE_NAMES.spawn, id: requestId });
  const found: RequestJob[] = [];
  const seen = new Set<string>();
  const pending = [...roots];
  while (pending.length) {
    const ref = pending.shift()!;
    const key = `${ref.queue}:${ref.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    found.push(ref);
    const job = await Job.fromId(ops.queue(ref.queue), ref.id);
    if (!job) continue;
    const deps = await job.getDependencies();
    const childKeys = [
      ...Object.keys(deps.processed ?? {}),
      ...(deps.unprocessed ?? []),
      ...Object.keys(deps.ignored ?? {}),
      ...(deps.failed ?? []),
    ];
    for (const childKey of childKeys) {
      const child = parseJobKey(ops.config.prefix, childKey);
      if (child) pending.push(child);
    }
  }
  return found;
}

/** `{prefix}:{queue}:{id}` (a BullMQ job key) as a queue and id; null for a queue fleet does not run. */
export function parseJobKey(prefix: string, key: string): RequestJob | null {
  for (const queue of Object.values(QUEUE_NAMES)) {
    const head = `${prefix}:${queue}:`;
    if (key.startsWith(head) && !key.slice(head.length).includes(':')) return { queue, id: key.slice(head.length) };
  }
  return null;
}

/** The tag before each line: the queue, and the step's part of the job id (`api~review`, `api~fix1`). */
export function jobLabel(requestId: string, job: RequestJob): string {
  const step = job.id === requestId ? '' : job.id.slice(requestId.length + STEP_ID_SEPARATOR.length);
  return `[${job.queue}${step ? ` ${step}` : ''}]`;
}

/**
 * What of a job's log list has been printed: how many entries, and the last one. BullMQ trims a job's log to its
 * newest `keepLogs` entries, so an index alone can point past entries that moved; the last entry finds the place again.
 */
interface Cursor {
  printed: number;
  last: string | undefined;
}

/** The entries of a job's log not printed yet, moving the cursor past them. */
async function newEntries(ops: OpsContext, job: RequestJob, cursor: Cursor): Promise<{ entries: string[]; trimmed: boolean }> {
  const queue = ops.queue(job.queue);
  if (cursor.last !== undefined) {
    const { logs } = await queue.getJobLogs(job.id, cursor.printed - 1, -1, true);
    if (logs[0] === cursor.last) return { entries: take(cursor, cursor.printed, logs.slice(1)), trimmed: false };
  }
  // The first look, or the list was trimmed under us: find the last printed entry again.
  const { logs: all } = await queue.getJobLogs(job.id, 0, -1, true);
  if (cursor.last === undefined) return { entries: take(cursor, 0, all), trimmed: false };
  const at = all.lastIndexOf(cursor.last);
  return { entries: take(cursor, at + 1, all.slice(at + 1)), trimmed: at === -1 };
}

/** Records that `entries`, starting at index `start` of the log list, are printed. */
function take(cursor: Cursor, start: number, entries: string[]): string[] {
  cursor.printed = start + entries.length;
  if (entries.length) cursor.last = entries.at(-1);
  return entries;
}

export interface LogsOptions {
  follow: boolean;
  /** @defaultValue {@link FOLLOW_POLL_MS} */
  pollMs?: number;
}

/**
 * Prints the job logs of every job of a request (the worker containers' output lines), each line tagged with
 * its job. With `follow`, goes on printing new lines (and the lines of jobs that appear later) until the
 * request's result is stored, then exits with the result's verdict.
 */
export async function runLogs(
  ops: OpsContext,
  requestId: string,
  options: LogsOptions,
  io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream },
): Promise<number> {
  const cursors = new Map<string, Cursor>();
  const printNew = async (jobs: RequestJob[]) => {
    for (const job of jobs) {
      const key = `${job.queue}:${job.id}`;
      const cursor = cursors.get(key) ?? { printed: 0, last: undefined };
      cursors.set(key, cursor);
      const { entries, trimmed } = await newEntries(ops, job, cursor);
      const label = jobLabel(requestId, job);
      if (trimmed) io.out.write(`${label} … (older lines were trimmed: FLEET_JOB_LOG_LINES)\n`);
      for (const entry of entries) {
        for (const line of terminalSafe(entry).split('\n')) io.out.write(`${label} ${line}\n`);
      }
    }
  };

  let result = await ops.redis.get(channels.resultKey(requestId));
  let jobs = await requestJobs(ops, requestId);
  if (jobs.length === 0) {
    io.err.write(
      result === null
        ? `fleet logs: no job for ${requestId}: unknown request id, or not enqueued yet\n`
        : `fleet logs: ${requestId} has a result but its jobs (and their logs) are gone; \`fleet result ${requestId}\` prints it\n`,
    );
    return result === null ? RESULT_EXIT.unknown : RESULT_EXIT.success;
  }
  await printNew(jobs);
  if (!options.follow) return RESULT_EXIT.success;

  const pollMs = options.pollMs ?? FOLLOW_POLL_MS;
  // The result is read before the logs: once it is stored every line is in the logs, so the last round prints the rest.
  while (result === null) {
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    result = await ops.redis.get(channels.resultKey(requestId));
    jobs = await requestJobs(ops, requestId);
    await printNew(jobs);
  }
  const verdict = printableResult(requestId, result);
  io.err.write(`fleet logs: ${requestId} ${verdict.success ? 'succeeded' : 'failed'}; \`fleet result ${requestId}\` prints its result\n`);
  return verdict.success ? RESULT_EXIT.success : RESULT_EXIT.failed;
}

import { WaitingChildrenError, type Job, type Queue } from 'bullmq';

/** A child job's end: its return value, or why it failed (children are added with ignoreDependencyOnFailure). */
export type ChildEnd<T> = { ok: true; value: T } | { ok: false; reason: string };

/** The end of one child of `job`, found by the child's queue and id. */
export async function childEnd<T>(job: Job, prefix: string, queueName: string, childId: string): Promise<ChildEnd<T> | undefined> {
  const key = `${prefix}:${queueName}:${childId}`;
  const values = await job.getChildrenValues<T>();
  if (key in values) return { ok: true, value: values[key] as T };
  const failures = await job.getIgnoredChildrenFailures();
  if (key in failures) return { ok: false, reason: failures[key]! };
  return undefined;
}

/** Every child end of `job`, keyed by child job id. */
export async function allChildEnds<T>(job: Job): Promise<Map<string, ChildEnd<T>>> {
  const ends = new Map<string, ChildEnd<T>>();
  const idOf = (key: string) => key.slice(key.lastIndexOf(':') + 1);
  for (const [key, value] of Object.entries(await job.getChildrenValues<T>())) ends.set(idOf(key), { ok: true, value });
  for (const [key, reason] of Object.entries(await job.getIgnoredChildrenFailures())) ends.set(idOf(key), { ok: false, reason });
  return ends;
}

/** Adds a child to a running job; its failure does not fail the parent, which reads it and decides. */
export async function addChild<D>(job: Job, child: { queue: Queue; name: string; data: D; id: string; attempts?: number; keepLogs?: number }): Promise<void> {
  await child.queue.add(child.name as never, child.data as never, {
    jobId: child.id,
    parent: { id: job.id!, queue: job.queueQualifiedName },
    ignoreDependencyOnFailure: true,
    attempts: child.attempts ?? 1,
    keepLogs: child.keepLogs,
    removeOnComplete: { age: 7 * 24 * 3600 },
    removeOnFail: { age: 7 * 24 * 3600 },
  });
}

/**
 * Parks the job until its children have ended; BullMQ then runs it again from the top, where
 * its saved state says what it waited for. Returns (instead of throwing) only when every child
 * had already ended, and the caller goes on at once.
 */
export async function parkUntilChildrenEnd(job: Job, token: string | undefined): Promise<void> {
  if (!token) throw new Error('a job without a lock token cannot wait for children');
  if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
}

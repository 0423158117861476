import { WaitingChildrenError, type Job } from 'bullmq';

/** A child job's end: its return value, or why it failed (children are added with ignoreDependencyOnFailure). */
export type ChildEnd<T> = { ok: true; value: T } | { ok: false; reason: string };

/** The end of one child of `job`, found by the child's BullMQ key (keys.bullJob), or undefined while it runs. */
export async function childEnd<T>(job: Job, childKey: string): Promise<ChildEnd<T> | undefined> {
  const values = await job.getChildrenValues<T>();
  if (childKey in values) return { ok: true, value: values[childKey] as T };
  const failures = await job.getIgnoredChildrenFailures();
  if (childKey in failures) return { ok: false, reason: failures[childKey]! };
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

/**
 * Parks the job until its children have ended; BullMQ then runs it again from the top, where
 * its saved state says what it waited for. Returns (instead of throwing) only when every child
 * had already ended, and the caller goes on at once.
 */
export async function parkUntilChildrenEnd(job: Job, token: string | undefined): Promise<void> {
  if (!token) throw new Error('a job without a lock token cannot wait for children');
  if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
}

import type { Job, JobsOptions } from 'bullmq';

/** Every queue fleet runs. Producers and processors import these names, never spell them. */
export const QUEUE_NAMES = { spawn: 'spawn', review: 'review', merge: 'merge' } as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

/** How long finished flow jobs stay (the board, and child results a parent still reads). */
export const FLOW_RETENTION_SECONDS = 7 * 24 * 3600;
export const KEEP_FLOW_JOBS = { removeOnComplete: { age: FLOW_RETENTION_SECONDS }, removeOnFail: { age: FLOW_RETENTION_SECONDS } } as const;

/**
 * Options of a child added to a running job. Its failure does not fail the parent, which reads the
 * end and decides (see src/flow/children.ts).
 */
export function childJobOptions(parent: Job, id: string, options: { attempts?: number; keepLogs?: number } = {}): JobsOptions {
  return {
    jobId: id,
    parent: { id: parent.id!, queue: parent.queueQualifiedName },
    ignoreDependencyOnFailure: true,
    attempts: options.attempts ?? 1,
    keepLogs: options.keepLogs,
    ...KEEP_FLOW_JOBS,
  };
}

import type { Redis } from 'ioredis';
import { channels, containerEventSchema, type ContainerEvent, type FleetEvent, type WorkerType } from './protocol.ts';
import { redactor } from './redact.ts';

export const EVENT_PREFIX = '::fleet-event:: ';

export type ParsedLine =
  | { kind: 'event'; event: ContainerEvent }
  /** The worker's last word before it stops its inner dockerd: the exit code it is about to exit with. Not a protocol event. */
  | { kind: 'exiting'; exitCode: number }
  | { kind: 'log'; line: string; problem?: string };

/**
 * One stdout line of a worker container. An event line that does not parse or does not match
 * §4 stays a log line with the reason attached: a broken event is never fatal to the job.
 */
export function parseContainerLine(line: string): ParsedLine {
  if (!line.startsWith(EVENT_PREFIX)) return { kind: 'log', line };
  let body: unknown;
  try {
    body = JSON.parse(line.slice(EVENT_PREFIX.length));
  } catch {
    return { kind: 'log', line, problem: 'event line is not JSON' };
  }
  const exiting = body as { event_type?: unknown; exit_code?: unknown } | null;
  if (exiting?.event_type === 'exiting' && Number.isInteger(exiting.exit_code))
    return { kind: 'exiting', exitCode: exiting.exit_code as number };
  const parsed = containerEventSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      kind: 'log',
      line,
      problem: `event line does not match the protocol: ${issue?.path.join('.') || 'event_type'}: ${issue?.message}`,
    };
  }
  return { kind: 'event', event: parsed.data };
}

export function envelope(event: ContainerEvent, requestId: string, workerType: WorkerType, now: Date): FleetEvent {
  return { ...event, request_id: requestId, timestamp: now.toISOString(), worker_type: workerType };
}

/** Publishes an event on the request's channel and on `worker:events:all`. */
export async function publishEvent(redis: Redis, event: FleetEvent): Promise<void> {
  const json = redactor.redact(JSON.stringify(event));
  await redis.multi().publish(channels.events(event.request_id), json).publish(channels.allEvents, json).exec();
}

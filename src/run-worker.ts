import type { Logger } from 'pino';
import type { WorkerContainer } from './container-runtime.ts';
import type { StopReason } from './errors.ts';
import { EVENT_PREFIX, parseContainerLine } from './events.ts';
import type { ContainerEvent } from './protocol.ts';
import { LOGS_TAIL_LINES } from './protocol.ts';
import { redactor } from './redact.ts';

type Completed = Extract<ContainerEvent, { event_type: 'completed' }>;
type Failed = Extract<ContainerEvent, { event_type: 'failed' }>;

/** How one container run ended. */
export interface RunOutcome {
  /** The container's exit code; null when fleet killed it. */
  exitCode: number | null;
  /** Why fleet stopped the container, if it did. */
  stoppedBy: 'timeout' | StopReason | null;
  completed: Completed | null;
  failed: Failed | null;
  /** The last lines of output (events included), redacted. */
  tail: string[];
}

export interface RunHooks {
  /** Every valid event line, in order. Awaited, so events keep their order on the wire. */
  onEvent(event: ContainerEvent): Promise<void>;
  /** Batches of ordinary output lines, redacted. */
  onLogLines(lines: string[]): Promise<void>;
}

/** Bytes kept of one output line (and so the largest event): the rest of a longer line is dropped. */
export const MAX_LINE_BYTES = 16 * 1024;
const LOG_BATCH_LINES = 200;
const LOG_FLUSH_MS = 250;

/**
 * The run's timeout timer. Injected so a unit test can fire a timeout at once instead of waiting
 * for it; production uses {@link realTimers}.
 */
export interface RunTimers {
  /** Calls `fire` once after `ms`; the returned function disarms it (a no-op once it fired). */
  after(ms: number, fire: () => void): () => void;
}

export const realTimers: RunTimers = {
  after(ms, fire) {
    const timer = setTimeout(fire, ms);
    return () => clearTimeout(timer);
  },
};

/**
 * Starts a created container, follows its output until it exits, and stops it on timeout or
 * when `signal` fires (its reason says why). It never removes the container: the caller does,
 * whatever happened, so nothing is left behind on an error here.
 */
export async function runWorker(
  container: WorkerContainer,
  options: { timeoutMs: number; signal?: AbortSignal; hooks: RunHooks; logger: Logger; timers?: RunTimers },
): Promise<RunOutcome> {
  const outcome: RunOutcome = { exitCode: null, stoppedBy: null, completed: null, failed: null, tail: [] };
  const pending: string[] = [];
  let flushing: Promise<void> = Promise.resolve();
  const flush = () => {
    if (pending.length === 0) return flushing;
    const batch = pending.splice(0, pending.length);
    flushing = flushing.then(() => options.hooks.onLogLines(batch));
    return flushing;
  };
  const flushTimer = setInterval(() => void flush().catch((error) => options.logger.warn({ err: error }, 'job log write failed')), LOG_FLUSH_MS);

  const remember = (line: string) => {
    outcome.tail.push(line);
    if (outcome.tail.length > LOGS_TAIL_LINES) outcome.tail.shift();
  };

  const stop = async (reason: RunOutcome['stoppedBy']) => {
    if (outcome.stoppedBy) return;
    outcome.stoppedBy = reason;
    await container.kill();
  };

  const onAbort = () => void stop((options.signal?.reason as StopReason) ?? 'cancelled').catch((error) => options.logger.error({ err: error }, 'could not kill the worker container'));
  let disarmTimeout: (() => void) | undefined;
  try {
    if (options.signal?.aborted) {
      outcome.stoppedBy = (options.signal.reason as StopReason) ?? 'cancelled';
      return outcome;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    await container.start();
    disarmTimeout = (options.timers ?? realTimers).after(options.timeoutMs, () =>
      void stop('timeout').catch((error) => options.logger.error({ err: error }, 'could not kill a timed-out worker')),
    );

    const exited = container.wait();
    for await (const raw of container.lines(MAX_LINE_BYTES)) {
      const cut = raw.droppedBytes > 0;
      const line = redactor.redact(cut ? `${raw.text}… [line cut at ${MAX_LINE_BYTES} bytes; ${raw.droppedBytes} more dropped]` : raw.text);
      remember(line);
      // A cut line is only log output, even when what is left of it would parse as an event.
      const parsed = cut
        ? { kind: 'log' as const, line, problem: line.startsWith(EVENT_PREFIX) ? `event line longer than ${MAX_LINE_BYTES} bytes, not read as an event` : undefined }
        : parseContainerLine(line);
      if (parsed.kind === 'event') {
        if (parsed.event.event_type === 'completed') outcome.completed = parsed.event;
        if (parsed.event.event_type === 'failed') outcome.failed = parsed.event;
        await options.hooks.onEvent(parsed.event);
      } else {
        pending.push(parsed.problem ? `${line}  [fleet: ${parsed.problem}]` : line);
        if (pending.length >= LOG_BATCH_LINES) await flush();
      }
    }
    const code = await exited;
    outcome.exitCode = outcome.stoppedBy ? null : code;
    return outcome;
  } finally {
    disarmTimeout?.();
    clearInterval(flushTimer);
    options.signal?.removeEventListener('abort', onAbort);
    await flush();
  }
}

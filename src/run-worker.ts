import type { Logger } from 'pino';
import type { AgentStreamMonitor, BudgetBreach } from './agent-stream/index.ts';
import { LatestWins } from './agent-stream/throttle.ts';
import type { WorkerContainer } from './container-runtime.ts';
import type { StopReason } from './errors.ts';
import { EVENT_PREFIX, parseContainerLine } from './events.ts';
import type { AgentUsage, ContainerEvent } from './protocol.ts';
import { LOGS_TAIL_LINES } from './protocol.ts';
import { redactor } from './redact.ts';

type Completed = Extract<ContainerEvent, { event_type: 'completed' }>;
type Failed = Extract<ContainerEvent, { event_type: 'failed' }>;

/** How one container run ended. */
export interface RunOutcome {
  /** The container's exit code; null when fleet killed it. */
  exitCode: number | null;
  /** Why fleet stopped the container, if it did; `budget`: the agent's stream passed max_turns or max_cost_usd. */
  stoppedBy: 'timeout' | 'budget' | StopReason | null;
  completed: Completed | null;
  failed: Failed | null;
  /** The last lines of output (events included; the agent's stream as its transcript), redacted. */
  tail: string[];
  /** What the agent spent, from its stream; null when its stream was not read or never seen. */
  usage?: AgentUsage | null;
  /** Set when fleet killed the worker for its budget. */
  budget?: BudgetBreach | null;
  /** The memory limit killed the worker (read on a non-zero exit fleet did not cause). */
  oomKilled?: boolean;
  /**
   * The worker said it exits 0 (its `exiting` line) and is on its way out, stopping its inner dockerd if it has
   * one: the outcome is known. Its removal should give it {@link EXIT_GRACE_MS} to stop on its own first.
   */
  stillExiting?: boolean;
}

/** How long a worker that said it is exiting gets to stop its inner dockerd (fleet-worker waits 15 s) before removal kills it. */
export const EXIT_GRACE_MS = 20_000;

export interface RunHooks {
  /** Every valid event line, in order. Awaited, so events keep their order on the wire. */
  onEvent(event: ContainerEvent): Promise<void>;
  /** Batches of ordinary output lines, redacted. */
  onLogLines(lines: string[]): Promise<void>;
}

/** How long a container's output may go on after it exited (what is buffered arrives in milliseconds). */
export const OUTPUT_AFTER_EXIT_MS = 10_000;

/** Bytes kept of one output line (and so the largest event): the rest of a longer line is dropped. */
export const MAX_LINE_BYTES = 16 * 1024;
const LOG_BATCH_LINES = 200;
const LOG_FLUSH_MS = 250;
/** Progress events from the agent's tool calls: at most two a second, the last one wins. */
export const AGENT_PROGRESS_INTERVAL_MS = 500;

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
 * `lines`, ended `graceMs` after `exited` resolves if they have not ended by then: a run reading an output that
 * outlives its container would never end. `onOverdue` is told; the container's removal closes the stream left.
 */
async function* endingAfterExit<T>(lines: AsyncIterable<T>, exited: Promise<unknown>, graceMs: number, onOverdue: () => void) {
  const source = lines[Symbol.asyncIterator]();
  let over = false;
  let timer: NodeJS.Timeout | undefined;
  const overdue = new Promise<'overdue'>((resolve) => {
    exited.then(
      () => {
        // A run that ended first (on the exiting line) gets no timer.
        if (!over) timer = setTimeout(() => resolve('overdue'), graceMs);
      },
      () => {},
    );
  });
  let open = true;
  try {
    for (;;) {
      const next = source.next();
      const step = await Promise.race([next, overdue]);
      if (step === 'overdue') {
        // Its answer, whenever the stream is closed, is not needed any more.
        next.catch(() => {});
        open = false;
        onOverdue();
        return;
      }
      if (step.done) {
        open = false;
        return;
      }
      yield step.value;
    }
  } finally {
    over = true;
    clearTimeout(timer);
    // Left early (the exiting line, a budget stop's error, a failed event): the stream is closed as a for-await does.
    if (open) await source.return?.();
  }
}

/**
 * Starts a created container, follows its output until it exits, and stops it on timeout or
 * when `signal` fires (its reason says why). It never removes the container: the caller does,
 * whatever happened, so nothing is left behind on an error here.
 */
export async function runWorker(
  container: WorkerContainer,
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    hooks: RunHooks;
    logger: Logger;
    /** Reads the agent's own JSON stream: transcript, progress, usage and budget. */
    stream?: AgentStreamMonitor;
    /** Injected by tests: the run timeout's timer. */
    timers?: RunTimers;
    /** How long the output may go on after the container exited. @defaultValue {@link OUTPUT_AFTER_EXIT_MS} */
    outputAfterExitMs?: number;
  },
): Promise<RunOutcome> {
  const outcome: RunOutcome = { exitCode: null, stoppedBy: null, completed: null, failed: null, tail: [] };
  const { stream } = options;
  const pending: string[] = [];
  let flushing: Promise<void> = Promise.resolve();
  const flush = () => {
    if (pending.length === 0) return flushing;
    const batch = pending.splice(0, pending.length);
    flushing = flushing.then(() => options.hooks.onLogLines(batch));
    return flushing;
  };
  const flushTimer = setInterval(
    () => void flush().catch((error) => options.logger.warn({ err: error }, 'job log write failed')),
    LOG_FLUSH_MS,
  );

  // Events go out one at a time and in order, whether a line or the progress throttle's timer sends them.
  // A failure of a timer's send is held and thrown with the next event, never dropped.
  let events: Promise<void> = Promise.resolve();
  let eventError: unknown;
  const deliver = (event: ContainerEvent) => {
    const sent = events.then(() => options.hooks.onEvent(event));
    events = sent.catch((error) => {
      eventError ??= error;
    });
    return sent;
  };
  const progress = new LatestWins<string>(
    AGENT_PROGRESS_INTERVAL_MS,
    (message) => void deliver({ event_type: 'progress', stage: 'agent', message, progress_pct: null }),
  );
  const log = (line: string) => {
    remember(line);
    pending.push(line);
  };

  const remember = (line: string) => {
    outcome.tail.push(line);
    if (outcome.tail.length > LOGS_TAIL_LINES) outcome.tail.shift();
  };

  const stop = async (reason: RunOutcome['stoppedBy']) => {
    if (outcome.stoppedBy) return;
    outcome.stoppedBy = reason;
    await container.kill();
  };

  const onAbort = () =>
    void stop((options.signal?.reason as StopReason) ?? 'cancelled').catch((error) =>
      options.logger.error({ err: error }, 'could not kill the worker container'),
    );
  let disarmTimeout: (() => void) | undefined;
  try {
    if (options.signal?.aborted) {
      outcome.stoppedBy = (options.signal.reason as StopReason) ?? 'cancelled';
      return outcome;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    await container.start();
    disarmTimeout = (options.timers ?? realTimers).after(
      options.timeoutMs,
      () => void stop('timeout').catch((error) => options.logger.error({ err: error }, 'could not kill a timed-out worker')),
    );

    if (stream?.costWarning) log(stream.costWarning);

    const exited = container.wait();
    // Awaited after the output ends; when the output fails first (the daemon went away), its rejection is not news.
    exited.catch(() => {});
    // Docker's attach was once seen (in the test harness) to stay open after its container had exited.
    const graceMs = options.outputAfterExitMs ?? OUTPUT_AFTER_EXIT_MS;
    const overdue = () => log(`[fleet] the container exited ${graceMs} ms ago and its output has not ended; stopped reading it`);
    for await (const raw of endingAfterExit(container.lines(MAX_LINE_BYTES), exited, graceMs, overdue)) {
      const cut = raw.droppedBytes > 0;
      const line = redactor.redact(cut ? `${raw.text}… [line cut at ${MAX_LINE_BYTES} bytes; ${raw.droppedBytes} more dropped]` : raw.text);
      // A cut line is only log output, even when what is left of it would parse as an event.
      const parsed = cut
        ? {
            kind: 'log' as const,
            line,
            problem: line.startsWith(EVENT_PREFIX) ? `event line longer than ${MAX_LINE_BYTES} bytes, not read as an event` : undefined,
          }
        : parseContainerLine(line);
      if (parsed.kind === 'exiting') {
        // A clean exit is the outcome: the result need not wait for the inner dockerd to stop. Any other code
        // is read at the real exit, where the memory limit's OOM kill can still be told apart.
        if (parsed.exitCode !== 0 || outcome.stoppedBy) continue;
        outcome.exitCode = 0;
        outcome.stillExiting = true;
        return outcome;
      }
      if (parsed.kind === 'event') {
        remember(line);
        if (parsed.event.event_type === 'completed') outcome.completed = parsed.event;
        if (parsed.event.event_type === 'failed') outcome.failed = parsed.event;
        // The agent's last activity goes before the worker's own next stage.
        progress.flush();
        await deliver(parsed.event);
        if (eventError) throw eventError;
        continue;
      }
      const seen = stream && !cut && !parsed.problem ? stream.read(line) : null;
      if (seen?.log) seen.log.forEach(log);
      else log(parsed.problem ? `${line}  [fleet: ${parsed.problem}]` : line);
      if (seen?.activity && !outcome.stoppedBy) progress.push(seen.activity);
      if (seen?.breach && !outcome.stoppedBy) {
        // Killed as soon as the line is read: the worker's commit stage comes only after the agent ends.
        outcome.budget = seen.breach;
        log(`[fleet] ${seen.breach.message}`);
        progress.close();
        await stop('budget');
      }
      if (pending.length >= LOG_BATCH_LINES) await flush();
      if (eventError) throw eventError;
    }
    const code = await exited;
    outcome.exitCode = outcome.stoppedBy ? null : code;
    if (outcome.exitCode !== null && outcome.exitCode !== 0) outcome.oomKilled = (await container.exitState()).oomKilled;
    return outcome;
  } finally {
    disarmTimeout?.();
    clearInterval(flushTimer);
    options.signal?.removeEventListener('abort', onAbort);
    if (outcome.stoppedBy) progress.close();
    else progress.flush();
    await events;
    outcome.usage = stream?.usage() ?? null;
    await flush();
  }
}

import { describe, expect, it } from 'vitest';
import type { OutputLine, WorkerContainer } from '../../src/container-runtime.ts';
import { parseContainerLine } from '../../src/events.ts';
import { createLogger } from '../../src/logger.ts';
import type { ContainerEvent } from '../../src/protocol.ts';
import { runWorker } from '../../src/run-worker.ts';

const event = (body: Record<string, unknown>): OutputLine => ({ text: `::fleet-event:: ${JSON.stringify(body)}`, droppedBytes: 0 });
const completed = event({ event_type: 'completed', commit_sha: null, branch: 'main', files_changed: [], summary: 'done' });
const never = new Promise<never>(() => {});

/** A worker that prints `lines`, then, like one stopping its inner dockerd, neither exits nor prints more until `exit` is given. */
function stopping(lines: OutputLine[], exit?: number): WorkerContainer {
  return {
    id: 'stopping',
    start: async () => {},
    async *lines() {
      yield* lines;
      if (exit === undefined) await never;
    },
    wait: async () => (exit === undefined ? never : exit),
    exitState: async () => ({ oomKilled: false }),
    kill: async () => {},
    remove: async () => {},
  };
}

async function run(container: WorkerContainer, outputAfterExitMs?: number) {
  const events: ContainerEvent[] = [];
  const outcome = await runWorker(container, {
    timeoutMs: 60_000,
    outputAfterExitMs,
    logger: createLogger({ level: 'silent' }),
    hooks: { onEvent: async (e) => void events.push(e), onLogLines: async () => {} },
  });
  return { outcome, events };
}

describe("the worker's exiting line", () => {
  it('is read as the exit code it announces, not as a protocol event', () => {
    expect(parseContainerLine('::fleet-event:: {"event_type":"exiting","exit_code":0}')).toEqual({ kind: 'exiting', exitCode: 0 });
    expect(parseContainerLine('::fleet-event:: {"event_type":"exiting","exit_code":"0"}')).toMatchObject({ kind: 'log' });
  });

  it('ends the run at exit code 0 without waiting for the container to stop, and is never published', async () => {
    const { outcome, events } = await run(stopping([completed, event({ event_type: 'exiting', exit_code: 0 })]));
    expect(outcome).toMatchObject({ exitCode: 0, stillExiting: true, stoppedBy: null });
    expect(outcome.completed?.summary).toBe('done');
    expect(events.map((e) => e.event_type)).toEqual(['completed']);
  });

  it('at any other code waits for the real exit, where the memory limit can still be read', async () => {
    const failed = event({ event_type: 'failed', error_type: 'task_failed', error_message: 'no', logs_tail: null });
    const { outcome } = await run(stopping([failed, event({ event_type: 'exiting', exit_code: 11 })], 11));
    expect(outcome.exitCode).toBe(11);
    expect(outcome.stillExiting).toBeUndefined();
  });
});

describe('an output that outlives its container', () => {
  it('is read for outputAfterExitMs after the exit, then the run ends with the exit code and says why', async () => {
    // Exits 3 at once while its output stream stays open (as Docker's attach once did in the test harness).
    const container: WorkerContainer = {
      ...stopping([completed]),
      wait: async () => 3,
    };
    const { outcome } = await run(container, 20);
    expect(outcome.exitCode).toBe(3);
    expect(outcome.completed?.summary).toBe('done');
    expect(outcome.tail.at(-1)).toMatch(/exited 20 ms ago and its output has not ended; stopped reading it/);
  });

  it('an output that ends after the exit, within the grace, is read whole', async () => {
    let exit!: (code: number) => void;
    const exitCode = new Promise<number>((resolve) => (exit = resolve));
    const container: WorkerContainer = {
      ...stopping([]),
      async *lines() {
        yield { text: 'before the exit', droppedBytes: 0 };
        exit(0);
        // Delivered after the exit, as buffered output is.
        await exitCode;
        yield { text: 'after the exit', droppedBytes: 0 };
      },
      wait: () => exitCode,
    };
    const { outcome } = await run(container, 60_000);
    expect(outcome.exitCode).toBe(0);
    expect(outcome.tail).toEqual(['before the exit', 'after the exit']);
  });
});

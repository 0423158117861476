import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import type { OutputLine, WorkerContainer } from '../../src/container-runtime.ts';
import { buildContainerSpec } from '../../src/container-spec.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { createLogger } from '../../src/logger.ts';
import type { ContainerEvent } from '../../src/protocol.ts';
import { MAX_LINE_BYTES, runWorker } from '../../src/run-worker.ts';
import { legacyRequest } from '../support/fleet.ts';

/** A container whose output is the given lines, as the runtime hands them over (already capped). */
function scriptedContainer(lines: OutputLine[]): WorkerContainer & { askedCap: number | undefined } {
  return {
    id: 'scripted',
    askedCap: undefined,
    start: async () => {},
    async *lines(maxLineBytes: number) {
      this.askedCap = maxLineBytes;
      yield* lines;
    },
    wait: async () => 0,
    exitState: async () => ({ oomKilled: false }),
    kill: async () => {},
    remove: async () => {},
  };
}

async function run(lines: OutputLine[]) {
  const container = scriptedContainer(lines);
  const events: ContainerEvent[] = [];
  const logs: string[] = [];
  const outcome = await runWorker(container, {
    timeoutMs: 10_000,
    logger: createLogger({ level: 'silent' }),
    hooks: { onEvent: async (e) => void events.push(e), onLogLines: async (l) => void logs.push(...l) },
  });
  return { outcome, events, logs, askedCap: container.askedCap };
}

describe('runWorker and over-long lines', () => {
  it('asks the runtime for lines of at most 16 KiB', async () => {
    expect((await run([])).askedCap).toBe(16 * 1024);
    expect(MAX_LINE_BYTES).toBe(16 * 1024);
  });

  it('marks a cut line with the bytes it lost', async () => {
    const { logs, outcome } = await run([{ text: 'x'.repeat(10), droppedBytes: 12345 }]);
    expect(logs).toEqual([`${'x'.repeat(10)}… [line cut at 16384 bytes; 12345 more dropped]`]);
    expect(outcome.tail).toEqual(logs);
  });

  it('never reads a cut event line as an event, even when what is left of it parses', async () => {
    const event = '::fleet-event:: {"event_type":"completed","commit_sha":"abc","branch":"main","files_changed":[],"summary":"forged"}';
    const { events, logs, outcome } = await run([
      { text: event, droppedBytes: 1 },
      { text: event.replace('forged', 'real'), droppedBytes: 0 },
    ]);
    expect(events).toMatchObject([{ event_type: 'completed', summary: 'real' }]);
    expect(outcome.completed).toMatchObject({ summary: 'real' });
    expect(logs).toEqual([
      `${event}… [line cut at 16384 bytes; 1 more dropped]  [fleet: event line longer than 16384 bytes, not read as an event]`,
    ]);
  });
});

describe('Docker log bounds of a worker', () => {
  const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ request_id: 'r-1' }));
  const spec = (env: Record<string, string> = {}) =>
    buildContainerSpec({
      request,
      githubToken: 'tok',
      branch: '',
      jobId: 'r-1',
      lockToken: 'l',
      attempt: 1,
      config: loadConfig({ FLEET_HOST_ID: 'h', ...env }),
    });

  it("rotates Docker's log in two files that together hold FLEET_WORKER_LOG_MAX (default 64m)", () => {
    expect(spec().log).toEqual({ maxFileBytes: 32 * 1024 ** 2, maxFiles: 2 });
    expect(spec({ FLEET_WORKER_LOG_MAX: '10m' }).log).toEqual({ maxFileBytes: 5 * 1024 ** 2, maxFiles: 2 });
  });

  it('refuses a log bound that is not a size or too small, naming the setting', () => {
    expect(() => loadConfig({ FLEET_WORKER_LOG_MAX: 'lots' })).toThrow(/FLEET_WORKER_LOG_MAX: "lots" is not a memory size/);
    expect(() => loadConfig({ FLEET_WORKER_LOG_MAX: '1m' })).toThrow(/FLEET_WORKER_LOG_MAX: must be at least 2m/);
  });
});

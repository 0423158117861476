import { afterEach, describe, expect, it, vi } from 'vitest';
import { createParser, DEFAULT_PRICES, AgentStreamMonitor } from '../../src/agent-stream/index.ts';
import type { OutputLine, WorkerContainer } from '../../src/container-runtime.ts';
import { createLogger } from '../../src/logger.ts';
import type { ContainerEvent } from '../../src/protocol.ts';
import { runWorker } from '../../src/run-worker.ts';

const line = (text: string): OutputLine => ({ text, droppedBytes: 0 });
const event = (body: Record<string, unknown>) => line(`::fleet-event:: ${JSON.stringify(body)}`);
const edit = (n: number, inputTokens = 100) =>
  line(
    JSON.stringify({
      type: 'assistant',
      message: {
        id: `msg_${n}`,
        content: [{ type: 'tool_use', id: `t${n}`, name: 'Edit', input: { file_path: `/workspace/src/f${n}.ts` } }],
        usage: { input_tokens: inputTokens, output_tokens: 1 },
      },
      parent_tool_use_id: null,
    }),
  );

function scripted(lines: OutputLine[]) {
  const container: WorkerContainer & { kills: number } = {
    id: 'scripted',
    kills: 0,
    start: async () => {},
    async *lines() {
      yield* lines;
    },
    wait: async () => 0,
    exitState: async () => ({ oomKilled: false }),
    async kill() {
      container.kills++;
    },
    remove: async () => {},
  };
  return container;
}

async function run(lines: OutputLine[], budget: { maxCostUsd?: number; maxTurns?: number } = {}) {
  const container = scripted(lines);
  const events: ContainerEvent[] = [];
  const logs: string[] = [];
  const stream = new AgentStreamMonitor(createParser('claude'), {
    agent: 'claude',
    model: 'claude-sonnet-4-5',
    prices: DEFAULT_PRICES,
    budget,
  });
  const outcome = await runWorker(container, {
    timeoutMs: 60_000,
    logger: createLogger({ level: 'silent' }),
    stream,
    hooks: { onEvent: async (e) => void events.push(e), onLogLines: async (l) => void logs.push(...l) },
  });
  return { outcome, events, logs, container };
}

describe('runWorker with the agent stream', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("turns tool calls into throttled agent progress, the last one sent before the worker's next event", async () => {
    vi.useFakeTimers();
    const { events } = await run([
      event({ event_type: 'progress', stage: 'run', message: 'running claude', progress_pct: 30 }),
      ...Array.from({ length: 10 }, (_, i) => edit(i + 1)),
      event({ event_type: 'completed', commit_sha: 'c', branch: 'main', files_changed: [], summary: 's' }),
    ]);
    expect(events.map((e) => (e.event_type === 'progress' ? `${e.stage}: ${e.message}` : e.event_type))).toEqual([
      'run: running claude',
      'agent: editing src/f1.ts',
      'agent: editing src/f10.ts',
      'completed',
    ]);
    expect(events[1]).toEqual({ event_type: 'progress', stage: 'agent', message: 'editing src/f1.ts', progress_pct: null });
  });

  it('sends a waiting activity when its interval ends', async () => {
    vi.useFakeTimers();
    const container = scripted([]);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    container.lines = async function* () {
      yield edit(1);
      yield edit(2);
      await gate;
    };
    const events: ContainerEvent[] = [];
    const stream = new AgentStreamMonitor(createParser('claude'), { agent: 'claude', model: 'm', prices: DEFAULT_PRICES, budget: {} });
    const running = runWorker(container, {
      timeoutMs: 60_000,
      logger: createLogger({ level: 'silent' }),
      stream,
      hooks: { onEvent: async (e) => void events.push(e), onLogLines: async () => {} },
    });
    await vi.advanceTimersByTimeAsync(499);
    expect(events.map((e) => e.event_type === 'progress' && e.message)).toEqual(['editing src/f1.ts']);
    await vi.advanceTimersByTimeAsync(1);
    expect(events.map((e) => e.event_type === 'progress' && e.message)).toEqual(['editing src/f1.ts', 'editing src/f2.ts']);
    release();
    await running;
  });

  it('puts the transcript in the job log and the tail in place of the raw JSON; other lines stay', async () => {
    const { logs, outcome } = await run([line('fleet-worker: agent start'), edit(1), line('{"type":"assistant" broken')]);
    expect(logs).toEqual(['fleet-worker: agent start', '[assistant] tool Edit: editing src/f1.ts', '{"type":"assistant" broken']);
    expect(outcome.tail).toEqual(logs);
    expect(outcome.usage).toMatchObject({ agent: 'claude', input_tokens: 100, turns: 1, cost_source: 'price_table' });
  });

  it('kills the container once, on the line that passes the budget, and sends no progress after it', async () => {
    // 2000 input tokens at $3 per million = $0.006 a message; the cap $0.01 falls at the second.
    const { outcome, container, events, logs } = await run([edit(1, 2000), edit(2, 2000), edit(3, 2000), edit(4, 2000)], {
      maxCostUsd: 0.01,
    });
    expect(container.kills).toBe(1);
    expect(outcome).toMatchObject({ stoppedBy: 'budget', exitCode: null, budget: { limit: 'cost' } });
    expect(outcome.budget!.message).toMatch(/after 2 turns/);
    expect(events.map((e) => e.event_type === 'progress' && e.message)).toEqual(['editing src/f1.ts']);
    expect(logs).toContain(`[fleet] ${outcome.budget!.message}`);
    // Lines read while the kill took effect still count.
    expect(outcome.usage).toMatchObject({ turns: 4 });
  });

  it('holds the turn cap too', async () => {
    const { outcome } = await run([edit(1), edit(2), edit(3)], { maxTurns: 2 });
    expect(outcome).toMatchObject({ stoppedBy: 'budget', budget: { limit: 'turns' } });
    expect(outcome.budget!.message).toMatch(/max_turns=2 \(3 turns/);
  });
});

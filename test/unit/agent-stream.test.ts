import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeTool } from '../../src/agent-stream/activity.ts';
import { AgentStreamMonitor, createParser, DEFAULT_PRICES, monitorFor, type StreamFormat } from '../../src/agent-stream/index.ts';
import type { AgentStreamParser } from '../../src/agent-stream/types.ts';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/agent-streams/${name}`, import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => line !== '');

/** Every line through a parser: what each gave, the transcript and the activities. */
function readAll(parser: AgentStreamParser, lines: string[]) {
  const steps = lines.map((line) => parser.read(line));
  return {
    steps,
    transcript: steps.flatMap((s) => s?.transcript ?? []),
    activities: steps.flatMap((s) => (s?.activity ? [s.activity] : [])),
  };
}

describe('claude stream (claude -p --output-format stream-json --verbose)', () => {
  it('reads a real run: transcript, tool activities, and the totals of its result line', () => {
    const parser = createParser('claude');
    const { steps, transcript, activities } = readAll(parser, fixture('claude-task.jsonl'));
    expect(steps.every((s) => s !== null)).toBe(true);
    expect(activities).toEqual(['writing hello.txt', 'running cat hello.txt']);
    expect(transcript).toEqual([
      '[session] claude started (model claude-sonnet-4-5-20250929)',
      '[assistant] I will create the file.',
      '[assistant] tool Write: writing hello.txt',
      '[tool result] ok: File created successfully at: /workspace/hello.txt (file state is current in your context — no need to Read it back)',
      '[assistant] tool Bash: running cat hello.txt',
      '[tool result] error: Exit code 1',
      '[assistant] Created hello.txt.',
      '[done] success, 3 turn(s), $0.0134: Created hello.txt.',
    ]);
    expect(parser.totals()).toEqual({
      input_tokens: 3600,
      output_tokens: 120,
      cached_tokens: 900,
      cache_write_tokens: 150,
      turns: 3,
      reported_cost_usd: 0.0134325,
      limit_hit: null,
    });
  });

  it('counts a message once although each of its content blocks is a line of its own', () => {
    const parser = createParser('claude');
    // Lines 2 and 3 are the text and the tool_use block of one message (msg_1).
    readAll(parser, fixture('claude-task.jsonl').slice(0, 3));
    expect(parser.totals()).toMatchObject({
      turns: 1,
      input_tokens: 1200,
      cached_tokens: 300,
      cache_write_tokens: 50,
      output_tokens: 1,
      reported_cost_usd: null,
    });
  });

  it('reads claude stopping at its own --max-turns as a turn limit', () => {
    const parser = createParser('claude');
    readAll(parser, fixture('claude-max-turns.jsonl'));
    expect(parser.totals()).toMatchObject({ limit_hit: 'turns', turns: 2, reported_cost_usd: 0.0044775 });
  });
});

describe('codex stream (codex exec --json)', () => {
  it('reads a real run: the command, its result, and turn.completed usage with cached tokens taken out of input', () => {
    const parser = createParser('codex');
    const { steps, transcript, activities } = readAll(parser, fixture('codex-task.jsonl'));
    expect(steps.every((s) => s !== null)).toBe(true);
    expect(activities).toEqual([`running /bin/bash -lc "printf 'hello\\\\n' > hello.txt && cat hello.txt"`]);
    expect(transcript).toContain('[tool result] ok: hello');
    expect(transcript).toContain('[assistant] Created hello.txt.');
    expect(transcript.at(-1)).toBe('[done] turn completed: 4000 input (1000 cached), 120 output tokens');
    expect(parser.totals()).toEqual({
      input_tokens: 3000,
      output_tokens: 120,
      cached_tokens: 1000,
      cache_write_tokens: 0,
      turns: 2,
      reported_cost_usd: null,
      limit_hit: null,
    });
  });

  it('reads file changes, plans, MCP calls and failures', () => {
    const parser = createParser('codex');
    const { transcript, activities } = readAll(parser, fixture('codex-edit-failed.jsonl'));
    expect(activities).toEqual([
      'updating its plan',
      'editing src/app.ts',
      'editing src/app.ts',
      'updating its plan',
      "running /bin/bash -lc 'npm test'",
      'using github.search_issues',
    ]);
    expect(transcript).toContain('[assistant] files changed: update src/app.ts, add src/new.ts');
    expect(transcript).toContain('[tool result] exit 1: > test');
    expect(transcript).toContain('[plan] 1/2 done');
    expect(transcript).toContain('[error] Reconnecting... 1/5');
    expect(transcript.at(-1)).toBe('[error] turn failed: stream disconnected before completion: Transport error');
    // No turn.completed: no usage, but the three tool items are three model turns.
    expect(parser.totals()).toMatchObject({ input_tokens: 0, output_tokens: 0, turns: 3 });
  });
});

describe('droid stream (droid exec -o stream-json)', () => {
  it('reads a real run: tool calls, results, and the completion usage', () => {
    const parser = createParser('droid');
    const { steps, transcript, activities } = readAll(parser, fixture('droid-task.jsonl'));
    expect(steps.every((s) => s !== null)).toBe(true);
    expect(activities).toEqual(['writing hello.txt', 'running cat hello.txt']);
    expect(transcript).toContain('[tool result] ok: {"success":true,"file_path":"/workspace/hello.txt"}');
    expect(transcript).toContain('[tool result] error: Error: Command failed (exit code: 1)');
    expect(transcript.at(-1)).toBe('[done] 3 turn(s): Created hello.txt.');
    expect(parser.totals()).toEqual({
      input_tokens: 3600,
      output_tokens: 120,
      cached_tokens: 900,
      cache_write_tokens: 150,
      turns: 3,
      reported_cost_usd: null,
      limit_hit: null,
    });
  });

  it('counts turns by assistant message id before the completion line', () => {
    const parser = createParser('droid');
    readAll(parser, fixture('droid-task.jsonl').slice(0, 7));
    expect(parser.totals().turns).toBe(2);
  });

  it('reads the single result line of -o json', () => {
    const parser = createParser('droid');
    readAll(parser, fixture('droid-json.jsonl'));
    expect(parser.totals()).toMatchObject({ input_tokens: 3600, output_tokens: 120, turns: 3 });
  });
});

describe('lines that are not the stream, or are broken', () => {
  it.each(['claude', 'codex', 'droid'] as StreamFormat[])('%s: never throws, and leaves every other line as log output', (format) => {
    const parser = createParser(format);
    const lines = fixture('worker-output.txt');
    const steps = lines.map((line) => parser.read(line));
    const nonStream = [0, 1, 2, 4, 5, 6, 7, 8, 11];
    for (const i of nonStream) expect(steps[i], lines[i]).toBeNull();
  });

  it('claude: reads the stream lines among them', () => {
    const parser = createParser('claude');
    const { transcript, activities } = readAll(parser, fixture('worker-output.txt'));
    expect(activities).toEqual(['editing src/app.ts']);
    expect(transcript).toEqual([
      '[assistant] tool Edit: editing src/app.ts',
      '[tool result] ok: The file /workspace/src/app.ts has been updated.',
    ]);
  });

  it('a line of one CLI means nothing to the parser of another', () => {
    expect(fixture('claude-task.jsonl').map((l) => createParser('codex').read(l))).toEqual(fixture('claude-task.jsonl').map(() => null));
    expect(fixture('codex-task.jsonl').map((l) => createParser('claude').read(l))).toEqual(fixture('codex-task.jsonl').map(() => null));
  });

  it('takes no negative, non-numeric or infinite count from a line', () => {
    const parser = createParser('claude');
    parser.read(
      '{"type":"assistant","message":{"id":"m","content":[],"usage":{"input_tokens":-5,"output_tokens":"9","cache_read_input_tokens":1e400}}}',
    );
    expect(parser.totals()).toMatchObject({ input_tokens: 0, output_tokens: 0, cached_tokens: 0, turns: 1 });
  });

  it('keeps transcript lines short and on one line', () => {
    const parser = createParser('claude');
    const text = `${'x'.repeat(5000)}\nsecond line\u0007`;
    const step = parser.read(JSON.stringify({ type: 'assistant', message: { id: 'm', content: [{ type: 'text', text }] } }));
    expect(step!.transcript[0]!.length).toBeLessThanOrEqual(320);
    expect(step!.transcript[0]).not.toMatch(/\n|\u0007/);
  });
});

describe('describeTool', () => {
  it.each([
    ['Edit', { file_path: '/workspace/src/app.ts' }, 'editing src/app.ts'],
    ['ApplyPatch', { patch: '*** Begin Patch\n*** Update File: src/a.ts\n@@' }, 'editing src/a.ts'],
    ['Bash', { command: 'npm test\n# and more' }, 'running npm test # and more'],
    ['shell', { command: ['bash', '-lc', 'ls'] }, 'running bash -lc ls'],
    ['Grep', { pattern: 'TODO' }, 'searching TODO'],
    ['Read', {}, 'reading'],
    ['SomethingNew', 'not an object', 'using SomethingNew'],
  ])('%s', (name, input, expected) => {
    expect(describeTool(name, input)).toBe(expected);
  });
});

describe('AgentStreamMonitor: budgets', () => {
  const run = { agent: 'claude' as const, model: 'claude-sonnet-4-5-20250929', prices: DEFAULT_PRICES };

  it('breaks the cost cap on the line whose estimate passes it (claude, before any result line)', () => {
    // Per message: 1200 input × $3 + 300 cached × $0.30 + 50 written × $3.75 + 1 output × $15 per million = $0.0038925.
    const monitor = new AgentStreamMonitor(createParser('claude'), { ...run, budget: { maxCostUsd: 0.005 } });
    const lines = fixture('claude-task.jsonl');
    const breaches = lines.map((line) => monitor.read(line).breach);
    expect(breaches.findIndex((b) => b !== null)).toBe(4); // msg_2, the second message
    expect(breaches.filter((b) => b !== null)).toHaveLength(1);
    expect(breaches[4]).toMatchObject({ limit: 'cost' });
    expect(breaches[4]!.message).toMatch(/max_cost_usd=0\.005 \(\$0\.0078 after 2 turns\)/);
  });

  it('breaks the turn cap once the turns pass it, not when they reach it', () => {
    const monitor = new AgentStreamMonitor(createParser('droid'), { ...run, agent: 'droid', budget: { maxTurns: 2 } });
    const breaches = fixture('droid-task.jsonl').map((line) => monitor.read(line).breach);
    // The third assistant message id is on line 8.
    expect(breaches.findIndex((b) => b !== null)).toBe(7);
    expect(breaches[7]).toMatchObject({ limit: 'turns' });
  });

  it('takes claude stopping at its own turn limit as a breach', () => {
    const monitor = new AgentStreamMonitor(createParser('claude'), { ...run, budget: { maxTurns: 1 } });
    const breaches = fixture('claude-max-turns.jsonl').map((line) => monitor.read(line).breach);
    expect(breaches.at(-1)).toMatchObject({ limit: 'turns' });
  });

  it('says when a cost cap cannot be enforced, and enforces none', () => {
    const monitor = new AgentStreamMonitor(createParser('codex'), {
      ...run,
      agent: 'codex',
      model: 'my-own-model',
      budget: { maxCostUsd: 0.0001 },
    });
    expect(monitor.costWarning).toMatch(/my-own-model has no price.*cannot be enforced/);
    expect(fixture('codex-task.jsonl').map((line) => monitor.read(line).breach)).toEqual(fixture('codex-task.jsonl').map(() => null));
    expect(monitor.usage()).toMatchObject({ cost_usd: null, cost_source: null, input_tokens: 3000 });
  });

  it('reports no usage until a line of the stream was seen', () => {
    const monitor = new AgentStreamMonitor(createParser('claude'), { ...run, budget: {} });
    monitor.read('fleet-worker: agent start');
    expect(monitor.usage()).toBeNull();
  });

  it('masks a secret that the JSON spelled with escapes in its transcript', () => {
    const monitor = new AgentStreamMonitor(createParser('claude'), { ...run, budget: {} });
    const token = `ghp_${'A1b2C3d4'.repeat(4)}`;
    const escaped = `\\u0067${token.slice(1)}`;
    const { log } = monitor.read(`{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"the token is ${escaped}"}]}}`);
    expect(log!.join('\n')).not.toContain(token);
    expect(log!.join('\n')).toContain('[REDACTED]');
  });

  it('monitorFor: custom agents get a stream only with a declared format; the host cap applies without a request cap', () => {
    const settings = { customFormat: undefined, prices: DEFAULT_PRICES, defaultMaxCostUsd: 2 };
    expect(monitorFor({ agent: 'custom', model: 'm' }, settings)).toBeUndefined();
    expect(monitorFor({ agent: 'custom', model: 'm' }, { ...settings, customFormat: 'codex' })?.format).toBe('codex');
    const monitor = monitorFor({ agent: 'claude', model: 'claude-sonnet-4-5-20250929' }, { ...settings, defaultMaxCostUsd: 0.001 })!;
    expect(
      fixture('claude-task.jsonl')
        .map((line) => monitor.read(line).breach)
        .findIndex((b) => b !== null),
    ).toBe(1);
  });
});

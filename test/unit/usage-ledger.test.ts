import { Registry } from 'prom-client';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_PRICES, parsePriceTable, priceFor } from '../../src/agent-stream/prices.ts';
import { LatestWins } from '../../src/agent-stream/throttle.ts';
import { emptyTotals } from '../../src/agent-stream/types.ts';
import { sumUsage, usageLine, usageOf } from '../../src/agent-stream/usage.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { buildContainerSpec } from '../../src/container-spec.ts';
import { aggregateFlowResult, emptyOutcome } from '../../src/flow/result.ts';
import { InvalidRequestError } from '../../src/errors.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { createLogger } from '../../src/logger.ts';
import { createFleetMetrics, MAX_MODEL_LABELS } from '../../src/metrics.ts';
import type { ScopeContext } from '../../queues/review.ts';
import { LEGACY_RESULT_KEYS, type AgentUsage, type WorkerResult } from '../../src/protocol.ts';
import { formatResult, resultFromOutcome, terminalEvent } from '../../src/results.ts';
import { legacyRequest } from '../support/fleet.ts';

const usage = (overrides: Partial<AgentUsage> = {}): AgentUsage => ({
  agent: 'claude',
  model: 'claude-sonnet-4-5-20250929',
  input_tokens: 1000,
  output_tokens: 100,
  cached_tokens: 10,
  cache_write_tokens: 0,
  turns: 2,
  cost_usd: 0.5,
  cost_source: 'agent',
  ...overrides,
});

describe('price table', () => {
  it('finds a model by its family, without a vendor prefix or a date', () => {
    const sonnet = DEFAULT_PRICES['claude-sonnet-4-5'];
    expect(priceFor('claude-sonnet-4-5-20250929', DEFAULT_PRICES)).toBe(sonnet);
    expect(priceFor('custom:claude-sonnet-4-5-20250929', DEFAULT_PRICES)).toBe(sonnet);
    expect(priceFor('anthropic/claude-sonnet-4-5', DEFAULT_PRICES)).toBe(sonnet);
    expect(priceFor('gpt-5-codex', DEFAULT_PRICES)).toEqual(DEFAULT_PRICES['gpt-5']);
    expect(priceFor('no-such-model', DEFAULT_PRICES)).toBeUndefined();
    expect(priceFor('constructor', DEFAULT_PRICES)).toBeUndefined();
  });

  it('reads an override, cached and cache_write defaulting to input', () => {
    expect(parsePriceTable('{"my-model": {"input": 2, "output": 4}}')).toEqual({
      'my-model': { input: 2, output: 4, cached: 2, cache_write: 2 },
    });
  });

  it.each([
    ['not JSON', '{nope', /must be a JSON object/],
    ['a negative price', '{"m": {"input": -1, "output": 1}}', /m\.input/],
    ['an unknown key', '{"m": {"input": 1, "output": 1, "per": "token"}}', /m/],
    ['a missing output', '{"m": {"input": 1}}', /m\.output/],
  ])('refuses %s with a message naming it', (_name, json, message) => {
    expect(() => parsePriceTable(json)).toThrow(message);
  });
});

describe('usage ledger', () => {
  const totals = {
    ...emptyTotals(),
    input_tokens: 1_000_000,
    output_tokens: 100_000,
    cached_tokens: 200_000,
    cache_write_tokens: 10_000,
    turns: 4,
  };

  it('prices tokens from the table when the agent reported no cost', () => {
    // 1M × $3 + 0.1M × $15 + 0.2M × $0.30 + 0.01M × $3.75
    expect(usageOf(totals, { agent: 'droid', model: 'claude-sonnet-4-5-20250929', prices: DEFAULT_PRICES })).toEqual({
      agent: 'droid',
      model: 'claude-sonnet-4-5-20250929',
      input_tokens: 1_000_000,
      output_tokens: 100_000,
      cached_tokens: 200_000,
      cache_write_tokens: 10_000,
      turns: 4,
      cost_usd: 4.5975,
      cost_source: 'price_table',
    });
  });

  it('takes the cost the agent reported over the table', () => {
    expect(
      usageOf({ ...totals, reported_cost_usd: 1.25 }, { agent: 'claude', model: 'claude-sonnet-4-5', prices: DEFAULT_PRICES }),
    ).toMatchObject({ cost_usd: 1.25, cost_source: 'agent' });
  });

  it('leaves the cost unknown for a model without a price', () => {
    expect(usageOf(totals, { agent: 'codex', model: 'mystery', prices: DEFAULT_PRICES })).toMatchObject({
      cost_usd: null,
      cost_source: null,
    });
  });

  it('sums several runs; a cost nobody knew stays out; sources that differ are mixed', () => {
    expect(sumUsage([undefined, null])).toBeUndefined();
    const sum = sumUsage([
      usage(),
      undefined,
      usage({ cost_usd: 0.25, cost_source: 'price_table', turns: 3 }),
      usage({ cost_usd: null, cost_source: null }),
    ]);
    expect(sum).toMatchObject({
      input_tokens: 3000,
      output_tokens: 300,
      cached_tokens: 30,
      turns: 7,
      cost_usd: 0.75,
      cost_source: 'mixed',
    });
    expect(sumUsage([usage(), usage()])).toMatchObject({ cost_usd: 1, cost_source: 'agent' });
  });

  it('has a job log line that says where the cost came from', () => {
    expect(usageLine(usage())).toMatch(
      /usage of claude \(claude-sonnet-4-5-20250929\): 2 turn\(s\), 1000 input.*\$0\.5000 \(reported by the agent\)/,
    );
    expect(usageLine(usage({ cost_usd: null, cost_source: null }))).toMatch(/cost unknown/);
  });
});

describe('LatestWins', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends the first value at once, then at most one per interval, the last one winning', () => {
    vi.useFakeTimers();
    const sent: string[] = [];
    const throttle = new LatestWins<string>(500, (v) => sent.push(v));
    throttle.push('a');
    throttle.push('b');
    throttle.push('c');
    expect(sent).toEqual(['a']);
    vi.advanceTimersByTime(499);
    expect(sent).toEqual(['a']);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual(['a', 'c']);
    throttle.push('d');
    vi.advanceTimersByTime(500);
    expect(sent).toEqual(['a', 'c', 'd']);
  });

  it('flush sends the waiting value now; close drops it', () => {
    vi.useFakeTimers();
    const sent: string[] = [];
    const throttle = new LatestWins<string>(500, (v) => sent.push(v));
    throttle.push('a');
    throttle.push('b');
    throttle.flush();
    expect(sent).toEqual(['a', 'b']);
    throttle.push('c');
    throttle.close();
    vi.advanceTimersByTime(5000);
    expect(sent).toEqual(['a', 'b']);
  });
});

describe('results with usage and budgets', () => {
  const base: Parameters<typeof resultFromOutcome>[1] = { exitCode: 0, stoppedBy: null, completed: null, failed: null, tail: ['x'] };
  const ctx = { timeoutSeconds: 60, branch: null };

  it('a budget kill is budget_exceeded with exit code -1 and the reason', () => {
    const result = resultFromOutcome(
      'r',
      {
        ...base,
        exitCode: null,
        stoppedBy: 'budget',
        budget: { limit: 'cost', message: "the agent's cost passed max_cost_usd=0.01" },
        usage: usage(),
      },
      ctx,
    );
    expect(result).toMatchObject({
      success: false,
      exit_code: -1,
      error_type: 'budget_exceeded',
      error_message: "the agent's cost passed max_cost_usd=0.01",
      commit_sha: null,
      usage: usage(),
    });
  });

  it('usage is a v2 key only: the legacy result keeps exactly its eleven keys', () => {
    const result = resultFromOutcome('r', { ...base, usage: usage() }, ctx);
    expect(Object.keys(JSON.parse(formatResult(result, 'legacy')))).toEqual([...LEGACY_RESULT_KEYS]);
    const v2 = JSON.parse(formatResult(result, 'v2'));
    expect(Object.keys(v2).slice(0, 11)).toEqual([...LEGACY_RESULT_KEYS]);
    expect(v2.usage).toEqual(usage());
  });

  it('the terminal event carries usage as an extra field, the legacy fields unchanged', () => {
    const result = resultFromOutcome('r', { ...base, exitCode: null, stoppedBy: 'budget', usage: usage() }, ctx);
    const event = terminalEvent(result);
    expect(event).toEqual({
      event_type: 'failed',
      error_type: 'budget_exceeded',
      error_message: expect.any(String),
      logs_tail: 'x',
      usage: usage(),
    });
    expect(terminalEvent(resultFromOutcome('r', base, ctx))).not.toHaveProperty('usage');
  });

  it("a flow's result sums its scopes' worker usage", () => {
    const scopeCtx = { scope: 'web', branch: 'b' } as ScopeContext;
    const worker = (u?: AgentUsage) => ({ ...resultFromOutcome('r', base, ctx), ...(u ? { usage: u } : {}) }) as WorkerResult;
    const outcomes = [
      { ...emptyOutcome(scopeCtx), worker: worker(usage()) },
      { ...emptyOutcome({ ...scopeCtx, scope: 'api' }), worker: worker(usage({ input_tokens: 5 })) },
      { ...emptyOutcome({ ...scopeCtx, scope: 'docs' }), worker: worker() },
    ];
    const times = { acceptedAt: 0, finishedAt: 1 };
    expect(aggregateFlowResult('r', outcomes, { review: false, merge: false }, times).usage).toMatchObject({
      input_tokens: 1005,
      cost_usd: 1,
      turns: 4,
    });
    expect(aggregateFlowResult('r', [outcomes[2]!], { review: false, merge: false }, times)).not.toHaveProperty('usage');
  });
});

describe('budget fields and settings', () => {
  it.each([
    [{ max_turns: 0 }, /max_turns.*at least 1/],
    [{ max_turns: 2.5 }, /max_turns.*integer/],
    [{ max_turns: 10_001 }, /max_turns.*at most 10000/],
    [{ max_cost_usd: 0 }, /max_cost_usd.*more than 0/],
    [{ max_cost_usd: -1 }, /max_cost_usd/],
    [{ max_cost_usd: '5' }, /max_cost_usd.*number/],
    [{ max_cost_usd: 10_001 }, /max_cost_usd.*at most 10000/],
  ])('refuses %o', (fields, message) => {
    expect(() => validateSpawnRequest(legacyRequest(fields))).toThrow(InvalidRequestError);
    expect(() => validateSpawnRequest(legacyRequest(fields))).toThrow(message);
  });

  it('accepts budgets and hands max_turns to the container as FLEET_MAX_TURNS', () => {
    const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ agent: 'claude', max_turns: 12, max_cost_usd: 0.5 }));
    expect(request).toMatchObject({ max_turns: 12, max_cost_usd: 0.5 });
    const config = loadConfig({ FLEET_HOST_ID: 'h' });
    const spec = buildContainerSpec({ request, githubToken: 't', branch: '', jobId: 'j', lockToken: 'l', attempt: 1, config });
    expect(spec.env.FLEET_MAX_TURNS).toBe('12');
    const { github_token: _u, ...plain } = validateSpawnRequest(legacyRequest());
    expect(
      buildContainerSpec({ request: plain, githubToken: 't', branch: '', jobId: 'j', lockToken: 'l', attempt: 1, config }).env,
    ).not.toHaveProperty('FLEET_MAX_TURNS');
  });

  it("reads the host settings: default cap, price overrides over the defaults, the custom agent's format", () => {
    const config = loadConfig({
      FLEET_MAX_COST_USD: '2.5',
      FLEET_MODEL_PRICES: '{"gpt-5": {"input": 1, "output": 2}}',
      FLEET_AGENT_CMD_STREAM: 'codex',
    });
    expect(config.agentStream.defaultMaxCostUsd).toBe(2.5);
    expect(config.agentStream.prices['gpt-5']).toEqual({ input: 1, output: 2, cached: 1, cache_write: 1 });
    expect(config.agentStream.prices['claude-sonnet-4-5']).toEqual(DEFAULT_PRICES['claude-sonnet-4-5']);
    expect(config.agentStream.customFormat).toBe('codex');
    expect(loadConfig({}).agentStream).toMatchObject({ customFormat: undefined, defaultMaxCostUsd: undefined });
  });

  it.each([
    [{ FLEET_MAX_COST_USD: '0' }, /FLEET_MAX_COST_USD/],
    [{ FLEET_MODEL_PRICES: '{"m": {"input": "free"}}' }, /FLEET_MODEL_PRICES: m\.input/],
    [{ FLEET_AGENT_CMD_STREAM: 'aider' }, /FLEET_AGENT_CMD_STREAM/],
  ])('refuses bad settings %o', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe('usage metrics', () => {
  it('counts tokens by kind and cost by agent and model, with a bounded model label', async () => {
    const registry = new Registry();
    const metrics = createFleetMetrics({
      registry,
      queues: [],
      redis: {} as Redis,
      keys: {} as never,
      logger: createLogger({ level: 'silent' }),
    });
    metrics.observer.agentUsage!(usage());
    metrics.observer.agentUsage!(usage({ agent: 'codex', model: 'gpt-5', cost_usd: null, cost_source: null }));
    const tokens = await registry.getSingleMetric('fleet_agent_tokens_total')!.get();
    const value = (labels: Record<string, string>) =>
      tokens.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
    expect(value({ agent: 'claude', model: 'claude-sonnet-4-5-20250929', kind: 'input' })).toBe(1000);
    expect(value({ agent: 'claude', kind: 'output' })).toBe(100);
    expect(value({ agent: 'claude', kind: 'cached' })).toBe(10);
    expect(value({ agent: 'codex', model: 'gpt-5', kind: 'input' })).toBe(1000);
    const cost = await registry.getSingleMetric('fleet_agent_cost_usd_total')!.get();
    expect(cost.values).toEqual([{ labels: { agent: 'claude', model: 'claude-sonnet-4-5-20250929' }, value: 0.5 }]);

    for (let i = 0; i < MAX_MODEL_LABELS + 5; i++) metrics.observer.agentUsage!(usage({ model: `m-${i}` }));
    // Two models seen before, 48 more fill the set, the rest are `other`.
    const models = new Set((await registry.getSingleMetric('fleet_agent_tokens_total')!.get()).values.map((v) => v.labels.model));
    expect(models.size).toBe(MAX_MODEL_LABELS + 1);
    expect(models.has('other')).toBe(true);
  });
});

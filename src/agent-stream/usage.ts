/** The usage ledger: one agent run's totals as the v2 `usage`, and the sum of several (a flow's scopes). */
import type { Agent, AgentUsage } from '../protocol.ts';
import { costOf, priceFor, type PriceTable } from './prices.ts';
import type { StreamTotals } from './types.ts';

/** Cents of a cent are noise; rounding also keeps sums free of float dust. */
const roundUsd = (usd: number) => Math.round(usd * 1e6) / 1e6;

/** Pure: the v2 usage of one run — the CLI's own cost when it reported one, else the price table's. */
export function usageOf(totals: StreamTotals, run: { agent: Agent; model: string; prices: PriceTable }): AgentUsage {
  const price = priceFor(run.model, run.prices);
  const cost = totals.reported_cost_usd ?? (price ? costOf(totals, price) : null);
  return {
    agent: run.agent,
    model: run.model,
    input_tokens: totals.input_tokens,
    output_tokens: totals.output_tokens,
    cached_tokens: totals.cached_tokens,
    cache_write_tokens: totals.cache_write_tokens,
    turns: totals.turns,
    cost_usd: cost === null ? null : roundUsd(cost),
    cost_source: totals.reported_cost_usd !== null ? 'agent' : price ? 'price_table' : null,
  };
}

/** Pure: the sum of several runs' usage; undefined when none reported any. A cost nobody knew stays out of the sum. */
export function sumUsage(parts: (AgentUsage | null | undefined)[]): AgentUsage | undefined {
  const known = parts.filter((u): u is AgentUsage => u !== null && u !== undefined);
  if (known.length === 0) return undefined;
  const costs = known.filter((u) => u.cost_usd !== null);
  const sources = new Set(known.map((u) => u.cost_source));
  const sum = (key: 'input_tokens' | 'output_tokens' | 'cached_tokens' | 'cache_write_tokens' | 'turns') =>
    known.reduce((total, u) => total + u[key], 0);
  return {
    agent: known[0]!.agent,
    model: known[0]!.model,
    input_tokens: sum('input_tokens'),
    output_tokens: sum('output_tokens'),
    cached_tokens: sum('cached_tokens'),
    cache_write_tokens: sum('cache_write_tokens'),
    turns: sum('turns'),
    cost_usd: costs.length ? roundUsd(costs.reduce((total, u) => total + u.cost_usd!, 0)) : null,
    cost_source: sources.size === 1 ? known[0]!.cost_source : 'mixed',
  };
}

/** One line for the job log (and so the board), on success and failure alike. */
export function usageLine(usage: AgentUsage): string {
  const cost =
    usage.cost_usd === null
      ? 'cost unknown (no price for this model)'
      : `$${usage.cost_usd.toFixed(4)} (${usage.cost_source === 'agent' ? 'reported by the agent' : 'from the price table'})`;
  return `[fleet] usage of ${usage.agent} (${usage.model}): ${usage.turns} turn(s), ${usage.input_tokens} input, ${usage.cached_tokens} cached, ${usage.cache_write_tokens} cache-write, ${usage.output_tokens} output tokens; ${cost}`;
}

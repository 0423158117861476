/**
 * The host's price table: USD per million tokens of each kind, per model. Used when the CLI reports no
 * cost of its own (codex, droid, and claude until its final `result` line). FLEET_MODEL_PRICES overrides
 * or adds models; the defaults are list prices of the models fleet names (verify them against your contract).
 */
import { z } from 'zod';
import type { StreamTotals } from './types.ts';

export interface ModelPrice {
  /** Uncached input. */
  input: number;
  output: number;
  /** Cache reads. */
  cached: number;
  /** Cache writes. */
  cache_write: number;
}

export type PriceTable = Record<string, ModelPrice>;

const sonnet = { input: 3, output: 15, cached: 0.3, cache_write: 3.75 };
const opus = { input: 15, output: 75, cached: 1.5, cache_write: 18.75 };
const gpt5 = { input: 1.25, output: 10, cached: 0.125, cache_write: 1.25 };

/** Keys are model families: a dated or prefixed name (`custom:claude-sonnet-4-5-20250929`) finds its family. */
export const DEFAULT_PRICES: PriceTable = {
  'claude-sonnet-4-5': sonnet,
  'claude-sonnet-4': sonnet,
  'claude-opus-4-1': opus,
  'claude-opus-4': opus,
  'claude-haiku-4-5': { input: 1, output: 5, cached: 0.1, cache_write: 1.25 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cached: 0.08, cache_write: 1 },
  'gpt-5': gpt5,
  'gpt-5-codex': gpt5,
  'gpt-5-mini': { input: 0.25, output: 2, cached: 0.025, cache_write: 0.25 },
  'gpt-4.1': { input: 2, output: 8, cached: 0.5, cache_write: 2 },
  'gpt-4o': { input: 2.5, output: 10, cached: 1.25, cache_write: 2.5 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cached: 0.075, cache_write: 0.15 },
};

const rate = z.number().min(0).max(10_000);
const priceSchema = z.strictObject({ input: rate, output: rate, cached: rate.optional(), cache_write: rate.optional() });

/**
 * FLEET_MODEL_PRICES: a JSON object `{"model": {"input": 3, "output": 15, "cached": 0.3, "cache_write": 3.75}}`
 * in USD per million tokens; `cached` and `cache_write` default to `input`. Throws naming what is wrong.
 */
export function parsePriceTable(json: string): PriceTable {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new Error('must be a JSON object like {"model": {"input": 3, "output": 15}} (USD per million tokens)');
  }
  const parsed = z.record(z.string().min(1).max(200), priceSchema).safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(
      `${issue.path.join('.') || 'the table'}: ${issue.message} (USD per million tokens: {"model": {"input": 3, "output": 15}})`,
    );
  }
  return Object.fromEntries(
    Object.entries(parsed.data).map(([model, p]) => [
      model,
      { input: p.input, output: p.output, cached: p.cached ?? p.input, cache_write: p.cache_write ?? p.input },
    ]),
  );
}

/** The price of a model: its own entry, else its family's (without a `vendor:`/`vendor/` prefix and a date or `-latest`). */
export function priceFor(model: string, table: PriceTable): ModelPrice | undefined {
  if (Object.hasOwn(table, model)) return table[model];
  const bare = model.replace(/^.*[:/]/, '');
  const family = bare.replace(/-(?:\d{8}|latest)$/, '');
  for (const name of [bare, family]) if (Object.hasOwn(table, name)) return table[name];
  return undefined;
}

/** USD for the tokens at a price. */
export function costOf(
  tokens: Pick<StreamTotals, 'input_tokens' | 'output_tokens' | 'cached_tokens' | 'cache_write_tokens'>,
  price: ModelPrice,
): number {
  return (
    (tokens.input_tokens * price.input +
      tokens.output_tokens * price.output +
      tokens.cached_tokens * price.cached +
      tokens.cache_write_tokens * price.cache_write) /
    1e6
  );
}

/**
 * The agent's own JSON stream, one object per stdout line (claude `--output-format stream-json --verbose`,
 * `codex exec --json`, `droid exec -o stream-json`), read by one parser per CLI. The stream is untrusted
 * output like any other: a parser never throws on a line, and a line it does not know stays log output.
 */

/** The stream formats fleet reads; `custom` agents pick one with FLEET_AGENT_CMD_STREAM, or none. */
export const STREAM_FORMATS = ['claude', 'codex', 'droid'] as const;
export type StreamFormat = (typeof STREAM_FORMATS)[number];

/** What one line of the stream means to fleet. */
export interface StreamStep {
  /** Short readable lines for the job log, in place of the raw JSON line; empty: nothing worth keeping. */
  transcript: string[];
  /** What the agent does now ("editing src/app.ts"), for a `progress` event. */
  activity?: string;
}

/** Running totals of one agent run, as far as its stream has told. Token kinds do not overlap. */
export interface StreamTotals {
  /** Uncached input tokens. */
  input_tokens: number;
  output_tokens: number;
  /** Input tokens read from the prompt cache. */
  cached_tokens: number;
  /** Input tokens written to the prompt cache. */
  cache_write_tokens: number;
  /** Model turns (API round trips) seen so far. */
  turns: number;
  /** Cost of the whole run as the CLI itself reported it; null while it has reported none. */
  reported_cost_usd: number | null;
  /** The CLI stopped itself at a limit fleet handed it (claude's error_max_turns / error_max_budget_usd). */
  limit_hit: 'turns' | 'cost' | null;
}

export interface AgentStreamParser {
  readonly format: StreamFormat;
  /** One output line; null when it is not a line of this stream (it stays log output as it is). */
  read(line: string): StreamStep | null;
  totals(): StreamTotals;
}

export const emptyTotals = (): StreamTotals => ({
  input_tokens: 0,
  output_tokens: 0,
  cached_tokens: 0,
  cache_write_tokens: 0,
  turns: 0,
  reported_cost_usd: null,
  limit_hit: null,
});

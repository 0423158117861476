/** The agent's own JSON stream on the host: one parser per CLI, chosen by the request's agent. */
import type { Agent } from '../protocol.ts';
import { createClaudeParser } from './claude.ts';
import { createCodexParser } from './codex.ts';
import { createDroidParser } from './droid.ts';
import { AgentStreamMonitor, type Budget } from './monitor.ts';
import type { PriceTable } from './prices.ts';
import type { AgentStreamParser, StreamFormat } from './types.ts';

export { AgentStreamMonitor, type Budget, type BudgetBreach } from './monitor.ts';
export { DEFAULT_PRICES, parsePriceTable, type PriceTable } from './prices.ts';
export { STREAM_FORMATS, type StreamFormat } from './types.ts';
export { sumUsage, usageLine } from './usage.ts';

const PARSERS: Record<StreamFormat, () => AgentStreamParser> = {
  claude: createClaudeParser,
  codex: createCodexParser,
  droid: createDroidParser,
};

export function createParser(format: StreamFormat): AgentStreamParser {
  return PARSERS[format]();
}

/** Host settings of the agent stream (src/config.ts). */
export interface AgentStreamSettings {
  /** The stream format of `custom` agents (FLEET_AGENT_CMD_STREAM); undefined: none is read. */
  customFormat: StreamFormat | undefined;
  prices: PriceTable;
  /** The cost cap of requests that set none (FLEET_MAX_COST_USD). */
  defaultMaxCostUsd: number | undefined;
}

/** The format an agent's stream is read in; undefined for a custom agent without a declared format. */
export function streamFormatOf(agent: Agent, settings: Pick<AgentStreamSettings, 'customFormat'>): StreamFormat | undefined {
  return agent === 'custom' ? settings.customFormat : agent;
}

/** The monitor of one run, or undefined when the agent's stream is not read. */
export function monitorFor(
  request: { agent: Agent; model: string; max_turns?: number; max_cost_usd?: number },
  settings: AgentStreamSettings,
): AgentStreamMonitor | undefined {
  const format = streamFormatOf(request.agent, settings);
  if (!format) return undefined;
  const budget: Budget = { maxTurns: request.max_turns, maxCostUsd: request.max_cost_usd ?? settings.defaultMaxCostUsd };
  return new AgentStreamMonitor(createParser(format), { agent: request.agent, model: request.model, prices: settings.prices, budget });
}

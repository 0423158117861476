/**
 * Claude Code's `-p --output-format stream-json --verbose` stream (2.1.332, read from a run against a
 * loopback Messages API stub; fixtures in test/fixtures/agent-streams/claude-*.jsonl):
 *   {"type":"system","subtype":"init","model":…,"tools":[…],…}
 *   {"type":"assistant","message":{"id":"msg_…","model":…,"content":[ONE block: text | tool_use | thinking],
 *     "usage":{input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens}},
 *     "parent_tool_use_id":null | "toolu_…" (a subagent's message),…}
 *   {"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":…,"content":…,"is_error"?:true}]},…}
 *   {"type":"result","subtype":"success"|"error_max_turns"|"error_max_budget_usd"|"error_during_execution"|…,
 *     "num_turns":3,"total_cost_usd":0.0134,"usage":{…the session's totals…},"result"?:"final text",…}
 * Each content block of one API message is its own `assistant` line carrying the same message id and the
 * usage known when the message started (output tokens are not final until `result`), so tokens are kept per
 * message id and `result` replaces the estimate with the CLI's own totals.
 */
import { describeTool } from './activity.ts';
import { emptyTotals, type AgentStreamParser, type StreamStep, type StreamTotals } from './types.ts';
import { count, firstLine, isObject, oneLine, resultText, str, streamObject } from './text.ts';

interface MessageUsage {
  input: number;
  output: number;
  cached: number;
  cacheWrite: number;
}

/** More messages than this are summed into one bucket: a stream cannot make fleet hold a map without end. */
const MAX_TRACKED_MESSAGES = 10_000;

export function createClaudeParser(): AgentStreamParser {
  const messages = new Map<string, MessageUsage>();
  const overflow: MessageUsage = { input: 0, output: 0, cached: 0, cacheWrite: 0 };
  let mainTurns = 0;
  let final: StreamTotals | null = null;

  const track = (id: string | undefined, usage: unknown, main: boolean) => {
    if (!isObject(usage)) return;
    const seen: MessageUsage = {
      input: count(usage.input_tokens),
      output: count(usage.output_tokens),
      cached: count(usage.cache_read_input_tokens),
      cacheWrite: count(usage.cache_creation_input_tokens),
    };
    if (id === undefined || (!messages.has(id) && messages.size >= MAX_TRACKED_MESSAGES)) {
      for (const key of Object.keys(seen) as (keyof MessageUsage)[]) overflow[key] += seen[key];
      if (main) mainTurns++;
      return;
    }
    const known = messages.get(id);
    if (!known && main) mainTurns++;
    // The same message repeats per content block; its usage only grows.
    messages.set(
      id,
      known
        ? {
            input: Math.max(known.input, seen.input),
            output: Math.max(known.output, seen.output),
            cached: Math.max(known.cached, seen.cached),
            cacheWrite: Math.max(known.cacheWrite, seen.cacheWrite),
          }
        : seen,
    );
  };

  const assistant = (line: Record<string, unknown>): StreamStep => {
    const message = isObject(line.message) ? line.message : {};
    const main = line.parent_tool_use_id === null || line.parent_tool_use_id === undefined;
    track(str(message.id), message.usage, main);
    const who = main ? 'assistant' : 'subagent';
    const step: StreamStep = { transcript: [] };
    for (const block of Array.isArray(message.content) ? message.content : []) {
      if (!isObject(block)) continue;
      if (block.type === 'text' && typeof block.text === 'string' && block.text.trim())
        step.transcript.push(`[${who}] ${oneLine(block.text, 300)}`);
      if (block.type === 'thinking') step.transcript.push(`[${who}] (thinking)`);
      if (block.type === 'tool_use') {
        const name = str(block.name) ?? 'a tool';
        step.activity = describeTool(name, block.input);
        step.transcript.push(`[${who}] tool ${oneLine(name, 60)}: ${step.activity}`);
      }
    }
    return step;
  };

  const toolResults = (line: Record<string, unknown>): StreamStep => {
    const message = isObject(line.message) ? line.message : {};
    const transcript: string[] = [];
    for (const block of Array.isArray(message.content) ? message.content : []) {
      if (!isObject(block) || block.type !== 'tool_result') continue;
      const text = firstLine(resultText(block.content));
      transcript.push(`[tool result] ${block.is_error === true ? 'error' : 'ok'}${text ? `: ${text}` : ''}`);
    }
    return { transcript };
  };

  const estimate = (): StreamTotals => {
    const totals = emptyTotals();
    for (const m of [...messages.values(), overflow]) {
      totals.input_tokens += m.input;
      totals.output_tokens += m.output;
      totals.cached_tokens += m.cached;
      totals.cache_write_tokens += m.cacheWrite;
    }
    totals.turns = mainTurns;
    return totals;
  };

  const result = (line: Record<string, unknown>): StreamStep => {
    const subtype = str(line.subtype) ?? 'unknown';
    const cost =
      typeof line.total_cost_usd === 'number' && Number.isFinite(line.total_cost_usd) && line.total_cost_usd >= 0
        ? line.total_cost_usd
        : null;
    // A result written after a crash may carry no usage: the estimate from the messages stands then.
    const usage = isObject(line.usage) ? line.usage : null;
    const tokens = usage
      ? {
          input_tokens: count(usage.input_tokens),
          output_tokens: count(usage.output_tokens),
          cached_tokens: count(usage.cache_read_input_tokens),
          cache_write_tokens: count(usage.cache_creation_input_tokens),
        }
      : estimate();
    final = {
      input_tokens: tokens.input_tokens,
      output_tokens: tokens.output_tokens,
      cached_tokens: tokens.cached_tokens,
      cache_write_tokens: tokens.cache_write_tokens,
      turns: Math.max(count(line.num_turns), mainTurns),
      reported_cost_usd: cost,
      limit_hit: subtype === 'error_max_turns' ? 'turns' : subtype === 'error_max_budget_usd' ? 'cost' : null,
    };
    const answer = str(line.result);
    const costText = cost === null ? '' : `, $${cost.toFixed(4)}`;
    return {
      transcript: [`[done] ${oneLine(subtype, 40)}, ${final.turns} turn(s)${costText}${answer ? `: ${firstLine(answer, 200)}` : ''}`],
    };
  };

  return {
    format: 'claude',
    read(text) {
      const line = streamObject(text);
      if (!line) return null;
      switch (line.type) {
        case 'system':
          return line.subtype === 'init'
            ? { transcript: [`[session] claude started${str(line.model) ? ` (model ${oneLine(str(line.model)!, 80)})` : ''}`] }
            : { transcript: [`[session] ${oneLine(str(line.subtype) ?? 'system', 60)}`] };
        case 'assistant':
          return assistant(line);
        case 'user':
          return toolResults(line);
        case 'result':
          return result(line);
        case 'stream_event':
          // Partial-message deltas (--include-partial-messages): the whole message follows as `assistant`.
          return { transcript: [] };
        default:
          return null;
      }
    },
    totals: () => (final ? { ...final } : estimate()),
  };
}

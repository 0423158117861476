/**
 * `codex exec --json` (0.171.0, read from a run against a loopback Responses API stub; fixtures in
 * test/fixtures/agent-streams/codex-*.jsonl):
 *   {"type":"thread.started","thread_id":…}  {"type":"turn.started"}
 *   {"type":"item.started"|"item.updated"|"item.completed","item":{"id":"item_N","type":…}} with item types
 *     agent_message {text}, reasoning {text}, command_execution {command, aggregated_output, exit_code, status},
 *     file_change {changes:[{path, kind: add|delete|update}], status}, mcp_tool_call {server, tool, status},
 *     web_search {query}, todo_list {items:[{text, completed}]}, error {message}
 *   {"type":"turn.completed","usage":{input_tokens, cached_input_tokens, cache_write_input_tokens?, output_tokens,
 *     reasoning_output_tokens}}   {"type":"turn.failed","error":{"message"}}   {"type":"error","message"}
 * Usage comes only with `turn.completed` (one per `codex exec`), and `input_tokens` there includes the
 * cached ones. Codex reports no cost. It shows no model round trips either, so a turn is counted per tool
 * item (the model asked for it) plus one per completed turn (the final answer).
 */
import { describeTool } from './activity.ts';
import { emptyTotals, type AgentStreamParser, type StreamStep } from './types.ts';
import { count, firstLine, isObject, oneLine, shortPath, str, streamObject } from './text.ts';

const TOOL_ITEMS = new Set(['command_execution', 'file_change', 'mcp_tool_call', 'web_search']);
const MAX_TRACKED_ITEMS = 10_000;

export function createCodexParser(): AgentStreamParser {
  const totals = emptyTotals();
  const toolItems = new Set<string>();

  const countTool = (id: string | undefined) => {
    if (id !== undefined && toolItems.has(id)) return;
    if (id !== undefined && toolItems.size < MAX_TRACKED_ITEMS) toolItems.add(id);
    totals.turns++;
  };

  const fileChanges = (item: Record<string, unknown>) =>
    (Array.isArray(item.changes) ? item.changes : [])
      .filter(isObject)
      .map((c) => ({ path: shortPath(str(c.path) ?? '?'), kind: str(c.kind) ?? 'update' }));

  const item = (phase: 'started' | 'updated' | 'completed', item: Record<string, unknown>): StreamStep => {
    const kind = str(item.type);
    const id = str(item.id);
    if (kind && TOOL_ITEMS.has(kind) && phase !== 'updated') countTool(id);
    switch (kind) {
      case 'command_execution': {
        const command = oneLine(str(item.command) ?? '', 200);
        if (phase === 'started')
          return { transcript: [`[assistant] tool exec_command: ${command}`], activity: describeTool('exec_command', { cmd: command }) };
        if (phase === 'completed') {
          const output = firstLine(str(item.aggregated_output) ?? '');
          const code = typeof item.exit_code === 'number' ? item.exit_code : null;
          return { transcript: [`[tool result] ${code === 0 ? 'ok' : `exit ${code ?? '?'}`}${output ? `: ${output}` : ''}`] };
        }
        return { transcript: [] };
      }
      case 'file_change': {
        const changes = fileChanges(item);
        if (phase === 'updated' || changes.length === 0) return { transcript: [] };
        const list = oneLine(changes.map((c) => `${c.kind} ${c.path}`).join(', '), 300);
        return {
          transcript: [
            `[assistant] files ${phase === 'started' ? 'changing' : item.status === 'completed' ? 'changed' : `not changed (${oneLine(str(item.status) ?? '?', 20)})`}: ${list}`,
          ],
          activity: describeTool('Edit', { file_path: changes[0]!.path }),
        };
      }
      case 'mcp_tool_call': {
        const name = `${oneLine(str(item.server) ?? '?', 40)}.${oneLine(str(item.tool) ?? '?', 60)}`;
        if (phase === 'started') return { transcript: [`[assistant] tool ${name}`], activity: `using ${name}` };
        return phase === 'completed'
          ? { transcript: [`[tool result] ${name}: ${oneLine(str(item.status) ?? 'done', 40)}`] }
          : { transcript: [] };
      }
      case 'web_search':
        return phase === 'updated'
          ? { transcript: [] }
          : {
              transcript: [`[assistant] web search: ${oneLine(str(item.query) ?? '', 120)}`],
              activity: describeTool('WebSearch', { query: str(item.query) }),
            };
      case 'agent_message':
        return phase === 'completed' ? { transcript: [`[assistant] ${oneLine(str(item.text) ?? '', 300)}`] } : { transcript: [] };
      case 'reasoning':
        return phase === 'completed'
          ? { transcript: [`[assistant] (thinking) ${oneLine(str(item.text) ?? '', 120)}`] }
          : { transcript: [] };
      case 'todo_list': {
        const items = (Array.isArray(item.items) ? item.items : []).filter(isObject);
        const done = items.filter((t) => t.completed === true).length;
        return { transcript: [`[plan] ${done}/${items.length} done`], activity: 'updating its plan' };
      }
      case 'error':
        return { transcript: [`[error] ${oneLine(str(item.message) ?? '', 300)}`] };
      default:
        return { transcript: [`[item] ${oneLine(kind ?? 'unknown', 40)} ${phase}`] };
    }
  };

  return {
    format: 'codex',
    read(text) {
      const line = streamObject(text);
      if (!line) return null;
      switch (line.type) {
        case 'thread.started':
          return { transcript: ['[session] codex thread started'] };
        case 'turn.started':
          return { transcript: [] };
        case 'item.started':
        case 'item.updated':
        case 'item.completed':
          return isObject(line.item) ? item(line.type.slice('item.'.length) as 'started' | 'updated' | 'completed', line.item) : null;
        case 'turn.completed': {
          const usage = isObject(line.usage) ? line.usage : {};
          const input = count(usage.input_tokens);
          const cached = Math.min(count(usage.cached_input_tokens), input);
          const written = Math.min(count(usage.cache_write_input_tokens), input - cached);
          totals.input_tokens += input - cached - written;
          totals.cached_tokens += cached;
          totals.cache_write_tokens += written;
          totals.output_tokens += count(usage.output_tokens);
          totals.turns++;
          return { transcript: [`[done] turn completed: ${input} input (${cached} cached), ${count(usage.output_tokens)} output tokens`] };
        }
        case 'turn.failed':
          return { transcript: [`[error] turn failed: ${oneLine(isObject(line.error) ? (str(line.error.message) ?? '') : '', 300)}`] };
        case 'error':
          return { transcript: [`[error] ${oneLine(str(line.message) ?? '', 300)}`] };
        default:
          return null;
      }
    },
    totals: () => ({ ...totals }),
  };
}

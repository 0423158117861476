/**
 * `droid exec -o stream-json` (0.225.1, read from a run against a loopback Messages API stub through a
 * custom model; fixtures in test/fixtures/agent-streams/droid-*.jsonl):
 *   {"type":"system","subtype":"init","model":"custom:…","tools":[…],…}
 *   {"type":"message","role":"user"|"assistant","id":…,"text":…}
 *   {"type":"tool_call","id":"toolu_…","messageId":…,"toolId":"Create","toolName":"Create","parameters":{…}}
 *   {"type":"tool_result","id":"toolu_…","toolId":…,"isError":false,"value":"…"} or "isError":true,"error":{"message"}
 *   {"type":"completion","finalText":…,"numTurns":3,"durationMs":…,"usage":{input_tokens, output_tokens,
 *     cache_read_input_tokens, cache_creation_input_tokens, factory_credits}}
 * `-o json` prints one {"type":"result","num_turns":…,"usage":{…}} line instead, read the same way.
 * droid reports no cost in USD (factory_credits are Factory's own unit). Usage comes only at the end; a turn
 * is one assistant message id (a message and the tool calls it made share it).
 */
import { describeTool } from './activity.ts';
import { emptyTotals, type AgentStreamParser, type StreamStep } from './types.ts';
import { count, firstLine, isObject, oneLine, str, streamObject } from './text.ts';

const MAX_TRACKED_MESSAGES = 10_000;

export function createDroidParser(): AgentStreamParser {
  const totals = emptyTotals();
  const messageIds = new Set<string>();
  let finalTurns = 0;

  const turn = (id: string | undefined) => {
    if (id !== undefined && messageIds.has(id)) return;
    if (id !== undefined && messageIds.size < MAX_TRACKED_MESSAGES) messageIds.add(id);
    totals.turns++;
  };

  const finish = (line: Record<string, unknown>, turns: unknown): StreamStep => {
    const usage = isObject(line.usage) ? line.usage : {};
    totals.input_tokens = count(usage.input_tokens);
    totals.output_tokens = count(usage.output_tokens);
    totals.cached_tokens = count(usage.cache_read_input_tokens);
    totals.cache_write_tokens = count(usage.cache_creation_input_tokens);
    finalTurns = count(turns);
    const answer = str(line.finalText) ?? str(line.result);
    return { transcript: [`[done] ${Math.max(finalTurns, totals.turns)} turn(s)${answer ? `: ${firstLine(answer, 200)}` : ''}`] };
  };

  return {
    format: 'droid',
    read(text) {
      const line = streamObject(text);
      if (!line) return null;
      switch (line.type) {
        case 'system':
          return {
            transcript: [
              `[session] droid ${line.subtype === 'init' ? 'started' : oneLine(str(line.subtype) ?? 'system', 40)}${str(line.model) ? ` (model ${oneLine(str(line.model)!, 80)})` : ''}`,
            ],
          };
        case 'message': {
          const role = str(line.role);
          if (role === 'assistant') {
            turn(str(line.id));
            return { transcript: [`[assistant] ${oneLine(str(line.text) ?? '', 300)}`] };
          }
          // The user message is the task itself: the job log needs only that it was sent.
          return { transcript: [`[${oneLine(role ?? 'message', 20)}] ${oneLine(str(line.text) ?? '', 120)}`] };
        }
        case 'tool_call': {
          turn(str(line.messageId));
          const name = str(line.toolName) ?? str(line.toolId) ?? 'a tool';
          const activity = describeTool(name, line.parameters);
          return { transcript: [`[assistant] tool ${oneLine(name, 60)}: ${activity}`], activity };
        }
        case 'tool_result': {
          const failed = line.isError === true;
          const text = failed
            ? isObject(line.error)
              ? str(line.error.message)
              : undefined
            : typeof line.value === 'string'
              ? line.value
              : undefined;
          const first = firstLine(text ?? '');
          return { transcript: [`[tool result] ${failed ? 'error' : 'ok'}${first ? `: ${first}` : ''}`] };
        }
        case 'completion':
          return finish(line, line.numTurns);
        case 'result':
          return finish(line, line.num_turns);
        case 'error':
          return { transcript: [`[error] ${oneLine(str(line.message) ?? '', 300)}`] };
        default:
          return null;
      }
    },
    totals: () => ({ ...totals, turns: Math.max(totals.turns, finalTurns) }),
  };
}

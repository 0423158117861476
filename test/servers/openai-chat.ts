/**
 * OpenAI chat completions on 127.0.0.1 (`POST /v1/chat/completions`, streamed and not), for droid's
 * `provider: "generic-chat-completion-api"` custom models. The key comes as a bearer token. A streamed
 * answer is `data:` chunks of `chat.completion.chunk` (role, content deltas, `tool_calls` deltas with the
 * arguments in pieces, a finish_reason of `tool_calls` or `stop`, usage when asked for), then `data: [DONE]`.
 * Tool results come back as `role: "tool"` messages.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contentText, ModelTestServer, type ModelServerOptions, SseWriter, sendJson } from './model-server.ts';

export class ChatCompletionsTestServer extends ModelTestServer {
  private ids = 0;

  protected isMainRequest(path: string, body: Record<string, unknown>): boolean {
    return path.endsWith('/chat/completions') && Array.isArray(body.tools) && body.tools.length > 0;
  }

  protected handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Record<string, unknown> | undefined,
    main: boolean,
  ): void {
    if (!this.checkKey(req.headers.authorization?.replace(/^Bearer /, ''), path)) {
      sendJson(res, 401, {
        error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
      });
      return;
    }
    if (req.method === 'GET' && path.endsWith('/models')) {
      sendJson(res, 200, { object: 'list', data: [{ id: this.options.model, object: 'model', created: 0, owned_by: 'test' }] });
      return;
    }
    if (req.method !== 'POST' || !path.endsWith('/chat/completions') || !body) {
      sendJson(res, 404, {
        error: { message: `Invalid URL (${req.method} ${path})`, type: 'invalid_request_error', param: null, code: null },
      });
      return;
    }
    this.checkModel(body.model, path);
    for (const message of (body.messages as Record<string, unknown>[] | undefined) ?? []) {
      if (message.role === 'tool') this.recordToolResult(message.tool_call_id as string, contentText(message.content));
    }
    const turn = main ? this.nextTurn() : undefined;
    if (turn?.kind === 'http_error') {
      const type = turn.status === 429 ? 'requests' : turn.status >= 500 ? 'server_error' : 'invalid_request_error';
      sendJson(res, turn.status, {
        error: { message: turn.message, type, param: null, code: turn.status === 429 ? 'rate_limit_exceeded' : null },
      });
      return;
    }
    if (turn?.kind === 'stall') {
      new SseWriter(res);
      return;
    }
    const steps = turn ? turn.steps : [{ kind: 'text' as const, text: main ? 'Done.' : 'OK' }];
    const offered = ((body.tools as { function?: { name?: string } }[]) ?? []).map((t) => t.function?.name);
    const content = steps.flatMap((s) => (s.kind === 'text' ? [s.text] : [])).join('\n');
    const calls = steps.flatMap((s) =>
      s.kind === 'tool'
        ? [{ id: `call_test${++this.ids}`, type: 'function', function: { name: s.tool, arguments: JSON.stringify(s.input) } }]
        : [],
    );
    for (const call of calls) {
      if (main && !offered.includes(call.function.name))
        this.violations.push(`script calls tool ${call.function.name}; the CLI offered ${offered.join(', ')}`);
    }
    const finish = calls.length ? 'tool_calls' : 'stop';
    const id = `chatcmpl-test${++this.ids}`;
    const created = Math.floor(Date.now() / 1000);
    const usage = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 };
    if (body.stream !== true) {
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model: body.model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: content || null, ...(calls.length ? { tool_calls: calls } : {}) },
            finish_reason: finish,
          },
        ],
        usage,
      });
      return;
    }
    const sse = new SseWriter(res);
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
      sse.event(undefined, {
        id,
        object: 'chat.completion.chunk',
        created,
        model: body.model,
        choices: [{ index: 0, delta, finish_reason: finishReason }],
      });
    chunk({ role: 'assistant', content: '' });
    if (content) {
      const half = Math.ceil(content.length / 2);
      chunk({ content: content.slice(0, half) });
      if (content.slice(half)) chunk({ content: content.slice(half) });
    }
    calls.forEach((call, index) => {
      chunk({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] });
      const args = call.function.arguments;
      const half = Math.ceil(args.length / 2);
      for (const part of [args.slice(0, half), args.slice(half)]) chunk({ tool_calls: [{ index, function: { arguments: part } }] });
    });
    if (turn?.kind === 'cut') {
      sse.cut();
      return;
    }
    chunk({}, finish);
    if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) {
      sse.event(undefined, { id, object: 'chat.completion.chunk', created, model: body.model, choices: [], usage });
    }
    sse.event(undefined, '[DONE]');
    sse.end();
  }
}

export async function startChatCompletionsTestServer(options: ModelServerOptions): Promise<ChatCompletionsTestServer> {
  return new ChatCompletionsTestServer(options).listen();
}

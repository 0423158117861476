/**
 * The Anthropic Messages API on 127.0.0.1 (`POST /v1/messages`, streaming and not; `count_tokens`), for Claude
 * Code and for droid's `provider: "anthropic"` custom models. The key comes as `x-api-key` (or a bearer
 * token); streamed answers use the API's event sequence: message_start, content_block_start/delta/stop
 * (text_delta, input_json_delta for tool_use), message_delta with the stop reason, message_stop.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contentText, ModelTestServer, sendJson, SseWriter, type ModelServerOptions, type Step } from './model-server.ts';

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  404: 'not_found_error',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
};

interface Block {
  type: string;
  [key: string]: unknown;
}

export class AnthropicTestServer extends ModelTestServer {
  private ids = 0;

  protected isMainRequest(path: string, body: Record<string, unknown>): boolean {
    return path === '/v1/messages' && Array.isArray(body.tools) && body.tools.length > 0;
  }

  /** Tool names the request offered (the last main request's), to check a script against. */
  offeredTools(): string[] {
    const body = this.mainRequests().at(-1)?.body;
    return ((body?.tools as { name: string }[] | undefined) ?? []).map((t) => t.name);
  }

  protected handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Record<string, unknown> | undefined,
    main: boolean,
  ): void {
    // Claude Code probes the endpoint with `HEAD /api/hello` before it starts, without a key.
    if (req.method === 'HEAD') {
      res.writeHead(200).end();
      return;
    }
    const bearer = req.headers.authorization?.replace(/^Bearer /, '');
    const key = (req.headers['x-api-key'] as string | undefined) ?? bearer;
    if (!this.checkKey(key, path)) {
      this.error(res, 401, 'invalid x-api-key');
      return;
    }
    if (req.method !== 'POST' || !body) {
      this.error(res, 404, `no route ${req.method} ${path}`);
      return;
    }
    this.checkModel(body.model, path);
    if (path === '/v1/messages/count_tokens') {
      sendJson(res, 200, { input_tokens: JSON.stringify(body).length >> 2 });
      return;
    }
    if (path !== '/v1/messages') {
      this.error(res, 404, `no route ${path}`);
      return;
    }
    this.collectToolResults(body);
    const turn = main ? this.nextTurn() : undefined;
    if (turn?.kind === 'http_error') {
      this.error(res, turn.status, turn.message);
      return;
    }
    if (turn?.kind === 'stall') {
      new SseWriter(res);
      return;
    }
    const steps = turn ? turn.steps : [{ kind: 'text' as const, text: main ? 'Done.' : 'OK' }];
    if (main) this.checkTools(body, steps);
    const blocks = steps.map((step) => this.block(step));
    const stopReason = blocks.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn';
    if (body.stream !== true) {
      sendJson(res, 200, { ...this.message(body, blocks), stop_reason: stopReason, usage: { input_tokens: 100, output_tokens: 20 } });
      return;
    }
    const sse = new SseWriter(res);
    sse.event('message_start', {
      type: 'message_start',
      message: {
        ...this.message(body, []),
        usage: { input_tokens: 100, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      },
    });
    sse.event('ping', { type: 'ping' });
    blocks.forEach((b, index) => {
      if (b.type === 'text') {
        sse.event('content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
        const text = b.text as string;
        // Two deltas, as a real stream splits text: the CLI must join them.
        const half = Math.ceil(text.length / 2);
        for (const part of [text.slice(0, half), text.slice(half)]) {
          if (part) sse.event('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: part } });
        }
      } else {
        sse.event('content_block_start', {
          type: 'content_block_start',
          index,
          content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} },
        });
        const json = JSON.stringify(b.input);
        const half = Math.ceil(json.length / 2);
        for (const part of [json.slice(0, half), json.slice(half)]) {
          sse.event('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: part } });
        }
      }
      if (turn?.kind === 'cut' && index === blocks.length - 1) return;
      sse.event('content_block_stop', { type: 'content_block_stop', index });
    });
    if (turn?.kind === 'cut') {
      sse.cut();
      return;
    }
    sse.event('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: 20 },
    });
    sse.event('message_stop', { type: 'message_stop' });
    sse.end();
  }

  private message(body: Record<string, unknown>, content: Block[]) {
    return {
      id: `msg_test${++this.ids}`,
      type: 'message',
      role: 'assistant',
      model: body.model,
      content,
      stop_reason: null,
      stop_sequence: null,
    };
  }

  private block(step: Step): Block {
    if (step.kind === 'text') return { type: 'text', text: step.text };
    return { type: 'tool_use', id: `toolu_test${++this.ids}`, name: step.tool, input: step.input };
  }

  private checkTools(body: Record<string, unknown>, steps: Step[]): void {
    const offered = ((body.tools as { name?: string }[]) ?? []).map((t) => t.name);
    for (const step of steps) {
      if (step.kind === 'tool' && !offered.includes(step.tool))
        this.violations.push(`script calls tool ${step.tool}; the CLI offered ${offered.join(', ')}`);
    }
  }

  private collectToolResults(body: Record<string, unknown>): void {
    for (const message of (body.messages as { role: string; content: unknown }[] | undefined) ?? []) {
      if (message.role !== 'user' || !Array.isArray(message.content)) continue;
      for (const block of message.content as Block[]) {
        if (block.type === 'tool_result') this.recordToolResult(block.tool_use_id as string, contentText(block.content));
      }
    }
  }

  /** The API's error body: `{"type":"error","error":{"type":…,"message":…}}`, with `request-id`. */
  private error(res: ServerResponse, status: number, message: string): void {
    const headers: Record<string, string> = { 'request-id': `req_test${++this.ids}` };
    // The API says whether a retry may help; a test of a failure should not wait for ten retries.
    if (status === 429 || status >= 500) headers['x-should-retry'] = 'false';
    sendJson(res, status, { type: 'error', error: { type: ERROR_TYPES[status] ?? 'api_error', message } }, headers);
  }
}

export async function startAnthropicTestServer(options: ModelServerOptions): Promise<AnthropicTestServer> {
  return new AnthropicTestServer(options).listen();
}
